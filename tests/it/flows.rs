//! Shared account flows for the tests: a daemon wired to a real SMTP
//! server, and register → verify → login in one call.

use serde_json::{Value, json};

use crate::harness::{Latchd, base_config};
use crate::mail::{SmtpSink, token_in};

pub const PASSWORD: &str = "correct horse battery staple";

/// A daemon sending mail to a fresh SMTP sink; `extra` adds config.
pub async fn with_smtp(extra: &str) -> (Latchd, SmtpSink) {
    let smtp = SmtpSink::start();
    let d = Latchd::start_with(&base_config(&format!("{}{extra}", smtp.config()))).await;
    (d, smtp)
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
