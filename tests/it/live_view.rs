//! A signed-in call is answered from memory (the verified-token cache and
//! the live view of sessions and users), and yet every change made through
//! the API — a role granted or removed, a user disabled, a session revoked,
//! a profile changed — applies to the very next request, also while other
//! requests with the same token are in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::admin_api::with_admin;
use crate::flows::{PASSWORD, login, metric};
use crate::harness::{Latchd, assert_problem};

const READS: &str = "latch_db_query_duration_seconds_count{op=\"read\"}";

async fn admin_call(d: &Latchd, method: &str, path: &str, token: &str, body: Value) -> reqwest::Response {
    let req = d.client().request(method.parse().unwrap(), d.https_url(path)).bearer_auth(token);
    req.json(&body).send().await.unwrap()
}

/// A verified user made by the admin: (id, access token).
async fn user(d: &Latchd, admin: &str, email: &str) -> (String, String) {
    let body = json!({"email": email, "password": PASSWORD, "email_verified": true});
    let made: Value = admin_call(d, "POST", "/v1/admin/users", admin, body).await.json().await.unwrap();
    let token = login(d, email, PASSWORD).await["access_token"].as_str().unwrap().to_string();
    (made["id"].as_str().unwrap().to_string(), token)
}

async fn me(d: &Latchd, token: &str) -> Value {
    let res = d.get_auth("/v1/auth/me", token).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn signed_in_calls_read_no_database_yet_changes_apply_on_the_next_request() {
    let (d, admin) = with_admin().await;
    let (id, bob) = user(&d, &admin, "bob@example.test").await;
    let user_path = format!("/v1/admin/users/{id}");
    assert_eq!(me(&d, &bob).await["roles"], json!([]));

    // Fifty calls after the first: answered from memory, no read each.
    let before = metric(&d, READS).await;
    for _ in 0..50 {
        assert_eq!(me(&d, &bob).await["email"], "bob@example.test");
    }
    let reads = metric(&d, READS).await - before;
    assert!(reads < 10.0, "50 signed-in calls took {reads} database reads");
    assert_problem(d.get_auth("/v1/admin/users", &bob).await, 403, "forbidden").await;

    // A role granted and removed counts on the next request, cached or not.
    let res = admin_call(&d, "PATCH", &user_path, &admin, json!({"roles": ["admin"]})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(me(&d, &bob).await["roles"], json!(["admin"]));
    assert_eq!(d.get_auth("/v1/admin/users", &bob).await.status(), 200);
    let res = admin_call(&d, "PATCH", &user_path, &admin, json!({"roles": []})).await;
    assert_eq!(res.status(), 200);
    assert_problem(d.get_auth("/v1/admin/users", &bob).await, 403, "forbidden").await;
    assert_eq!(me(&d, &bob).await["roles"], json!([]));

    // A profile change made by an admin shows at once.
    let res = admin_call(&d, "PATCH", &user_path, &admin, json!({"email_verified": false})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(me(&d, &bob).await["email_verified"], false);

    // Disabling ends the session for the next request.
    let res = admin_call(&d, "PATCH", &user_path, &admin, json!({"status": "disabled"})).await;
    assert_eq!(res.status(), 200);
    assert_problem(d.get_auth("/v1/auth/me", &bob).await, 401, "unauthorized").await;

    // Deleting a user ends their sessions too (rows removed by cascade).
    let (carol_id, carol) = user(&d, &admin, "carol@example.test").await;
    me(&d, &carol).await;
    let path = format!("/v1/admin/users/{carol_id}");
    assert_eq!(admin_call(&d, "DELETE", &path, &admin, json!({})).await.status(), 204);
    assert_problem(d.get_auth("/v1/auth/me", &carol).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_revocation_applies_to_every_request_that_starts_after_it_returns() {
    let (d, admin) = with_admin().await;
    let (_, token) = user(&d, &admin, "dan@example.test").await;
    let (d, token) = (Arc::new(d), Arc::new(token));
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut callers = Vec::new();
    for _ in 0..6 {
        let (d, token) = (Arc::clone(&d), Arc::clone(&token));
        callers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while Instant::now() < stop_at {
                let started = Instant::now();
                let status = d.get_auth("/v1/auth/me", &token).await.status().as_u16();
                seen.push((started, status));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let res =
        d.client().post(d.https_url("/v1/auth/logout")).bearer_auth(token.as_str()).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let revoked = Instant::now();
    let (mut before, mut after) = (0, 0);
    for caller in callers {
        for (started, status) in caller.await.unwrap() {
            if started > revoked {
                assert_eq!(status, 401, "a request started after the logout returned was let in");
                after += 1;
            } else if status == 200 {
                before += 1;
            }
        }
    }
    assert!(before > 20 && after > 20, "{before} answered before the logout, {after} after");
}
