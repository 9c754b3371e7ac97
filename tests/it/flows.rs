//! Shared account flows for the tests: a daemon wired to a real SMTP
//! server, and register → verify → login in one call.

use serde_json::{Value, json};

use crate::harness::{Latchd, base_config};
use crate::mail::{SmtpSink, token_in};

pub const PASSWORD: &str = "correct horse battery staple";

/// A daemon sending mail to a fresh SMTP sink; `extra` adds config.
pub async fn with_smtp(extra: &str) -> (Latchd, SmtpSink) {
    with_smtp_env(extra, &[]).await
}

/// As `with_smtp`, with extra environment variables for latchd.
pub async fn with_smtp_env(extra: &str, env: &[(&str, &str)]) -> (Latchd, SmtpSink) {
    let smtp = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    crate::harness::write_config(dir.path(), &base_config(&format!("{}{extra}", smtp.config())));
    let d = Latchd::start_in_with_env(dir, env).await;
    (d, smtp)
}

/// The value of one Prometheus series on `/metrics`, 0 when absent.
pub async fn metric(d: &Latchd, series: &str) -> f64 {
    series_value(&d.get("/metrics").await.text().await.expect("metrics"), series)
}

/// The value of `series` in a Prometheus text page, 0 when absent.
pub fn series_value(page: &str, series: &str) -> f64 {
    page.lines()
        .filter_map(|l| l.strip_prefix(series))
        .find_map(|rest| rest.strip_prefix(' ').and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Registers `email`, follows the emailed link, and returns the message
/// count seen so far (the verification mail included).
pub async fn register_verified(d: &Latchd, smtp: &SmtpSink, email: &str, seen: usize) -> usize {
    let res = d.post("/v1/auth/register", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(res.status(), 202);
    let mails = smtp.wait_for(seen + 1).await;
    let token = token_in(&mails[seen]);
    let res = d.post("/v1/auth/verify-email", json!({"token": token})).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    seen + 1
}

/// Logs in and returns the token response.
pub async fn login(d: &Latchd, email: &str, password: &str) -> Value {
    let res = d.post("/v1/auth/login", json!({"email": email, "password": password})).await;
    assert_eq!(res.status(), 200, "login: {}", res.text().await.unwrap_or_default());
    res.json().await.expect("tokens")
}
