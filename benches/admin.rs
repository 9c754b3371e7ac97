//! What the admin and app features cost:
//!
//! - one audit row, in writer time: `audit::record` (read the chain's tail,
//!   HMAC the row, insert it) against a plain insert of the same row, both
//!   inside one write job of 2,000 rows on the real store, with a small log
//!   and again with a million rows in it (the tail lookup is a b-tree
//!   descent, so it should not grow).
//! - one introspection, over kept-alive HTTPS to a release latchd: an
//!   access token, a refresh token, an API key and junk, against
//!   `GET /v1/auth/me` with the same access token (the same JWT validation
//!   and session lookup) in the same run.
//!
//! Run: `cargo bench --bench admin` (about a minute).

// A panic here is a failed bench run, with its message: what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use latch::audit::{self, Entry};
use latch::http::ClientInfo;
use latch::store::{Store, StoreOptions};
use serde_json::{Value, json};

#[path = "support/api_key.rs"]
mod api_key;
#[path = "../tests/it/harness.rs"]
#[allow(dead_code)]
mod harness;

const ROWS: usize = 2_000;
const ROUNDS: usize = 7;
const REQUESTS: usize = 2_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn client() -> ClientInfo {
    ClientInfo {
        ip: "203.0.113.9".into(),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) bench".into()),
        request_id: "0193a3c2-7f1e-7a4b-9c1d-2b3e4f5a6b7c".into(),
    }
}

/// µs of writer time per row: (chained, plain).
async fn row_cost(store: &Store) -> (f64, f64) {
    let (mut chained, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let us = store
            .write(|c| {
                let client = client();
                let started = Instant::now();
                for _ in 0..ROWS {
                    let entry = Entry::by_user("login", "0193a3c2-0000-7000-8000-000000000001", &client)
                        .with(json!({ "device": "laptop" }));
                    audit::record(c, &entry)?;
                }
                Ok(started.elapsed().as_secs_f64() * 1e6 / ROWS as f64)
            })
            .await
            .unwrap();
        chained.push(us);
        let us = store
            .write(|c| {
                let client = client();
                let started = Instant::now();
                let mut stmt = c.prepare_cached(
                    "INSERT INTO audit_log (at, action, actor_id, subject_id, ip, user_agent, request_id, details)
                     VALUES (?1, 'bench_plain', ?2, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for _ in 0..ROWS {
                    let details = json!({ "device": "laptop" }).to_string();
                    let user = "0193a3c2-0000-7000-8000-000000000001";
                    let now = latch::clock::now_unix();
                    stmt.execute(rusqlite::params![now, user, client.ip, client.user_agent, client.request_id, details])?;
                }
                Ok(started.elapsed().as_secs_f64() * 1e6 / ROWS as f64)
            })
            .await
            .unwrap();
        plain.push(us);
    }
    (median(chained), median(plain))
}

/// Fills the log to a million rows with plain inserts (their chain is not
/// checked here; only the size of the table matters).
async fn fill(store: &Store) {
    for _ in 0..20 {
        store
            .write(|c| {
                let mut stmt = c.prepare_cached(
                    "INSERT INTO audit_log (at, action, ip, details, prev_hash, hash) VALUES (?1, 'bench_fill', '192.0.2.1', '{}', ?2, ?2)",
                )?;
                let filler = "f".repeat(64);
                for _ in 0..50_000 {
                    stmt.execute(rusqlite::params![latch::clock::now_unix(), filler])?;
                }
                Ok(())
            })
            .await
            .unwrap();
    }
}

async fn audit_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("latch.db");
    let store =
        Store::open(&StoreOptions { path: &db, backup_dir: dir.path(), unsafe_no_fsync: false }).unwrap();
    let master = latch::keys::load_or_create(&store, &dir.path().join("master.key")).await.unwrap();
    audit::install_key(&master);
    let key = audit::ChainKey::new(&master);
    let row = audit::AuditRow {
        id: 0,
        at: 1_700_000_000,
        action: "login".into(),
        actor_id: Some("0193a3c2-0000-7000-8000-000000000001".into()),
        subject_id: Some("0193a3c2-0000-7000-8000-000000000001".into()),
        ip: Some("203.0.113.9".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) bench".into()),
        request_id: Some("0193a3c2-7f1e-7a4b-9c1d-2b3e4f5a6b7c".into()),
        details: "{\"device\":\"laptop\"}".into(),
        prev_hash: None,
        hash: None,
    };
    let started = Instant::now();
    let mut prev = String::new();
    for _ in 0..100_000 {
        prev = key.link(&prev, &row);
    }
    let hmac_us = started.elapsed().as_secs_f64() * 1e6 / 100_000.0;

    println!("\n| audit row, writer time | log size | chained µs | plain insert µs | chain adds |");
    println!("|---|---|---|---|---|");
    let (chained, plain) = row_cost(&store).await;
    println!(
        "| per row | ~{}k rows | {chained:.1} | {plain:.1} | {:+.1} µs |",
        2 * ROWS * ROUNDS / 1000,
        chained - plain
    );
    fill(&store).await;
    let (chained, plain) = row_cost(&store).await;
    println!("| per row | ~1,050k rows | {chained:.1} | {plain:.1} | {:+.1} µs |", chained - plain);
    println!("\nof which the HMAC of one row (in process): {hmac_us:.2} µs");
    store.close(Duration::from_secs(5));
}

async fn daemon() -> harness::Latchd {
    let dir = tempfile::tempdir().unwrap();
    let cfg = "[server]\nstate_dir = \"STATE\"\n[[listener]]\nkind = \"https\"\naddr = \"127.0.0.1:0\"\n\
               [accounts]\nrequire_verified_email = false\n\
               [rate_limits]\nglobal = \"100000000/1m\"\nip = \"100000000/1m\"\nip_hourly = \"100000000/1h\"\n\
               credential = \"100000000/1m\"\naccount = \"100000000/1m\"\n\
               [defense.anomaly]\nbot = { requests = 100000000, window = \"1m\", action = \"block\", block_for = \"30m\" }\n";
    harness::write_config(dir.path(), cfg);
    harness::Latchd::start_in_with_env(dir, &[("RUST_LOG", "warn")]).await
}

/// (p50, p99) µs of `REQUESTS` sequential requests on one connection.
async fn latency(req: impl Fn() -> reqwest::RequestBuilder, active: Option<bool>) -> (f64, f64) {
    let mut times = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let started = Instant::now();
        let res = req().send().await.unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1e6);
        if let Some(want) = active {
            assert_eq!(body["active"], want, "{body}");
        }
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

async fn introspection() {
    let d = daemon().await;
    let body = json!({"email": "bench@example.test", "password": "correct horse battery staple"});
    assert_eq!(d.post("/v1/auth/register", body.clone()).await.status(), 202);
    let tokens: Value = d.post("/v1/auth/login", body).await.json().await.unwrap();
    let (access, refresh) =
        (tokens["access_token"].as_str().unwrap(), tokens["refresh_token"].as_str().unwrap());
    let key = api_key::introspect_key(&d);
    let client = d.client();
    let introspect_url = d.https_url("/v1/auth/introspect");
    let me_url = d.https_url("/v1/auth/me");
    let cases: [(&str, &str); 4] = [
        ("access token", access),
        ("refresh token", refresh),
        ("API key", key.as_str()),
        ("junk", "not-a-token"),
    ];
    println!("\n| call | p50 µs | p99 µs |");
    println!("|---|---|---|");
    let mut me = (Vec::new(), Vec::new());
    let mut figures: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); cases.len()];
    for _ in 0..ROUNDS {
        let (p50, p99) = latency(|| client.get(&me_url).bearer_auth(access), None).await;
        me.0.push(p50);
        me.1.push(p99);
        for (i, (_, token)) in cases.iter().enumerate() {
            let send = || client.post(&introspect_url).bearer_auth(&key).json(&json!({ "token": token }));
            let (p50, p99) = latency(send, Some(i < 3)).await;
            figures[i].0.push(p50);
            figures[i].1.push(p99);
        }
    }
    let me50 = median(me.0);
    println!("| GET /v1/auth/me (baseline) | {me50:.0} | {:.0} |", median(me.1));
    for ((name, _), (p50, p99)) in cases.iter().zip(figures) {
        let p50 = median(p50);
        println!("| introspect: {name} | {p50:.0} ({:.2}× me) | {:.0} |", p50 / me50, median(p99));
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("latch admin benchmark: {cpus} CPUs, {ROUNDS} rounds (medians)");
    audit_rows().await;
    introspection().await;
}
