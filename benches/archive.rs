//! What the continuous WAL archive costs and how much it can lose:
//!
//! - refreshes/s (one write batch each: a token rotation) with
//!   `[backup].wal_archive` on and off, two daemons in the same run, rounds
//!   alternating, median of the rounds;
//! - the archive's recovery point: for every segment the daemon with the
//!   archive wrote under that load, the time from its commit (the commit
//!   time is in the segment's name, taken as COMMIT returned, just before
//!   the callers are answered) to the segment being durable (its ctime: the
//!   rename after the fsync). Linux stamps files with a coarse clock, so
//!   single figures are good to a few milliseconds.
//!
//! Run: `cargo bench --bench archive` (about 40 s; `LATCH_BENCH_SECS`
//! sets each round's length, default 5).

// A panic here is a failed bench run, with its message: what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

#[path = "../tests/it/harness.rs"]
#[allow(dead_code)]
mod harness;

const PASSWORD: &str = "correct horse battery staple";
const CLIENTS: usize = 16;
const ROUNDS: usize = 3;

fn secs() -> Duration {
    Duration::from_secs(std::env::var("LATCH_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Daemon {
    latchd: harness::Latchd,
    client: reqwest::Client,
    /// One refresh token per client slot.
    tokens: Vec<Mutex<String>>,
}

async fn start(archive: bool) -> Arc<Daemon> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[server]\nstate_dir = \"STATE\"\n[[listener]]\nkind = \"https\"\naddr = \"127.0.0.1:0\"\n\
         [accounts]\nrequire_verified_email = false\n[backup]\nwal_archive = {archive}\n\
         [rate_limits]\nglobal = \"10000000/1m\"\nip = \"10000000/1m\"\nip_hourly = \"10000000/1h\"\n\
         credential = \"10000000/1m\"\naccount = \"10000000/1m\"\n\
         [defense.anomaly]\nbot = {{ requests = 100000000, window = \"1m\", action = \"flag\", block_for = \"1m\" }}\n\
         rapid_refresh = {{ count = 100000000, window = \"1m\", action = \"flag\" }}\n"
    );
    harness::write_config(dir.path(), &cfg);
    let latchd = harness::Latchd::start_in_with_env(dir, &[("RUST_LOG", "warn")]).await;
    let tls = harness::client_tls(&latchd.cert_path(), &[&rustls::version::TLS13]);
    let client = reqwest::Client::builder().use_preconfigured_tls((*tls).clone()).build().unwrap();
    let mut tokens = Vec::new();
    for i in 0..CLIENTS {
        let email = format!("user{i}@bench.test");
        let body = json!({"email": email, "password": PASSWORD});
        let res = client.post(latchd.https_url("/v1/auth/register")).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 202);
        let res = client.post(latchd.https_url("/v1/auth/login")).json(&body).send().await.unwrap();
        let v: Value = res.json().await.unwrap();
        tokens.push(Mutex::new(v["refresh_token"].as_str().unwrap().to_string()));
    }
    Arc::new(Daemon { latchd, client, tokens })
}

/// Refreshes/s with `CLIENTS` closed-loop clients for one round.
async fn refreshes(d: &Arc<Daemon>) -> f64 {
    let started = Instant::now();
    let until = started + secs();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let d = Arc::clone(d);
            tokio::spawn(async move {
                let (url, mut done) = (d.latchd.https_url("/v1/auth/refresh"), 0usize);
                while Instant::now() < until {
                    let mut slot = d.tokens[i].lock().await;
                    let res =
                        d.client.post(&url).json(&json!({"refresh_token": *slot})).send().await.unwrap();
                    assert_eq!(res.status(), 200);
                    let v: Value = res.json().await.unwrap();
                    *slot = v["refresh_token"].as_str().unwrap().to_string();
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut ops = 0;
    for t in tasks {
        ops += t.await.unwrap();
    }
    ops as f64 / started.elapsed().as_secs_f64()
}

/// Commit-to-durable delays (ms) of every archived segment of `d`.
fn archive_delays(d: &Daemon) -> Vec<f64> {
    let mut delays = Vec::new();
    let Ok(generations) = std::fs::read_dir(d.latchd.state_dir().join("archive")) else { return delays };
    for generation in generations.flatten() {
        for seg in std::fs::read_dir(generation.path()).unwrap().flatten() {
            let name = seg.file_name().to_string_lossy().into_owned();
            let Some(commit_ms) = name.strip_suffix(".wal").and_then(|n| n.split_once('-')) else {
                continue;
            };
            let commit_ms: f64 = commit_ms.1.parse().unwrap();
            let meta = seg.metadata().unwrap();
            let durable_ms = meta.ctime() as f64 * 1e3 + meta.ctime_nsec() as f64 / 1e6;
            delays.push(durable_ms - commit_ms);
        }
    }
    delays.sort_by(f64::total_cmp);
    delays
}

fn pct(v: &[f64], p: f64) -> f64 {
    v.get(((v.len().max(1) as f64 - 1.0) * p) as usize).copied().unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let (on, off) = (start(true).await, start(false).await);
    refreshes(&on).await; // warm both
    refreshes(&off).await;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        with.push(refreshes(&on).await);
        without.push(refreshes(&off).await);
    }
    let (with, without) = (median(with), median(without));
    let delays = archive_delays(&on);
    println!("\n## WAL archive ({CLIENTS} clients, {ROUNDS} rounds of {} s, medians)\n", secs().as_secs());
    println!("| refreshes/s | archive on | archive off | on / off |");
    println!("|---|---|---|---|");
    println!("| HTTPS, TLS 1.3 | {with:.0} | {without:.0} | {:.2} |", with / without);
    println!("\n| commit → durable in the archive | segments | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    println!(
        "| under the refresh load | {} | {:.1} | {:.1} | {:.1} |",
        delays.len(),
        pct(&delays, 0.5),
        pct(&delays, 0.99),
        delays.last().copied().unwrap_or(0.0)
    );
}
