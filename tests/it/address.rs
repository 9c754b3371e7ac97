//! A person changes their own address: the account moves only when the
//! link mailed to the new address is opened; the old address is told at
//! once; a password change voids the pending change; an address another
//! account holds gets the same answer as a free one.

use serde_json::{Value, json};

use crate::flows::{PASSWORD, login, metric, register_verified, with_smtp, with_smtp_env};
use crate::harness::{Latchd, assert_problem};
use crate::mail::{SmtpSink, header_of, subject_of, text_of, token_in};

const CHANGE: &str = "/v1/auth/email/change";

/// The mails `seen..seen + n` by recipient (their order is not fixed).
async fn mails_to(smtp: &SmtpSink, seen: usize, n: usize) -> Vec<(String, String)> {
    let mails = smtp.wait_for(seen + n).await;
    mails[seen..].iter().map(|m| (header_of(m, "X-Envelope-To"), m.clone())).collect()
}

fn mail_for<'a>(mails: &'a [(String, String)], to: &str) -> &'a str {
    &mails.iter().find(|(rcpt, _)| rcpt == to).unwrap_or_else(|| panic!("no mail to {to}: {mails:?}")).1
}

async fn email_of(d: &Latchd, access: &str) -> Value {
    let me: Value = d.get_auth("/v1/auth/me", access).await.json().await.unwrap();
    json!([me["email"], me["email_verified"]])
}

#[tokio::test]
async fn a_new_address_takes_effect_only_when_its_link_is_opened() {
    let (d, smtp) = with_smtp("").await;
    let seen = register_verified(&d, &smtp, "ada@example.test", 0).await;
    let tokens = login(&d, "ada@example.test", PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap();
    let ask = |password: &str, new_email: &str| {
        d.post_auth(CHANGE, access, json!({"password": password, "new_email": new_email}))
    };
    assert_problem(ask("not the password", "ada@new.example").await, 401, "invalid-credentials").await;
    let same = assert_problem(ask(PASSWORD, " ADA@example.test").await, 400, "invalid-request").await;
    assert_eq!(same["errors"][0]["field"], "new_email", "{same}");
    let bad = assert_problem(ask(PASSWORD, "ada at new").await, 400, "invalid-request").await;
    assert_eq!(bad["errors"][0]["field"], "new_email", "{bad}");
    let beyond = assert_problem(ask(PASSWORD, "adà@new.example").await, 400, "invalid-request").await;
    assert!(beyond["errors"][0]["message"].as_str().unwrap().contains("before the @"), "{beyond}");

    let res = ask(PASSWORD, "ada@new.example").await;
    assert_eq!(res.status(), 202);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"status": "verification_sent"}));
    let mails = mails_to(&smtp, seen, 2).await;
    let link = mail_for(&mails, "ada@new.example");
    assert_eq!(subject_of(link), "Confirm your new email address");
    let notice = mail_for(&mails, "ada@example.test");
    assert!(text_of(notice).contains("to ada@new.example") && !notice.contains("token="), "{notice}");
    assert_eq!(email_of(&d, access).await, json!(["ada@example.test", true]), "not moved before the link");
    // Support sees where the link went.
    let shown =
        String::from_utf8(crate::admin_api::ctl(&d, &["users", "show", "ada@example.test"], "").stdout);
    let moving = shown.unwrap().lines().find(|l| l.starts_with("moving to")).map(str::to_string);
    assert!(
        moving.as_ref().is_some_and(|l| l.contains("ada@new.example, once its link is opened")),
        "{moving:?}"
    );

    let token = token_in(link);
    let res = d.post("/v1/auth/verify-email", json!({"token": token})).await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"status": "verified"}));
    assert_eq!(email_of(&d, access).await, json!(["ada@new.example", true]), "the same token sees it");
    let old = d.post("/v1/auth/login", json!({"email": "ada@example.test", "password": PASSWORD})).await;
    assert_problem(old, 401, "invalid-credentials").await;
    login(&d, "ada@new.example", PASSWORD).await;
    let shown = crate::admin_api::ctl(&d, &["--json", "users", "show", "ada@new.example"], "");
    let user: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(user["email_change"], Value::Null, "nothing pending once it is done: {user}");
    assert_problem(d.post("/v1/auth/verify-email", json!({"token": token})).await, 400, "invalid-token")
        .await;
    let asked = r#"latch_auth_events_total{kind="email_change",result="#;
    let failures = metric(&d, &format!("{asked}\"failure\"}}")).await;
    assert_eq!((failures, metric(&d, &format!("{asked}\"success\"}}")).await), (1.0, 1.0));
    let details: String = d
        .db()
        .query_row("SELECT details FROM audit_log WHERE action = 'email_changed'", [], |r| r.get(0))
        .unwrap();
    let details: Value = serde_json::from_str(&details).unwrap();
    assert_eq!(details, json!({"from": "ada@example.test", "to": "ada@new.example"}));
}

#[tokio::test]
async fn a_taken_address_is_not_told_and_a_password_change_voids_the_link() {
    let (d, smtp) = with_smtp("").await;
    let seen = register_verified(&d, &smtp, "bob@example.test", 0).await;
    let seen = register_verified(&d, &smtp, "cy@example.test", seen).await;
    let tokens = login(&d, "bob@example.test", PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap();
    let ask =
        |new_email: &str| d.post_auth(CHANGE, access, json!({"password": PASSWORD, "new_email": new_email}));

    // Taken: the same answer; its holder is told, and no link exists.
    let res = ask("cy@example.test").await;
    assert_eq!(res.status(), 202);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"status": "verification_sent"}));
    let mails = mails_to(&smtp, seen, 2).await;
    let held = mail_for(&mails, "cy@example.test");
    assert!(text_of(held).contains("already has one") && !held.contains("token="), "{held}");
    // The account page shows a change waiting, as for a free address; its
    // link was mailed nowhere.
    let browser = crate::pages::signed_in(&d, "bob@example.test").await;
    let page = browser.get(&d, "/account").await.text().await.unwrap();
    assert!(page.contains("A link was sent to cy@example.test.</strong>"), "{page}");
    // Support is told that no link went there (the person asking is not).
    let shown = crate::admin_api::ctl(&d, &["users", "show", "bob@example.test"], "").stdout;
    let shown = String::from_utf8(shown).unwrap();
    let moving = shown.lines().find(|l| l.starts_with("moving to")).unwrap_or_default();
    assert!(moving.contains("they asked for cy@example.test, which another account holds"), "{shown}");
    assert!(moving.contains("no link was sent") && !moving.contains("once its link"), "{moving}");

    // A password change ends a pending change: its link no longer works.
    assert_eq!(ask("bob@new.example").await.status(), 202);
    let token = token_in(mail_for(&mails_to(&smtp, seen + 2, 2).await, "bob@new.example"));
    let change = json!({"current_password": PASSWORD, "new_password": "another long passphrase"});
    assert_eq!(d.post_auth("/v1/auth/password/change", access, change).await.status(), 200);
    assert_problem(d.post("/v1/auth/verify-email", json!({"token": token})).await, 400, "invalid-token")
        .await;
    assert_eq!(email_of(&d, access).await, json!(["bob@example.test", true]));

    // Taken after the link was sent: 409, and the account stays put.
    let res = d.post_auth(
        CHANGE,
        access,
        json!({"password": "another long passphrase", "new_email": "bob@new.example"}),
    );
    assert_eq!(res.await.status(), 202);
    let token = token_in(mail_for(&mails_to(&smtp, seen + 5, 2).await, "bob@new.example"));
    let res = d.post("/v1/auth/register", json!({"email": "bob@new.example", "password": PASSWORD})).await;
    assert_eq!(res.status(), 202);
    let res = d.post("/v1/auth/verify-email", json!({"token": token})).await;
    let taken = assert_problem(res, 409, "conflict").await;
    assert!(taken["detail"].as_str().unwrap().contains("Another account has taken"), "{taken}");
    assert_eq!(email_of(&d, access).await, json!(["bob@example.test", true]));
}

/// A request whose password was checked, and then changed or its account
/// deleted before the change is written, keeps nothing: 401, not the 500
/// a deleted account's foreign key once gave.
#[tokio::test]
async fn a_change_checked_before_a_password_change_or_deletion_keeps_nothing() {
    let (d, smtp) = with_smtp_env("", &[("LATCH_TEST_PAUSE", "email_change_write:2000")]).await;
    let seen = register_verified(&d, &smtp, "dee@example.test", 0).await;
    let access = login(&d, "dee@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    let ask = d.post_auth(CHANGE, &access, json!({"password": PASSWORD, "new_email": "dee@new.example"}));
    let meanwhile = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let change = json!({"current_password": PASSWORD, "new_password": "another long passphrase"});
        d.post_auth("/v1/auth/password/change", &access, change).await.status()
    };
    let (res, changed) = tokio::join!(ask, meanwhile);
    assert_eq!(changed, 200);
    assert_problem(res, 401, "invalid-credentials").await;
    let pending = "SELECT count(*) FROM email_changes";
    assert_eq!(d.db().query_row(pending, [], |r| r.get::<_, i64>(0)).unwrap(), 0);

    let body = json!({"password": "another long passphrase", "new_email": "dee@new.example"});
    let ask = d.post_auth(CHANGE, &access, body);
    let delete = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        crate::admin_api::ctl(&d, &["users", "delete", "dee@example.test"], "")
    };
    let (res, deleted) = tokio::join!(ask, delete);
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    assert_problem(res, 401, "invalid-credentials").await;
    assert!(!d.log().contains("ERROR"), "{}", d.log());
    // Neither request mailed anything: the password change's notice is
    // the one message since the registration.
    smtp.wait_for(seen + 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let mails = smtp.wait_for(0).await;
    let sent: Vec<_> = mails[seen..].iter().map(|m| (header_of(m, "X-Envelope-To"), subject_of(m))).collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
}

/// An administrator who disables an account (taken over, say) stops the
/// change of address asked for from it: its link moves nothing, then or
/// once the account is enabled again; and a change asked for just as the
/// account is disabled is not kept.
#[tokio::test]
async fn disabling_an_account_voids_its_pending_address_change() {
    let (d, smtp) = with_smtp_env("", &[("LATCH_TEST_PAUSE", "email_change_write:1500")]).await;
    let seen = register_verified(&d, &smtp, "eve@example.test", 0).await;
    let ctl = |args: &[&str]| {
        let out = crate::admin_api::ctl(&d, args, "");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let access = login(&d, "eve@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    let body = json!({"password": PASSWORD, "new_email": "eve@elsewhere.example"});
    assert_eq!(d.post_auth(CHANGE, &access, body).await.status(), 202);
    let token = token_in(mail_for(&mails_to(&smtp, seen, 2).await, "eve@elsewhere.example"));
    ctl(&["users", "disable", "eve@example.test"]);
    let confirm = || d.post("/v1/auth/verify-email", json!({"token": token}));
    assert_problem(confirm().await, 400, "invalid-token").await;
    ctl(&["users", "enable", "eve@example.test"]);
    assert_problem(confirm().await, 400, "invalid-token").await;
    let email: String = d.db().query_row("SELECT email FROM users", [], |r| r.get(0)).unwrap();
    assert_eq!(email, "eve@example.test");

    // Checked before the account is disabled, written after.
    let access = login(&d, "eve@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    let ask = d.post_auth(CHANGE, &access, json!({"password": PASSWORD, "new_email": "eve@later.example"}));
    let disable = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        ctl(&["users", "disable", "eve@example.test"]);
    };
    let (res, ()) = tokio::join!(ask, disable);
    assert_problem(res, 401, "invalid-credentials").await;
    let live = "SELECT count(*) FROM email_changes WHERE used_at IS NULL";
    assert_eq!(d.db().query_row(live, [], |r| r.get::<_, i64>(0)).unwrap(), 0);
}

/// On the account page: the form mails the link (the page says where it
/// waits), the link's page makes the move and says so (pressed twice:
/// "already confirmed"), and the page shows the new address.
#[tokio::test]
async fn the_account_page_moves_the_account_through_the_mailed_link() {
    let (d, smtp) = with_smtp("").await;
    let seen = register_verified(&d, &smtp, "eve@example.test", 0).await;
    let browser = crate::pages::signed_in(&d, "eve@example.test").await;
    let form = |password| [("new_email", "eve@new.example"), ("password", password)];
    let wrong = browser.post(&d, "/account/email", &form("not the password")).await;
    assert_eq!(wrong.status(), 401);
    let said = browser.post(&d, "/account/email", &form(PASSWORD)).await.text().await.unwrap();
    assert!(
        said.contains("We sent a link to eve@new.example") && said.contains("eve@example.test"),
        "{said}"
    );

    let account = || async { browser.get(&d, "/account").await.text().await.unwrap() };
    let waiting = account().await;
    assert!(waiting.contains("A link was sent to eve@new.example.</strong>"), "{waiting}");
    let token = token_in(mail_for(&mails_to(&smtp, seen, 2).await, "eve@new.example"));
    let page = d.get(&format!("/verify-email?token={token}")).await.text().await.unwrap();
    assert!(page.contains("name=\"token\""), "the Confirm button: {page}");
    let said = browser.post(&d, "/verify-email", &[("token", &token)]).await.text().await.unwrap();
    assert!(said.contains("Your account uses this address now"), "{said}");
    let again = browser.post(&d, "/verify-email", &[("token", &token)]).await.text().await.unwrap();
    assert!(
        again.contains("already confirmed") && !again.contains("does not work"),
        "pressed twice: {again}"
    );
    let moved = account().await;
    assert!(moved.contains("<p>eve@new.example — address confirmed"), "{moved}");
    assert!(!moved.contains("A link was sent"), "{moved}");
}
