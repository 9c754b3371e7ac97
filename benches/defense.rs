//! What the defenses cost:
//!
//! - latency: `GET /health` and `GET /v1/auth/me` on a kept-alive HTTPS
//!   connection, p50 and p99, against two daemons started in the same run —
//!   one with the whole defense chain (IP block check, five rate-limit
//!   buckets, the bot and scanner rules; limits high enough never to refuse,
//!   so every check runs and passes), one without it
//!   (`LATCH_BENCH_UNSAFE_NO_DEFENSE=1`). Rounds alternate between them.
//!   Target: under 5 % of the request time and under 50 µs p99 added.
//! - memory: one keyed limiter fed 1,000,000 distinct client addresses, RSS
//!   before, after, and after idle keys are evicted.
//!
//! Run: `cargo bench --bench defense` (about a minute).

// A panic here is a failed bench run, with its message: what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use latch::config::Rate;
use latch::defense::{KeyedLimiter, Scope};
use serde_json::{Value, json};

// The daemons are started exactly as the integration tests start them.
#[path = "../tests/it/harness.rs"]
#[allow(dead_code)]
mod harness;

const REQUESTS: usize = 2000;
const ROUNDS: usize = 7;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The rate-limit work one request does (ip, ip_hourly and bot buckets
/// of one address), in process: ns per request.
fn checks_per_request() -> f64 {
    let rate = |count, secs| Rate { count, period: Duration::from_secs(secs) };
    let (ip, hourly, bot) = (
        KeyedLimiter::keyed(rate(u32::MAX, 60)),
        KeyedLimiter::keyed(rate(u32::MAX, 3600)),
        KeyedLimiter::keyed(rate(u32::MAX, 60)),
    );
    let keys: Vec<String> = (0..1000).map(|i| format!("203.0.113.{}", i % 250)).collect();
    let started = Instant::now();
    let n = 1_000_000;
    for i in 0..n {
        let key = &keys[i % keys.len()];
        let _ = std::hint::black_box((
            ip.check(Scope::Ip, key),
            hourly.check(Scope::IpHourly, key),
            bot.check(Scope::Ip, key),
        ));
    }
    started.elapsed().as_nanos() as f64 / n as f64
}

fn memory() {
    let limiter = KeyedLimiter::keyed(Rate { count: 100, period: Duration::from_secs(60) });
    let before = rss_kib();
    let started = Instant::now();
    for i in 0..1_000_000u32 {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        let _ = limiter.check(Scope::Ip, &ip.to_string());
    }
    let fed = started.elapsed();
    let (full, keys) = (rss_kib(), limiter.keys());
    // One request each at 100/1m: governor forgets a key two cells (1.2 s)
    // after its last request.
    std::thread::sleep(Duration::from_millis(1500));
    limiter.evict_idle();
    let after = rss_kib();
    println!("\n| keyed limiter | keys | RSS MiB |");
    println!("|---|---|---|");
    println!("| before | 0 | {:.1} |", before as f64 / 1024.0);
    println!(
        "| after 1,000,000 distinct addresses ({:.0} ns each) | {keys} | {:.1} |",
        fed.as_nanos() as f64 / 1e6,
        full as f64 / 1024.0
    );
    println!("| after idle keys are evicted | {} | {:.1} |", limiter.keys(), after as f64 / 1024.0);
}

async fn daemon(defended: bool) -> harness::Latchd {
    let dir = tempfile::tempdir().unwrap();
    let cfg = "[server]\nstate_dir = \"STATE\"\n[[listener]]\nkind = \"https\"\naddr = \"127.0.0.1:0\"\n\
               [accounts]\nrequire_verified_email = false\n\
               [rate_limits]\nglobal = \"100000000/1m\"\nip = \"100000000/1m\"\nip_hourly = \"100000000/1h\"\n\
               credential = \"100000000/1m\"\naccount = \"100000000/1m\"\n\
               [defense.anomaly]\nbot = { requests = 100000000, window = \"1m\", action = \"block\", block_for = \"30m\" }\n";
    harness::write_config(dir.path(), cfg);
    let mut env = vec![("RUST_LOG", "warn")];
    if !defended {
        env.push((latch::daemon::BENCH_NO_DEFENSE_ENV, "1"));
    }
    harness::Latchd::start_in_with_env(dir, &env).await
}

/// An access token of a fresh account on `d`.
async fn token(d: &harness::Latchd) -> String {
    let body = json!({"email": "bench@example.test", "password": "correct horse battery staple"});
    assert_eq!(d.post("/v1/auth/register", body.clone()).await.status(), 202);
    let tokens: Value = d.post("/v1/auth/login", body).await.json().await.unwrap();
    tokens["access_token"].as_str().unwrap().to_string()
}

/// (p50, p99) in µs of `REQUESTS` sequential GETs on one connection.
async fn latency(
    d: &harness::Latchd,
    client: &reqwest::Client,
    path: &str,
    bearer: Option<&str>,
) -> (f64, f64) {
    let url = d.https_url(path);
    let mut times = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let mut req = client.get(&url);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let started = Instant::now();
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "latch defense benchmark: {cpus} CPUs, {REQUESTS} sequential requests per round, {ROUNDS} rounds"
    );
    let (with, without) = (daemon(true).await, daemon(false).await);
    let (t_with, t_without) = (token(&with).await, token(&without).await);
    let clients = [with.client(), without.client()];
    println!("\n| request | defenses | p50 µs | p99 µs |");
    println!("|---|---|---|---|");
    for (path, bearer) in [("/health", None), ("/v1/auth/me", Some(()))] {
        let mut figures = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
        for _ in 0..ROUNDS {
            for (i, d) in [&with, &without].into_iter().enumerate() {
                let t = bearer.map(|()| if i == 0 { t_with.as_str() } else { t_without.as_str() });
                let (p50, p99) = latency(d, &clients[i], path, t).await;
                figures[i].0.push(p50);
                figures[i].1.push(p99);
            }
        }
        let [(a50, a99), (b50, b99)] = figures.map(|(p50, p99)| (median(p50), median(p99)));
        println!("| GET {path} | on | {a50:.0} | {a99:.0} |");
        println!("| GET {path} | off | {b50:.0} | {b99:.0} |");
        println!(
            "| GET {path} | added | {:+.0} ({:+.1} %) | {:+.0} |",
            a50 - b50,
            100.0 * (a50 - b50) / b50,
            a99 - b99
        );
    }
    drop((with, without));
    println!("\nin process, the keyed rate-limit checks of one request: {:.0} ns", checks_per_request());
    memory();
}
