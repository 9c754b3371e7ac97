//! Overload: logins offered at three times what this machine can hash.
//! latch should keep the logins it accepts about as fast as an unloaded
//! login (target: p99 < 2× the unloaded p99) and refuse the rest at once
//! with 503 `overloaded` (target: < 5 ms), instead of letting every caller
//! wait in a long queue.
//!
//! Measures, against the real `latchd` over HTTPS: the unloaded login
//! (sequential), the capacity (16 closed-loop clients), then an open-loop
//! offer of 3× that capacity for `LATCH_BENCH_SECS` (default 10) twice:
//! with the default `[passwords].max_queue_wait` (1 s), and after a reload
//! that sets it to half the unloaded median login. Beside each offer a
//! probe calls `/v1/auth/me` every 5 ms, as an app would during a login
//! flood; its latency is set against the same probe with no logins.
//!
//! Run: `cargo bench --bench overload` (about a minute).

// A panic here is a failed test or bench run, with its message: what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

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
/// Added to the roomy daemon's config: a plain-HTTP listener with
/// `/metrics`, to see a reload land.
const METRICS_LISTENER: &str = "[[listener]]\nkind = \"http\"\naddr = \"127.0.0.1:0\"\nmetrics = true\n";
struct Daemon {
    latchd: harness::Latchd,
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

    /// One `GET /v1/auth/me` with `token`: milliseconds.
    async fn me(&self, token: &str) -> f64 {
        let started = Instant::now();
        let res =
            self.client.get(self.url.replace("login", "me")).bearer_auth(token).send().await.expect("me");
        assert_eq!(res.status(), 200, "a probe of /v1/auth/me failed");
        let _ = res.bytes().await;
        started.elapsed().as_secs_f64() * 1e3
    }

    /// `/v1/auth/me` every `PROBE_EVERY` until `until`: an app's calls
    /// beside the logins. Latencies in ms, sorted.
    async fn probe_me(self: Arc<Self>, token: Arc<String>, until: Instant) -> Vec<f64> {
        let mut ticker = tokio::time::interval(PROBE_EVERY);
        let mut calls = Vec::new();
        while Instant::now() < until {
            ticker.tick().await;
            let (d, token) = (Arc::clone(&self), Arc::clone(&token));
            calls.push(tokio::spawn(async move { d.me(&token).await }));
        }
        let mut took = Vec::new();
        for c in calls {
            took.push(c.await.unwrap());
        }
        sorted(took)
    }

    /// Sets `[passwords].max_queue_wait` by a reload and waits until it is
    /// in force (the successful-reload counter appears).
    async fn set_max_queue_wait(&self, ms: u64) {
        let cfg = format!("{}{METRICS_LISTENER}[passwords]\nmax_queue_wait = \"{ms}ms\"\n", roomy::CONFIG);
        harness::write_config(self.latchd.dir.path(), &cfg);
        self.latchd.signal(libc::SIGHUP);
        let done = "latch_config_reloads_total{result=\"success\"} ";
        let metrics = self.latchd.http_url("/metrics");
        let mut text = String::new();
        for _ in 0..500 {
            let res = self.client.get(&metrics).send().await.expect("metrics");
            text = res.text().await.unwrap_or_default();
            let reloads = text.lines().find_map(|l| l.strip_prefix(done)).unwrap_or("0");
            if reloads != "0" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let reloads: Vec<&str> = text.lines().filter(|l| l.contains("reload")).collect();
        panic!("the reload of max_queue_wait did not take effect: {reloads:?}\n{}", self.latchd.log());
    }
}

/// How often the probe beside the logins calls `/v1/auth/me`.
const PROBE_EVERY: Duration = Duration::from_millis(5);

/// What an open-loop offer got back: latencies in ms, sorted.
struct Offer {
    requests: usize,
    accepted: Vec<f64>,
    refused: Vec<f64>,
    other: usize,
    /// `/v1/auth/me` meanwhile.
    me: Vec<f64>,
}

/// Logins at `rate` per second for `secs`, each sent on time whatever the
/// answers before it (open loop), with `/v1/auth/me` probed beside them.
async fn offer(
    d: &Arc<Daemon>,
    emails: &Arc<Vec<String>>,
    token: &Arc<String>,
    rate: f64,
    secs: u64,
) -> Offer {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + Duration::from_secs(secs);
    let probe = tokio::spawn(Arc::clone(d).probe_me(Arc::clone(token), end));
    let mut calls = Vec::new();
    while Instant::now() < end {
        ticker.tick().await;
        let (d, email) = (Arc::clone(d), emails[calls.len() % emails.len()].clone());
        calls.push(tokio::spawn(async move { d.login(&email).await }));
    }
    let requests = calls.len();
    let (mut accepted, mut refused, mut other) = (Vec::new(), Vec::new(), 0usize);
    for c in calls {
        match c.await.unwrap() {
            (200, ms) => accepted.push(ms),
            (503, ms) => refused.push(ms),
            _ => other += 1,
        }
    }
    let me = probe.await.unwrap();
    Offer { requests, accepted: sorted(accepted), refused: sorted(refused), other, me }
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let secs: u64 = std::env::var("LATCH_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let (latchd, base, client) = roomy::start_with(METRICS_LISTENER).await;
    let url = format!("{base}/v1/auth/login");
    let d = Arc::new(Daemon { latchd, url, client });
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
    let token = Arc::new(access_token(&d, &emails[0]).await);
    let me_alone = Arc::clone(&d).probe_me(Arc::clone(&token), Instant::now() + Duration::from_secs(3)).await;
    let capacity = capacity(&d, &emails).await;

    let offered = 3.0 * capacity;
    let by_default = offer(&d, &emails, &token, offered, secs).await;
    let tight_ms = (stats::percentile(&unloaded, 0.5) / 2.0).round() as u64;
    d.set_max_queue_wait(tight_ms).await;
    let tight = offer(&d, &emails, &token, offered, secs).await;
    let offers = [("1 s (default)".into(), by_default), (format!("{tight_ms} ms"), tight)];
    report(&unloaded, capacity, offered, secs, &offers);
    report_probe(&me_alone, &offers);
}

async fn access_token(d: &Daemon, email: &str) -> String {
    let body = json!({"email": email, "password": PASSWORD});
    let answer: serde_json::Value =
        d.client.post(&d.url).json(&body).send().await.unwrap().json().await.unwrap();
    answer["access_token"].as_str().expect("a login answers an access token").to_string()
}

/// Logins per second that 16 closed-loop clients get through in 5 s.
async fn capacity(d: &Arc<Daemon>, emails: &Arc<Vec<String>>) -> f64 {
    let until = Instant::now() + Duration::from_secs(5);
    let started = Instant::now();
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let (d, emails) = (Arc::clone(d), Arc::clone(emails));
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
    done as f64 / started.elapsed().as_secs_f64()
}

fn report(unloaded: &[f64], capacity: f64, offered: f64, secs: u64, offers: &[(String, Offer)]) {
    let p = stats::percentile;
    println!("latch overload: logins offered at 3× capacity, one HTTPS client process on the same cores");
    println!("\nunloaded login p50 / p99: {:.1} / {:.1} ms", p(unloaded, 0.5), p(unloaded, 0.99));
    println!(
        "capacity (16 closed-loop clients): {capacity:.1} logins/s; offered {offered:.1}/s for {secs} s"
    );
    println!(
        "\n| max_queue_wait | requests | accepted (/s) | accepted p50 / p99 ms | p99 ÷ unloaded p99 (target < 2) | refused 503 | refused p50 / p99 ms (target < 5) | other |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (wait, o) in offers {
        let (a, r) = (&o.accepted, &o.refused);
        println!(
            "| {wait} | {} | {} ({:.1}) | {:.1} / {:.1} | {:.2} | {} | {:.2} / {:.2} | {} |",
            o.requests,
            a.len(),
            a.len() as f64 / secs as f64,
            p(a, 0.5),
            p(a, 0.99),
            p(a, 0.99) / p(unloaded, 0.99),
            r.len(),
            p(r, 0.5),
            p(r, 0.99),
            o.other
        );
    }
}

/// `/v1/auth/me` beside the logins, against the same probe with no logins.
fn report_probe(alone: &[f64], offers: &[(String, Offer)]) {
    let p = stats::percentile;
    println!(
        "\n/v1/auth/me every {} ms beside the logins (an app's calls during a login flood):",
        PROBE_EVERY.as_millis()
    );
    println!("\n| logins | max_queue_wait | me calls | me p50 / p99 ms | p99 ÷ no-login p99 |");
    println!("|---|---|---|---|---|");
    println!("| none | | {} | {:.2} / {:.2} | 1.00 |", alone.len(), p(alone, 0.5), p(alone, 0.99));
    for (wait, o) in offers {
        let me = &o.me;
        let ratio = p(me, 0.99) / p(alone, 0.99);
        println!(
            "| 3× capacity | {wait} | {} | {:.2} / {:.2} | {ratio:.2} |",
            me.len(),
            p(me, 0.5),
            p(me, 0.99)
        );
    }
}
