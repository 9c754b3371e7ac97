//! What apps use: API keys (shown once, stored hashed, scoped, expiring,
//! revocable, their use recorded without a write per request) and
//! introspection of access tokens, refresh tokens and keys.

use std::time::Duration;

use serde_json::{Value, json};

use crate::admin_api::{ctl, ok_json, with_admin};
use crate::flows::{PASSWORD, login};
use crate::harness::{Latchd, assert_problem};

pub fn make_key(d: &Latchd, name: &str, scopes: &[&str], extra: &[&str]) -> Value {
    let mut args = vec!["--json", "api-keys", "create", "--name", name];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    args.extend(extra);
    ok_json(ctl(d, &args, ""))
}

/// The status `key` gets from an admin endpoint.
async fn works(d: &Latchd, key: &str) -> u16 {
    d.get_auth("/v1/admin/users", key).await.status().as_u16()
}

async fn introspect(d: &Latchd, key: &str, token: &str) -> reqwest::Response {
    d.post_auth("/v1/auth/introspect", key, json!({ "token": token })).await
}

#[tokio::test]
async fn api_keys_are_shown_once_stored_hashed_scoped_and_revocable() {
    let (d, _admin) = with_admin().await;
    let made = make_key(&d, "reporting", &["admin"], &[]);
    let key = made["key"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap();
    assert!(key.starts_with(&format!("latch_{id}_")) && key.len() == 64, "{key}");
    let res = d.get_auth("/v1/admin/users", &key).await;
    assert_eq!(res.status(), 200, "scope admin may administer");
    let listed = ok_json(ctl(&d, &["--json", "api-keys", "list"], ""));
    let item = listed["items"].as_array().unwrap().iter().find(|k| k["id"] == id).unwrap().clone();
    assert!(item.get("key").is_none() && item["last_used_at"].is_string(), "{item}");
    let stored: Vec<u8> =
        d.db().query_row("SELECT secret_hash FROM api_keys WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    assert_eq!(stored.len(), 32, "only a SHA-256 is stored");
    let raw = std::fs::read(d.state_dir().join("latch.db")).unwrap();
    let wal = std::fs::read(d.state_dir().join("latch.db-wal")).unwrap_or_default();
    let secret = &key[15..58];
    assert!(
        ![raw, wal].iter().any(|b| b.windows(secret.len()).any(|w| w == secret.as_bytes())),
        "no secret at rest"
    );
    let used: Option<i64> =
        d.db().query_row("SELECT last_used_at FROM api_keys WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    assert_eq!(used, None, "a use is not a write; it is flushed in batches");

    let narrow = make_key(&d, "probe", &["introspect"], &[])["key"].as_str().unwrap().to_string();
    assert_problem(d.get_auth("/v1/admin/users", &narrow).await, 403, "forbidden").await;
    let mut forged = key.clone().into_bytes();
    forged[30] = if forged[30] == b'A' { b'B' } else { b'A' };
    assert_problem(
        d.get_auth("/v1/admin/users", &String::from_utf8(forged).unwrap()).await,
        401,
        "unauthorized",
    )
    .await;

    assert!(ctl(&d, &["api-keys", "revoke", id], "").status.success());
    assert_problem(d.get_auth("/v1/admin/users", &key).await, 401, "unauthorized").await;
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::seconds(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let expiring =
        make_key(&d, "short", &["admin"], &["--expires-at", &soon])["key"].as_str().unwrap().to_string();
    assert_eq!(d.get_auth("/v1/admin/users", &expiring).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_problem(d.get_auth("/v1/admin/users", &expiring).await, 401, "unauthorized").await;

    let state = d.state_dir();
    let dir = d.stop_keep_dir();
    let conn = rusqlite::Connection::open(state.join("latch.db")).unwrap();
    let used: Option<i64> =
        conn.query_row("SELECT last_used_at FROM api_keys WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    assert!(used.is_some(), "written at the latest when latchd stops");
    drop(dir);
}

#[tokio::test]
async fn introspection_reports_live_tokens_and_keys_and_nothing_else() {
    let (d, admin) = with_admin().await;
    let key = make_key(&d, "gateway", &["introspect"], &[])["key"].as_str().unwrap().to_string();
    let res = d
        .post_auth(
            "/v1/admin/users",
            &admin,
            json!({"email": "amy@example.test", "password": PASSWORD, "email_verified": true}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let amy = login(&d, "amy@example.test", PASSWORD).await;
    let at = amy["access_token"].as_str().unwrap();
    let rt = amy["refresh_token"].as_str().unwrap();

    let a: Value = introspect(&d, &key, at).await.json().await.unwrap();
    assert_eq!((a["active"].clone(), a["token_type"].clone()), (json!(true), json!("access_token")));
    assert_eq!((a["sub"].clone(), a["sid"].clone()), (amy["user"]["id"].clone(), amy["session_id"].clone()));
    assert_eq!(a["exp"].as_i64().unwrap() - a["iat"].as_i64().unwrap(), 900);
    let r: Value = introspect(&d, &key, rt).await.json().await.unwrap();
    assert_eq!((r["active"].clone(), r["token_type"].clone()), (json!(true), json!("refresh_token")));
    let k: Value = introspect(&d, &key, &key).await.json().await.unwrap();
    assert_eq!((k["token_type"].clone(), k["scope"].clone()), (json!("api_key"), json!("introspect")));
    for junk in ["", "garbage", "a.b.c", "latch_12345678_nope", &"x".repeat(9000)] {
        let res = introspect(&d, &key, junk).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<Value>().await.unwrap(), json!({"active": false}), "{junk:.20}");
    }
    // Revocation shows at once, unlike for offline JWT verifiers.
    let res = d.client().post(d.https_url("/v1/auth/logout")).bearer_auth(at).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(introspect(&d, &key, at).await.json::<Value>().await.unwrap(), json!({"active": false}));
    assert_eq!(introspect(&d, &key, rt).await.json::<Value>().await.unwrap(), json!({"active": false}));

    assert_problem(d.post("/v1/auth/introspect", json!({"token": at})).await, 401, "unauthorized").await;
    assert_problem(introspect(&d, &admin, at).await, 403, "forbidden").await;
}

/// A key made for a person works only while they do: disabling them
/// suspends it (enabling brings it back), and deleting them (as an admin,
/// or themselves) ends it at once — it stayed in force until the next
/// start, its row already gone.
#[tokio::test]
async fn a_persons_keys_stop_when_they_are_disabled_or_deleted() {
    let (d, admin) = with_admin().await;
    let probe = make_key(&d, "probe", &["introspect"], &[])["key"].as_str().unwrap().to_string();
    for (email, by_self) in [("kai@example.test", false), ("lou@example.test", true)] {
        let body = json!({"email": email, "password": PASSWORD, "roles": ["admin"], "email_verified": true});
        let user: Value = d.post_auth("/v1/admin/users", &admin, body).await.json().await.unwrap();
        let owner = user["id"].as_str().unwrap();
        let key =
            make_key(&d, "reports", &["admin"], &["--owner", owner])["key"].as_str().unwrap().to_string();
        assert_eq!(works(&d, &key).await, 200);
        assert!(ctl(&d, &["users", "disable", email], "").status.success());
        assert_eq!(works(&d, &key).await, 401, "suspended with its owner");
        let listed = ok_json(ctl(&d, &["--json", "api-keys", "list"], ""));
        let item = listed["items"].as_array().unwrap().iter().find(|k| k["name"] == "reports").cloned();
        assert_eq!(item.map(|k| k["suspended"].clone()), Some(json!(true)));
        // latchctl takes the owner's address, as every other command does.
        let late = make_key(&d, "late", &["admin"], &["--owner", email])["key"].as_str().unwrap().to_string();
        assert_eq!(works(&d, &late).await, 401, "one made meanwhile waits too");
        assert!(ctl(&d, &["users", "enable", email], "").status.success());
        assert_eq!(works(&d, &key).await, 200, "back with its owner");
        assert_eq!(works(&d, &late).await, 200);
        if by_self {
            let access = login(&d, email, PASSWORD).await["access_token"].as_str().unwrap().to_string();
            let req = d.client().delete(d.https_url("/v1/auth/me")).bearer_auth(&access);
            assert_eq!(req.json(&json!({"password": PASSWORD})).send().await.unwrap().status(), 204);
        } else {
            assert!(ctl(&d, &["users", "delete", email], "").status.success());
        }
        assert_eq!(works(&d, &key).await, 401, "gone with its owner");
        assert_eq!(introspect(&d, &probe, &key).await.json::<Value>().await.unwrap()["active"], false);
    }
}

/// A key made for a person does no more than they may: scope `admin` only
/// for an owner who holds role `admin`, and only while they hold it (a
/// person's key kept administering after their role was taken away).
#[tokio::test]
async fn a_persons_key_administers_only_while_they_hold_role_admin() {
    let (d, admin) = with_admin().await;
    let probe = make_key(&d, "probe", &["introspect"], &[])["key"].as_str().unwrap().to_string();
    let body = json!({"email": "mo@example.test", "password": PASSWORD, "roles": [], "email_verified": true});
    let mo: Value = d.post_auth("/v1/admin/users", &admin, body).await.json().await.unwrap();
    let wanted = json!({"name": "mo's", "scopes": ["admin"], "owner_id": mo["id"]});
    let refused =
        assert_problem(d.post_auth("/v1/admin/api-keys", &admin, wanted).await, 400, "invalid-request").await;
    assert_eq!(refused["errors"][0]["field"], "scopes", "{refused}");
    let by_ctl = ctl(
        &d,
        &["api-keys", "create", "--name", "mo's", "--scope", "admin", "--owner", "mo@example.test"],
        "",
    );
    let said = String::from_utf8_lossy(&by_ctl.stderr);
    assert!(!by_ctl.status.success() && said.contains("does not hold role admin"), "{said}");
    let count: i64 = d.db().query_row("SELECT count(*) FROM api_keys", [], |r| r.get(0)).unwrap();
    assert_eq!(count, 1, "only the probe was made");

    let roles = |verb: &'static str| ctl(&d, &["users", verb, "mo@example.test", "admin"], "");
    assert!(roles("add-role").status.success());
    let key = make_key(&d, "mo's", &["admin", "introspect"], &["--owner", "mo@example.test"]);
    let key = key["key"].as_str().unwrap().to_string();
    let scope = |k: Value| k["scope"].clone();
    assert_eq!(works(&d, &key).await, 200);
    assert_eq!(scope(introspect(&d, &probe, &key).await.json().await.unwrap()), "admin introspect");
    assert!(roles("remove-role").status.success());
    assert_eq!(works(&d, &key).await, 403, "the very next request");
    assert_eq!(scope(introspect(&d, &probe, &key).await.json().await.unwrap()), "introspect");
    assert_eq!(introspect(&d, &key, &probe).await.status(), 200, "what the person may do, it still does");
    let idle = |d: &Latchd| {
        let listed = ok_json(ctl(d, &["--json", "api-keys", "list"], ""));
        listed["items"].as_array().unwrap().iter().find(|k| k["name"] == "mo's").unwrap()["idle_scopes"]
            .clone()
    };
    assert_eq!(idle(&d), json!(["admin"]), "the listing says why it is refused");
    let table = String::from_utf8_lossy(&ctl(&d, &["api-keys", "list"], "").stdout).into_owned();
    assert!(table.contains("active; admin idle (owner lacks the role)"), "{table}");
    assert!(roles("add-role").status.success());
    assert_eq!(works(&d, &key).await, 200, "back with the role");
    assert_eq!(idle(&d), json!([]));
}

/// `--for 90d` makes a key that works for that long from now, as
/// `blocked-ips add --for` does, and `--expires-at` takes a date; a zero
/// lifetime, both ways at once or a while as a time are refused by
/// latchctl before anything is made.
#[tokio::test]
async fn a_key_can_be_made_for_a_while() {
    let d = Latchd::start().await;
    let made = make_key(&d, "ci", &["introspect"], &["--for", "90d"]);
    let expires = time::OffsetDateTime::parse(
        made["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let from_now = (expires - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!((90 * 86_400 - 120..=90 * 86_400).contains(&from_now), "{made}");
    // A date alone is its 00:00 UTC.
    let dated = make_key(&d, "dated", &["introspect"], &["--expires-at", "2030-01-31"]);
    assert_eq!(dated["expires_at"], "2030-01-31T00:00:00Z", "{dated}");
    let key = ["api-keys", "create", "--name", "x", "--scope", "introspect"];
    for (extra, said) in [
        (&["--for", "0s"][..], "a key must work for 1s or more"),
        (&["--for", "3d", "--expires-at", "2030-01-01T00:00:00Z"][..], "cannot be used with"),
        (&["--for", "soon"][..], "expected a duration like"),
        (&["--expires-at", "90d"][..], "a while from now is given as --for 90d"),
    ] {
        let out = ctl(&d, &[&key[..], extra].concat(), "");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code() == Some(2) && stderr.contains(said), "{extra:?}: {stderr}");
    }
    let count: i64 = d.db().query_row("SELECT count(*) FROM api_keys", [], |r| r.get(0)).unwrap();
    assert_eq!(count, 2, "only the first two were made");
}
