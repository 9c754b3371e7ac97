//! Login, registration, refresh, `me` and introspection throughput of the
//! real `latchd` over HTTPS at 1, 16 and 64 connections, printed next to
//! limits measured in the same run on the same machine:
//!
//! - raw argon2id hashes/s on all cores (a login or a registration is one
//!   hash),
//! - raw EdDSA JWT signs/s on all cores (a refresh signs one token),
//! - the same latchd with `synchronous=OFF` (what fsync costs a refresh),
//! - raw Ed25519 verifications/s on all cores (what checking a token costs
//!   without the verified-token cache),
//! - raw SQLite commits/s of one row with `synchronous=FULL` in WAL mode on
//!   this disk (the fsync a write pays, without latch's group commit),
//! - the HTTPS floor and the plain-HTTP floor: `GET /health`, which does no
//!   work, through the same client (wrk only): no endpoint can be faster
//!   here, and next to it `GET /v1/auth/me` (a signed-in call; target ≥ 50 %
//!   of the HTTPS floor) and `POST /v1/auth/introspect` of an access token
//!   with an app's API key.
//!
//! Every daemon measurement runs `LATCH_BENCH_ROUNDS` times (default 3),
//! FULL, OFF, the floors, `me` and introspection interleaved in each round,
//! and the table shows medians; the raw limits are measured before and
//! after the rounds (ratios use the mean), so a drift in this shared
//! machine's speed shows instead of skewing one side of a ratio. Logins
//! and registrations are set against raw argon2 measured in the same
//! round around them (the median of the per-round ratios): hashing speed
//! drifted by a fifth within one run. Raw argon2 runs right before the
//! logins and again between them and the registrations: a login round is
//! set against the mean of the two, registrations against the second. A short unreported warm-up
//! comes first. Enumeration timing is `benches/enumeration.rs`.
//!
//! Run: `cargo bench --bench auth` (about sixteen minutes). `LATCH_BENCH_SECS`
//! sets the seconds per measurement (default 8). Every operation is driven
//! by wrk (`apt install wrk`), the lightest client at hand on the cores
//! latchd uses; without it only logins, registrations and refreshes run,
//! through reqwest.

// A panic here is a failed test or bench run, with its message: what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use latch::config::Argon2Params;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

#[path = "support/api_key.rs"]
mod api_key;
#[path = "support/load.rs"]
mod load;
#[path = "support/raw_limits.rs"]
mod raw_limits;
#[path = "support/roomy.rs"]
#[allow(dead_code)]
mod roomy;
#[path = "support/stats.rs"]
mod stats;

use load::{Run, Script, WARMING_UP, closed_loop, cpu_by_thread, cpu_secs, secs, wrk, wrk_installed};
use raw_limits::{
    Limits, RawAround, RawBeside, around_logins, before_registrations, beside_raw, mean, raw_argon2,
};

/// Connections per measurement: one (latency alone), then two loads.
const CLIENTS: [usize; 3] = [1, 16, 64];

/// Registrations so far: each takes a new address.
static REGISTERED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Logins answered 503 `overloaded` (then retried).
static OVERLOADED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// The daemons are started exactly as the integration tests start them.
#[path = "../tests/it/harness.rs"]
#[allow(dead_code)]
mod harness;

struct Daemon {
    latchd: harness::Latchd,
    base: String,
    client: reqwest::Client,
    /// An API key with scope `introspect`, as an app holds one.
    api_key: String,
}

async fn start(no_fsync: bool) -> Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    // The same roomy daemon the single-request benches start, plus plain
    // HTTP. Logins queue for the hash pool without being shed: 64 wrk
    // connections on two cores wait about a second for a hash, at the
    // default `max_queue_wait`, and wrk fails a run on any 503 (shedding
    // is `benches/overload.rs`'s to measure).
    let http = "[[listener]]\nkind = \"http\"\naddr = \"127.0.0.1:0\"\n";
    let cfg = format!("{}{http}[passwords]\nmax_queue_wait = \"30s\"\n", roomy::CONFIG);
    harness::write_config(dir.path(), &cfg);
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
    let api_key = api_key::introspect_key(&latchd);
    Daemon { base: latchd.https_url(""), client, latchd, api_key }
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

    /// Returns once the hashes a wrk run left queued are done: wrk drops
    /// the requests in flight at its deadline, latchd still works them off,
    /// and the next measurement must not start behind them (it would get
    /// 503 `overloaded`). One more login queues behind them all.
    async fn settle(&self, email: &str) {
        self.login(email).await;
    }

    /// A login; a 503 `overloaded` (the hash queue's wait would pass
    /// `max_queue_wait`) is counted and retried after its Retry-After, as a
    /// well-behaved app would.
    async fn login(&self, email: &str) -> Value {
        loop {
            let (s, v) = self.post("/v1/auth/login", &json!({"email": email, "password": PASSWORD})).await;
            if s == 503 && v["type"] == "urn:latch:problem:overloaded" {
                OVERLOADED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            assert_eq!(s, 200, "{v}");
            return v;
        }
    }
}

/// Logins for the bench duration with `clients` connections, round robin
/// over `emails`: driven by wrk when it is installed (as every other
/// operation here, the lightest client at hand on latchd's cores), else
/// by reqwest.
async fn bench_logins(d: &Arc<Daemon>, emails: &Arc<Vec<String>>, clients: usize) -> Run {
    if wrk_installed() {
        let (base, list) = (d.base.clone(), emails.join("\n") + "\n");
        let run = move || wrk_scripted(&base, "/v1/auth/login", clients, "login.lua", "LATCH_EMAILS", &list);
        return tokio::task::spawn_blocking(run).await.expect("wrk");
    }
    let (d, emails) = (Arc::clone(d), Arc::clone(emails));
    closed_loop(clients, move |i| {
        let (d, email) = (Arc::clone(&d), emails[i % emails.len()].clone());
        async move {
            d.login(&email).await;
        }
    })
    .await
}

/// Registrations of new addresses (one hash, one user row, one mail each),
/// through wrk when it is installed.
async fn bench_register(d: &Arc<Daemon>, clients: usize) -> Run {
    if wrk_installed() {
        // A prefix no earlier run used: every address is new.
        let n = REGISTERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (base, prefix) = (d.base.clone(), format!("wrk{n}-\n"));
        let run = move || {
            wrk_scripted(&base, "/v1/auth/register", clients, "register.lua", "LATCH_PREFIX", &prefix)
        };
        return tokio::task::spawn_blocking(run).await.expect("wrk");
    }
    let d = Arc::clone(d);
    closed_loop(clients, move |_| {
        let d = Arc::clone(&d);
        let n = REGISTERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            let body = json!({"email": format!("new{n}@bench.test"), "password": PASSWORD});
            let (s, v) = d.post("/v1/auth/register", &body).await;
            assert_eq!(s, 202, "{v}");
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

/// One wrk run of `POST base+path` through `benches/<script>`, which reads
/// `contents` from the file its variable `var` names.
fn wrk_scripted(base: &str, path: &str, clients: usize, script: &str, var: &str, contents: &str) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("input");
    std::fs::write(&file, contents).expect("script input");
    let script = format!("{}/benches/{script}", env!("CARGO_MANIFEST_DIR"));
    wrk(&format!("{base}{path}"), clients, Some(Script { path: &script, var, file: &file }), None)
}

/// Runs `benches/refresh.lua` under wrk and reads its summary.
fn wrk_refresh(base: &str, tokens: &[String], clients: usize) -> Run {
    wrk_scripted(
        base,
        "/v1/auth/refresh",
        clients,
        "refresh.lua",
        "LATCH_TOKENS",
        &(tokens.join("\n") + "\n"),
    )
}

/// `POST /v1/auth/introspect` of one access token with the app's API key:
/// what an app's server-side check of a token costs.
fn wrk_introspect(base: &str, api_key: &str, access_token: &str, clients: usize) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("body");
    std::fs::write(&file, json!({ "token": access_token }).to_string()).expect("body");
    let script = Script {
        path: concat!(env!("CARGO_MANIFEST_DIR"), "/benches/post.lua"),
        var: "LATCH_BODY",
        file: &file,
    };
    let header = format!("Authorization: Bearer {api_key}");
    wrk(&format!("{base}/v1/auth/introspect"), clients, Some(script), Some(&header))
}

/// `GET /v1/auth/me` with one access token on every connection: what a
/// signed-in app call costs (token check, live session, user and roles).
fn wrk_me(base: &str, access_token: &str, clients: usize) -> Run {
    let header = format!("Authorization: Bearer {access_token}");
    wrk(&format!("{base}/v1/auth/me"), clients, None, Some(&header))
}

/// The floor: `GET /health` does no work, so its rate over the same
/// connections and client bounds what any endpoint can reach here.
fn wrk_floor(base: &str, clients: usize) -> Run {
    wrk(&format!("{base}/health"), clients, None, None)
}

/// `work` run under `pid`'s CPU meter.
async fn metered<F: std::future::Future<Output = Run>>(pid: u32, work: F) -> (Run, f64) {
    let cpu0 = cpu_secs(pid);
    let run = work.await;
    (run, cpu_secs(pid) - cpu0)
}

/// Runs of each (operation, clients) across rounds, with latchd CPU seconds.
type Measured = BTreeMap<(&'static str, usize), Vec<(Run, f64)>>;

/// latchd's CPU seconds by thread kind over each round's logins at a
/// client count, with the logins done: where a login's CPU goes beside
/// its hash, measured in the bench's own daemon.
type LoginThreads = BTreeMap<usize, Vec<(usize, BTreeMap<String, f64>)>>;

/// Each thread kind's CPU seconds since `before`, thread by thread: a new
/// thread counts all of its own, and one that ended meanwhile (tokio's
/// blocking threads end after 10 s idle) takes nothing away from the rest.
fn cpu_since(pid: u32, before: &BTreeMap<u32, (String, f64)>) -> BTreeMap<String, f64> {
    let mut by_kind = BTreeMap::new();
    for (tid, (kind, secs)) in cpu_by_thread(pid) {
        let earlier = before.get(&tid).map_or(0.0, |(_, secs)| *secs);
        *by_kind.entry(kind).or_insert(0.0) += secs - earlier;
    }
    by_kind
}

/// One wrk run against `url` of `d` (floors and `me`), metered.
async fn wrk_metered(pid: u32, work: impl FnOnce() -> Run + Send + 'static) -> (Run, f64) {
    metered(pid, async move { tokio::task::spawn_blocking(work).await.expect("wrk") }).await
}

/// One round: logins and registrations, then per client count refresh FULL
/// and OFF, the two floors, `me` and introspection, interleaved.
async fn round(
    d: &Arc<Daemon>,
    fast: &Arc<Daemon>,
    emails: &Arc<Vec<String>>,
    fast_emails: &[String],
    out: &mut Measured,
    raw: &mut RawBeside,
    threads: &mut LoginThreads,
) {
    let (pid, fast_pid) = (d.latchd.pid() as u32, fast.latchd.pid() as u32);
    for c in CLIENTS {
        let raw_before = (c > 1).then(|| raw_argon2(Argon2Params::default()));
        let before = cpu_by_thread(pid);
        let logins = metered(pid, bench_logins(d, emails, c)).await;
        threads.entry(c).or_default().push((logins.0.ops, cpu_since(pid, &before)));
        out.entry(("login", c)).or_default().push(logins);
        d.settle(&emails[0]).await;
        if let Some(before) = raw_before {
            let after = raw_argon2(Argon2Params::default());
            raw.entry(c).or_default().push(RawAround { before, after });
        }
        out.entry(("register", c)).or_default().push(metered(pid, bench_register(d, c)).await);
        d.settle(&emails[0]).await;
    }
    for c in CLIENTS {
        out.entry(("refresh FULL", c)).or_default().push(metered(pid, bench_refresh(d, emails, c)).await);
        let off = metered(fast_pid, bench_refresh(fast, fast_emails, c)).await;
        out.entry(("refresh OFF", c)).or_default().push(off);
        if wrk_installed() {
            signed_in_calls(d, emails, c, out).await;
        }
    }
}

/// The floors, `me` and introspection at `c` connections (wrk only).
async fn signed_in_calls(d: &Arc<Daemon>, emails: &[String], c: usize, out: &mut Measured) {
    let pid = d.latchd.pid() as u32;
    let base = d.base.clone();
    out.entry(("floor HTTPS", c)).or_default().push(wrk_metered(pid, move || wrk_floor(&base, c)).await);
    let base = d.latchd.http_url("");
    let base = base.trim_end_matches('/').to_string();
    out.entry(("floor HTTP", c)).or_default().push(wrk_metered(pid, move || wrk_floor(&base, c)).await);
    let token = d.login(&emails[0]).await["access_token"].as_str().expect("token").to_string();
    let (base, me_token) = (d.base.clone(), token.clone());
    out.entry(("me", c)).or_default().push(wrk_metered(pid, move || wrk_me(&base, &me_token, c)).await);
    // wrk counts only the status: check once that the answer is `active`.
    let check = d.client.post(format!("{}/v1/auth/introspect", d.base)).bearer_auth(&d.api_key);
    let answer: Value =
        check.json(&json!({ "token": token })).send().await.expect("introspect").json().await.expect("json");
    assert_eq!(answer["active"], true, "{answer}");
    let (base, key) = (d.base.clone(), d.api_key.clone());
    let run = wrk_metered(pid, move || wrk_introspect(&base, &key, &token, c)).await;
    out.entry(("introspect", c)).or_default().push(run);
}

/// Median rate, p50, p99 and CPU µs per operation of a set of runs.
fn medians(runs: &[(Run, f64)]) -> (f64, f64, f64, f64) {
    let pick = |f: &dyn Fn(&(Run, f64)) -> f64| stats::median(runs.iter().map(f).collect());
    (
        pick(&|(r, _)| r.per_sec()),
        pick(&|(r, _)| r.p50_ms),
        pick(&|(r, _)| r.p99_ms),
        pick(&|(r, cpu)| 1e6 * cpu / r.ops.max(1) as f64),
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rounds: usize = std::env::var("LATCH_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let params = Argon2Params::default();
    println!(
        "latch auth benchmark: {cores} CPUs, argon2id m={} t={} p={}, {:?} per run, {rounds} rounds (medians)",
        params.memory_kib,
        params.iterations,
        params.parallelism,
        secs()
    );
    if !wrk_installed() {
        // Said up front: the table would otherwise just lack those rows,
        // and a reqwest client costs more CPU than wrk on the same cores.
        println!(
            "wrk is not installed (apt install wrk): the floors, `me` and introspection are not measured, \
             and logins, registrations and refreshes run through reqwest, a heavier client than wrk"
        );
    }
    let mut limits = Limits::default();
    limits.measure(params);
    let d = Arc::new(start(false).await);
    let fast = Arc::new(start(true).await);
    let emails = Arc::new(d.register(64).await);
    let fast_emails = fast.register(64).await;
    // Unreported warm-up: hash-pool memory, page caches, and a WAL that has
    // grown to its working size (fsyncs while it still grows cost more).
    WARMING_UP.store(true, std::sync::atomic::Ordering::Relaxed);
    bench_logins(&d, &emails, 16).await;
    bench_refresh(&d, &emails, 64).await;
    bench_refresh(&fast, &fast_emails, 64).await;
    WARMING_UP.store(false, std::sync::atomic::Ordering::Relaxed);
    let pid = d.latchd.pid() as u32;
    // Idle means idle: hashing threads free their argon2 workspace after 2 s.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let idle = memory_kib(pid, "VmRSS:");
    let (mut measured, mut raw, mut threads) = (Measured::new(), RawBeside::new(), LoginThreads::new());
    for _ in 0..rounds {
        round(&d, &fast, &emails, &fast_emails, &mut measured, &mut raw, &mut threads).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (after, peak) = (memory_kib(pid, "VmRSS:"), memory_kib(pid, "VmHWM:"));
    // What the figure is made of: heap (anonymous) against pages of the
    // binary and libraries the run touched (file-backed, shared, dropped
    // first under memory pressure); and the same after a longer rest.
    let parts = |pid| (memory_kib(pid, "RssAnon:"), memory_kib(pid, "RssFile:"));
    let after_parts = parts(pid);
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    let (later, later_parts) = (memory_kib(pid, "VmRSS:"), parts(pid));
    drop((d, fast));
    limits.measure(params);
    report(&limits, &measured, &raw);
    report_login_threads(&threads);
    let overloaded = OVERLOADED.load(std::sync::atomic::Ordering::Relaxed);
    println!("\nlogins refused 503 `overloaded` and retried after 1 s: {overloaded}");
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "\nlatchd memory (FULL daemon): RSS {:.1} MiB idle 3 s after start and warm-up, {:.1} MiB idle 3 s after \
         the rounds (heap {:.1}, file-backed {:.1}), {:.1} MiB 10 s after (heap {:.1}, file-backed {:.1}), peak \
         {:.1} MiB (targets: < 40, < 40, < 120)",
        mib(idle),
        mib(after),
        mib(after_parts.0),
        mib(after_parts.1),
        mib(later),
        mib(later_parts.0),
        mib(later_parts.1),
        mib(peak)
    );
}

/// A `/proc/PID/status` figure in KiB (`VmRSS:` now, `VmHWM:` the peak).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let value = status.lines().find_map(|l| l.strip_prefix(field)).unwrap_or("");
    value.trim().trim_end_matches("kB").trim().parse().unwrap_or(0)
}

fn report(limits: &Limits, measured: &Measured, raw: &RawBeside) {
    let (signs, verifies, commits) = (mean(&limits.signs), mean(&limits.verifies), mean(&limits.commits));
    println!("\n| physical limit (before / after the rounds) | per second |");
    println!("|---|---|");
    let show = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" / ");
    println!("| argon2id hashes, all cores | {} |", show(&limits.argon2));
    println!("| Ed25519 signs, all cores | {} |", show(&limits.signs));
    println!("| Ed25519 verifications, all cores | {} |", show(&limits.verifies));
    println!("| SQLite single-row commits, synchronous=FULL | {} |", show(&limits.commits));
    let rate = |name: &'static str, c: usize| measured.get(&(name, c)).map(|r| medians(r).0);
    println!("\n| operation | clients | ops/s | p50 ms | p99 ms | latchd CPU µs/op | ratio (same run) |");
    println!("|---|---|---|---|---|---|---|");
    for ((name, c), runs) in measured {
        let (ops, p50, p99, cpu) = medians(runs);
        let pct = |base: Option<f64>, of: &str| {
            base.map_or(String::new(), |b| format!("{:.0} % of {of}", 100.0 * ops / b))
        };
        let ratio = match *name {
            // One client hashes on one core at a time: latency is its figure.
            "login" | "register" if *c == 1 => String::new(),
            "login" | "register" => {
                let base = if *name == "login" { around_logins } else { before_registrations };
                beside_raw(runs, raw.get(c), base).map_or(String::new(), |(r, low, high)| {
                    format!("{:.0} % of raw argon2 beside it ({low:.0}–{high:.0}/s)", 100.0 * r)
                })
            }
            "refresh FULL" => {
                format!(
                    "{}; {}",
                    pct(rate("refresh OFF", *c), "OFF"),
                    pct(rate("floor HTTPS", *c), "the HTTPS floor")
                )
            }
            "me" | "introspect" => pct(rate("floor HTTPS", *c), "the HTTPS floor"),
            "floor HTTPS" => pct(rate("floor HTTP", *c), "the HTTP floor"),
            _ => String::new(),
        };
        println!("| {name} | {c} | {ops:.0} | {p50:.2} | {p99:.2} | {cpu:.0} | {ratio} |");
    }
    println!(
        "\n(one Ed25519 sign costs {:.0} µs of CPU, one verification {:.0} µs; a FULL commit {:.2} ms on one thread. \
         Clients run on the same cores as latchd.)",
        1e6 * num_cores() / signs,
        1e6 * num_cores() / verifies,
        1e3 / commits
    );
}

fn num_cores() -> f64 {
    std::thread::available_parallelism().map_or(2, |n| n.get()) as f64
}

/// A login's latchd CPU by thread kind, µs, the median of the rounds, one
/// column per client count: the hashing threads against the rest.
fn report_login_threads(threads: &LoginThreads) {
    let kinds: std::collections::BTreeSet<&String> =
        threads.values().flatten().flat_map(|(_, spent)| spent.keys()).collect();
    let counts: Vec<usize> = threads.keys().copied().collect();
    let heads: Vec<String> =
        counts.iter().map(|c| format!("{c} client{}", if *c == 1 { "" } else { "s" })).collect();
    println!("\n| latchd CPU a login, µs (median of rounds) | {} |", heads.join(" | "));
    println!("|---|{}", "---|".repeat(counts.len()));
    for kind in kinds {
        let cells: Vec<String> = counts
            .iter()
            .map(|c| {
                let per_login = threads[c]
                    .iter()
                    .map(|(ops, spent)| 1e6 * spent.get(kind).unwrap_or(&0.0) / (*ops).max(1) as f64);
                format!("{:.0}", stats::median(per_login.collect()))
            })
            .collect();
        if cells.iter().any(|c| c != "0") {
            // actix names its threads `actix-rt|system`: no `|` in a table.
            println!("| {} | {} |", kind.replace('|', "/"), cells.join(" | "));
        }
    }
}
