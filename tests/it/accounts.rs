//! Accounts over the real binary with a real SMTP conversation: register,
//! verify, login, reset and change passwords, delete; no enumeration.

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::flows::{PASSWORD, login, metric, register_verified, with_smtp};
use crate::harness::{Latchd, assert_problem};
use crate::mail::{header_of, subject_of, text_of, token_in, wait_for_files};

/// Status, body (without `instance`) and headers (without per-request ones:
/// API.md's "identical" leaves out `instance`, `Date`, `X-Request-Id` and
/// `RateLimit-*`).
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
    if let Some(o) = body.as_object_mut() {
        o.remove("instance");
    }
    (status, headers, body)
}

#[tokio::test]
async fn register_verify_and_login_over_real_smtp() {
    let (d, smtp) = with_smtp("").await;
    let res = d
        .post(
            "/v1/auth/register",
            json!({"email": "Alice@Example.test", "password": PASSWORD, "name": "Alice"}),
        )
        .await;
    assert_eq!(res.status(), 202);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"status": "verification_sent"}));
    let mail = &smtp.wait_for(1).await[0];
    assert!(mail.starts_with("X-Envelope-To: alice@example.test"), "{mail}");
    assert_eq!(subject_of(mail), "Confirm your email address");
    let token = token_in(mail);
    assert_eq!(token.len(), 43, "256-bit token: {token}");

    // Before verification the right password still gets 403, not tokens.
    let res = d.post("/v1/auth/login", json!({"email": "alice@example.test", "password": PASSWORD})).await;
    assert_problem(res, 403, "email-not-verified").await;
    let res = d.post("/v1/auth/verify-email", json!({"token": token})).await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"status": "verified"}));
    let res = d.post("/v1/auth/verify-email", json!({"token": token})).await;
    assert_problem(res, 400, "invalid-token").await;

    let tokens = login(&d, "ALICE@example.test", PASSWORD).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["refresh_expires_in"], 604_800);
    assert_eq!(tokens["user"]["email"], "Alice@Example.test");
    let me: Value =
        d.get_auth("/v1/auth/me", tokens["access_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["name"], "Alice");
    assert_eq!(me["mfa"], json!({"totp": false}));

    // The outbox erased the body once sent; the token is stored hashed only.
    let db = d.db();
    let (status, body): (String, Option<Vec<u8>>) =
        db.query_row("SELECT status, body FROM outbox", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((status.as_str(), body), ("sent", None));
    let stored: i64 = db
        .query_row("SELECT COUNT(*) FROM one_time_tokens WHERE hash = ?1", [token.as_bytes()], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 0, "no token in clear");
    let actions: Vec<String> = db
        .prepare("SELECT action FROM audit_log ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(actions, ["register", "email_verified", "login"]);
    assert!(!d.log().contains(&token), "the token never reaches the log");
}

#[tokio::test]
async fn register_answers_identically_for_existing_addresses() {
    let (d, smtp) = with_smtp("").await;
    let seen = register_verified(&d, &smtp, "bob@example.test", 0).await;
    let existing = d
        .post("/v1/auth/register", json!({"email": "bob@example.test", "password": "another long password"}))
        .await;
    let fresh = d
        .post(
            "/v1/auth/register",
            json!({"email": "carol@example.test", "password": "another long password"}),
        )
        .await;
    let (existing, fresh) = (comparable(existing).await, comparable(fresh).await);
    assert_eq!(existing.0, 202, "{existing:?}\n{}", d.log());
    assert_eq!(existing, fresh);
    let mails = smtp.wait_for(seen + 2).await;
    let subjects: Vec<String> = mails[seen..].iter().map(|m| subject_of(m)).collect();
    assert!(subjects.contains(&"Someone tried to sign up with your address".to_string()), "{subjects:?}");
    assert!(subjects.contains(&"Confirm your email address".to_string()), "{subjects:?}");
    // Every message names itself (RFC 5322: relays and spam filters expect
    // it) and says a machine sent it (RFC 3834: no vacation replies).
    let ids: std::collections::HashSet<String> = mails.iter().map(|m| header_of(m, "Message-ID")).collect();
    assert_eq!(ids.len(), mails.len(), "one id per message: {ids:?}");
    assert!(ids.iter().all(|id| id.starts_with('<') && id.ends_with("@localhost>")), "{ids:?}");
    assert!(mails.iter().all(|m| header_of(m, "Auto-Submitted") == "auto-generated"), "{mails:?}");
    // Bob's password is unchanged by the second attempt.
    login(&d, "bob@example.test", PASSWORD).await;

    for path in ["/v1/auth/password/forgot", "/v1/auth/verify-email/resend"] {
        let known = d.post(path, json!({"email": "bob@example.test"})).await;
        let unknown = d.post(path, json!({"email": "nobody@example.test"})).await;
        let (k, u) = (comparable(known).await, comparable(unknown).await);
        assert_eq!(k, u, "{path}");
        assert_eq!(k.0, 202);
    }
}

#[tokio::test]
async fn login_failures_do_not_reveal_accounts() {
    let (d, smtp) = with_smtp("").await;
    register_verified(&d, &smtp, "dave@example.test", 0).await;
    let wrong =
        d.post("/v1/auth/login", json!({"email": "dave@example.test", "password": "not the password"})).await;
    let unknown =
        d.post("/v1/auth/login", json!({"email": "eve@example.test", "password": "not the password"})).await;
    let (w, u) = (comparable(wrong).await, comparable(unknown).await);
    assert_eq!(w, u);
    assert_eq!(w.0, 401);
    assert_eq!(w.2["type"], "urn:latch:problem:invalid-credentials");
    let metrics = d.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(r#"latch_auth_events_total{kind="login",result="failure"} 2"#), "{metrics}");
}

#[tokio::test]
async fn without_smtp_mail_goes_to_private_files() {
    let d = Latchd::start().await;
    assert!(d.log().contains("email is not configured"), "{}", d.log());
    let res = d.post("/v1/auth/register", json!({"email": "frank@example.test", "password": PASSWORD})).await;
    assert_eq!(res.status(), 202);
    let mail_dir = d.state_dir().join("mail");
    let mails = wait_for_files(mail_dir.clone(), 1, "eml").await;
    let token = token_in(&mails[0]);
    let file = std::fs::read_dir(&mail_dir).unwrap().flatten().next().unwrap().path();
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    // A person copies the link out of the file as it stands: it must be whole.
    let link = format!("https://localhost:8443/verify-email?token={token}\r\n");
    assert!(mails[0].contains(&link), "the link is on one line, not encoded:\n{}", mails[0]);
    // The log line follows the file's creation: the log names the file.
    let log = d.log_with(&file.display().to_string()).await;
    assert!(!log.contains(&token), "but never the token");
    assert_eq!(d.post("/v1/auth/verify-email", json!({"token": token})).await.status(), 200);
}

#[tokio::test]
async fn password_reset_revokes_sessions_and_token_is_single_use() {
    let (d, smtp) = with_smtp("").await;
    let seen = register_verified(&d, &smtp, "grace@example.test", 0).await;
    let old = login(&d, "grace@example.test", PASSWORD).await;
    assert_eq!(
        d.post("/v1/auth/password/forgot", json!({"email": "grace@example.test"})).await.status(),
        202
    );
    let mail = smtp.wait_for(seen + 1).await.pop().unwrap();
    assert_eq!(subject_of(&mail), "Reset your password");
    let token = token_in(&mail);
    let weak = d.post("/v1/auth/password/reset", json!({"token": token, "new_password": "short"})).await;
    let body = assert_problem(weak, 422, "weak-password").await;
    assert_eq!(body["errors"][0]["field"], "new_password");
    let res = d
        .post("/v1/auth/password/reset", json!({"token": token, "new_password": "a brand new passphrase"}))
        .await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"status": "password_reset"}));
    assert_password_changed_notice(&smtp.wait_for(seen + 2).await[seen + 1]);
    let again = d
        .post("/v1/auth/password/reset", json!({"token": token, "new_password": "yet another passphrase"}))
        .await;
    assert_problem(again, 400, "invalid-token").await;
    assert_problem(
        d.get_auth("/v1/auth/me", old["access_token"].as_str().unwrap()).await,
        401,
        "unauthorized",
    )
    .await;
    let res = d.post("/v1/auth/refresh", json!({"refresh_token": old["refresh_token"]})).await;
    assert_problem(res, 401, "invalid-token").await;
    login(&d, "grace@example.test", "a brand new passphrase").await;
}

/// `é` and `û` as one code point (most phones) or as a letter and a
/// combining accent (text from some Mac apps), `ﬁ` as a ligature or not.
const COMPOSED: &str = "cr\u{e8}me br\u{fb}l\u{e9}e finale";
const DECOMPOSED: &str = "cre\u{300}me bru\u{302}le\u{301}e \u{fb01}nale";

/// One password typed in another Unicode form signs in; an account whose
/// hash holds the text as typed (made before passwords were normalized)
/// signs in with that text and is hashed again in the normal form.
#[tokio::test]
async fn a_password_signs_in_whichever_unicode_form_it_is_typed_in() {
    let (d, smtp) = with_smtp("").await;
    let email = "ines@example.test";
    let res = d.post("/v1/auth/register", json!({"email": email, "password": DECOMPOSED})).await;
    assert_eq!(res.status(), 202);
    let token = token_in(&smtp.wait_for(1).await[0]);
    assert_eq!(d.post("/v1/auth/verify-email", json!({"token": token})).await.status(), 200);
    login(&d, email, COMPOSED).await;
    login(&d, email, DECOMPOSED).await;

    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
    let legacy = argon2::Argon2::default().hash_password(DECOMPOSED.as_bytes(), &salt).unwrap().to_string();
    let set = "UPDATE users SET password_hash = ?1 WHERE email_norm = ?2";
    let db = rusqlite::Connection::open(d.state_dir().join("latch.db")).unwrap();
    assert_eq!(db.execute(set, rusqlite::params![legacy, email]).unwrap(), 1);
    let stored = || -> String {
        let get = "SELECT password_hash FROM users WHERE email_norm = ?1";
        d.db().query_row(get, [email], |r| r.get(0)).unwrap()
    };
    let res = d.post("/v1/auth/login", json!({"email": email, "password": COMPOSED})).await;
    assert_problem(res, 401, "invalid-credentials").await;
    login(&d, email, DECOMPOSED).await;
    assert_ne!(stored(), legacy, "rehashed at sign-in");
    login(&d, email, COMPOSED).await;
}

/// An address at an internationalized domain works however it is typed:
/// kept, mailed to and found in its ASCII form. Before, it was refused.
#[tokio::test]
async fn an_address_at_an_internationalized_domain_registers_and_signs_in() {
    let (d, smtp) = with_smtp("").await;
    let res = d.post("/v1/auth/register", json!({"email": "Ana@Bücher.example", "password": PASSWORD})).await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap_or_default());
    let mail = &smtp.wait_for(1).await[0];
    assert_eq!(header_of(mail, "X-Envelope-To"), "ana@xn--bcher-kva.example");
    let res = d.post("/v1/auth/verify-email", json!({"token": token_in(mail)})).await;
    assert_eq!(res.status(), 200);

    // Decomposed ü and upper case, or the ASCII form: one account.
    let tokens = login(&d, "ana@BU\u{308}CHER.example", PASSWORD).await;
    let at = tokens["access_token"].as_str().unwrap();
    let me: Value = d.get_auth("/v1/auth/me", at).await.json().await.unwrap();
    assert_eq!(me["email"], "Ana@xn--bcher-kva.example");
    login(&d, "ana@xn--bcher-kva.example", PASSWORD).await;
    let res = d
        .post("/v1/auth/register", json!({"email": "ana@xn--bcher-kva.EXAMPLE", "password": PASSWORD}))
        .await;
    assert_eq!(res.status(), 202);
    let again = &smtp.wait_for(2).await[1];
    assert_eq!(subject_of(again), "Someone tried to sign up with your address", "{again}");
    let users: i64 = d.db().query_row("SELECT count(*) FROM users", [], |r| r.get(0)).unwrap();
    assert_eq!(users, 1);

    let shown =
        crate::admin_cli::latchctl_on(&d.state_dir(), &["--json", "users", "show", "ANA@bücher.example"]);
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&shown.stdout).unwrap()["id"], me["id"]);

    // Letters beyond ASCII before the @ need SMTPUTF8 all the way: refused, saying so.
    let res = d.post("/v1/auth/register", json!({"email": "josé@example.test", "password": PASSWORD})).await;
    let body = assert_problem(res, 400, "invalid-request").await;
    assert!(body["detail"].as_str().unwrap().contains("before the @"), "{body}");
}

#[tokio::test]
async fn change_password_keeps_this_session_and_delete_removes_the_account() {
    let (d, smtp) = with_smtp("").await;
    let seen = register_verified(&d, &smtp, "heidi@example.test", 0).await;
    let other = login(&d, "heidi@example.test", PASSWORD).await;
    let this = login(&d, "heidi@example.test", PASSWORD).await;
    let at = this["access_token"].as_str().unwrap();
    let bad = d
        .post_auth(
            "/v1/auth/password/change",
            at,
            json!({"current_password": "wrong one here", "new_password": "fresh passphrase 1"}),
        )
        .await;
    assert_problem(bad, 401, "invalid-credentials").await;
    let ok = d
        .post_auth(
            "/v1/auth/password/change",
            at,
            json!({"current_password": PASSWORD, "new_password": "fresh passphrase 1"}),
        )
        .await;
    assert_eq!(ok.json::<Value>().await.unwrap(), json!({"status": "password_changed"}));
    let mails = smtp.wait_for(seen + 1).await;
    assert_eq!(mails.len(), seen + 1, "one notice, none for the refused change");
    assert_password_changed_notice(&mails[seen]);
    assert_eq!(d.get_auth("/v1/auth/me", at).await.status(), 200, "this session stays");
    assert_eq!(d.get_auth("/v1/auth/me", other["access_token"].as_str().unwrap()).await.status(), 401);

    let delete = |password: &str| {
        d.client()
            .delete(d.https_url("/v1/auth/me"))
            .bearer_auth(at)
            .json(&json!({"password": password}))
            .send()
    };
    assert_problem(delete("not the password").await.unwrap(), 401, "invalid-credentials").await;
    assert_eq!(delete("fresh passphrase 1").await.unwrap().status(), 204);
    let deletes = r#"latch_auth_events_total{kind="account_delete",result="#;
    let counted = (
        metric(&d, &format!("{deletes}\"failure\"}}")).await,
        metric(&d, &format!("{deletes}\"success\"}}")).await,
    );
    assert_eq!(counted, (1.0, 1.0), "an operator sees deletions and refused tries");
    let res = d
        .post("/v1/auth/login", json!({"email": "heidi@example.test", "password": "fresh passphrase 1"}))
        .await;
    assert_problem(res, 401, "invalid-credentials").await;
    let db = d.db();
    let users: i64 = db.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0)).unwrap();
    let deleted: i64 = db
        .query_row("SELECT COUNT(*) FROM audit_log WHERE action = 'account_deleted'", [], |r| r.get(0))
        .unwrap();
    assert_eq!((users, deleted), (0, 1), "account gone, audit row kept");
}

#[tokio::test]
async fn bad_bodies_get_specific_problems() {
    let d = Latchd::start().await;
    let c = d.client();
    let url = d.https_url("/v1/auth/register");
    let res =
        c.post(&url).header("content-type", "application/json").body("{\"email\":").send().await.unwrap();
    let body = assert_problem(res, 400, "invalid-request").await;
    assert_eq!(body["errors"][0]["field"], "body");
    let res = d.post("/v1/auth/register", json!({"email": "x@example.test"})).await;
    let body = assert_problem(res, 400, "invalid-request").await;
    assert_eq!(body["errors"], json!([{"field": "password", "message": "is required"}]));
    // Every required field missing, not only the first.
    let body =
        assert_problem(d.post("/v1/auth/register", json!({"name": "Ann"})).await, 400, "invalid-request")
            .await;
    assert_eq!(body["detail"], "email: is required; password: is required", "{body}");
    // ... and a key that is no field, the likeliest reason one is missing.
    let misspelt =
        d.post("/v1/auth/register", json!({"emial": "x@example.test", "password": PASSWORD})).await;
    let body = assert_problem(misspelt, 400, "invalid-request").await;
    let why = "is not a field here (the fields are email, password, name)";
    assert_eq!(body["errors"][1], json!({"field": "emial", "message": why}), "{body}");
    let res = d.post("/v1/auth/register", json!({"email": "x@example.test", "password": 12})).await;
    assert_eq!(assert_problem(res, 400, "invalid-request").await["errors"][0]["field"], "password");
    // An array is no body, though serde would read it as the fields in order.
    let res = d.post("/v1/auth/register", json!(["x@example.test", PASSWORD, null])).await;
    let body = assert_problem(res, 400, "invalid-request").await;
    assert_eq!(body["errors"][0], json!({"field": "body", "message": "must be a JSON object"}));
    // Which of two addresses was meant is not guessed.
    let twice = format!(r#"{{"email":"x@example.test","email":"y@example.test","password":"{PASSWORD}"}}"#);
    let res = c.post(&url).header("content-type", "application/json").body(twice).send().await.unwrap();
    let body = assert_problem(res, 400, "invalid-request").await;
    assert_eq!(body["errors"][0], json!({"field": "email", "message": "is given twice"}));
    let users: i64 = d.db().query_row("SELECT count(*) FROM users", [], |r| r.get(0)).unwrap();
    assert_eq!(users, 0);
    // An address no message can be built for is refused as input, not
    // answered with a 500 when the confirmation mail is made.
    for email in ["no-at-sign", "a@[127.0.0.1]", "Bob <bob@example.test>"] {
        let res = d.post("/v1/auth/register", json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(
            assert_problem(res, 400, "invalid-request").await["errors"][0]["field"],
            "email",
            "{email}"
        );
    }
    let res = c.post(&url).body("email=x").send().await.unwrap();
    assert_problem(res, 415, "unsupported-media-type").await;
    let big = json!({"email": "x@example.test", "password": "p".repeat(70_000)});
    assert_problem(d.post("/v1/auth/register", big).await, 413, "payload-too-large").await;
    let long = json!({"email": "x@example.test", "password": "p".repeat(2000)});
    assert_eq!(
        assert_problem(d.post("/v1/auth/login", long).await, 400, "invalid-request").await["errors"][0]["field"],
        "password"
    );
    let res = d.post("/v1/auth/register", json!({"email": "x@example.test", "password": "too short"})).await;
    assert_problem(res, 422, "weak-password").await;
    // Every field at fault is told in one answer (422 is for a password
    // alone at fault), so a sign-up form is mended in one go.
    let all = json!({"email": "no-at-sign", "password": "too short", "name": "Eve\u{1b}[31m"});
    let body = assert_problem(d.post("/v1/auth/register", all).await, 400, "invalid-request").await;
    let fields: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["email", "password", "name"], "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with("email: not a valid address; password: must be at least 12"), "{detail}");
}

#[tokio::test]
async fn mail_files_are_removed_after_their_retention() {
    let d = Latchd::start_with(&crate::harness::base_config("\n[email]\nfile_retention = \"1s\"\n")).await;
    d.post("/v1/auth/register", json!({"email": "uma@example.test", "password": PASSWORD})).await;
    let mail_dir = d.state_dir().join("mail");
    wait_for_files(mail_dir.clone(), 1, "eml").await;
    // What a write cut short (disk full, crash) leaves behind goes too.
    std::fs::write(mail_dir.join(".0190-cut-short.eml.partial"), "half a message").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // The log line follows the removal; wait for both.
    while std::fs::read_dir(&mail_dir).unwrap().flatten().count() > 0
        || d.log().matches("mail file past its retention removed").count() < 2
    {
        assert!(std::time::Instant::now() < deadline, "mail files still there:\n{}", d.log());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The owner hears that the password changed, from where, and what to do
/// if it was not them.
fn assert_password_changed_notice(mail: &str) {
    assert_eq!(subject_of(mail), "Your password was changed");
    let text = text_of(mail);
    assert!(text.contains("address: 127.0.0.1") && text.contains("Forgot password"), "{text}");
}
