//! What the second factor costs, against the real `latchd` over HTTPS, in
//! interleaved pairs so a drift of this shared machine hits both sides:
//!
//! - a correct password for a TOTP account (answered with an `mfa_token`)
//!   against a correct password for an account without (answered with
//!   tokens): API.md wants no extra hash, so the ratio should be near 1;
//! - a wrong TOTP code (`login/mfa`, no argon2) against a wrong password
//!   (one argon2): the code check should cost a small fraction.
//!
//! Run: `cargo bench --bench mfa` (about a minute). `LATCH_BENCH_PAIRS`
//! sets the pairs per comparison (default 200).

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
        Daemon { base, client, _latchd: latchd }
    }

    async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.client.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.expect("request");
        (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
    }

    async fn timed(&self, path: &str, body: Value, want: u16) -> (f64, Value) {
        let t = Instant::now();
        let (status, answer) = self.post(path, None, body).await;
        assert_eq!(status, want, "{path}: {answer}");
        (t.elapsed().as_secs_f64() * 1e3, answer)
    }

    async fn account(&self, email: &str) -> String {
        let (s, _) =
            self.post("/v1/auth/register", None, json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(s, 202);
        let (s, v) = self.post("/v1/auth/login", None, json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(s, 200, "{v}");
        v["access_token"].as_str().unwrap().to_string()
    }
}

/// Turns TOTP on for the holder of `access`, computing the first code with
/// totp-rs from the secret the API returned.
async fn enable_totp(d: &Daemon, access: &str) {
    let (s, enrolment) = d.post("/v1/auth/mfa/totp", Some(access), json!({})).await;
    assert_eq!(s, 200);
    let secret = totp_rs::Secret::try_from_base32(enrolment["secret"].as_str().unwrap()).unwrap();
    let totp = totp_rs::Builder::new().with_secret(secret).build().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let code = totp.generate(now).to_string();
    let (s, v) = d.post("/v1/auth/mfa/totp/confirm", Some(access), json!({"code": code})).await;
    assert_eq!(s, 200, "{v}");
}

fn report(what: &str, a: (&str, Vec<f64>), b: (&str, Vec<f64>)) {
    let (ma, mb) = (stats::median(a.1), stats::median(b.1));
    println!("| {what} | {} {ma:.2} ms | {} {mb:.2} ms | {:.2}× |", a.0, b.0, ma / mb);
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let pairs: usize = std::env::var("LATCH_BENCH_PAIRS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let d = Daemon::start().await;
    d.account("plain@bench.test").await;
    let access = d.account("totp@bench.test").await;
    enable_totp(&d, &access).await;
    let login = |email: &str| json!({"email": email, "password": PASSWORD});

    let (mut with_totp, mut without) = (Vec::new(), Vec::new());
    let mut mfa_token = String::new();
    for _ in 0..pairs {
        let (ms, answer) = d.timed("/v1/auth/login", login("totp@bench.test"), 200).await;
        assert_eq!(answer["mfa_required"], true);
        mfa_token = answer["mfa_token"].as_str().unwrap().to_string();
        with_totp.push(ms);
        without.push(d.timed("/v1/auth/login", login("plain@bench.test"), 200).await.0);
    }

    let (mut wrong_code, mut wrong_password) = (Vec::new(), Vec::new());
    let wrong = json!({"email": "plain@bench.test", "password": "not the password"});
    for i in 0..pairs {
        // An mfa_token takes five wrong codes; a fresh one every four.
        if i % 4 == 0 && i > 0 {
            let (_, answer) = d.post("/v1/auth/login", None, login("totp@bench.test")).await;
            mfa_token = answer["mfa_token"].as_str().unwrap().to_string();
        }
        let body = json!({"mfa_token": mfa_token, "code": "000000"});
        wrong_code.push(d.timed("/v1/auth/login/mfa", body, 401).await.0);
        wrong_password.push(d.timed("/v1/auth/login", wrong.clone(), 401).await.0);
    }

    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!("latch MFA benchmark: {cores} CPUs, {pairs} interleaved pairs per row, one client, medians\n");
    println!("| comparison | A | B | A / B |\n|---|---|---|---|");
    report("correct password: TOTP on vs off", ("TOTP on", with_totp), ("TOTP off", without));
    report("wrong code vs wrong password", ("login/mfa", wrong_code), ("login", wrong_password));
}
