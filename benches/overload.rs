//! Overload: logins offered at three times what this machine can hash.
//! latch should keep the logins it accepts about as fast as an unloaded
//! login (target: p99 < 2× the unloaded p99) and refuse the rest at once
//! with 503 `overloaded` (target: < 5 ms), instead of letting every caller
//! wait in a long queue.
//!
//! Measures, against the real `latchd` over HTTPS: the unloaded login
//! (sequential), the capacity (16 closed-loop clients), then an open-loop
//! offer of 3× that capacity for `LATCH_BENCH_SECS` (default 10).
//!
//! Run: `cargo bench --bench overload` (about half a minute).

// A panic here is a failed test or bench run, with its message: what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

#[path = "../tests/it/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "support/roomy.rs"]
mod roomy;
#[path = "support/stats.rs"]
#[allow(dead_code)]
mod stats;

const PASSWORD: &str = "correct horse battery staple";
struct Daemon {
    _latchd: harness::Latchd,
    url: String,
    client: reqwest::Client,
}

impl Daemon {
    /// One login: (status, milliseconds).
    async fn login(&self, email: &str) -> (u16, f64) {
        let started = Instant::now();
        let body = json!({"email": email, "password": PASSWORD});
        let res = self.client.post(&self.url).json(&body).send().await.expect("request");
        let status = res.status().as_u16();
        let _ = res.bytes().await;
        (status, started.elapsed().as_secs_f64() * 1e3)
    }
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let secs: u64 = std::env::var("LATCH_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let (latchd, base, client) = roomy::start().await;
    let url = format!("{base}/v1/auth/login");
    let d = Arc::new(Daemon { _latchd: latchd, url, client });
    let emails: Arc<Vec<String>> = Arc::new((0..32).map(|i| format!("load{i}@bench.test")).collect());
    for e in emails.iter() {
        let body = json!({"email": e, "password": PASSWORD});
        let res = d.client.post(d.url.replace("login", "register")).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 202);
    }

    let mut unloaded = Vec::new();
    for i in 0..100 {
        let (status, ms) = d.login(&emails[i % emails.len()]).await;
        assert_eq!(status, 200);
        unloaded.push(ms);
    }
    let unloaded = sorted(unloaded);

    // Capacity: 16 closed-loop clients for 5 s.
    let until = Instant::now() + Duration::from_secs(5);
    let started = Instant::now();
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let (d, emails) = (Arc::clone(&d), Arc::clone(&emails));
            tokio::spawn(async move {
                let mut n = 0usize;
                while Instant::now() < until {
                    n += usize::from(d.login(&emails[i % emails.len()]).await.0 == 200);
                }
                n
            })
        })
        .collect();
    let mut done = 0;
    for c in clients {
        done += c.await.unwrap();
    }
    let capacity = done as f64 / started.elapsed().as_secs_f64();

    // Open loop at 3× capacity.
    let offered = 3.0 * capacity;
    let gap = Duration::from_secs_f64(1.0 / offered);
    let mut ticker = tokio::time::interval(gap);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut calls = Vec::new();
    let mut i = 0usize;
    while Instant::now() < end {
        ticker.tick().await;
        let (d, email) = (Arc::clone(&d), emails[i % emails.len()].clone());
        calls.push(tokio::spawn(async move { d.login(&email).await }));
        i += 1;
    }
    let (mut accepted, mut refused, mut other) = (Vec::new(), Vec::new(), 0usize);
    for c in calls {
        match c.await.unwrap() {
            (200, ms) => accepted.push(ms),
            (503, ms) => refused.push(ms),
            _ => other += 1,
        }
    }
    let (accepted, refused) = (sorted(accepted), sorted(refused));
    let p = stats::percentile;
    println!("latch overload: logins offered at 3× capacity, one HTTPS client process on the same cores");
    println!("\n| measure | value |\n|---|---|");
    println!("| unloaded login p50 / p99 ms | {:.1} / {:.1} |", p(&unloaded, 0.5), p(&unloaded, 0.99));
    println!("| capacity (16 clients) | {capacity:.1} logins/s |");
    println!("| offered | {offered:.1} logins/s for {secs} s ({i} requests) |");
    println!("| accepted | {} ({:.1}/s) |", accepted.len(), accepted.len() as f64 / secs as f64);
    println!(
        "| accepted p50 / p99 ms | {:.1} / {:.1} ({:.2}× the unloaded p99; target < 2×) |",
        p(&accepted, 0.5),
        p(&accepted, 0.99),
        p(&accepted, 0.99) / p(&unloaded, 0.99)
    );
    println!("| refused 503 | {} |", refused.len());
    println!("| refused p50 / p99 ms | {:.2} / {:.2} (target < 5) |", p(&refused, 0.5), p(&refused, 0.99));
    println!("| other answers | {other} |");
}
