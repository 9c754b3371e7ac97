//! Login and refresh throughput of the real `latchd` over HTTPS, printed next
//! to limits measured in the same run on the same machine:
//!
//! - raw argon2id hashes/s on all cores (a login is one hash),
//! - raw EdDSA JWT signs/s on all cores (a refresh signs one token),
//! - the same latchd with `synchronous=OFF` (what fsync costs a refresh),
//! - the HTTPS floor: `GET /health`, which does no work, through the same
//!   client and TLS (with wrk only): no endpoint can be faster here, and
//!   `GET /v1/auth/me` next to it (a signed-in call: the target is ≥ 50 %),
//! - and an interleaved timing report of wrong-password vs unknown-email
//!   logins (they must not be told apart).
//!
//! The raw limits are measured before and after the runs they are compared
//! with (ratios use the mean), and FULL, OFF and the floor alternate per
//! client count, so a drift in this shared machine's speed shows instead of
//! skewing one side of a ratio. A short unreported warm-up comes first.
//!
//! Run: `cargo bench --bench auth` (about three minutes). `LATCH_BENCH_SECS`
//! sets the seconds per measurement (default 8). Refreshes are driven by
//! wrk with `benches/refresh.lua` when wrk is installed (`apt install wrk`).

// A panic here is a failed test or bench run, with its message: what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use latch::config::Argon2Params;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

/// Set while warming up: every run then lasts `WARMUP_SECS`.
static WARMING_UP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
const WARMUP_SECS: u64 = 2;

fn secs() -> Duration {
    if WARMING_UP.load(std::sync::atomic::Ordering::Relaxed) {
        return Duration::from_secs(WARMUP_SECS);
    }
    Duration::from_secs(std::env::var("LATCH_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(8))
}

// The daemons are started exactly as the integration tests start them.
#[path = "../tests/it/harness.rs"]
#[allow(dead_code)]
mod harness;

struct Daemon {
    latchd: harness::Latchd,
    base: String,
    client: reqwest::Client,
}

async fn start(no_fsync: bool) -> Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = "[server]\nstate_dir = \"STATE\"\n[[listener]]\nkind = \"https\"\naddr = \"127.0.0.1:0\"\n\
         [accounts]\nrequire_verified_email = false\n[email]\nmax_per_recipient = 1000\n\
         [rate_limits]\nglobal = \"10000000/1m\"\nip = \"10000000/1m\"\nip_hourly = \"10000000/1h\"\n\
         credential = \"10000000/1m\"\naccount = \"10000000/1m\"\n\
         [defense]\nip_block = { failures = 1000000, window = \"5m\", duration = \"1h\" }\n\
         account_lock = { failures = 1000000, base_delay = \"2s\", max_delay = \"15m\", max_failures_per_hour = 1000000 }\n\
         [defense.anomaly]\nbot = { requests = 100000000, window = \"1m\", action = \"flag\" }\n";
    harness::write_config(dir.path(), cfg);
    let mut env = vec![("RUST_LOG", "warn")];
    if no_fsync {
        env.push((latch::daemon::BENCH_NO_FSYNC_ENV, "1"));
    }
    let latchd = harness::Latchd::start_in_with_env(dir, &env).await;
    let tls = harness::client_tls(&latchd.cert_path(), &[&rustls::version::TLS13, &rustls::version::TLS12]);
    let client = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .pool_max_idle_per_host(128)
        .build()
        .expect("client");
    Daemon { base: latchd.https_url(""), client, latchd }
}

impl Daemon {
    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let res = self.client.post(format!("{}{path}", self.base)).json(body).send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn register(&self, n: usize) -> Vec<String> {
        let emails: Vec<String> = (0..n).map(|i| format!("user{i}@bench.test")).collect();
        for e in &emails {
            let (s, _) = self.post("/v1/auth/register", &json!({"email": e, "password": PASSWORD})).await;
            assert_eq!(s, 202);
        }
        emails
    }

    async fn login(&self, email: &str) -> Value {
        let (s, v) = self.post("/v1/auth/login", &json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(s, 200, "{v}");
        v
    }
}

/// CPU seconds (user + system) the process `pid` has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<f64> = after.split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect();
    // SAFETY: sysconf only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / ticks
}

/// A closed-loop run: operations done, wall time and latency percentiles.
struct Run {
    ops: usize,
    elapsed: Duration,
    p50_ms: f64,
    p99_ms: f64,
}

impl Run {
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

/// `clients` tasks each looping `op` for the bench duration.
async fn closed_loop<F, Fut>(clients: usize, op: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let until = started + secs();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < until {
                    let t = Instant::now();
                    op(i).await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    lat.sort();
    let pct =
        |p: f64| lat.get(((lat.len() as f64 - 1.0) * p) as usize).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    Run { ops: lat.len(), elapsed: started.elapsed(), p50_ms: pct(0.5), p99_ms: pct(0.99) }
}

async fn bench_logins(d: &Arc<Daemon>, emails: &Arc<Vec<String>>, clients: usize) -> Run {
    let (d, emails) = (Arc::clone(d), Arc::clone(emails));
    closed_loop(clients, move |i| {
        let (d, email) = (Arc::clone(&d), emails[i % emails.len()].clone());
        async move {
            d.login(&email).await;
        }
    })
    .await
}

/// Refresh rotations for the bench duration with `clients` connections:
/// driven by wrk (C, one thread) when it is installed, so the client takes
/// less of the two cores it shares with latchd; else by the reqwest client.
async fn bench_refresh(d: &Arc<Daemon>, emails: &[String], clients: usize) -> Run {
    // Spare tokens: wrk's per-thread queue must never run dry.
    let sessions = if wrk_installed() { clients + 16 } else { clients };
    let mut tokens = Vec::new();
    for i in 0..sessions {
        tokens.push(
            d.login(&emails[i % emails.len()]).await["refresh_token"].as_str().expect("token").to_string(),
        );
    }
    if wrk_installed() {
        let (base, tokens) = (d.base.clone(), tokens.clone());
        return tokio::task::spawn_blocking(move || wrk_refresh(&base, &tokens, clients)).await.expect("wrk");
    }
    let tokens: Vec<_> = tokens.into_iter().map(tokio::sync::Mutex::new).collect();
    let (d, tokens) = (Arc::clone(d), Arc::new(tokens));
    closed_loop(clients, move |i| {
        let (d, tokens) = (Arc::clone(&d), Arc::clone(&tokens));
        async move {
            let mut slot = tokens[i].lock().await;
            let (s, v) = d.post("/v1/auth/refresh", &json!({"refresh_token": *slot})).await;
            assert_eq!(s, 200, "{v}");
            *slot = v["refresh_token"].as_str().expect("token").to_string();
        }
    })
    .await
}

fn wrk_installed() -> bool {
    Command::new("wrk").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Runs `benches/refresh.lua` under wrk and reads its summary.
fn wrk_refresh(base: &str, tokens: &[String], clients: usize) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tokens");
    std::fs::write(&file, tokens.join("\n") + "\n").expect("tokens");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/refresh.lua");
    wrk(&format!("{base}/v1/auth/refresh"), clients, Some((script, &file)), None)
}

/// `GET /v1/auth/me` with one access token on every connection: what a
/// signed-in app call costs (token check, live session, user and roles).
fn wrk_me(base: &str, access_token: &str, clients: usize) -> Run {
    let header = format!("Authorization: Bearer {access_token}");
    wrk(&format!("{base}/v1/auth/me"), clients, None, Some(&header))
}

/// The HTTPS floor: `GET /health` does no work, so its rate over the same
/// TLS connections and client bounds what any endpoint can reach here.
fn wrk_floor(base: &str, clients: usize) -> Run {
    wrk(&format!("{base}/health"), clients, None, None)
}

/// One wrk run (one thread, `clients` connections), optionally with a Lua
/// script fed a token file; any non-2xx answer fails the bench.
fn wrk(url: &str, clients: usize, script: Option<(&str, &Path)>, header: Option<&str>) -> Run {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", &format!("-c{clients}"), &format!("-d{}s", secs().as_secs()), "--latency"]);
    if let Some(header) = header {
        cmd.args(["-H", header]);
    }
    if let Some((script, tokens)) = script {
        cmd.arg("-s").arg(script).env("LATCH_TOKENS", tokens).env("LATCH_WRK_THREADS", "1");
    }
    let out = cmd.arg(url).output().expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !text.contains("Non-2xx"), "wrk: a request failed:\n{text}");
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("wrk printed no {label}:\n{text}"))
    };
    let ms = |v: String| {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
        let num: f64 = num.parse().expect("latency");
        match unit {
            "us" => num / 1e3,
            "ms" => num,
            "s" => num * 1e3,
            other => panic!("wrk latency unit {other}"),
        }
    };
    let requests: usize = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ").map(|(n, _)| n.parse().expect("count")))
        .expect("request count");
    let rate: f64 = field("Requests/sec:").parse().expect("rate");
    Run {
        ops: requests,
        elapsed: Duration::from_secs_f64(requests as f64 / rate),
        p50_ms: ms(field("50%")),
        p99_ms: ms(field("99%")),
    }
}

/// Operations per second of `work` on every core for the bench duration.
fn on_all_cores(work: impl Fn() + Send + Sync + 'static) -> f64 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let work = Arc::new(work);
    let started = Instant::now();
    let until = started + secs();
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let work = Arc::clone(&work);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < until {
                    work();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    total as f64 / started.elapsed().as_secs_f64()
}

/// Ed25519 signatures/s with a parsed key over a message the size of an
/// access token's signing input: the floor of what a refresh must pay.
fn raw_eddsa_signs() -> f64 {
    let pair = aws_lc_rs::signature::Ed25519KeyPair::generate().expect("key");
    let message = [b'x'; 440];
    on_all_cores(move || {
        std::hint::black_box(pair.sign(std::hint::black_box(&message)));
    })
}

async fn login_timing(d: &Daemon, email: &str) -> (f64, f64) {
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..150 {
        for (target, sink) in [(email, &mut wrong), ("nobody@bench.test", &mut unknown)] {
            let t = Instant::now();
            let (s, _) =
                d.post("/v1/auth/login", &json!({"email": target, "password": "not the password"})).await;
            assert_eq!(s, 401);
            sink.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut wrong), median(&mut unknown))
}

/// One row of the results table.
struct Row {
    name: &'static str,
    clients: usize,
    run: Run,
    cpu_secs: f64,
    ratio: String,
}

/// `work` run under `pid`'s CPU meter.
async fn metered<F: std::future::Future<Output = Run>>(pid: u32, work: F) -> (Run, f64) {
    let cpu0 = cpu_secs(pid);
    let run = work.await;
    (run, cpu_secs(pid) - cpu0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let params = Argon2Params::default();
    println!(
        "latch auth benchmark: {cores} CPUs, argon2id m={} t={} p={}, {:?} per run",
        params.memory_kib,
        params.iterations,
        params.parallelism,
        secs()
    );
    let raw_argon2 = move || on_all_cores(move || drop(latch::auth::hash_now(params, None, PASSWORD)));
    // This machine's speed drifts: each limit is measured just before and
    // just after the runs compared with it, and the ratios use the mean.
    // FULL, OFF and the floor run interleaved for the same reason.
    let hashes_before = raw_argon2();
    let d = Arc::new(start(false).await);
    let fast = Arc::new(start(true).await);
    let emails = Arc::new(d.register(64).await);
    let fast_emails = fast.register(64).await;
    let (pid, fast_pid) = (d.latchd.pid() as u32, fast.latchd.pid() as u32);
    // Unreported warm-up: hash-pool memory, page caches, and a WAL that has
    // grown to its working size (fsyncs while it still grows cost more).
    WARMING_UP.store(true, std::sync::atomic::Ordering::Relaxed);
    bench_logins(&d, &emails, 16).await;
    bench_refresh(&d, &emails, 64).await;
    bench_refresh(&fast, &fast_emails, 64).await;
    WARMING_UP.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut logins = Vec::new();
    for c in [16, 64] {
        logins.push((c, metered(pid, bench_logins(&d, &emails, c)).await));
    }
    let hashes_after = raw_argon2();
    let hashes = (hashes_before + hashes_after) / 2.0;

    let signs_before = raw_eddsa_signs();
    let mut refreshes = Vec::new();
    for c in [16, 64] {
        let full = metered(pid, bench_refresh(&d, &emails, c)).await;
        let off = metered(fast_pid, bench_refresh(&fast, &fast_emails, c)).await;
        let floor = if wrk_installed() {
            let base = d.base.clone();
            let floor =
                async move { tokio::task::spawn_blocking(move || wrk_floor(&base, c)).await.expect("wrk") };
            let floor = metered(pid, floor).await;
            let (base, token) = (d.base.clone(), d.login(&emails[0]).await["access_token"].to_string());
            let token = token.trim_matches('"').to_string();
            let me = async move {
                tokio::task::spawn_blocking(move || wrk_me(&base, &token, c)).await.expect("wrk")
            };
            Some((floor, metered(pid, me).await))
        } else {
            None
        };
        refreshes.push((c, full, off, floor));
    }
    let signs_after = raw_eddsa_signs();
    let signs = (signs_before + signs_after) / 2.0;
    let (wrong, unknown) = login_timing(&d, &emails[0]).await;
    drop((d, fast));

    let mut rows = Vec::new();
    for (c, (run, cpu_secs)) in logins {
        let ratio = format!("{:.0}% of raw argon2", 100.0 * run.per_sec() / hashes);
        rows.push(Row { name: "login", clients: c, run, cpu_secs, ratio });
    }
    let mut best_floor: f64 = 0.0;
    for (c, full, off, floor) in refreshes {
        let (full_rate, off_rate) = (full.0.per_sec(), off.0.per_sec());
        let ratio = format!("{:.0}% of raw EdDSA signs", 100.0 * full_rate / signs);
        rows.push(Row {
            name: "refresh (synchronous=FULL)",
            clients: c,
            run: full.0,
            cpu_secs: full.1,
            ratio,
        });
        let ratio = format!("FULL is {:.0}% of this", 100.0 * full_rate / off_rate);
        rows.push(Row { name: "refresh (synchronous=OFF)", clients: c, run: off.0, cpu_secs: off.1, ratio });
        if let Some(((run, cpu_secs), me)) = floor {
            let floor_rate = run.per_sec();
            best_floor = best_floor.max(floor_rate);
            let ratio = format!(
                "{:.0}% of raw EdDSA signs; refresh FULL is {:.0}% of this",
                100.0 * floor_rate / signs,
                100.0 * full_rate / floor_rate
            );
            rows.push(Row { name: "HTTPS floor: GET /health", clients: c, run, cpu_secs, ratio });
            let ratio = format!("{:.0}% of the HTTPS floor", 100.0 * me.0.per_sec() / floor_rate);
            rows.push(Row { name: "GET /v1/auth/me", clients: c, run: me.0, cpu_secs: me.1, ratio });
        }
    }

    println!(
        "raw argon2id hashes/s (all cores): {hashes_before:.1} before the logins, {hashes_after:.1} after; \
         raw EdDSA signs/s (all cores): {signs_before:.0} before the refreshes, {signs_after:.0} after"
    );
    println!("\n| operation | clients | ops | ops/s | p50 ms | p99 ms | latchd CPU µs/op | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    for Row { name, clients, run, cpu_secs, ratio } in &rows {
        let us = 1e6 * cpu_secs / run.ops.max(1) as f64;
        let (ops, rate, p50, p99) = (run.ops, run.per_sec(), run.p50_ms, run.p99_ms);
        println!("| {name} | {clients} | {ops} | {rate:.1} | {p50:.1} | {p99:.1} | {us:.0} | {ratio} |");
    }
    let client =
        if wrk_installed() { "wrk, one thread" } else { "reqwest (install wrk for a lighter client)" };
    println!(
        "(one EdDSA sign costs {:.0} µs of CPU; refresh client: {client}, on the same cores as latchd)",
        1e6 * cores as f64 / signs
    );
    if best_floor > 0.0 {
        println!(
            "(refresh at 25% of raw EdDSA would be {:.0}/s; a request that does no work peaks at {best_floor:.0}/s here)",
            signs / 4.0
        );
    }
    println!(
        "\nlogin timing, 150 interleaved pairs: wrong password median {wrong:.2} ms, unknown email median {unknown:.2} ms, difference {:.2} ms ({:+.1}%)",
        unknown - wrong,
        100.0 * (unknown - wrong) / wrong
    );
}
