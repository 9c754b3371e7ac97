//! The second factor, end to end against the real daemon: enrolment with a
//! secret an independent TOTP implementation (Python's pyotp) agrees with,
//! login's second step, no replay even for twenty parallel requests,
//! recovery codes, turning TOTP off (by the person, or by an admin for a
//! person who lost it), what the database holds, and the defenses and
//! counters it feeds.

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::admin_api::{ctl, ok_json};
use crate::flows::{PASSWORD, login, metric, register_verified, with_smtp};
use crate::harness::{Latchd, assert_problem};
use crate::mail::{subject_of, token_in};

/// The code pyotp computes for `secret` at `steps` 30-second steps from
/// now (negative: earlier).
pub fn code_at(secret: &str, steps: i64) -> String {
    let script = "import pyotp, sys, time; \
                  print(pyotp.TOTP(sys.argv[1]).at(int(time.time()) + 30 * int(sys.argv[2])))";
    let out = Command::new("python3").args(["-c", script, secret, &steps.to_string()]).output().unwrap();
    assert!(out.status.success(), "pyotp: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Waits out the end of a 30-second step, so the next few seconds of codes
/// all belong to one step (the tests count steps relative to "now").
async fn early_in_a_step() {
    let into = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 30;
    if into >= 20 {
        tokio::time::sleep(Duration::from_secs(31 - into)).await;
    }
}

fn claims_of(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn me(d: &Latchd, access: &str) -> Value {
    let res = d.get_auth("/v1/auth/me", access).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// An account with TOTP on: its access token, secret and recovery codes.
/// The enrolment is confirmed with the previous step's code, leaving the
/// current and next steps for the test.
struct Enrolled {
    access: String,
    secret: String,
    recovery: Vec<String>,
}

async fn enrolled(d: &Latchd, smtp: &crate::mail::SmtpSink, email: &str, seen: usize) -> (Enrolled, usize) {
    let seen = register_verified(d, smtp, email, seen).await;
    let access = login(d, email, PASSWORD).await["access_token"].as_str().unwrap().to_string();
    early_in_a_step().await;
    let res = d.post_auth("/v1/auth/mfa/totp", &access, json!({})).await;
    assert_eq!(res.status(), 200);
    let secret = res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string();
    let res = d.post_auth("/v1/auth/mfa/totp/confirm", &access, json!({"code": code_at(&secret, -1)})).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let codes = res.json::<Value>().await.unwrap()["recovery_codes"].as_array().unwrap().clone();
    let recovery = codes.iter().map(|c| c.as_str().unwrap().to_string()).collect();
    // The person hears of it: someone else in their account could lock them out.
    let notice = smtp.wait_for(seen + 1).await.remove(seen);
    assert_eq!(subject_of(&notice), "Two-step verification was turned on");
    assert!(crate::mail::text_of(&notice).contains("address: 127.0.0.1"), "{notice}");
    (Enrolled { access, secret, recovery }, seen + 1)
}

/// Step one for a TOTP account: the `mfa_token`.
async fn step_one(d: &Latchd, email: &str) -> String {
    let res = d.post("/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["mfa_required"], true, "{body}");
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    assert!(body.get("access_token").is_none(), "no tokens before the second step: {body}");
    body["mfa_token"].as_str().unwrap().to_string()
}

async fn step_two(d: &Latchd, mfa_token: &str, proof: Value) -> reqwest::Response {
    let mut body = json!({"mfa_token": mfa_token});
    body.as_object_mut().unwrap().extend(proof.as_object().unwrap().clone());
    d.post("/v1/auth/login/mfa", body).await
}

/// One text column of the audit log, oldest row first (`what` is an SQL
/// expression over a row, `which` a condition).
fn audit_column(d: &Latchd, what: &str, which: &str) -> Vec<String> {
    let db = d.db();
    let mut stmt = db.prepare(&format!("SELECT {what} FROM audit_log WHERE {which} ORDER BY id")).unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

fn audit_actions(d: &Latchd) -> Vec<String> {
    audit_column(d, "action", "1")
}

#[tokio::test]
async fn enrolment_confirmed_by_pyotp_turns_on_the_second_step() {
    let (d, smtp) = with_smtp("").await;
    register_verified(&d, &smtp, "ada@example.test", 0).await;
    let access = login(&d, "ada@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    assert_eq!(me(&d, &access).await["mfa"], json!({"totp": false}));
    early_in_a_step().await;

    let first: Value = d.post_auth("/v1/auth/mfa/totp", &access, json!({})).await.json().await.unwrap();
    let again = d.post_auth("/v1/auth/mfa/totp", &access, json!({})).await;
    assert_eq!(again.status(), 200, "enrolling again before confirming replaces the pending secret");
    let enrolment: Value = again.json().await.unwrap();
    let secret = enrolment["secret"].as_str().unwrap();
    assert_ne!(first["secret"], enrolment["secret"]);
    assert_eq!(secret.len(), 32, "160 bits of base32");
    let uri = enrolment["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/latch:ada%40example.test?secret="), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")) && uri.contains("issuer=latch"), "{uri}");
    let svg = enrolment["qr_svg"].as_str().unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg:.80}");
    // Not active until confirmed: login still answers tokens.
    login(&d, "ada@example.test", PASSWORD).await;
    assert_eq!(me(&d, &access).await["mfa"]["totp"], false);

    let stale = code_at(first["secret"].as_str().unwrap(), 0);
    if stale != code_at(secret, 0) {
        let res = d.post_auth("/v1/auth/mfa/totp/confirm", &access, json!({"code": stale})).await;
        assert_problem(res, 400, "invalid-mfa").await;
    }
    let res = d.post_auth("/v1/auth/mfa/totp/confirm", &access, json!({"code": code_at(secret, -1)})).await;
    assert_eq!(res.status(), 200);
    let codes = res.json::<Value>().await.unwrap()["recovery_codes"].as_array().unwrap().clone();
    assert_eq!(codes.len(), 10);
    for code in &codes {
        let code = code.as_str().unwrap();
        assert!(code.len() == 14 && code.split('-').all(|g| g.len() == 4), "{code}");
    }
    assert_eq!(me(&d, &access).await["mfa"], json!({"totp": true}));
    let res = d.post_auth("/v1/auth/mfa/totp", &access, json!({})).await;
    assert_problem(res, 409, "mfa-already-enabled").await;

    // A wrong password gets the same 401 as ever; the right one, step two.
    let wrong =
        d.post("/v1/auth/login", json!({"email": "ada@example.test", "password": "not the password"})).await;
    assert_problem(wrong, 401, "invalid-credentials").await;
    let mfa_token = step_one(&d, "ada@example.test").await;
    let res = step_two(&d, &mfa_token, json!({"code": code_at(secret, 0)})).await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(claims_of(tokens["access_token"].as_str().unwrap())["amr"], json!(["pwd", "otp"]));
    assert_eq!(me(&d, tokens["access_token"].as_str().unwrap()).await["mfa"]["totp"], true);
    let res = step_two(&d, &mfa_token, json!({"code": code_at(secret, 1)})).await;
    assert_problem(res, 401, "invalid-mfa").await;

    assert_eq!(metric(&d, r#"latch_auth_events_total{kind="totp_enroll",result="success"}"#).await, 1.0);
    assert_eq!(metric(&d, r#"latch_auth_events_total{kind="login_mfa",result="success"}"#).await, 1.0);
    let actions = audit_actions(&d);
    for action in ["totp_enrolment_started", "totp_enabled", "login_mfa_failed"] {
        assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
    }
    let logins = audit_column(&d, "json_extract(details, '$.amr')", "action = 'login'");
    assert_eq!(logins.last().map(String::as_str), Some("pwd otp"), "{logins:?}");
}

#[tokio::test]
async fn one_code_opens_one_session_even_for_twenty_parallel_second_steps() {
    let (d, smtp) = with_smtp("").await;
    let (user, _) = enrolled(&d, &smtp, "bo@example.test", 0).await;
    let mut tokens = Vec::new();
    for _ in 0..20 {
        tokens.push(step_one(&d, "bo@example.test").await);
    }
    early_in_a_step().await;
    let code = code_at(&user.secret, 0);
    let calls = tokens.iter().map(|t| step_two(&d, t, json!({"code": code})));
    let statuses: Vec<u16> =
        futures_util::future::join_all(calls).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 401), "{statuses:?}");
    // The same code is refused later too: only a later step counts.
    let res = step_two(&d, &step_one(&d, "bo@example.test").await, json!({"code": code})).await;
    assert_problem(res, 401, "invalid-mfa").await;
    let res =
        step_two(&d, &step_one(&d, "bo@example.test").await, json!({"code": code_at(&user.secret, 1)})).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn an_mfa_token_takes_five_wrong_codes_expires_and_belongs_to_its_user() {
    let (d, smtp) = with_smtp("").await;
    let (ann, seen) = enrolled(&d, &smtp, "ann@example.test", 0).await;
    let (bea, _) = enrolled(&d, &smtp, "bea@example.test", seen).await;
    let hashes_before = metric(&d, r#"latch_password_hashes_total{op="verify"}"#).await;
    let token = step_one(&d, "ann@example.test").await;
    for _ in 0..5 {
        assert_problem(step_two(&d, &token, json!({"code": "000000"})).await, 401, "invalid-mfa").await;
    }
    let right = step_two(&d, &token, json!({"code": code_at(&ann.secret, 0)})).await;
    assert_problem(right, 401, "invalid-mfa").await;
    // Step one cost one argon2 verification; seven second steps cost none.
    assert_eq!(metric(&d, r#"latch_password_hashes_total{op="verify"}"#).await - hashes_before, 1.0);

    // Bound to its user: Bea's code does not finish Ann's login.
    let token = step_one(&d, "ann@example.test").await;
    let foreign = step_two(&d, &token, json!({"code": code_at(&bea.secret, 0)})).await;
    assert_problem(foreign, 401, "invalid-mfa").await;
    // Stored hashed, and dead after five minutes (moved back in the file).
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let stored: i64 = d
        .db()
        .query_row("SELECT COUNT(*) FROM mfa_tokens WHERE token_hash = ?1", [digest.as_ref()], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 1, "the mfa_token is stored as its SHA-256");
    let expires: i64 = d
        .db()
        .query_row("SELECT MAX(expires_at) - MAX(created_at) FROM mfa_tokens", [], |r| r.get(0))
        .unwrap();
    assert_eq!(expires, 300);
    let writable = rusqlite::Connection::open(d.state_dir().join("latch.db")).unwrap();
    writable.busy_timeout(Duration::from_secs(5)).unwrap();
    writable.execute("UPDATE mfa_tokens SET expires_at = expires_at - 301", []).unwrap();
    let late = step_two(&d, &token, json!({"code": code_at(&ann.secret, 0)})).await;
    assert_problem(late, 401, "invalid-mfa").await;
    let res = step_two(&d, &token, json!({"code": "123456", "recovery_code": "AAAA-BBBB-CCCC"})).await;
    assert_problem(res, 400, "invalid-request").await;
}

#[tokio::test]
async fn recovery_codes_log_in_once_and_renewing_voids_the_old_set() {
    // Each recovery-code sign-in mails the person: more than the default
    // five mails in the hour.
    let (d, smtp) = with_smtp("\n[email]\nmax_per_recipient = 20\n").await;
    let (user, _) = enrolled(&d, &smtp, "cy@example.test", 0).await;
    let res =
        step_two(&d, &step_one(&d, "cy@example.test").await, json!({"recovery_code": user.recovery[0]}))
            .await;
    assert_eq!(res.status(), 200);
    // The person hears of it: it was them without their phone, or someone
    // holding their password and codes.
    let told = mails_titled(&smtp, "A recovery code was used to sign in", 1).await;
    let text = crate::mail::text_of(&told[0]);
    assert!(text.contains("recovery codes left: 9") && text.contains("address: 127.0.0.1"), "{text}");
    let access = res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims_of(&access)["amr"], json!(["pwd", "otp"]));
    let again =
        step_two(&d, &step_one(&d, "cy@example.test").await, json!({"recovery_code": user.recovery[0]}))
            .await;
    assert_problem(again, 401, "invalid-mfa").await;
    // Typed in lower case without dashes, a code still counts.
    let typed = user.recovery[1].replace('-', "").to_lowercase();
    let res = step_two(&d, &step_one(&d, "cy@example.test").await, json!({"recovery_code": typed})).await;
    assert_eq!(res.status(), 200);

    let wrong =
        d.post_auth("/v1/auth/mfa/recovery-codes", &access, json!({"password": "not the password"})).await;
    let wrong = assert_problem(wrong, 401, "invalid-credentials").await;
    assert_eq!(wrong["detail"], "The password is wrong.");
    let res = d.post_auth("/v1/auth/mfa/recovery-codes", &access, json!({"password": PASSWORD})).await;
    assert_eq!(res.status(), 200);
    let fresh = res.json::<Value>().await.unwrap()["recovery_codes"].as_array().unwrap().clone();
    assert_eq!(fresh.len(), 10);
    let notices = mails_titled(&smtp, "New recovery codes were made", 1).await;
    assert!(crate::mail::text_of(&notices[0]).contains("the old ones no longer work"), "{}", notices[0]);
    let old =
        step_two(&d, &step_one(&d, "cy@example.test").await, json!({"recovery_code": user.recovery[2]}))
            .await;
    assert_problem(old, 401, "invalid-mfa").await;
    let new = step_two(&d, &step_one(&d, "cy@example.test").await, json!({"recovery_code": fresh[0]})).await;
    assert_eq!(new.status(), 200);
    let actions = audit_actions(&d);
    assert_eq!(actions.iter().filter(|a| *a == "recovery_code_used").count(), 3, "{actions:?}");
    assert!(actions.iter().any(|a| a == "recovery_codes_regenerated"), "{actions:?}");
}

async fn disable(d: &Latchd, access: &str, body: Value) -> reqwest::Response {
    let url = d.https_url("/v1/auth/mfa/totp");
    d.client().delete(url).bearer_auth(access).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn turning_totp_off_needs_password_and_code_and_revokes_other_sessions() {
    let (d, smtp) = with_smtp("").await;
    let (user, _) = enrolled(&d, &smtp, "di@example.test", 0).await;
    let other =
        step_two(&d, &step_one(&d, "di@example.test").await, json!({"code": code_at(&user.secret, 0)})).await;
    let other = other.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();

    let res = disable(&d, &user.access, json!({"password": "not the password", "code": "123456"})).await;
    assert_problem(res, 401, "invalid-credentials").await;
    let res =
        disable(&d, &user.access, json!({"password": PASSWORD, "recovery_code": "AAAA-BBBB-CCCC"})).await;
    assert_problem(res, 401, "invalid-mfa").await;
    let res = disable(&d, &user.access, json!({"password": PASSWORD})).await;
    assert_problem(res, 400, "invalid-request").await;
    let res =
        disable(&d, &user.access, json!({"password": PASSWORD, "code": code_at(&user.secret, 1)})).await;
    assert_eq!(res.status(), 204);
    let notices = mails_titled(&smtp, "Two-step verification was turned off", 1).await;
    let text = crate::mail::text_of(&notices[0]);
    assert!(text.contains("just turned off for your account"), "the person's own change: {text}");
    assert_eq!(notices.len(), 1, "none for the refused tries");

    assert_eq!(d.get_auth("/v1/auth/me", &other).await.status(), 401, "the other session is revoked");
    assert_eq!(me(&d, &user.access).await["mfa"]["totp"], false, "this one stays");
    let tokens = login(&d, "di@example.test", PASSWORD).await;
    assert_eq!(claims_of(tokens["access_token"].as_str().unwrap())["amr"], json!(["pwd"]));
    let count: i64 = d.db().query_row("SELECT COUNT(*) FROM recovery_codes", [], |r| r.get(0)).unwrap();
    assert_eq!(count, 0);
    let actions = audit_actions(&d);
    for action in ["totp_disable_failed", "totp_disabled"] {
        assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
    }
}

/// With the password (a stolen session whose thief knows it), codes to
/// turn TOTP off cannot be guessed until one fits: a wrong code counts
/// toward the login throttle as one at login does, and while throttled
/// even the right code is refused.
#[tokio::test]
async fn a_session_cannot_guess_codes_to_turn_totp_off() {
    let defense = "[defense]\naccount_lock = { failures = 3, base_delay = \"1m\", max_delay = \"15m\", max_failures_per_hour = 100 }\n";
    let (d, smtp) = with_smtp(defense).await;
    let (user, _) = enrolled(&d, &smtp, "gil@example.test", 0).await;
    for _ in 0..3 {
        let res = disable(&d, &user.access, json!({"password": PASSWORD, "code": "000000"})).await;
        assert_problem(res, 401, "invalid-mfa").await;
    }
    let res =
        disable(&d, &user.access, json!({"password": PASSWORD, "code": code_at(&user.secret, 1)})).await;
    assert_problem(res, 429, "login-throttled").await;
    assert_eq!(me(&d, &user.access).await["mfa"]["totp"], true, "still on");
}

/// RFC 4648 base32 without padding, decoded.
fn base32_decode(text: &str) -> Vec<u8> {
    let (mut bits, mut acc, mut out) = (0u32, 0u64, Vec::new());
    for c in text.bytes() {
        let v = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".iter().position(|a| *a == c).unwrap() as u64;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[tokio::test]
async fn neither_the_secret_nor_a_recovery_code_is_in_the_database_or_its_wal() {
    let (d, smtp) = with_smtp("").await;
    let (user, _) = enrolled(&d, &smtp, "eve@example.test", 0).await;
    step_two(&d, &step_one(&d, "eve@example.test").await, json!({"code": code_at(&user.secret, 0)})).await;
    let raw = base32_decode(&user.secret);
    assert_eq!(raw.len(), 20);
    let mut bytes = std::fs::read(d.state_dir().join("latch.db")).unwrap();
    bytes.extend(std::fs::read(d.state_dir().join("latch.db-wal")).unwrap_or_default());
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(user.secret.as_bytes()), "base32 secret at rest");
    assert!(!contains(&raw), "raw secret at rest");
    for code in &user.recovery {
        assert!(!contains(code.as_bytes()) && !contains(code.replace('-', "").as_bytes()), "{code} at rest");
    }
}

#[tokio::test]
async fn wrong_codes_feed_the_login_throttle_and_a_reset_keeps_totp() {
    let defense = "[defense]\naccount_lock = { failures = 3, base_delay = \"1m\", max_delay = \"15m\", max_failures_per_hour = 100 }\n";
    let (d, smtp) = with_smtp(defense).await;
    let (user, seen) = enrolled(&d, &smtp, "fay@example.test", 0).await;
    let token = step_one(&d, "fay@example.test").await;
    for _ in 0..3 {
        assert_problem(step_two(&d, &token, json!({"code": "000000"})).await, 401, "invalid-mfa").await;
    }
    let res = step_two(&d, &token, json!({"code": code_at(&user.secret, 0)})).await;
    assert_problem(res, 429, "login-throttled").await;
    let res = d.post("/v1/auth/login", json!({"email": "fay@example.test", "password": PASSWORD})).await;
    assert_problem(res, 429, "login-throttled").await;

    // A reset clears the throttle and leaves TOTP on.
    assert_eq!(d.post("/v1/auth/password/forgot", json!({"email": "fay@example.test"})).await.status(), 202);
    let token = token_in(&smtp.wait_for(seen + 1).await[seen]);
    let new_password = "a brand new passphrase";
    let res = d.post("/v1/auth/password/reset", json!({"token": token, "new_password": new_password})).await;
    assert_eq!(res.status(), 200);
    let res = d.post("/v1/auth/login", json!({"email": "fay@example.test", "password": new_password})).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["mfa_required"], true, "{body}");
    let res =
        step_two(&d, body["mfa_token"].as_str().unwrap(), json!({"code": code_at(&user.secret, 1)})).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn an_admin_turns_off_a_lost_second_factor_signs_the_account_out_and_tells_the_person() {
    let (d, smtp) = with_smtp("").await;
    let (ada, _) = enrolled(&d, &smtp, "ada@example.test", 0).await;
    let root = ["users", "add", "root@example.test", "--role", "admin", "--password-stdin", "--verified"];
    assert!(ctl(&d, &root, PASSWORD).status.success());
    let admin = login(&d, "root@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    let id = me(&d, &ada.access).await["id"].as_str().unwrap().to_string();

    // Nobody but the person enrolls: an admin can only turn it off.
    let on = json!({"mfa": {"totp": true}});
    let res = d.client().patch(d.https_url(&format!("/v1/admin/users/{id}"))).bearer_auth(&admin).json(&on);
    let problem = assert_problem(res.send().await.unwrap(), 400, "invalid-request").await;
    assert_eq!(problem["errors"][0]["field"], "mfa.totp", "{problem}");
    assert_eq!(me(&d, &ada.access).await["mfa"], json!({"totp": true}), "a refused change changes nothing");

    let user = ok_json(ctl(&d, &["--json", "users", "reset-mfa", "ada@example.test"], ""));
    assert_eq!(user["mfa"], json!({"totp": false}), "{user}");
    assert_eq!(d.get_auth("/v1/auth/me", &ada.access).await.status(), 401, "a lost phone's session ends");
    let tokens = login(&d, "ada@example.test", PASSWORD).await;
    assert!(tokens["access_token"].is_string(), "the password alone signs in now: {tokens}");
    let db = d.db();
    for table in ["totp_credentials", "recovery_codes", "mfa_tokens"] {
        let left: i64 = db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap();
        assert_eq!(left, 0, "{table}");
    }
    let notices = mails_titled(&smtp, "Two-step verification was turned off", 1).await;
    assert!(notices[0].contains("To: ada@example.test"), "{}", notices[0]);

    // Again: nothing to turn off, so no session ends and nobody is mailed.
    let access = tokens["access_token"].as_str().unwrap();
    let out = ctl(&d, &["users", "reset-mfa", &id], "");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("two-step verification was not on; nothing changed"),
        "{said}"
    );
    assert_eq!(me(&d, access).await["mfa"], json!({"totp": false}));
    let details = audit_column(&d, "details", "action = 'user_updated'");
    let turned: Vec<Value> =
        details.iter().map(|t| serde_json::from_str::<Value>(t).unwrap()["mfa"].clone()).collect();
    assert_eq!(
        turned,
        [json!({"totp": false, "turned_off": true}), json!({"totp": false, "turned_off": false})]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        mails_titled(&smtp, "Two-step verification was turned off", 1).await.len(),
        1,
        "one notice only"
    );
}

/// The mails received so far with `subject`, once there are `at_least`.
async fn mails_titled(smtp: &crate::mail::SmtpSink, subject: &str, at_least: usize) -> Vec<String> {
    for _ in 0..150 {
        let titled: Vec<String> =
            smtp.wait_for(0).await.into_iter().filter(|m| subject_of(m) == subject).collect();
        if titled.len() >= at_least {
            return titled;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {at_least} mails titled {subject:?}");
}

/// An enrolment whose account is deleted while it runs (after its token
/// was checked, before its write) answers 401, not a 500 from the
/// foreign key the insert would break.
#[tokio::test]
async fn an_enrolment_for_an_account_deleted_meanwhile_is_refused_not_a_500() {
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write_config(dir.path(), &crate::harness::base_config(""));
    let d = Latchd::start_in_with_env(dir, &[("LATCH_TEST_PAUSE", "totp_enrol_write:800")]).await;
    let args = ["users", "add", "gone@example.test", "--password-stdin", "--verified"];
    assert!(crate::admin_api::ctl(&d, &args, PASSWORD).status.success());
    let access = login(&d, "gone@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    let enrol = d.post_auth("/v1/auth/mfa/totp", &access, json!({}));
    let delete = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        crate::admin_api::ctl(&d, &["users", "delete", "gone@example.test"], "")
    };
    let (res, deleted) = tokio::join!(enrol, delete);
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    assert_eq!(res.status(), 401, "{}", res.text().await.unwrap_or_default());
}
