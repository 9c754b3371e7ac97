//! Rate limits, IP blocks and login throttling against the real binary,
//! with small limits in the test configs (API.md "Client address and
//! defenses"). Clients at other addresses come through a trusted proxy
//! (`127.0.0.1`) naming them in `X-Forwarded-For`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::admin_cli::LATCHCTL;
use crate::flows::{PASSWORD, login, metric, register_verified, with_smtp};
use crate::harness::{Latchd, assert_problem, base_config};

const BIG: &str = "1000000";

/// A `[rate_limits]` section: `overrides` like `ip = "20/1m"`, the rest roomy.
pub fn rate_limits(overrides: &str) -> String {
    let mut out = String::from("\n[rate_limits]\n");
    for (key, period) in
        [("global", "1m"), ("ip", "1m"), ("ip_hourly", "1h"), ("credential", "1m"), ("account", "1m")]
    {
        match overrides.lines().find(|l| l.trim_start().starts_with(&format!("{key} "))) {
            Some(line) => out.push_str(&format!("{}\n", line.trim())),
            None => out.push_str(&format!("{key} = \"{BIG}/{period}\"\n")),
        }
    }
    out
}

/// A `[defense]` section trusting 127.0.0.1 as a proxy, with `rules`.
pub fn defense(rules: &str) -> String {
    format!("\n[defense]\ntrusted_proxies = [\"127.0.0.1/32\"]\n{rules}\n")
}

/// POST /v1/auth/login as if from `from` (through the trusted proxy).
pub async fn login_from(d: &Latchd, from: &str, email: &str, password: &str) -> reqwest::Response {
    d.client()
        .post(d.https_url("/v1/auth/login"))
        .header("x-forwarded-for", from)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers().get(name).map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn twenty_a_minute_answers_exactly_twenty_then_429_with_headers() {
    let d = Latchd::start_with(&base_config(&rate_limits("ip = \"20/1m\""))).await;
    let mut statuses = Vec::new();
    let mut remaining = Vec::new();
    for _ in 0..25 {
        let res = d.get("/.well-known/jwks.json").await;
        statuses.push(res.status().as_u16());
        if res.status() == 200 {
            assert_eq!(
                header(&res, "ratelimit-limit").as_deref(),
                Some("20"),
                "allowed answers carry the headers"
            );
            remaining.push(header(&res, "ratelimit-remaining").unwrap().parse::<u32>().unwrap());
        } else {
            let retry: u64 =
                header(&res, "retry-after").expect("Retry-After").parse().expect("whole seconds");
            assert!((1..=60).contains(&retry), "{retry}");
            assert_eq!(header(&res, "ratelimit-remaining").as_deref(), Some("0"));
            assert_problem(res, 429, "rate-limited").await;
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 20, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 5, "{statuses:?}");
    assert!(remaining.windows(2).all(|w| w[0] > w[1]), "{remaining:?}");
    assert_eq!(d.get("/health").await.status(), 200, "probes are never limited");
    assert_eq!(metric(&d, r#"latch_rate_limited_total{scope="ip"}"#).await, 5.0);
}

#[tokio::test]
async fn the_credential_class_the_per_email_limit_and_the_global_limit_apply() {
    let limits = rate_limits("credential = \"3/1m\"\naccount = \"2/1m\"\nglobal = \"40/1m\"");
    let d = Latchd::start_with(&base_config(&format!("{limits}{}", defense("")))).await;
    // Showing the sign-in page is no attempt: it spends none of the three.
    for _ in 0..4 {
        let page = d.client().get(d.https_url("/account/login")).header("x-forwarded-for", "198.51.100.1");
        assert_eq!(page.send().await.unwrap().status(), 200);
    }
    // Three logins per minute per address, whatever the email.
    for i in 0..3 {
        let res = login_from(&d, "198.51.100.1", &format!("c{i}@example.test"), "a wrong password").await;
        assert_eq!(res.status(), 401);
    }
    let res = login_from(&d, "198.51.100.1", "c9@example.test", "a wrong password").await;
    assert_problem(res, 429, "rate-limited").await;
    assert_eq!(d.get("/.well-known/jwks.json").await.status(), 200, "other routes are not credential routes");
    // Two attempts per minute per email, whatever the address.
    for from in ["198.51.100.2", "198.51.100.3"] {
        assert_eq!(login_from(&d, from, "same@example.test", "a wrong password").await.status(), 401);
    }
    let res = login_from(&d, "198.51.100.4", "same@example.test", "a wrong password").await;
    let body = assert_problem(res, 429, "rate-limited").await;
    assert!(body["detail"].as_str().is_some());
    assert_eq!(metric(&d, r#"latch_rate_limited_total{scope="account"}"#).await, 1.0);
    // Everyone together: 40 a minute.
    let mut refused = 0;
    for i in 0..40 {
        let res = d
            .client()
            .get(d.https_url("/.well-known/jwks.json"))
            .header("x-forwarded-for", format!("192.0.2.{i}"))
            .send()
            .await
            .unwrap();
        refused += usize::from(res.status() == 429);
    }
    assert!(refused > 0 && metric(&d, r#"latch_rate_limited_total{scope="global"}"#).await >= 1.0);
}

async fn blocks(d: &Latchd) -> Vec<Value> {
    let out = std::process::Command::new(LATCHCTL)
        .arg("--state-dir")
        .arg(d.state_dir())
        .args(["--json", "blocked-ips", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["items"].as_array().unwrap().clone()
}

/// The seed system's rule: 5 failed logins in 5 minutes block the
/// address for an hour, on every route but the probes, across a restart.
#[tokio::test]
async fn five_failed_logins_block_the_address_for_an_hour_across_a_restart() {
    let rules = "ip_block = { failures = 5, window = \"5m\", duration = \"1h\" }";
    let d = Latchd::start_with(&base_config(&format!("{}{}", rate_limits(""), defense(rules)))).await;
    for i in 0..5 {
        // Unknown emails count like any other; each a different one.
        let res = login_from(&d, "203.0.113.50", &format!("guess{i}@example.test"), "a wrong password").await;
        assert_eq!(res.status(), 401);
    }
    let res = d
        .client()
        .get(d.https_url("/v1/auth/me"))
        .header("x-forwarded-for", "203.0.113.50")
        .send()
        .await
        .unwrap();
    let retry: u64 = header(&res, "retry-after").unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&retry), "{retry}");
    assert_problem(res, 403, "ip-blocked").await;
    let other = d
        .client()
        .get(d.https_url("/.well-known/jwks.json"))
        .header("x-forwarded-for", "203.0.113.51")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200, "only that address");
    let health = d
        .client()
        .get(d.https_url("/health"))
        .header("x-forwarded-for", "203.0.113.50")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "probes answer");
    let listed = blocks(&d).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0]["cidr"].as_str(), listed[0]["source"].as_str()),
        (Some("203.0.113.50/32"), Some("auto"))
    );
    for _ in 0..100 {
        if metric(&d, "latch_blocked_ips").await == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Written by the worker; wait for it, then restart.
    let db_rows = || d.db().query_row("SELECT count(*) FROM ip_blocks", [], |r| r.get::<_, i64>(0)).unwrap();
    for _ in 0..100 {
        if db_rows() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = d.stop_keep_dir();
    let d = Latchd::start_in(dir).await;
    let res = d
        .client()
        .get(d.https_url("/v1/auth/me"))
        .header("x-forwarded-for", "203.0.113.50")
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "ip-blocked").await;
    let id = blocks(&d).await[0]["id"].as_str().unwrap().to_string();
    let out = std::process::Command::new(LATCHCTL)
        .arg("--state-dir")
        .arg(d.state_dir())
        .args(["blocked-ips", "remove", &id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let res = d
        .client()
        .get(d.https_url("/.well-known/jwks.json"))
        .header("x-forwarded-for", "203.0.113.50")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "lifted at once");
    assert!(blocks(&d).await.is_empty());
}

#[tokio::test]
async fn blocks_expire_by_themselves_and_the_allowlist_is_exempt() {
    let rules =
        "allowlist = [\"198.51.100.0/24\"]\nip_block = { failures = 2, window = \"5m\", duration = \"2s\" }";
    let d = Latchd::start_with(&base_config(&format!("{}{}", rate_limits(""), defense(rules)))).await;
    for i in 0..5 {
        let res = login_from(&d, "198.51.100.9", &format!("a{i}@example.test"), "a wrong password").await;
        assert_eq!(res.status(), 401, "the allowlisted address is never blocked");
    }
    for i in 0..2 {
        login_from(&d, "203.0.113.70", &format!("b{i}@example.test"), "a wrong password").await;
    }
    let blocked = login_from(&d, "203.0.113.70", "b9@example.test", "a wrong password").await;
    assert_problem(blocked, 403, "ip-blocked").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let again = login_from(&d, "203.0.113.70", "b9@example.test", "a wrong password").await;
    assert_eq!(again.status(), 401, "the block expired");
}

#[tokio::test]
async fn an_admin_blocks_and_lifts_a_network_with_latchctl() {
    let d = Latchd::start_with(&base_config(&defense(""))).await;
    let ctl = |args: &[&str]| {
        std::process::Command::new(LATCHCTL)
            .arg("--state-dir")
            .arg(d.state_dir())
            .args(args)
            .output()
            .unwrap()
    };
    let out = ctl(&["blocked-ips", "add", "203.0.113.0/24", "--for", "1h", "--reason", "abuse report"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let res = d
        .client()
        .get(d.https_url("/.well-known/jwks.json"))
        .header("x-forwarded-for", "203.0.113.200")
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "ip-blocked").await;
    let listed = blocks(&d).await;
    assert_eq!(
        (listed[0]["source"].as_str(), listed[0]["reason"].as_str()),
        (Some("admin"), Some("abuse report"))
    );
    let out = ctl(&["blocked-ips", "add", "not-an-address"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cidr"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A typo in the prefix would block far more than meant: refused, with
    // the network it would have been.
    let out = ctl(&["blocked-ips", "add", "198.51.100.7/2"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && said.contains("/2 prefix") && said.contains("192.0.0.0/2"), "{said}");
    let human = String::from_utf8_lossy(&ctl(&["blocked-ips", "list"]).stdout).into_owned();
    assert!(human.contains("203.0.113.0/24") && human.contains("abuse report"), "{human}");
    assert!(!human.contains("192.0.0.0"), "{human}");
    // Operators think in addresses: one inside the network is named, the
    // network itself lifts the block.
    let out = ctl(&["blocked-ips", "remove", "203.0.113.200"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && said.contains("inside 203.0.113.0/24"), "{said}");
    let id = listed[0]["id"].as_str().unwrap();
    let out = ctl(&["blocked-ips", "remove", "203.0.113.0/24"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(id), "{out:?}");
    let out = ctl(&["blocked-ips", "remove", id]);
    assert_eq!(out.status.code(), Some(1), "already gone");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no block with that id"), "{out:?}");
    let audited: i64 = d
        .db()
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action IN ('ip_block_added', 'ip_block_removed')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(audited, 2);
    // Two blocks on one network, one ending while latchctl is between its
    // list and its deletes: the other is still lifted. (A block lives to
    // the whole second, so "3s" is live for at least 2 s after it is made.)
    assert!(ctl(&["blocked-ips", "add", "198.51.100.0/24", "--for", "3s"]).status.success());
    assert!(ctl(&["blocked-ips", "add", "198.51.100.0/24"]).status.success());
    let lasting = blocks(&d).await.into_iter().find(|b| b["expires_at"].is_null()).unwrap();
    let lasting = lasting["id"].as_str().unwrap().to_string();
    let out = std::process::Command::new(LATCHCTL)
        .arg("--state-dir")
        .arg(d.state_dir())
        .args(["blocked-ips", "remove", "198.51.100.0/24"])
        .env("LATCH_TEST_PAUSE", "ctl_block_delete:4000")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(said.starts_with(&format!("removed {lasting}; already ended: ")), "{said}");
    assert!(blocks(&d).await.is_empty());
}

/// Blocks an admin would regret at once are refused over HTTPS: every
/// address (`/0`), or the network the call itself comes from. From the
/// admin socket, which has no address, the admin's own network can still
/// be blocked on purpose. A block inside the allowlist would do nothing.
#[tokio::test]
async fn an_admin_cannot_shut_everyone_or_themselves_out() {
    let d = Latchd::start_with(&base_config(&defense("allowlist = [\"198.18.0.0/15\"]"))).await;
    let key = crate::apps::make_key(&d, "ops", &["admin"], &[]);
    let key = key["key"].as_str().unwrap();
    let add = |from: &'static str, body: Value| {
        let url = d.https_url("/v1/admin/blocked-ips");
        d.client().post(url).bearer_auth(key).header("x-forwarded-for", from).json(&body).send()
    };
    for cidr in ["0.0.0.0/0", "::/0"] {
        let said = assert_problem(
            add("203.0.113.9", json!({"cidr": cidr, "reason": "x"})).await.unwrap(),
            400,
            "invalid-request",
        )
        .await;
        assert!(said["detail"].as_str().unwrap().contains("blocks every address"), "{said}");
    }
    let own = json!({"cidr": "198.51.100.0/24", "reason": "x"});
    let said = assert_problem(add("198.51.100.9", own.clone()).await.unwrap(), 400, "invalid-request").await;
    assert_eq!(said["errors"][0]["field"], "cidr");
    assert!(
        said["detail"].as_str().unwrap().contains("holds 198.51.100.9, the address this request comes from"),
        "{said}"
    );
    let zero = json!({"cidr": "192.0.2.0/24", "reason": "x", "duration": "0s"});
    let said = assert_problem(add("203.0.113.9", zero).await.unwrap(), 400, "invalid-request").await;
    assert_eq!(said["errors"][0]["field"], "duration");
    let escape = json!({"cidr": "192.0.2.0/24", "reason": "\u{1b}[2Jgone"});
    let said = assert_problem(add("203.0.113.9", escape).await.unwrap(), 400, "invalid-request").await;
    assert_eq!(said["errors"][0]["field"], "reason");
    // Blocks never apply inside the allowlist: one there would change nothing.
    let allowed = json!({"cidr": "198.18.7.0/24", "reason": "x"});
    let said = assert_problem(add("203.0.113.9", allowed).await.unwrap(), 400, "invalid-request").await;
    assert!(
        said["detail"].as_str().unwrap().contains("inside [defense].allowlist entry 198.18.0.0/15"),
        "{said}"
    );
    assert!(blocks(&d).await.is_empty(), "nothing was blocked");
    // Someone else's network is fine; so is one's own from the socket.
    assert_eq!(
        add("198.51.100.9", json!({"cidr": "192.0.2.0/24", "reason": "x"})).await.unwrap().status(),
        201
    );
    let out = crate::admin_api::ctl(&d, &["blocked-ips", "add", "198.51.100.0/24"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(blocks(&d).await.len(), 2);
}

/// Status, problem body without `instance`, and headers but the
/// per-request ones (API.md: identical but for instance, Date,
/// X-Request-Id and RateLimit-*).
async fn comparable(res: reqwest::Response) -> (u16, Vec<(String, String)>, Value) {
    let status = res.status().as_u16();
    let mut headers: Vec<(String, String)> = res
        .headers()
        .iter()
        .filter(|(k, _)| {
            !matches!(k.as_str(), "x-request-id" | "date") && !k.as_str().starts_with("ratelimit-")
        })
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    headers.sort();
    let mut body: Value = res.json().await.unwrap_or(Value::Null);
    body.as_object_mut().map(|o| o.remove("instance"));
    (status, headers, body)
}

#[tokio::test]
async fn throttled_logins_answer_the_same_for_known_and_unknown_emails_and_cost_nothing() {
    let rules = "account_lock = { failures = 2, base_delay = \"30s\", max_delay = \"15m\", max_failures_per_hour = 100 }";
    let (d, smtp) = with_smtp(&format!("{}{}", rate_limits(""), defense(rules))).await;
    register_verified(&d, &smtp, "known@example.test", 0).await;
    for email in ["known@example.test", "unknown@example.test"] {
        for _ in 0..2 {
            assert_eq!(login_from(&d, "203.0.113.80", email, "a wrong password").await.status(), 401);
        }
    }
    let verifies = r#"latch_password_hashes_total{op="verify"}"#;
    let (hashes, audit) = (metric(&d, verifies).await, audit_rows(&d));
    let known = login_from(&d, "203.0.113.80", "known@example.test", PASSWORD).await;
    let unknown = login_from(&d, "203.0.113.80", "unknown@example.test", PASSWORD).await;
    let retry: u64 = header(&known, "retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let unknown_retry: u64 = header(&unknown, "retry-after").unwrap().parse().unwrap();
    // Each delay runs from that address's own last failure: on a loaded
    // machine the unknown one's came a hash later, a second boundary between.
    assert!(retry.abs_diff(unknown_retry) <= 1, "{retry} and {unknown_retry}");
    let (mut known, mut unknown) = (comparable(known).await, comparable(unknown).await);
    for seen in [&mut known, &mut unknown] {
        seen.1.retain(|(k, _)| k != "retry-after");
    }
    assert_eq!(known.0, 429);
    assert_eq!(known.2["type"], "urn:latch:problem:login-throttled");
    assert_eq!(known, unknown, "no difference tells which email exists");
    // Refusals during a delay do not extend it, and cost no hash or write.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = login_from(&d, "203.0.113.80", "known@example.test", PASSWORD).await;
    let later_retry: u64 = header(&later, "retry-after").unwrap().parse().unwrap();
    assert!(later_retry < retry, "{later_retry} < {retry}");
    assert_eq!(metric(&d, verifies).await, hashes, "no argon2 for a throttled attempt");
    assert_eq!(audit_rows(&d), audit, "no audit row (no write) for a throttled attempt");
}

fn audit_rows(d: &Latchd) -> i64 {
    d.db().query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn the_owner_logs_in_from_elsewhere_while_an_attacker_hammers_the_account() {
    let rules = "account_lock = { failures = 3, base_delay = \"2s\", max_delay = \"15m\", max_failures_per_hour = 100 }";
    let (d, smtp) = with_smtp(&format!("{}{}", rate_limits(""), defense(rules))).await;
    register_verified(&d, &smtp, "victim@example.test", 0).await;
    let mut throttled = 0;
    for _ in 0..20 {
        let res = login_from(&d, "203.0.113.66", "victim@example.test", "a guess at it").await;
        throttled += usize::from(res.status() == 429);
    }
    assert!(throttled >= 16, "the attacker is slowed: {throttled} of 20 refused");
    let owner = login_from(&d, "198.51.100.7", "victim@example.test", PASSWORD).await;
    assert_eq!(owner.status(), 200, "the owner, elsewhere, is not locked out");
}

#[tokio::test]
async fn many_addresses_lock_the_email_everywhere_until_a_password_reset() {
    let rules = "account_lock = { failures = 100, base_delay = \"2s\", max_delay = \"15m\", max_failures_per_hour = 4 }";
    let (d, smtp) = with_smtp(&format!("{}{}", rate_limits(""), defense(rules))).await;
    let seen = register_verified(&d, &smtp, "target@example.test", 0).await;
    for i in 0..4 {
        let res = login_from(&d, &format!("203.0.113.{i}"), "target@example.test", "a guess at it").await;
        assert_eq!(res.status(), 401);
    }
    let res = login_from(&d, "198.51.100.7", "target@example.test", PASSWORD).await;
    assert_problem(res, 429, "login-throttled").await;
    assert_eq!(metric(&d, "latch_locked_accounts").await, 1.0);
    // The lock survives a restart (written by the worker; wait for it).
    for _ in 0..100 {
        let n: i64 = d.db().query_row("SELECT count(*) FROM login_locks", [], |r| r.get(0)).unwrap();
        if n == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let smtp_config = smtp.config();
    let dir = d.stop_keep_dir();
    crate::harness::write_config(
        dir.path(),
        &base_config(&format!("{smtp_config}{}{}", rate_limits(""), defense(rules))),
    );
    let d = Latchd::start_in(dir).await;
    let res = login_from(&d, "198.51.100.7", "target@example.test", PASSWORD).await;
    assert_problem(res, 429, "login-throttled").await;
    // A reset by email proves the owner and clears it.
    assert_eq!(
        d.post("/v1/auth/password/forgot", json!({"email": "target@example.test"})).await.status(),
        202
    );
    let token = crate::mail::token_in(&smtp.wait_for(seen + 1).await.pop().unwrap());
    let res = d
        .post("/v1/auth/password/reset", json!({"token": token, "new_password": "the owner's new one"}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        login_from(&d, "198.51.100.7", "target@example.test", "the owner's new one").await.status(),
        200
    );
    assert_eq!(metric(&d, "latch_locked_accounts").await, 0.0);
    login(&d, "target@example.test", "the owner's new one").await;
}

/// The owner phones the team instead of waiting out a lock: `latchctl users
/// unlock` lifts it at once and says so.
#[tokio::test]
async fn an_admin_unlocks_a_locked_account_with_latchctl() {
    let rules = "account_lock = { failures = 100, base_delay = \"2s\", max_delay = \"15m\", max_failures_per_hour = 3 }";
    let (d, smtp) = with_smtp(&format!("{}{}", rate_limits(""), defense(rules))).await;
    register_verified(&d, &smtp, "kim@example.test", 0).await;
    for i in 0..3 {
        let res = login_from(&d, &format!("203.0.113.{i}"), "kim@example.test", "a guess at it").await;
        assert_eq!(res.status(), 401);
    }
    assert_problem(
        login_from(&d, "198.51.100.7", "kim@example.test", PASSWORD).await,
        429,
        "login-throttled",
    )
    .await;
    let out = crate::admin_api::ctl(&d, &["users", "unlock", "kim@example.test"], "");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("unlocked: failed sign-ins"), "{said}");
    assert_eq!(login_from(&d, "198.51.100.7", "kim@example.test", PASSWORD).await.status(), 200);
    assert_eq!(metric(&d, "latch_locked_accounts").await, 0.0);
}

/// A stolen session cannot guess its account's password through the calls
/// that ask for it again (password and address change, deletion, the
/// second factor's recovery codes): each wrong password counts toward the
/// same throttle as a failed login, and a throttled attempt is refused
/// before any hash — the right password included, as at `/login`.
#[tokio::test]
async fn a_stolen_session_cannot_guess_the_password_past_the_login_throttle() {
    let rules = "account_lock = { failures = 3, base_delay = \"30s\", max_delay = \"15m\", max_failures_per_hour = 100 }";
    let (d, smtp) = with_smtp(&format!("{}{}", rate_limits(""), defense(rules))).await;
    register_verified(&d, &smtp, "stolen@example.test", 0).await;
    let tokens = login(&d, "stolen@example.test", PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap();
    let send = |method: reqwest::Method, path: &str, body: Value| {
        let req = d.client().request(method, d.https_url(path)).bearer_auth(access);
        req.header("x-forwarded-for", "203.0.113.44").json(&body).send()
    };
    let guess = "a guess at the password";
    let change = json!({"current_password": guess, "new_password": "the thief's own password"});
    let guesses = [
        (reqwest::Method::POST, "/v1/auth/password/change", change),
        (
            reqwest::Method::POST,
            "/v1/auth/email/change",
            json!({"password": guess, "new_email": "t@evil.example"}),
        ),
        (reqwest::Method::DELETE, "/v1/auth/me", json!({"password": guess})),
    ];
    for (method, path, body) in guesses {
        let wrong = assert_problem(send(method, path, body).await.unwrap(), 401, "invalid-credentials").await;
        // The caller named no address: the detail speaks of the password.
        assert_eq!(wrong["detail"], "The password is wrong.", "{path}");
    }
    let verifies = r#"latch_password_hashes_total{op="verify"}"#;
    let hashes = metric(&d, verifies).await;
    let right = json!({"password": PASSWORD});
    let res = send(reqwest::Method::POST, "/v1/auth/mfa/recovery-codes", right).await.unwrap();
    assert!(header(&res, "retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s > 0)));
    assert_problem(res, 429, "login-throttled").await;
    assert_eq!(metric(&d, verifies).await, hashes, "refused before any hash");
    // The dashboard's locked logins are logins, not the changes above.
    let locked = r#"latch_auth_events_total{kind="login",result="locked"}"#;
    assert_eq!(metric(&d, locked).await, 0.0);
    let res = login_from(&d, "203.0.113.44", "stolen@example.test", PASSWORD).await;
    assert_problem(res, 429, "login-throttled").await;
    assert_eq!(metric(&d, locked).await, 1.0);
    let owner = login_from(&d, "198.51.100.7", "stolen@example.test", PASSWORD).await;
    assert_eq!(owner.status(), 200, "the owner, elsewhere, is not locked out");
}

/// Only a reset token that does not work counts towards blocking the
/// address: a person with a live link who types two different passwords,
/// or an app sending a malformed body, guesses nothing — ten of those from
/// one office blocked it for an hour.
#[tokio::test]
async fn only_dead_reset_tokens_count_toward_an_ip_block() {
    let rules = "ip_block = { failures = 2, window = \"5m\", duration = \"1h\" }";
    let (d, smtp) = with_smtp(&format!("{}{}", rate_limits(""), defense(rules))).await;
    let seen = register_verified(&d, &smtp, "ren@example.test", 0).await;
    assert_eq!(d.post("/v1/auth/password/forgot", json!({"email": "ren@example.test"})).await.status(), 202);
    let token = crate::mail::token_in(&smtp.wait_for(seen + 1).await[seen]);
    let page = d.get(&format!("/reset-password?token={token}")).await;
    let (cookie, csrf) = crate::pages::csrf_of(page).await;
    let differ = [
        ("csrf", csrf.as_str()),
        ("token", token.as_str()),
        ("new_password", "a brand new passphrase"),
        ("confirm_password", "a brand new passphrase!"),
    ];
    for _ in 0..3 {
        let res = d.client().post(d.https_url("/reset-password")).header("cookie", &cookie).form(&differ);
        let res = res.send().await.unwrap();
        assert_eq!(res.status(), 400, "the form again, saying the passwords differ");
        let malformed = d.post("/v1/auth/password/reset", json!({"token": token})).await;
        assert_problem(malformed, 400, "invalid-request").await;
    }
    let reset = json!({"token": token, "new_password": "a brand new passphrase"});
    assert_eq!(d.post("/v1/auth/password/reset", reset).await.status(), 200, "not blocked");

    let dead = json!({"token": "no-such-token", "new_password": "a brand new passphrase"});
    for _ in 0..2 {
        assert_problem(d.post("/v1/auth/password/reset", dead.clone()).await, 400, "invalid-token").await;
    }
    assert_problem(d.post("/v1/auth/password/reset", dead).await, 403, "ip-blocked").await;
}
