//! Reloads under load, a reliability check: while callers sign in, refresh
//! and read `/v1/auth/me` over kept-alive and fresh connections (HTTP/1.1
//! and HTTP/2), the config is rewritten and SIGHUP sent again and again
//! (access-token lifetime and CORS origins each time, the TLS certificate
//! every other time) and the signing key is rotated twice. Operators reload a running daemon in
//! business hours (certbot's hook, an edited limit): no caller may see a
//! failure, a stall or a dropped connection for it, and the last reload's
//! settings must be the ones in force. Table: `target/reliability/reload.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::flows::{PASSWORD, metric};
use crate::harness::{Latchd, base_config, client_tls, write_config};
use crate::reliability::{Table, percentile};

const RELOADS: usize = 18;
/// The rounds after which the signing key is rotated (`--now`).
const KEY_ROTATIONS: [usize; 2] = [4, 12];
const CALLERS: usize = 4;
/// An answer slower than this is a stall, whatever the machine's load.
const STALL: Duration = Duration::from_secs(5);
const WEAK_ARGON2: &str = "argon2 = { memory_kib = 8192, iterations = 1, parallelism = 1 }";

/// A self-signed certificate for localhost: (cert, key) PEM.
fn certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    (cert.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

/// Reload `round`'s certificate: `a` or `b`, swapped every second round.
fn cert_of(round: usize) -> &'static str {
    if round % 4 < 2 { "a" } else { "b" }
}

/// Reload `round`'s access-token lifetime in minutes.
fn access_minutes(round: usize) -> u64 {
    if round.is_multiple_of(2) { 15 } else { 10 }
}

/// The config of reload `round`: its certificate and access-token
/// lifetime, and a CORS origin of its own.
fn config(dir: &Path, round: usize) -> String {
    let (cert, ttl) = (cert_of(round), access_minutes(round));
    base_config(&format!(
        "\n[tls]\ncert = {:?}\nkey = {:?}\n[tokens]\naccess_ttl = \"{ttl}m\"\n\
         [http]\ncors_origins = [\"https://app{round}.example.test\"]\n[passwords]\n{WEAK_ARGON2}\n",
        dir.join(format!("{cert}.pem")),
        dir.join(format!("{cert}.key")),
    ))
}

/// What the callers saw.
#[derive(Default)]
struct Seen {
    latencies_ms: Vec<f64>,
    /// Each answer outside 2xx, stall or transport error, with its call.
    failures: Vec<String>,
}

impl Seen {
    /// Sends `req`, records how it went; its JSON body when it is a 2xx.
    async fn call(&mut self, what: &str, req: reqwest::RequestBuilder) -> Option<Value> {
        let started = Instant::now();
        let answer = req.send().await;
        let took = started.elapsed();
        self.latencies_ms.push(took.as_secs_f64() * 1000.0);
        if took > STALL {
            self.failures.push(format!("{what}: stalled {took:?}"));
        }
        match answer {
            Ok(res) if res.status().is_success() => res.json().await.ok(),
            Ok(res) => {
                let status = res.status();
                self.failures.push(format!("{what}: {status} {}", res.text().await.unwrap_or_default()));
                None
            }
            Err(e) => {
                self.failures.push(format!("{what}: {e:?}"));
                None
            }
        }
    }
}

/// One caller: signs in, then refreshes and reads `/me` until `stop`,
/// signing in again (and reading `/me` with its first access token) every
/// tenth round, over HTTP/2 or HTTP/1.1. A `fresh` caller opens a new
/// connection (and handshake) for every request, so it meets each
/// certificate; the others keep theirs alive across reloads.
async fn caller(
    base: String,
    trust: PathBuf,
    email: String,
    (fresh, h2): (bool, bool),
    stop: Arc<AtomicBool>,
) -> Seen {
    let mut tls = (*client_tls(&trust, &[&rustls::version::TLS13, &rustls::version::TLS12])).clone();
    tls.alpn_protocols = vec![if h2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
    let client = reqwest::Client::builder().use_preconfigured_tls(tls).timeout(STALL * 2);
    let client = if fresh { client.pool_max_idle_per_host(0) } else { client }.build().unwrap();
    let me = |access: &str| client.get(format!("{base}/v1/auth/me")).bearer_auth(access.to_string());
    let mut seen = Seen::default();
    // Signed before any rotation, it must verify to the end (it outlives
    // the run): a rotation keeps the old key for the tokens it signed.
    let mut first: Option<String> = None;
    let (mut refresh, mut round) = (String::new(), 0);
    while !stop.load(Ordering::Relaxed) {
        if round % 10 == 0 {
            let login = client.post(format!("{base}/v1/auth/login"));
            let tokens = seen.call("login", login.json(&json!({"email": email, "password": PASSWORD}))).await;
            let tokens = tokens.unwrap_or_default();
            first = first.or_else(|| tokens["access_token"].as_str().map(str::to_string));
            refresh = tokens["refresh_token"].as_str().unwrap_or_default().to_string();
            if let Some(first) = &first {
                seen.call("me with the first token", me(first)).await;
            }
        }
        round += 1;
        let asked = client.post(format!("{base}/v1/auth/refresh")).json(&json!({"refresh_token": refresh}));
        let Some(tokens) = seen.call("refresh", asked).await else {
            round = 0; // sign in again
            continue;
        };
        refresh = tokens["refresh_token"].as_str().unwrap_or_default().to_string();
        seen.call("me", me(tokens["access_token"].as_str().unwrap_or_default())).await;
    }
    seen
}

/// Reload `round`'s config; waits until the daemon counted it applied.
/// The file is replaced by rename, as editors and deploy tools do: latchd
/// also reloads on its own when the file changes, and a reload reading a
/// file halfway through an in-place rewrite would apply what it read.
async fn reload(d: &Latchd, round: usize) {
    let text = config(d.dir.path(), round).replace("STATE", &d.state_dir().display().to_string());
    let (new, path) = (d.dir.path().join("latch.toml.new"), d.dir.path().join("latch.toml"));
    std::fs::write(&new, text).unwrap();
    std::fs::rename(&new, &path).unwrap();
    d.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(d, r#"latch_config_reloads_total{result="success"}"#).await < round as f64 {
        assert!(Instant::now() < deadline, "reload {round} not applied within 10 s: {}", d.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reloads_and_key_rotations_under_load_fail_no_caller() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (certificate(), certificate());
    for (name, (cert, key)) in [("a", &a), ("b", &b)] {
        std::fs::write(dir.path().join(format!("{name}.pem")), cert).unwrap();
        std::fs::write(dir.path().join(format!("{name}.key")), key).unwrap();
    }
    // Callers trust both certificates: the harness's client reads this file.
    std::fs::create_dir_all(dir.path().join("state/tls")).unwrap();
    std::fs::write(dir.path().join("state/tls/cert.pem"), format!("{}{}", a.0, b.0)).unwrap();
    write_config(dir.path(), &config(dir.path(), 0));
    let d = Latchd::start_in(dir).await;
    let emails: Vec<String> = (0..CALLERS).map(|i| format!("load{i}@example.test")).collect();
    for email in &emails {
        let args = ["users", "add", email.as_str(), "--password-stdin", "--verified"];
        assert!(crate::admin_api::ctl(&d, &args, PASSWORD).status.success());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = emails
        .iter()
        .enumerate()
        .map(|(i, email)| {
            let (base, trust) = (d.https_url(""), d.cert_path());
            tokio::spawn(caller(base, trust, email.clone(), (i % 2 == 1, i >= 2), stop.clone()))
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for round in 1..=RELOADS {
        reload(&d, round).await;
        if KEY_ROTATIONS.contains(&round) {
            let rotated = crate::admin_api::ctl(&d, &["keys", "rotate", "--now"], "");
            assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = Seen::default();
    for c in callers {
        let one = c.await.unwrap();
        seen.latencies_ms.extend(one.latencies_ms);
        seen.failures.extend(one.failures);
    }
    let took = started.elapsed();
    report(&seen, took);
    assert!(
        seen.failures.is_empty(),
        "{} failed: {:?}",
        seen.failures.len(),
        &seen.failures[..seen.failures.len().min(10)]
    );
    assert!(seen.latencies_ms.len() > 100, "the callers kept calling: {}", seen.latencies_ms.len());
    in_force(&d).await;
}

/// The last reload's settings are the ones served: its certificate (a
/// client trusting only that one connects), access-token lifetime and
/// CORS origin; and nothing was logged as an error.
async fn in_force(d: &Latchd) {
    let only = d.dir.path().join(format!("{}.pem", cert_of(RELOADS)));
    let only = client_tls(&only, &[&rustls::version::TLS13]);
    let client = reqwest::Client::builder().use_preconfigured_tls((*only).clone()).build().unwrap();
    let res = client.get(d.https_url("/health")).send().await.expect("the last certificate is served");
    assert!(res.status().is_success());
    let login = json!({"email": "load0@example.test", "password": PASSWORD});
    let tokens: Value = d.post("/v1/auth/login", login).await.json().await.unwrap();
    assert_eq!(tokens["expires_in"], access_minutes(RELOADS) * 60, "{tokens}");
    let origin = format!("https://app{RELOADS}.example.test");
    let res = d.client().get(d.https_url("/health")).header("origin", &origin).send().await.unwrap();
    assert_eq!(
        res.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap()),
        Some(origin.as_str())
    );
    assert!(!d.log().contains("\"level\":\"ERROR\""), "{}", d.log());
}

fn report(seen: &Seen, took: Duration) {
    let mut ms = seen.latencies_ms.clone();
    ms.sort_by(f64::total_cmp);
    let mut table = Table::new(
        "Reloads under load (HTTPS: kept-alive and new-connection callers over HTTP/1.1 and HTTP/2)",
        &["reloads", "key rotations", "requests", "failed", "p50 ms", "p99 ms", "max ms", "seconds"],
    );
    table.row(&[
        &RELOADS.to_string(),
        &KEY_ROTATIONS.len().to_string(),
        &ms.len().to_string(),
        &seen.failures.len().to_string(),
        &format!("{:.1}", percentile(&ms, 0.5)),
        &format!("{:.1}", percentile(&ms, 0.99)),
        &format!("{:.1}", ms.last().copied().unwrap_or(0.0)),
        &format!("{:.1}", took.as_secs_f64()),
    ]);
    table.publish("reload");
}
