//! Hardening of the account life cycle: a login or password change that
//! started before a reset loses to it, reset links die with a reset or a
//! change, garbage reset tokens cost no hash, address-only work is bounded,
//! capped mail leaves no token, and mail goes to the address as stored.

use std::time::Duration;

use serde_json::{Value, json};

use crate::flows::{PASSWORD, login, metric, register_verified, with_smtp, with_smtp_env};
use crate::harness::{Latchd, assert_problem, base_config, write_config};
use crate::mail::{subject_of, token_in};

fn count(d: &Latchd, sql: &str) -> i64 {
    d.db().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Asks for a reset of `email` and returns the token of the mail it sends.
async fn reset_token(d: &Latchd, smtp: &crate::mail::SmtpSink, email: &str, seen: usize) -> (String, usize) {
    assert_eq!(d.post("/v1/auth/password/forgot", json!({"email": email})).await.status(), 202);
    let mail = smtp.wait_for(seen + 1).await.pop().unwrap();
    assert_eq!(subject_of(&mail), "Reset your password");
    (token_in(&mail), seen + 1)
}

#[tokio::test]
async fn a_login_or_change_in_flight_loses_to_a_password_reset() {
    let weak = "\n[passwords]\nargon2 = { memory_kib = 8192, iterations = 1, parallelism = 1 }\n";
    let pause = [("LATCH_TEST_PAUSE", "login_commit:2500,password_commit:2500")];
    let (d, smtp) = with_smtp_env(weak, &pause).await;
    let email = "race@example.test";
    let seen = register_verified(&d, &smtp, email, 0).await;
    // Stronger parameters: the old-password login will want to rehash.
    let smtp_cfg = smtp.config();
    write_config(d.dir.path(), &base_config(&smtp_cfg));
    d.signal(libc::SIGHUP);
    let first = login(&d, email, PASSWORD).await; // paused, then through
    let (c, url) = (d.client(), d.https_url("/v1/auth/login"));
    let in_flight = tokio::spawn(async move {
        c.post(url).json(&json!({"email": "race@example.test", "password": PASSWORD})).send().await.unwrap()
    });
    let (c, url, at) = (d.client(), d.https_url("/v1/auth/password/change"), first["access_token"].clone());
    let change = tokio::spawn(async move {
        let body = json!({"current_password": PASSWORD, "new_password": "what the attacker wants"});
        c.post(url).bearer_auth(at.as_str().unwrap()).json(&body).send().await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (token, _) = reset_token(&d, &smtp, email, seen).await;
    let res = d
        .post("/v1/auth/password/reset", json!({"token": token, "new_password": "the owner's new one"}))
        .await;
    assert_eq!(res.status(), 200, "the reset is not paused");

    assert_problem(in_flight.await.unwrap(), 401, "invalid-credentials").await;
    // The change checked the old password before the reset; its write finds
    // the password replaced and refuses.
    assert_problem(change.await.unwrap(), 401, "invalid-credentials").await;
    let hash: String = d.db().query_row("SELECT password_hash FROM users", [], |r| r.get(0)).unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "the reset's hash stays: {hash}");
    let res = d.post("/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
    assert_problem(res, 401, "invalid-credentials").await;
    login(&d, email, "the owner's new one").await;
    let live = count(&d, "SELECT count(*) FROM sessions WHERE revoked_at IS NULL");
    assert_eq!(live, 1, "only the login with the new password made a session");
}

#[tokio::test]
async fn a_reset_or_a_change_voids_every_other_reset_link() {
    // Four mails anyone can ask for to one address: past the default cap's.
    let (d, smtp) = with_smtp("\n[email]\nmax_per_recipient = 10\n").await;
    let email = "links@example.test";
    let seen = register_verified(&d, &smtp, email, 0).await;
    let (first, seen) = reset_token(&d, &smtp, email, seen).await;
    let (second, seen) = reset_token(&d, &smtp, email, seen).await;
    let res = d
        .post("/v1/auth/password/reset", json!({"token": second, "new_password": "the newest passphrase"}))
        .await;
    assert_eq!(res.status(), 200);
    let notice = smtp.wait_for(seen + 1).await.remove(seen);
    assert_eq!(subject_of(&notice), "Your password was changed");
    let seen = seen + 1;
    let res = d
        .post("/v1/auth/password/reset", json!({"token": first, "new_password": "an older link's try"}))
        .await;
    assert_problem(res, 400, "invalid-token").await;

    let (third, _) = reset_token(&d, &smtp, email, seen).await;
    let at = login(&d, email, "the newest passphrase").await["access_token"].as_str().unwrap().to_string();
    let body = json!({"current_password": "the newest passphrase", "new_password": "changed by the owner"});
    assert_eq!(d.post_auth("/v1/auth/password/change", &at, body).await.status(), 200);
    let res = d
        .post("/v1/auth/password/reset", json!({"token": third, "new_password": "a stale link's try"}))
        .await;
    assert_problem(res, 400, "invalid-token").await;
}

#[tokio::test]
async fn a_garbage_reset_token_costs_no_hash() {
    let (d, smtp) = with_smtp("").await;
    let seen = register_verified(&d, &smtp, "cheap@example.test", 0).await;
    let hashes = r#"latch_password_hashes_total{op="hash"}"#;
    // The registration's hash, and the dummy hash latchd makes in the
    // background at its start: on a busy machine that one can end later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metric(&d, hashes).await < 2.0 {
        assert!(std::time::Instant::now() < deadline, "the start's dummy hash never came");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let before = metric(&d, hashes).await;
    for _ in 0..5 {
        let res = d
            .post("/v1/auth/password/reset", json!({"token": "garbage", "new_password": "whatever it is"}))
            .await;
        assert_problem(res, 400, "invalid-token").await;
    }
    assert_eq!(metric(&d, hashes).await, before, "no hash for a token that does not exist");
    let (token, _) = reset_token(&d, &smtp, "cheap@example.test", seen).await;
    let res =
        d.post("/v1/auth/password/reset", json!({"token": token, "new_password": "a real new one"})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(metric(&d, hashes).await, before + 1.0, "one hash for a real one");
}

/// Mails anyone can ask for stop one short of the hourly cap; the last
/// slot is the notice that the account changed.
#[tokio::test]
async fn mail_dropped_by_the_cap_leaves_no_token_and_no_audit_row_and_spares_the_notice() {
    let (d, smtp) = with_smtp("\n[email]\nmax_per_recipient = 3\n").await;
    let email = "capped@example.test";
    let seen = register_verified(&d, &smtp, email, 0).await;
    reset_token(&d, &smtp, email, seen).await;
    assert_eq!(d.post("/v1/auth/password/forgot", json!({"email": email})).await.status(), 202);
    let dropped = r#"latch_emails_total{result="dropped"}"#;
    for _ in 0..100 {
        if metric(&d, dropped).await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&d, dropped).await, 1.0, "a third mail anyone can ask for is dropped");
    assert_eq!(count(&d, "SELECT count(*) FROM one_time_tokens WHERE purpose = 'password_reset'"), 1);
    assert_eq!(count(&d, "SELECT count(*) FROM audit_log WHERE action = 'password_reset_requested'"), 1);
    let access = login(&d, email, PASSWORD).await["access_token"].as_str().unwrap().to_string();
    let change = json!({"current_password": PASSWORD, "new_password": "changed by someone else"});
    assert_eq!(d.post_auth("/v1/auth/password/change", &access, change).await.status(), 200);
    let mails = smtp.wait_for(seen + 2).await;
    assert_eq!(subject_of(&mails[seen + 1]), "Your password was changed", "the notice still goes");
}

#[tokio::test]
async fn address_only_work_waits_in_a_bounded_queue() {
    let d = Latchd::start_in_with_env(
        {
            let dir = tempfile::tempdir().unwrap();
            write_config(dir.path(), &base_config(""));
            dir
        },
        &[("LATCH_TEST_PAUSE", "account_email:1000")],
    )
    .await;
    let burst = latch::accounts::MAIL_QUEUE_DEPTH + 200;
    let (c, url) = (d.client(), d.https_url("/v1/auth/password/forgot"));
    let mut answers = Vec::new();
    let numbers: Vec<usize> = (0..burst).collect();
    for chunk in numbers.chunks(64) {
        let calls: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let (c, url) = (c.clone(), url.clone());
                tokio::spawn(async move {
                    let res = c
                        .post(url)
                        .json(&json!({"email": format!("flood{i}@example.test")}))
                        .send()
                        .await
                        .unwrap();
                    (res.status().as_u16(), res.json::<Value>().await.unwrap())
                })
            })
            .collect();
        for call in calls {
            answers.push(call.await.unwrap());
        }
    }
    assert!(answers.iter().all(|a| *a == (202, json!({"status": "accepted"}))), "every answer as usual");
    let dropped = metric(&d, r#"latch_background_dropped_total{queue="account_email"}"#).await;
    assert!(dropped >= 150.0, "a full queue drops the surplus and counts it: {dropped}");
}

/// An account deleted between the reset request's lookup and its write
/// gets no link: no token row, no mail, no failure in the log (the
/// token's foreign key once failed the write).
#[tokio::test]
async fn a_reset_asked_for_an_account_deleted_meanwhile_leaves_nothing() {
    let (d, smtp) = with_smtp_env("", &[("LATCH_TEST_PAUSE", "account_email_write:800")]).await;
    let seen = register_verified(&d, &smtp, "lee@example.test", 0).await;
    assert_eq!(d.post("/v1/auth/password/forgot", json!({"email": "lee@example.test"})).await.status(), 202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deleted = crate::admin_api::ctl(&d, &["users", "delete", "lee@example.test"], "");
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    // Past the pause: the write has run (or would have) by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!d.log().contains("queued account email failed"), "{}", d.log());
    assert_eq!(count(&d, "SELECT count(*) FROM one_time_tokens"), 0);
    assert_eq!(smtp.wait_for(0).await.len(), seen, "no reset mail");
}

/// A sign-in on the page whose account is deleted before its browser
/// session is written goes back to the sign-in form, not to a 500.
#[tokio::test]
async fn a_page_sign_in_for_an_account_deleted_meanwhile_goes_back_to_the_form() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &base_config(""));
    let d = Latchd::start_in_with_env(dir, &[("LATCH_TEST_PAUSE", "browser_start:800")]).await;
    let args = ["users", "add", "max@example.test", "--password-stdin", "--verified"];
    assert!(crate::admin_api::ctl(&d, &args, PASSWORD).status.success());
    let (cookie, csrf) = crate::pages::csrf_of(d.get("/account/login").await).await;
    let form = [("csrf", csrf.as_str()), ("email", "max@example.test"), ("password", PASSWORD)];
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    let tls = crate::harness::client_tls(&d.cert_path(), &[&rustls::version::TLS13]);
    let browser = browser.use_preconfigured_tls((*tls).clone()).build().unwrap();
    let sign_in = browser.post(d.https_url("/account/login")).header("cookie", cookie).form(&form).send();
    // Once the password was checked and the sign-in waits before its
    // browser session is written (a fixed delay was too short for a hash
    // on a loaded machine).
    let delete = async {
        d.log_with("test pause at browser_start").await;
        crate::admin_api::ctl(&d, &["users", "delete", "max@example.test"], "")
    };
    let (res, deleted) = tokio::join!(sign_in, delete);
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    let res = res.unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap_or_default());
    assert_eq!(res.headers()["location"], "/account/login");
    let cookies: Vec<_> = res.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(!cookies.iter().any(|c| c.starts_with("__Host-latch=")), "no browser session: {cookies:?}");
    assert!(!d.log().contains("ERROR"), "{}", d.log());
}

#[tokio::test]
async fn reset_mail_goes_to_the_stored_address_and_non_ascii_before_the_at_is_refused() {
    let (d, smtp) = with_smtp("").await;
    let seen = register_verified(&d, &smtp, "kate@example.test", 0).await;
    assert_eq!(
        d.post("/v1/auth/password/forgot", json!({"email": "  KATE@Example.TEST "})).await.status(),
        202
    );
    let mail = smtp.wait_for(seen + 1).await.pop().unwrap();
    assert!(mail.starts_with("X-Envelope-To: kate@example.test"), "{mail}");
    assert!(mail.contains("To: kate@example.test"), "addressed as stored: {mail}");
    // KELVIN SIGN lower-cases to "k" in Unicode: not the same address. (In
    // a domain UTS #46 maps it to "k", and mail goes to that domain too.)
    for path in ["/v1/auth/password/forgot", "/v1/auth/verify-email/resend"] {
        let res = d.post(path, json!({"email": "\u{212A}ate@example.test"})).await;
        let body = assert_problem(res, 400, "invalid-request").await;
        assert_eq!(body["errors"][0]["field"], "email");
    }
    let res =
        d.post("/v1/auth/register", json!({"email": "\u{212A}ate@example.test", "password": PASSWORD})).await;
    assert_problem(res, 400, "invalid-request").await;
    let res =
        d.post("/v1/auth/login", json!({"email": "\u{212A}ate@example.test", "password": PASSWORD})).await;
    assert_problem(res, 401, "invalid-credentials").await;
}

/// One-time tokens are spent once: 20 parallel resets with one link and 20
/// parallel confirmations with one verification link → exactly one
/// success each; the others get the invalid-token answer.
#[tokio::test]
async fn twenty_parallel_uses_of_one_time_tokens_succeed_exactly_once() {
    let weak = "\n[passwords]\nargon2 = { memory_kib = 1024, iterations = 1, parallelism = 1 }\n";
    let (d, smtp) = with_smtp(weak).await;
    let email = "once@example.test";
    let res = d.post("/v1/auth/register", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(res.status(), 202);
    let verify = token_in(&smtp.wait_for(1).await[0]);
    let (reset, _) = reset_token(&d, &smtp, email, 1).await;
    let d = std::sync::Arc::new(d);
    for (path, body) in [
        ("/v1/auth/verify-email", json!({"token": verify})),
        ("/v1/auth/password/reset", json!({"token": reset, "new_password": "one reset wins the race"})),
    ] {
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let (d, body) = (std::sync::Arc::clone(&d), body.clone());
                tokio::spawn(async move { d.post(path, body).await.status().as_u16() })
            })
            .collect();
        let mut statuses = Vec::new();
        for call in calls {
            statuses.push(call.await.unwrap());
        }
        let won = statuses.iter().filter(|s| **s == 200).count();
        assert_eq!(won, 1, "{path}: {statuses:?}");
        assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{path}: {statuses:?}");
    }
}

/// The same password change sent twice — at once (a double click on the
/// account page) and again just after (an app retrying after a timeout) —
/// answers as the first did: one change, one notice. A different new
/// password, or another session, is still refused.
#[tokio::test]
async fn the_same_password_change_sent_twice_answers_as_the_first() {
    let (d, smtp) = with_smtp("").await;
    let email = "twice@example.test";
    let seen = register_verified(&d, &smtp, email, 0).await;
    let other = login(&d, email, PASSWORD).await["access_token"].as_str().unwrap().to_string();
    let at = login(&d, email, PASSWORD).await["access_token"].as_str().unwrap().to_string();
    let body = json!({"current_password": PASSWORD, "new_password": "changed just once"});
    let send = |body: Value, at: &String| {
        let at = at.clone();
        let d = &d;
        async move { d.post_auth("/v1/auth/password/change", &at, body).await }
    };
    let (first, second) = tokio::join!(send(body.clone(), &at), send(body.clone(), &at));
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    assert_eq!(send(body.clone(), &at).await.status(), 200, "a retry just after");
    let other_change = json!({"current_password": PASSWORD, "new_password": "something else again"});
    assert_problem(send(other_change, &at).await, 401, "invalid-credentials").await;
    assert_eq!(d.get_auth("/v1/auth/me", &other).await.status(), 401, "the other session ended");
    let events = "SELECT count(*) FROM audit_log WHERE action = 'password_changed'";
    assert_eq!(count(&d, events), 1, "one change");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let notices = smtp.wait_for(seen + 1).await;
    assert_eq!(notices.iter().filter(|m| subject_of(m) == "Your password was changed").count(), 1);
    let later = login(&d, email, "changed just once").await["access_token"].as_str().unwrap().to_string();
    assert_problem(send(body, &later).await, 401, "invalid-credentials").await;
}
