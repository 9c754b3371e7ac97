//! The anomaly rules of `[defense.anomaly]` with the seed system's
//! thresholds (50 requests a minute → a 30-minute block; 3 new devices in
//! an hour; 10 refreshes in 10 minutes), each triggered; the order of the
//! defenses against CORS and security headers; and limits that follow a
//! reload.

use std::time::Duration;

use serde_json::{Value, json};

use crate::apps::make_key;
use crate::defense::{defense, login_from, rate_limits};
use crate::flows::{PASSWORD, metric, register_verified, with_smtp};
use crate::harness::{Latchd, assert_problem, base_config, write_config};
use crate::mail::subject_of;

const SEED: &str = "[defense.anomaly]\n\
    bot = { requests = 50, window = \"1m\", action = \"block\", block_for = \"30m\" }\n\
    new_devices = { count = 3, window = \"1h\", action = \"flag\" }\n\
    rapid_refresh = { count = 10, window = \"10m\", action = \"revoke\" }\n\
    new_ip = { action = \"email\" }\n";

fn seed_config() -> String {
    format!("{}{}", rate_limits(""), defense(SEED))
}

async fn audited(d: &Latchd, action: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM audit_log WHERE action = '{action}'");
    for _ in 0..100 {
        let n: i64 = d.db().query_row(&sql, [], |r| r.get(0)).unwrap();
        if n > 0 {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    0
}

async fn get_from(d: &Latchd, from: &str, ua: &str) -> reqwest::Response {
    let req = d.client().get(d.https_url("/.well-known/jwks.json")).header("x-forwarded-for", from);
    req.header("user-agent", ua).send().await.unwrap()
}

#[tokio::test]
async fn fifty_requests_a_minute_block_a_bot_for_half_an_hour_but_not_api_keys() {
    let d = Latchd::start_with(&base_config(&seed_config())).await;
    let mut statuses = Vec::new();
    for _ in 0..51 {
        statuses.push(get_from(&d, "203.0.113.20", "robot/1.0").await.status().as_u16());
    }
    assert!(statuses[..50].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(statuses[50], 403, "the 51st request starts the block");
    let res = get_from(&d, "203.0.113.20", "robot/1.0").await;
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1700..=1800).contains(&retry), "{retry}");
    assert_problem(res, 403, "ip-blocked").await;
    assert_eq!(metric(&d, r#"latch_anomalies_total{rule="bot"}"#).await, 1.0);
    assert_eq!(audited(&d, "anomaly_bot").await, 1);
    // Traffic with a real API key is exempt from the bot count; a made-up
    // `latch_` bearer is not, or any bot could claim the exemption.
    let key = make_key(&d, "crawler", &["introspect"], &[])["key"].as_str().unwrap().to_string();
    for _ in 0..60 {
        let res = jwks_with_key(&d, "203.0.113.21", &key).await;
        assert_eq!(res.status(), 200);
    }
    let mut forged = Vec::new();
    for _ in 0..51 {
        forged.push(jwks_with_key(&d, "203.0.113.22", "latch_AbCd1234_notarealkey").await.status().as_u16());
    }
    assert_eq!(forged[50], 403, "{forged:?}");
}

async fn jwks_with_key(d: &Latchd, from: &str, key: &str) -> reqwest::Response {
    let req = d.client().get(d.https_url("/.well-known/jwks.json")).header("x-forwarded-for", from);
    req.bearer_auth(key).send().await.unwrap()
}

#[tokio::test]
async fn a_scanner_user_agent_is_blocked_at_once() {
    let d = Latchd::start_with(&base_config(&seed_config())).await;
    assert_problem(get_from(&d, "203.0.113.30", "sqlmap/1.7.2#stable").await, 403, "ip-blocked").await;
    assert_problem(get_from(&d, "203.0.113.30", "curl/8").await, 403, "ip-blocked").await;
    assert_eq!(metric(&d, r#"latch_anomalies_total{rule="scanner_user_agent"}"#).await, 1.0);
}

#[tokio::test]
async fn three_new_devices_in_an_hour_are_flagged() {
    let (d, smtp) = with_smtp(&seed_config()).await;
    register_verified(&d, &smtp, "devices@example.test", 0).await;
    for device in ["laptop", "phone", "tablet"] {
        let res = d
            .client()
            .post(d.https_url("/v1/auth/login"))
            .json(&json!({"email": "devices@example.test", "password": PASSWORD, "device_name": device}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "flagging does not refuse");
    }
    assert_eq!(metric(&d, r#"latch_anomalies_total{rule="new_devices"}"#).await, 1.0);
    assert_eq!(audited(&d, "anomaly_new_devices").await, 1);
}

#[tokio::test]
async fn ten_refreshes_in_ten_minutes_revoke_the_session() {
    let (d, smtp) = with_smtp(&seed_config()).await;
    register_verified(&d, &smtp, "spinner@example.test", 0).await;
    let mut token =
        login_from(&d, "198.51.100.5", "spinner@example.test", PASSWORD).await.json::<Value>().await.unwrap()
            ["refresh_token"]
            .clone();
    for _ in 0..11 {
        let res = d.post("/v1/auth/refresh", json!({"refresh_token": token})).await;
        assert_eq!(res.status(), 200);
        token = res.json::<Value>().await.unwrap()["refresh_token"].clone();
    }
    let mut last = 0;
    for _ in 0..100 {
        last = d.post("/v1/auth/refresh", json!({"refresh_token": token})).await.status().as_u16();
        if last == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A 200 rotated the token; follow it.
    }
    assert_eq!(last, 401, "the session was revoked");
    assert_eq!(metric(&d, r#"latch_anomalies_total{rule="rapid_refresh"}"#).await, 1.0);
    assert_eq!(audited(&d, "anomaly_rapid_refresh").await, 1);
}

#[tokio::test]
async fn a_login_from_a_new_network_mails_the_owner() {
    let (d, smtp) = with_smtp(&seed_config()).await;
    let seen = register_verified(&d, &smtp, "traveller@example.test", 0).await;
    assert_eq!(login_from(&d, "198.51.100.7", "traveller@example.test", PASSWORD).await.status(), 200);
    assert_eq!(login_from(&d, "198.51.100.99", "traveller@example.test", PASSWORD).await.status(), 200);
    assert_eq!(metric(&d, r#"latch_anomalies_total{rule="new_ip"}"#).await, 0.0, "the same /24 is not new");
    assert_eq!(login_from(&d, "203.0.113.9", "traveller@example.test", PASSWORD).await.status(), 200);
    let mail = smtp.wait_for(seen + 1).await.pop().unwrap();
    assert_eq!(subject_of(&mail), "New sign-in to your account");
    assert!(mail.contains("203.0.113.9"), "{mail}");
    assert_eq!(audited(&d, "anomaly_new_ip").await, 1);
}

#[tokio::test]
async fn refusals_carry_cors_security_headers_and_a_request_id_and_are_counted() {
    let cfg =
        format!("{}\n[http]\ncors_origins = [\"https://app.example.test\"]\n", rate_limits("ip = \"1/1m\""));
    let d = Latchd::start_with(&base_config(&cfg)).await;
    let send = || {
        d.client()
            .get(d.https_url("/.well-known/jwks.json"))
            .header("origin", "https://app.example.test")
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    let res = send().await.unwrap();
    let h = res.headers().clone();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.test");
    assert!(h["access-control-expose-headers"].to_str().unwrap().contains("retry-after"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h.contains_key("strict-transport-security") && h.contains_key("x-request-id"));
    assert_problem(res, 429, "rate-limited").await;
    let counted =
        metric(&d, r#"latch_http_requests_total{method="GET",route="/.well-known/jwks.json",status="429"}"#);
    assert_eq!(counted.await, 1.0);
}

#[tokio::test]
async fn a_reload_changes_limits_at_once_and_keeps_the_buckets_of_unchanged_ones() {
    let start = |ip: &str| {
        base_config(&format!(
            "{}{}",
            rate_limits(&format!("ip = \"{ip}\"\ncredential = \"2/1m\"")),
            defense("")
        ))
    };
    let d = Latchd::start_with(&start("3/1m")).await;
    for _ in 0..2 {
        assert_eq!(login_from(&d, "198.51.100.1", "x@example.test", "a wrong password").await.status(), 401);
    }
    for _ in 0..3 {
        assert_eq!(d.get("/.well-known/jwks.json").await.status(), 200);
    }
    assert_problem(d.get("/.well-known/jwks.json").await, 429, "rate-limited").await;
    write_config(d.dir.path(), &start("100/1m"));
    d.signal(libc::SIGHUP);
    for _ in 0..100 {
        if d.log().contains("config reloaded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(d.get("/.well-known/jwks.json").await.status(), 200, "the raised ip limit applies at once");
    let res = login_from(&d, "198.51.100.1", "x@example.test", "a wrong password").await;
    assert_problem(res, 429, "rate-limited").await;
}
