//! Can an attacker tell a known address from an unknown one by timing?
//! Against the real `latchd` over HTTPS, interleaved pairs (so a drift of
//! this shared machine hits both sides alike):
//!
//! - login: an existing account with a wrong password vs an unknown email;
//! - register: a new address vs one already registered;
//! - forgot: a known address vs an unknown one.
//!
//! Each registered address is probed once at registration and once at
//! forgot, as an attacker sweeping a list would: probed again, an address
//! reaches `[email].max_per_recipient` and its mail is dropped, which
//! would time the mail cap rather than the address.
//!
//! For each: medians, p10/p90, the difference of the medians (goal: under
//! 1 ms) and the two-sample Kolmogorov–Smirnov statistic D with its 5 %
//! critical value (D above it: the two latency distributions differ).
//!
//! Run: `cargo bench --bench enumeration` (about two minutes).
//! `LATCH_BENCH_PAIRS` scales the pairs (default: 2000 logins, 500 each
//! for register and forgot).

// A panic here is a failed test or bench run, with its message: what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use serde_json::{Value, json};

#[path = "../tests/it/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "support/roomy.rs"]
#[allow(dead_code)]
mod roomy;
#[path = "support/stats.rs"]
#[allow(dead_code)]
mod stats;

const PASSWORD: &str = "correct horse battery staple";

struct Daemon {
    _latchd: harness::Latchd,
    base: String,
    client: reqwest::Client,
}

impl Daemon {
    async fn start() -> Daemon {
        let (latchd, base, client) = roomy::start().await;
        Daemon { _latchd: latchd, base, client }
    }

    /// Milliseconds for one POST answered with `want`.
    async fn timed(&self, path: &str, body: Value, want: u16) -> f64 {
        let started = Instant::now();
        let res = self.client.post(format!("{}{path}", self.base)).json(&body).send().await.expect("request");
        let status = res.status().as_u16();
        let _ = res.bytes().await;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        assert_eq!(status, want, "{path}");
        ms
    }
}

/// Two-sample Kolmogorov–Smirnov statistic: the largest gap between the
/// empirical distribution functions of two ascending samples.
fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

/// One table row: the two samples' medians, p10/p90, Δ and KS.
fn row(name: &str, mut known: Vec<f64>, mut unknown: Vec<f64>) {
    known.sort_by(f64::total_cmp);
    unknown.sort_by(f64::total_cmp);
    let p = stats::percentile;
    let (n, m) = (known.len() as f64, unknown.len() as f64);
    let d = ks_statistic(&known, &unknown);
    let critical = 1.358 * ((n + m) / (n * m)).sqrt();
    let delta = p(&unknown, 0.5) - p(&known, 0.5);
    println!(
        "| {name} | {} | {:.2} ({:.2}–{:.2}) | {:.2} ({:.2}–{:.2}) | {delta:+.2} | {d:.3} | {critical:.3} |",
        known.len(),
        p(&known, 0.5),
        p(&known, 0.1),
        p(&known, 0.9),
        p(&unknown, 0.5),
        p(&unknown, 0.1),
        p(&unknown, 0.9),
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let scale: usize = std::env::var("LATCH_BENCH_PAIRS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!("latch enumeration timing: {cores} CPUs, one HTTPS client, interleaved pairs");
    let d = Daemon::start().await;
    let known = "known@bench.test";
    d.timed("/v1/auth/register", json!({"email": known, "password": PASSWORD}), 202).await;
    // Warm-up: pools, caches and the dummy hash.
    for _ in 0..20 {
        d.timed("/v1/auth/login", json!({"email": known, "password": "wrong"}), 401).await;
        d.timed("/v1/auth/login", json!({"email": "nobody@bench.test", "password": "wrong"}), 401).await;
    }
    println!(
        "\n| request (known vs unknown) | pairs | known median ms (p10–p90) | unknown median ms (p10–p90) | Δ median ms | KS D | D at 5 % |"
    );
    println!("|---|---|---|---|---|---|---|");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..scale {
        let wrong = json!({"email": known, "password": format!("wrong {i}")});
        a.push(d.timed("/v1/auth/login", wrong, 401).await);
        let unknown = json!({"email": format!("nobody{i}@bench.test"), "password": format!("wrong {i}")});
        b.push(d.timed("/v1/auth/login", unknown, 401).await);
    }
    row("login: wrong password / unknown email", a, b);
    let registered: Vec<String> = (0..scale / 4).map(|i| format!("taken{i}@bench.test")).collect();
    for email in &registered {
        d.timed("/v1/auth/register", json!({"email": email, "password": PASSWORD}), 202).await;
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (i, taken) in registered.iter().enumerate() {
        let taken = json!({"email": taken, "password": PASSWORD});
        a.push(d.timed("/v1/auth/register", taken, 202).await);
        let fresh = json!({"email": format!("new{i}@bench.test"), "password": PASSWORD});
        b.push(d.timed("/v1/auth/register", fresh, 202).await);
    }
    row("register: taken / new address", a, b);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (i, known) in registered.iter().enumerate() {
        a.push(d.timed("/v1/auth/password/forgot", json!({"email": known}), 202).await);
        let unknown = json!({"email": format!("stranger{i}@bench.test")});
        b.push(d.timed("/v1/auth/password/forgot", unknown, 202).await);
    }
    row("forgot: known / unknown address", a, b);
    println!(
        "\n(Δ = unknown − known; goal |Δ median| < 1 ms. KS D above the 5 % value: the distributions differ.)"
    );
}
