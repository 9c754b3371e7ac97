//! What an operator (or a script of theirs) hands latchctl reaches latchd
//! as what it is: an id with a space or a line break in it names no
//! account, and never ends the request line early to smuggle a second
//! request onto the admin socket (that once deleted another account); one
//! too long for latchd to read is told as such; a blank one is refused
//! before anything is sent; an account, a key, a block, a change or a
//! page of accounts refused for several fields names them all (latchctl
//! by the names its options have: `--page-size`, not `page_size`); and a
//! query parameter an admin call does not take is refused, not ignored.

use serde_json::{Value, json};

use crate::admin_api::{send, with_admin};
use crate::admin_cli::latchctl_on;
use crate::harness::{Latchd, assert_problem, fields_of};

fn id_of(d: &Latchd, email: &str) -> String {
    let out = latchctl_on(&d.state_dir(), &["--json", "users", "add", email]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let user: Value = serde_json::from_slice(&out.stdout).unwrap();
    user["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_id_cannot_smuggle_a_second_request_onto_the_admin_socket() {
    let d = Latchd::start().await;
    let (typed, victim) = (id_of(&d, "typed@example.test"), id_of(&d, "victim@example.test"));
    let smuggled = format!("{typed} HTTP/1.1\r\nHost: x\r\n\r\nDELETE /v1/admin/users/{victim}");
    for args in
        [&["users", "show", &smuggled][..], &["users", "disable", &smuggled], &["users", "delete", &smuggled]]
    {
        let out = latchctl_on(&d.state_dir(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Told in one line, the typed id's line breaks written out.
        let told =
            format!("latchctl: no user with id {}", smuggled.replace('\r', "\\u{d}").replace('\n', "\\u{a}"));
        assert_eq!((out.status.code(), stderr.trim()), (Some(1), told.as_str()), "{:?}", args[1]);
    }
    for id in [&typed, &victim] {
        let out = latchctl_on(&d.state_dir(), &["--json", "users", "show", id]);
        let user: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(user["status"], "active", "untouched: {user}");
    }
    let out = latchctl_on(&d.state_dir(), &["blocked-ips", "remove", "x HTTP/1.1\r\n\r\nGET /"]);
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "latchctl: no block with that id");

    // More of a head than actix-http reads at all: a bare 400, no problem JSON.
    let long = "a".repeat(70_000);
    let out = latchctl_on(&d.state_dir(), &["users", "show", &long]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = "latchctl: latchd refused the request as malformed (400; an argument far too long?)";
    assert_eq!((out.status.code(), stderr.trim()), (Some(1), said));
}

#[tokio::test]
async fn a_blank_id_is_refused_as_such_before_anything_is_sent() {
    let d = Latchd::start().await;
    let kept = id_of(&d, "kept@example.test");
    // Sent as typed, these reached a listing route and said "No such resource.".
    let blank: [&[&str]; 7] = [
        &["users", "show", ""],
        &["users", "delete", " "],
        &["users", "set-email", &kept, ""],
        &["sessions", "list", "--user", ""],
        &["api-keys", "revoke", ""],
        &["blocked-ips", "remove", ""],
        &["keys", "revoke", ""],
    ];
    for args in blank {
        let out = latchctl_on(&d.state_dir(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.trim().ends_with("must not be empty"), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    let out = latchctl_on(&d.state_dir(), &["--json", "users", "show", &kept]);
    let user: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["email"], "kept@example.test", "untouched: {user}");
}

/// An account refused for more than one field says all of them at once.
#[tokio::test]
async fn users_add_names_every_field_at_fault() {
    let d = Latchd::start().await;
    let out = latchctl_on(&d.state_dir(), &["users", "add", "no-at-sign", "--name", "Eve\u{1b}[31m"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("email: not a valid address; --name: must not contain control characters"),
        "{stderr}"
    );
    // Every missing role is named, not only the first, and with the
    // other fields at fault; nothing is made.
    let roles = ["--role", "auditr", "--role", "admin", "--role", "ops"];
    let out = latchctl_on(&d.state_dir(), &[&["users", "add", "ida@example.test"][..], &roles].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim(), "latchctl: --role: no roles named \"auditr\", \"ops\"");
    let out = latchctl_on(&d.state_dir(), &["users", "add", "ida@", "--role", "auditr"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim(), "latchctl: email: not a valid address; --role: no role named \"auditr\"");
    let listed = latchctl_on(&d.state_dir(), &["users", "list"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("ida@"), "{listed:?}");
}

/// A key, a block, a change to an account or a page of accounts asked for
/// with several things wrong says all of them at once, in the order the
/// fields are read, and changes nothing.
#[tokio::test]
async fn every_field_at_fault_is_named_at_once() {
    let (d, admin) = with_admin().await;
    let key = ["api-keys", "create", "--name", "ci\u{1b}[2J", "--scope", "Read Users"];
    let out = latchctl_on(&d.state_dir(), &[&key[..], &["--expires-at", "2001-01-01T00:00:00Z"]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for part in [
        "--name: must not contain control characters",
        "; --scope: one or more of",
        "; --expires-at: is in the past",
    ] {
        assert!(stderr.contains(part), "{part} in {stderr}");
    }
    // A name is measured in characters: 100 Cyrillic letters (200 bytes)
    // make a key, 129 are refused by name.
    for (letters, made) in [(100, true), (129, false)] {
        let name = "ж".repeat(letters);
        let out =
            latchctl_on(&d.state_dir(), &["api-keys", "create", "--name", &name, "--scope", "introspect"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), made, "{letters}: {stderr}");
        assert_eq!(stderr.contains("--name: longer than 128 characters"), !made, "{stderr}");
    }
    let role = latchctl_on(&d.state_dir(), &["roles", "add", "ops", "--description", &"d".repeat(129)]);
    let stderr = String::from_utf8_lossy(&role.stderr);
    assert!(stderr.contains("--description: longer than 128 characters"), "{stderr}");
    let block = ["blocked-ips", "add", "203.0.113.0/33", "--for", "soon", "--reason", "x\u{1b}[2J"];
    let out = latchctl_on(&d.state_dir(), &block);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for part in ["cidr: ", "; --for: expected a duration like", "; --reason: must not contain control"] {
        assert!(out.status.code() == Some(1) && stderr.contains(part), "{part} in {stderr}");
    }
    let id = id_of(&d, "kept@example.test");
    let change = json!({"status": "gone", "roles": ["auditr"], "email": "no-at-sign", "name": "Eve\u{1b}[31m",
        "mfa": {"totp": true}});
    let said = send(&d, "PATCH", &format!("/v1/admin/users/{id}"), &admin, Some(change)).await;
    let said = assert_problem(said, 400, "invalid-request").await;
    let fields = fields_of(&said);
    assert_eq!(fields, ["status", "roles", "email", "name", "mfa.totp"], "{said}");
    // A new account's password and roles are told with its address.
    let create = json!({"email": "no-at-sign", "password": "short", "roles": ["auditr"]});
    let said = send(&d, "POST", "/v1/admin/users", &admin, Some(create)).await;
    let said = assert_problem(said, 400, "invalid-request").await;
    let fields = fields_of(&said);
    assert_eq!(fields, ["email", "password", "roles"], "{said}");
    let user: Value = d.get_auth(&format!("/v1/admin/users/{id}"), &admin).await.json().await.unwrap();
    assert_eq!((&user["status"], &user["email"]), (&json!("active"), &json!("kept@example.test")), "{user}");
    let page = d.get_auth("/v1/admin/users?page=0&page_size=501&status=gone", &admin).await;
    let said = assert_problem(page, 400, "invalid-request").await;
    let fields = fields_of(&said);
    assert_eq!(fields, ["page", "page_size", "status"], "{said}");
    assert_eq!(
        said["detail"],
        "page: must be 1 or more; page_size: must be between 1 and 500; status: must be active or disabled"
    );
    // latchctl tells them by the names typed.
    let list = ["users", "list", "--page", "0", "--page-size", "501", "--status", "gone"];
    let out = latchctl_on(&d.state_dir(), &list);
    let told = "latchctl: --page: must be 1 or more; --page-size: must be between 1 and 500; \
                --status: must be active or disabled";
    assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stderr).trim()), (Some(1), told));
}

/// `DELETE /v1/admin/users/{id}?dry_run=1` deleted the account: an admin
/// call that takes no parameters ignored any, so a script's option that
/// does not exist read as honoured. Now it is refused and names it, once
/// the caller is known to be an admin; public routes still ignore theirs.
#[tokio::test]
async fn an_admin_call_refuses_a_parameter_it_does_not_take() {
    let (d, admin) = with_admin().await;
    let bob = id_of(&d, "bob@example.test");
    let res = send(&d, "DELETE", &format!("/v1/admin/users/{bob}?dry_run=1"), &admin, None).await;
    let said = assert_problem(res, 400, "invalid-request").await;
    let told = (said["errors"][0]["field"].as_str(), said["errors"][0]["message"].as_str());
    assert_eq!(told, (Some("dry_run"), Some("is not a parameter here (this call takes no parameters)")));
    assert_eq!(send(&d, "GET", &format!("/v1/admin/users/{bob}"), &admin, None).await.status(), 200);
    // Every feature's admin calls, whatever the method.
    for (method, path) in [("GET", "/v1/admin/roles?all"), ("GET", "/v1/admin/blocked-ips?page=2")]
        .into_iter()
        .chain([("GET", "/v1/admin/backups?x=1"), ("POST", "/v1/admin/signing-keys?force=true")])
    {
        let res = send(&d, method, path, &admin, None).await;
        assert_problem(res, 400, "invalid-request").await;
    }
    assert_eq!(send(&d, "GET", "/v1/admin/roles?", &admin, None).await.status(), 200, "no parameter in it");
    assert_problem(d.get("/v1/admin/roles?all").await, 401, "unauthorized").await;
    assert_eq!(d.get("/.well-known/jwks.json?v=2").await.status(), 200);
    assert_eq!(send(&d, "DELETE", &format!("/v1/admin/users/{bob}"), &admin, None).await.status(), 204);
}
