//! The admin API and its latchctl words against the real binaries: the
//! first admin on a fresh install, users, roles, sessions and the outbox.
//! The caller is an admin user over HTTPS or a peer on the admin socket.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::admin_cli::LATCHCTL;
use crate::flows::{PASSWORD, login, register_verified, with_smtp};
use crate::harness::{Latchd, assert_problem, base_config, write_config};
use crate::mail::{subject_of, text_of, token_in};

/// `latchctl --state-dir … ARGS` with `stdin`.
pub fn ctl(d: &Latchd, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(LATCHCTL)
        .arg("--state-dir")
        .arg(d.state_dir())
        .args(args)
        .env_remove("LATCH_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

pub fn ok_json(out: Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A fresh daemon with its first admin, logged in: (daemon, admin token).
pub async fn with_admin() -> (Latchd, String) {
    admin_daemon("", &[]).await
}

/// As `with_admin`, with `extra` config sections and environment for latchd.
pub async fn admin_daemon(extra: &str, env: &[(&str, &str)]) -> (Latchd, String) {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &base_config(&format!("\n[accounts]\nregistration = \"closed\"\n{extra}")));
    let d = Latchd::start_in_with_env(dir, env).await;
    let args = ["users", "add", "root@example.test", "--role", "admin", "--password-stdin", "--verified"];
    let out = ctl(&d, &args, PASSWORD);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = login(&d, "root@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    (d, token)
}

pub async fn send(
    d: &Latchd,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = d.client().request(method.parse().unwrap(), d.https_url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

pub async fn create_user(d: &Latchd, admin: &str, email: &str, roles: &[&str]) -> Value {
    let body = json!({"email": email, "password": PASSWORD, "roles": roles, "email_verified": true});
    let res = send(d, "POST", "/v1/admin/users", admin, Some(body)).await;
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_first_admin_is_made_with_latchctl_and_uses_the_api_over_https() {
    let (d, admin) = with_admin().await;
    let res = send(&d, "GET", "/v1/admin/users", &admin, None).await;
    assert_eq!(res.status(), 200);
    let list: Value = res.json().await.unwrap();
    assert_eq!(list["total"], 1);
    let root = &list["items"][0];
    assert_eq!(
        (root["email"].as_str(), root["status"].as_str()),
        (Some("root@example.test"), Some("active"))
    );
    assert_eq!(root["roles"], json!(["admin"]));
    assert_eq!(root["email_verified"], true);
    assert_eq!(root["mfa"], json!({"totp": false}));
    // Registration is closed; admins create users; others may not admin.
    let res = d.post("/v1/auth/register", json!({"email": "x@example.test", "password": PASSWORD})).await;
    assert_problem(res, 403, "registration-closed").await;
    create_user(&d, &admin, "plain@example.test", &[]).await;
    let plain = login(&d, "plain@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    assert_problem(send(&d, "GET", "/v1/admin/users", &plain, None).await, 403, "forbidden").await;
    assert_problem(d.get("/v1/admin/users").await, 401, "unauthorized").await;
    let dup = send(
        &d,
        "POST",
        "/v1/admin/users",
        &admin,
        Some(json!({"email": "PLAIN@example.test", "password": PASSWORD})),
    )
    .await;
    assert_problem(dup, 409, "conflict").await;
}

#[tokio::test]
async fn roles_are_managed_assigned_and_appear_in_the_next_token() {
    let (d, admin) = with_admin().await;
    let res =
        send(&d, "POST", "/v1/admin/roles", &admin, Some(json!({"name": "ops", "description": "on call"})))
            .await;
    assert_eq!(res.status(), 201);
    assert_problem(
        send(&d, "POST", "/v1/admin/roles", &admin, Some(json!({"name": "ops"}))).await,
        409,
        "conflict",
    )
    .await;
    // Texts latchctl prints in its tables carry no terminal escape sequence.
    let escape = "\u{1b}]0;owned\u{7}on call";
    let role = json!({"name": "dev", "description": escape});
    let said =
        assert_problem(send(&d, "POST", "/v1/admin/roles", &admin, Some(role)).await, 400, "invalid-request");
    assert_eq!(said.await["errors"][0]["field"], "description");
    let key = json!({"name": escape, "scopes": ["introspect"]});
    let said = assert_problem(
        send(&d, "POST", "/v1/admin/api-keys", &admin, Some(key)).await,
        400,
        "invalid-request",
    );
    assert_eq!(said.await["errors"][0]["field"], "name");
    let bob = create_user(&d, &admin, "bob@example.test", &[]).await;
    let id = bob["id"].as_str().unwrap();
    let res =
        send(&d, "PATCH", &format!("/v1/admin/users/{id}"), &admin, Some(json!({"roles": ["ops"]}))).await;
    assert_eq!(res.json::<Value>().await.unwrap()["roles"], json!(["ops"]));
    let tokens = login(&d, "bob@example.test", PASSWORD).await;
    assert_eq!(tokens["user"]["roles"], json!(["ops"]));
    let bad =
        send(&d, "PATCH", &format!("/v1/admin/users/{id}"), &admin, Some(json!({"roles": ["nope"]}))).await;
    assert_eq!(assert_problem(bad, 400, "invalid-request").await["errors"][0]["field"], "roles");
    // A misspelt key is named, not silently ignored next to one that is
    // right: nothing of the body applies.
    let typo = json!({"status": "disabled", "role": ["admin"]});
    let bad = send(&d, "PATCH", &format!("/v1/admin/users/{id}"), &admin, Some(typo)).await;
    let problem = assert_problem(bad, 400, "invalid-request").await;
    assert_eq!(problem["errors"][0]["field"], "role", "{problem}");
    let typo = json!({"email": "eve@example.test", "password": PASSWORD, "email_verifed": true});
    let bad = send(&d, "POST", "/v1/admin/users", &admin, Some(typo)).await;
    assert_eq!(assert_problem(bad, 400, "invalid-request").await["errors"][0]["field"], "email_verifed");
    let bob: Value =
        send(&d, "GET", &format!("/v1/admin/users/{id}"), &admin, None).await.json().await.unwrap();
    assert_eq!((bob["status"].clone(), bob["roles"].clone()), (json!("active"), json!(["ops"])));
    let eve: Value = send(&d, "GET", "/v1/admin/users?query=eve", &admin, None).await.json().await.unwrap();
    assert_eq!(eve["total"], 0, "no account made from a refused body");
    assert_problem(send(&d, "DELETE", "/v1/admin/roles/admin", &admin, None).await, 409, "conflict").await;
    // The last active admin cannot lose the role, be disabled or deleted.
    let roots: Value =
        send(&d, "GET", "/v1/admin/users?query=root", &admin, None).await.json().await.unwrap();
    let root = roots["items"][0]["id"].as_str().unwrap().to_string();
    for body in [json!({"roles": []}), json!({"status": "disabled"})] {
        let res = send(&d, "PATCH", &format!("/v1/admin/users/{root}"), &admin, Some(body)).await;
        assert_problem(res, 409, "conflict").await;
    }
    assert_problem(
        send(&d, "DELETE", &format!("/v1/admin/users/{root}"), &admin, None).await,
        409,
        "conflict",
    )
    .await;
    let still: Value =
        send(&d, "GET", &format!("/v1/admin/users/{root}"), &admin, None).await.json().await.unwrap();
    assert_eq!(
        (still["roles"].clone(), still["status"].clone()),
        (json!(["admin"]), json!("active")),
        "nothing half-applied"
    );
    assert_eq!(send(&d, "DELETE", "/v1/admin/roles/ops", &admin, None).await.status(), 204);
    assert_problem(send(&d, "DELETE", "/v1/admin/roles/ops", &admin, None).await, 404, "not-found").await;
}

#[tokio::test]
async fn users_are_searched_filtered_paged_and_disabled_at_once() {
    let (d, admin) = with_admin().await;
    for name in ["ann", "anton", "bea", "carl", "cara"] {
        create_user(&d, &admin, &format!("{name}@example.test"), &[]).await;
    }
    let page: Value = send(&d, "GET", "/v1/admin/users?query=an&page=1&page_size=1", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((page["total"].as_i64(), page["items"].as_array().unwrap().len()), (Some(2), 1), "{page}");
    let page2: Value =
        send(&d, "GET", "/v1/admin/users?page=2&page_size=4", &admin, None).await.json().await.unwrap();
    assert_eq!((page2["total"].as_i64(), page2["items"].as_array().unwrap().len()), (Some(6), 2), "{page2}");
    let too_big = send(&d, "GET", "/v1/admin/users?page_size=501", &admin, None).await;
    assert_problem(too_big, 400, "invalid-request").await;
    // A parameter of the wrong kind is named, as a body's field is.
    let not_a_number = send(&d, "GET", "/v1/admin/users?page=two", &admin, None).await;
    let said = assert_problem(not_a_number, 400, "invalid-request").await;
    assert_eq!(said["errors"][0], json!({"field": "page", "message": "must be a whole number"}), "{said}");

    let carl = login(&d, "carl@example.test", PASSWORD).await;
    let carl_id = carl["user"]["id"].as_str().unwrap();
    let at = carl["access_token"].as_str().unwrap();
    assert_eq!(d.get_auth("/v1/auth/me", at).await.status(), 200);
    let res =
        send(&d, "PATCH", &format!("/v1/admin/users/{carl_id}"), &admin, Some(json!({"status": "disabled"})))
            .await;
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "disabled");
    assert_problem(d.get_auth("/v1/auth/me", at).await, 401, "unauthorized").await;
    let res = d.post("/v1/auth/refresh", json!({"refresh_token": carl["refresh_token"]})).await;
    assert_problem(res, 401, "invalid-token").await;
    let res = d.post("/v1/auth/login", json!({"email": "carl@example.test", "password": PASSWORD})).await;
    assert_problem(res, 403, "account-disabled").await;
    let disabled: Value =
        send(&d, "GET", "/v1/admin/users?status=disabled", &admin, None).await.json().await.unwrap();
    assert_eq!(disabled["total"], 1);
    assert_eq!(send(&d, "DELETE", &format!("/v1/admin/users/{carl_id}"), &admin, None).await.status(), 204);
    assert_problem(
        send(&d, "GET", &format!("/v1/admin/users/{carl_id}"), &admin, None).await,
        404,
        "not-found",
    )
    .await;
}

#[tokio::test]
async fn admins_list_and_revoke_sessions_and_see_the_outbox() {
    let (d, admin) = with_admin().await;
    create_user(&d, &admin, "dora@example.test", &[]).await;
    let dora = login(&d, "dora@example.test", PASSWORD).await;
    let uid = dora["user"]["id"].as_str().unwrap();
    let list: Value = send(&d, "GET", &format!("/v1/admin/sessions?user_id={uid}"), &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["email"], "dora@example.test", "{list}");
    // A filter left empty (a form's blank field) filters nothing.
    let all: Value = send(&d, "GET", "/v1/admin/sessions?user_id=", &admin, None).await.json().await.unwrap();
    assert_eq!(all["total"], 2, "root's and dora's: {all}");
    let sid = list["items"][0]["id"].as_str().unwrap();
    assert_eq!(send(&d, "DELETE", &format!("/v1/admin/sessions/{sid}"), &admin, None).await.status(), 204);
    assert_eq!(d.get_auth("/v1/auth/me", dora["access_token"].as_str().unwrap()).await.status(), 401);
    assert_problem(
        send(&d, "DELETE", &format!("/v1/admin/sessions/{sid}"), &admin, None).await,
        404,
        "not-found",
    )
    .await;
    // An invitation (no password) is a queued or sent mail; never a body.
    let res =
        send(&d, "POST", "/v1/admin/users", &admin, Some(json!({"email": "invited@example.test"}))).await;
    assert_eq!(res.status(), 201);
    let queued: Value =
        send(&d, "GET", "/v1/admin/outbox?status=queued", &admin, None).await.json().await.unwrap();
    let dead: Value =
        send(&d, "GET", "/v1/admin/outbox?status=dead", &admin, None).await.json().await.unwrap();
    assert!(
        queued["items"]
            .as_array()
            .unwrap()
            .iter()
            .chain(dead["items"].as_array().unwrap())
            .all(|m| m.get("body").is_none())
    );
    assert_problem(
        send(&d, "GET", "/v1/admin/outbox?status=sent", &admin, None).await,
        400,
        "invalid-request",
    )
    .await;
}

#[tokio::test]
async fn latchctl_speaks_tables_json_and_one_line_errors() {
    let (d, _admin) = with_admin().await;
    let out = ctl(
        &d,
        &["users", "add", "eve@example.test", "--password-stdin", "--verified"],
        "a fine long passphrase",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&ctl(&d, &["users", "list"], "").stdout).into_owned();
    assert!(table.contains("eve@example.test") && table.contains("(2 of 2 users, page 1)"), "{table}");
    let head: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(head, ["ID", "EMAIL", "NAME", "STATUS", "VERIFIED", "ROLES"], "{table}");
    let none =
        String::from_utf8_lossy(&ctl(&d, &["users", "list", "--query", "nobody"], "").stdout).into_owned();
    assert_eq!(none.trim(), "no users match");
    let past = String::from_utf8_lossy(&ctl(&d, &["users", "list", "--page", "3"], "").stdout).into_owned();
    assert!(past.contains("no users") && past.contains("(0 of 2 users, page 3)"), "{past}");
    // An empty list says so rather than printing a blank line.
    let keys = String::from_utf8_lossy(&ctl(&d, &["api-keys", "list"], "").stdout).into_owned();
    assert_eq!(keys.trim(), "no API keys");
    let sessions = String::from_utf8_lossy(&ctl(&d, &["sessions", "list"], "").stdout).into_owned();
    assert!(
        sessions.starts_with("SESSION ")
            && sessions.lines().count() == 2
            && sessions.contains("root@example.test"),
        "root's one session, named by address: {sessions}"
    );
    let shown = ok_json(ctl(&d, &["--json", "users", "show", "EVE@example.test"], ""));
    assert_eq!(shown["email"], "eve@example.test");
    let human =
        String::from_utf8_lossy(&ctl(&d, &["users", "show", "eve@example.test"], "").stdout).into_owned();
    for line in ["verified     yes", "two-step     off", "last sign-in never"] {
        assert!(human.lines().any(|l| l == line), "{line:?} in:\n{human}");
    }
    assert_eq!(
        ok_json(ctl(&d, &["--json", "users", "disable", "eve@example.test"], ""))["status"],
        "disabled"
    );
    assert_eq!(ok_json(ctl(&d, &["--json", "users", "enable", "eve@example.test"], ""))["status"], "active");
    assert!(ctl(&d, &["roles", "add", "auditor"], "").status.success());
    let roles = String::from_utf8_lossy(&ctl(&d, &["roles", "list"], "").stdout).into_owned();
    assert!(roles.contains("auditor") && roles.contains("admin"), "{roles}");
    // Roles are given and taken one at a time, twice is harmless.
    for _ in 0..2 {
        let eve = ok_json(ctl(&d, &["--json", "users", "add-role", "eve@example.test", "auditor"], ""));
        assert_eq!(eve["roles"], serde_json::json!(["auditor"]));
    }
    let out = ctl(&d, &["users", "add-role", "eve@example.test", "auditr"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no role named \"auditr\""), "{out:?}");
    let eve = ok_json(ctl(&d, &["--json", "users", "remove-role", "eve@example.test", "auditor"], ""));
    assert_eq!(eve["roles"], serde_json::json!([]));
    let out = ctl(&d, &["users", "show", "nobody@example.test"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim(), "latchctl: no user with email nobody@example.test");
    let out = ctl(&d, &["users", "add", "weak@example.test", "--password-stdin"], "short");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("password"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ctl(&d, &["users", "delete", "eve@example.test"], "").status.success());
    let sessions = ok_json(ctl(&d, &["--json", "sessions", "list"], ""));
    assert!(sessions["items"].as_array().is_some());
}

/// The mail to `to` titled `subject` among `mails`.
fn mail_to<'a>(mails: &'a [String], to: &str, subject: &str) -> &'a str {
    let found = mails.iter().find(|m| m.contains(&format!("To: {to}")) && subject_of(m) == subject);
    found.unwrap_or_else(|| panic!("no mail {subject:?} to {to} in {mails:#?}"))
}

#[tokio::test]
async fn an_admin_moves_an_account_to_another_address_which_must_be_confirmed() {
    let (d, smtp) = with_smtp("").await;
    let seen = register_verified(&d, &smtp, "bob@example.test", 0).await;
    let root = ["users", "add", "root@example.test", "--role", "admin", "--password-stdin", "--verified"];
    assert!(ctl(&d, &root, PASSWORD).status.success());
    let admin = login(&d, "root@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    let bob = login(&d, "bob@example.test", PASSWORD).await;
    let (bob_access, id) = (bob["access_token"].as_str().unwrap(), bob["user"]["id"].as_str().unwrap());
    assert_eq!(d.post("/v1/auth/password/forgot", json!({"email": "bob@example.test"})).await.status(), 202);
    let reset_link = token_in(&smtp.wait_for(seen + 1).await[seen]);

    let path = format!("/v1/admin/users/{id}");
    let taken = send(&d, "PATCH", &path, &admin, Some(json!({"email": "ROOT@example.test"}))).await;
    assert_problem(taken, 409, "conflict").await;
    let bad = send(&d, "PATCH", &path, &admin, Some(json!({"email": "not an address"}))).await;
    assert_eq!(assert_problem(bad, 400, "invalid-request").await["errors"][0]["field"], "email");
    let moved =
        ok_json(ctl(&d, &["--json", "users", "set-email", "bob@example.test", "robert@example.test"], ""));
    assert_eq!(
        (moved["email"].clone(), moved["email_verified"].clone()),
        (json!("robert@example.test"), json!(false))
    );

    let mails = smtp.wait_for(seen + 3).await;
    let notice = text_of(mail_to(&mails, "bob@example.test", "Your account has a new email address"));
    assert!(notice.contains("robert@example.test"), "the old address learns the new one: {notice}");
    let confirm = token_in(mail_to(&mails, "robert@example.test", "Confirm your new email address"));
    let reset = json!({"token": reset_link, "new_password": "taken over by mail"});
    assert_problem(d.post("/v1/auth/password/reset", reset).await, 400, "invalid-token").await;
    let old = d.post("/v1/auth/login", json!({"email": "bob@example.test", "password": PASSWORD})).await;
    assert_problem(old, 401, "invalid-credentials").await;
    let new = d.post("/v1/auth/login", json!({"email": "robert@example.test", "password": PASSWORD})).await;
    assert_problem(new, 403, "email-not-verified").await;
    assert_eq!(d.post("/v1/auth/verify-email", json!({"token": confirm})).await.status(), 200);
    login(&d, "robert@example.test", PASSWORD).await;
    let me: Value = d.get_auth("/v1/auth/me", bob_access).await.json().await.unwrap();
    assert_eq!(me["email"], "robert@example.test", "the session carries on under the new address");
    let details: String = d
        .db()
        .query_row("SELECT details FROM audit_log WHERE action = 'user_updated'", [], |r| r.get(0))
        .unwrap();
    let details: Value = serde_json::from_str(&details).unwrap();
    assert_eq!(details["email"], json!({"from": "bob@example.test", "to": "robert@example.test"}));
}

/// Status and HTML of a page, as a browser GETs it.
async fn page_at(d: &Latchd, path: &str) -> (u16, String) {
    let res = d.get(path).await;
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

#[tokio::test]
async fn an_invited_person_has_a_day_to_choose_a_first_password_and_no_alarm_after() {
    let (d, smtp) = with_smtp("").await;
    let root = ["users", "add", "root@example.test", "--role", "admin", "--password-stdin", "--verified"];
    assert!(ctl(&d, &root, PASSWORD).status.success());
    let admin = login(&d, "root@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    let res = send(&d, "POST", "/v1/admin/users", &admin, Some(json!({"email": "ivy@example.test"}))).await;
    assert_eq!(res.status(), 201);
    let invitation = smtp.wait_for(1).await.remove(0);
    let lifetime: i64 =
        d.db().query_row("SELECT expires_at - created_at FROM one_time_tokens", [], |r| r.get(0)).unwrap();
    assert_eq!(lifetime, 24 * 3600, "the link lives a day, not a reset link's 30 minutes");
    let first = json!({"token": token_in(&invitation), "new_password": "ivy's own passphrase"});
    assert_eq!(subject_of(&invitation), "Choose a password for your new account", "{invitation}");
    assert!(text_of(&invitation).contains("within 24 hours"), "{invitation}");
    assert!(text_of(&invitation).contains("with \"Forgot password\""), "a late reader is not stuck");
    // The page behind the link asks for a first password, not a new one.
    let page = format!("/reset-password?token={}", token_in(&invitation));
    let (status, html) = page_at(&d, &page).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Choose a password for your account") && !html.contains("signed out"), "{html}");
    assert_eq!(d.post("/v1/auth/password/reset", first).await.status(), 200);
    // Spent, the link says what it did, before anyone types a password.
    let (status, html) = page_at(&d, &page).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("It already set the password for your account") && !html.contains("new_password"),
        "{html}"
    );
    login(&d, "ivy@example.test", "ivy's own passphrase").await;

    // A real reset afterwards: its link comes next (no "password changed"
    // notice was queued before it), and its own notice follows it.
    assert_eq!(d.post("/v1/auth/password/forgot", json!({"email": "ivy@example.test"})).await.status(), 202);
    let mails = smtp.wait_for(2).await;
    assert_eq!(subject_of(&mails[1]), "Reset your password", "{mails:#?}");
    let (_, html) = page_at(&d, &format!("/reset-password?token={}", token_in(&mails[1]))).await;
    assert!(html.contains("Choose a new password") && html.contains("signed out"), "{html}");
    let again = json!({"token": token_in(&mails[1]), "new_password": "ivy's second passphrase"});
    assert_eq!(d.post("/v1/auth/password/reset", again).await.status(), 200);
    assert_eq!(subject_of(&smtp.wait_for(3).await[2]), "Your password was changed");

    // latchctl says what it did: the admin learns the person was mailed.
    let out = ctl(&d, &["users", "add", "jo@example.test"], "");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("invitation to choose a password for jo@example.test: queued for SMTP"), "{said}");
    let invitation = smtp.wait_for(4).await.remove(3);
    assert_eq!(subject_of(&invitation), "Choose a password for your new account");
}

/// An invitation the hourly cap holds back is said to be held back: the
/// admin must not be told a mail is on its way when none is.
#[tokio::test]
async fn latchctl_says_when_the_hourly_cap_held_an_invitation_back() {
    let (d, smtp) = with_smtp("\n[email]\nmax_per_recipient = 1\n").await;
    let out = ctl(&d, &["users", "add", "jo@example.test"], "");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("invitation to choose a password for jo@example.test:")
    );
    smtp.wait_for(1).await;
    let out = ctl(&d, &["users", "delete", "jo@example.test"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = ctl(&d, &["--json", "users", "add", "jo@example.test"], "");
    assert_eq!(ok_json(out)["invitation"], "not_sent");
    let out = ctl(&d, &["users", "delete", "jo@example.test"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = ctl(&d, &["users", "add", "jo@example.test"], "");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("invitation NOT sent: jo@example.test"), "{said}");
    assert!(!said.contains("queued"), "{said}");
}

/// Only removing the last active admin is refused: an install with no
/// admin account, run through the admin socket alone, still disables,
/// changes and deletes its accounts.
#[tokio::test]
async fn an_install_without_an_admin_account_is_run_through_latchctl_alone() {
    let d = Latchd::start().await;
    let add = ["users", "add", "bob@example.test", "--password-stdin", "--verified"];
    assert!(ctl(&d, &add, PASSWORD).status.success());
    for args in [
        &["users", "disable", "bob@example.test"][..],
        &["users", "enable", "bob@example.test"],
        &["users", "set-email", "bob@example.test", "robert@example.test"],
        &["users", "delete", "robert@example.test"],
    ] {
        let out = ctl(&d, args, "");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The session and outbox lists show the newest 1,000; when there are
/// more, they say how many, instead of passing 1,000 off as all of them.
#[tokio::test]
async fn lists_cut_at_a_thousand_say_how_many_there_are() {
    let (d, _admin) = with_admin().await;
    let uid = ok_json(ctl(&d, &["--json", "users", "show", "root@example.test"], ""))["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Sessions of a script that signs in every minute for a day, written
    // straight into the database (1,200 logins would take minutes).
    let db = rusqlite::Connection::open(d.state_dir().join("latch.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1200)
         INSERT INTO sessions (id, user_id, amr, created_at, last_seen_at, expires_at)
         SELECT 'bulk-' || i, ?1, 'pwd', unixepoch() - i * 60, unixepoch() - i * 60, unixepoch() + 86400 FROM n",
        [&uid],
    )
    .unwrap();
    let list = ok_json(ctl(&d, &["--json", "sessions", "list"], ""));
    assert_eq!((list["items"].as_array().unwrap().len(), list["total"].as_u64()), (1000, Some(1201)));
    let out = ctl(&d, &["sessions", "list", "root@example.test"], "");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.trim_end().ends_with("(the newest 1000 of 1201 live sessions)"),
        "{}",
        said.lines().last().unwrap_or("")
    );
    let out = ctl(&d, &["sessions", "list", "--user", "no-such-id"], "");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.trim_end() == "latchctl: no user with id no-such-id", "{said}");
    // A day of mail to an address whose server refuses it, given up on.
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1001)
         INSERT INTO outbox (id, recipient, kind, status, attempts, next_attempt_at, last_error, created_at)
         SELECT 'dead-' || i, 'gone@example.test', 'password_reset', 'dead', 8, 0, '550 no such user',
                unixepoch() - i * 60 FROM n",
        [],
    )
    .unwrap();
    let list = ok_json(ctl(&d, &["--json", "outbox", "list", "--status", "dead"], ""));
    assert_eq!((list["items"].as_array().unwrap().len(), list["total"].as_u64()), (1000, Some(1001)));
    let out = ctl(&d, &["outbox", "list", "--status", "dead"], "");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.trim_end().ends_with("(the newest 1000 of 1001 dead messages)"), "{said:.300}");
}

/// An admin changes a person's display name (beyond API.md): `null`
/// removes it, a PATCH without `name` leaves it alone, and the person's
/// next call sees the change.
#[tokio::test]
async fn an_admin_renames_a_person_and_other_changes_leave_the_name_alone() {
    let (d, admin) = with_admin().await;
    let user = create_user(&d, &admin, "kim@example.test", &[]).await;
    let path = format!("/v1/admin/users/{}", user["id"].as_str().unwrap());
    let access = login(&d, "kim@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    let renamed = send(&d, "PATCH", &path, &admin, Some(json!({"name": "  Kim Park "}))).await;
    assert_eq!(renamed.json::<Value>().await.unwrap()["name"], "Kim Park");
    let me: Value = d.get_auth("/v1/auth/me", &access).await.json().await.unwrap();
    assert_eq!(me["name"], "Kim Park", "the person's next call sees it");
    let other = send(&d, "PATCH", &path, &admin, Some(json!({"email_verified": true}))).await;
    assert_eq!(other.json::<Value>().await.unwrap()["name"], "Kim Park", "no name: unchanged");
    let bad = send(&d, "PATCH", &path, &admin, Some(json!({"name": "Kim\u{1b}[2J"}))).await;
    assert_eq!(assert_problem(bad, 400, "invalid-request").await["errors"][0]["field"], "name");

    let out = ctl(&d, &["users", "set-name", "kim@example.test"], "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("name: none"), "{out:?}");
    let shown = ok_json(ctl(&d, &["--json", "users", "show", "kim@example.test"], ""));
    assert_eq!(shown["name"], Value::Null, "without NAME the name is removed: {shown}");
    let details: Vec<String> = d
        .db()
        .prepare("SELECT details FROM audit_log WHERE action = 'user_updated' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let named: Vec<Value> =
        details.iter().map(|d| serde_json::from_str::<Value>(d).unwrap()["name"].clone()).collect();
    assert_eq!(named, [json!("changed"), Value::Null, json!("changed")], "the audit says when, not what");
}

/// The last active admin cannot delete their own account (as no admin may
/// delete it): apps using its token would lose their admin. Once another
/// account is an admin, it can.
#[tokio::test]
async fn the_last_admin_cannot_delete_their_own_account() {
    let (d, admin) = with_admin().await;
    let delete = || {
        let req = d.client().delete(d.https_url("/v1/auth/me")).bearer_auth(&admin);
        req.json(&json!({"password": PASSWORD})).send()
    };
    let refused = assert_problem(delete().await.unwrap(), 409, "conflict").await;
    assert!(refused["detail"].as_str().unwrap().contains("last active admin"), "{refused}");
    // The right password was given: the dashboard's failures stay for wrong ones.
    let failed = r#"latch_auth_events_total{kind="account_delete",result="failure"}"#;
    assert_eq!(crate::flows::metric(&d, failed).await, 0.0);
    login(&d, "root@example.test", PASSWORD).await;
    create_user(&d, &admin, "second@example.test", &["admin"]).await;
    assert_eq!(delete().await.unwrap().status(), 204);
    let gone = d.post("/v1/auth/login", json!({"email": "root@example.test", "password": PASSWORD})).await;
    assert_problem(gone, 401, "invalid-credentials").await;
}
