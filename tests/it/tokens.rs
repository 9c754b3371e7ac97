//! Tokens: JWTs an outside library verifies, refresh rotation with reuse
//! detection, revocation through logout and session lists.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::flows::{PASSWORD, login, register_verified, with_smtp};
use crate::harness::{Latchd, assert_problem, hs256_tokens, secret_file};

/// Verifies `token` with PyJWT (`tests/support/verify_jwt.py`).
pub fn pyjwt_verify(
    d: &Latchd,
    token: &str,
    issuer: &str,
    secret_file: Option<&std::path::Path>,
) -> Result<Value, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/verify_jwt.py");
    let base = d.https_url("");
    let mut cmd = Command::new("python3");
    cmd.args([script, &base, &d.cert_path().display().to_string(), issuer, "latch"]);
    if let Some(f) = secret_file {
        cmd.arg(f);
    }
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("python3");
    child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("claims"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

pub fn header_of(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').next().unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn access_tokens_verify_with_pyjwt_against_the_jwks() {
    let (d, smtp) = with_smtp("").await;
    register_verified(&d, &smtp, "ivan@example.test", 0).await;
    let tokens = login(&d, "ivan@example.test", PASSWORD).await;
    let at = tokens["access_token"].as_str().unwrap();
    let header = header_of(at);
    assert_eq!((header["alg"].as_str(), header["typ"].as_str()), (Some("EdDSA"), Some("at+jwt")));
    let jwks: Value = d.get("/.well-known/jwks.json").await.json().await.unwrap();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");

    let claims = pyjwt_verify(&d, at, "https://localhost:8443", None).expect("PyJWT accepts the token");
    assert_eq!(claims["sub"], tokens["user"]["id"]);
    assert_eq!(claims["sid"], tokens["session_id"]);
    assert_eq!(claims["aud"], "latch");
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
    let err = pyjwt_verify(&d, at, "https://elsewhere.example", None).unwrap_err();
    assert!(err.contains("InvalidIssuer"), "{err}");

    let oidc: Value = d.get("/.well-known/openid-configuration").await.json().await.unwrap();
    assert_eq!(oidc["issuer"], "https://localhost:8443");
    assert_eq!(oidc["jwks_uri"], "https://localhost:8443/.well-known/jwks.json");
    assert_eq!(oidc["id_token_signing_alg_values_supported"], json!(["EdDSA"]));
    let res = d.get("/.well-known/jwks.json").await;
    assert_eq!(res.headers()["cache-control"], "public, max-age=300");
}

#[tokio::test]
async fn hs256_mode_signs_with_the_shared_secret() {
    let (_secret_dir, secret) = secret_file("hs256.key", "0123456789abcdef0123456789abcdef-shared\n");
    let extra = hs256_tokens(&secret);
    let (d, smtp) = with_smtp(&extra).await;
    register_verified(&d, &smtp, "judy@example.test", 0).await;
    let at = login(&d, "judy@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    assert_eq!(header_of(&at)["alg"], "HS256");
    pyjwt_verify(&d, &at, "https://localhost:8443", Some(&secret)).expect("PyJWT accepts the HS256 token");
    let jwks: Value = d.get("/.well-known/jwks.json").await.json().await.unwrap();
    assert_eq!(jwks, json!({"keys": []}));
    assert_eq!(d.get_auth("/v1/auth/me", &at).await.status(), 200);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let (d, smtp) = with_smtp("").await;
    register_verified(&d, &smtp, "kim@example.test", 0).await;
    let first = login(&d, "kim@example.test", PASSWORD).await;
    let res = d.post("/v1/auth/refresh", json!({"refresh_token": first["refresh_token"]})).await;
    assert_eq!(res.status(), 200);
    let second: Value = res.json().await.unwrap();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(second["session_id"], first["session_id"]);
    let at = second["access_token"].as_str().unwrap();
    assert_eq!(d.get_auth("/v1/auth/me", at).await.status(), 200);

    let reuse = d.post("/v1/auth/refresh", json!({"refresh_token": first["refresh_token"]})).await;
    assert_problem(reuse, 401, "refresh-token-reused").await;
    let next = d.post("/v1/auth/refresh", json!({"refresh_token": second["refresh_token"]})).await;
    assert_problem(next, 401, "invalid-token").await;
    assert_problem(d.get_auth("/v1/auth/me", at).await, 401, "unauthorized").await;
    let unknown = d.post("/v1/auth/refresh", json!({"refresh_token": "not-a-token"})).await;
    assert_problem(unknown, 401, "invalid-token").await;

    let db = d.db();
    let reason: String = db.query_row("SELECT revoked_reason FROM sessions", [], |r| r.get(0)).unwrap();
    assert_eq!(reason, "refresh_token_reused");
    let audited: i64 = db
        .query_row("SELECT COUNT(*) FROM audit_log WHERE action = 'refresh_token_reused'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(audited, 1);
    let metrics = d.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(r#"latch_auth_events_total{kind="refresh",result="reused"} 1"#), "{metrics}");
}

#[tokio::test]
async fn of_fifty_parallel_refreshes_exactly_one_succeeds() {
    let (d, smtp) = with_smtp("").await;
    register_verified(&d, &smtp, "leo@example.test", 0).await;
    let tokens = login(&d, "leo@example.test", PASSWORD).await;
    let client = d.client();
    let url = d.https_url("/v1/auth/refresh");
    let body = json!({"refresh_token": tokens["refresh_token"]});
    let calls = (0..50).map(|_| {
        let (c, url, body) = (client.clone(), url.clone(), body.clone());
        tokio::spawn(async move { c.post(url).json(&body).send().await.unwrap().status().as_u16() })
    });
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 49, "{statuses:?}");
}

#[tokio::test]
async fn logout_and_session_management_revoke_at_once() {
    let (d, smtp) = with_smtp("").await;
    register_verified(&d, &smtp, "mia@example.test", 0).await;
    let a = login(&d, "mia@example.test", PASSWORD).await;
    let c = d.client();
    let res = c
        .post(d.https_url("/v1/auth/login"))
        .header("user-agent", "phone-app/1.0")
        .json(&json!({"email": "mia@example.test", "password": PASSWORD, "device_name": "Mia's phone"}))
        .send()
        .await
        .unwrap();
    let b: Value = res.json().await.unwrap();
    let at_a = a["access_token"].as_str().unwrap();
    let list: Value = d.get_auth("/v1/auth/sessions", at_a).await.json().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let phone = items.iter().find(|s| s["id"] == b["session_id"]).unwrap();
    assert_eq!(
        (phone["device_name"].as_str(), phone["user_agent"].as_str()),
        (Some("Mia's phone"), Some("phone-app/1.0"))
    );
    assert_eq!(phone["current"], false);
    assert_eq!(phone["ip"], "127.0.0.1");

    let url = d.https_url(&format!("/v1/auth/sessions/{}", b["session_id"].as_str().unwrap()));
    assert_eq!(c.delete(&url).bearer_auth(at_a).send().await.unwrap().status(), 204);
    assert_eq!(d.get_auth("/v1/auth/me", b["access_token"].as_str().unwrap()).await.status(), 401);
    assert_problem(c.delete(&url).bearer_auth(at_a).send().await.unwrap(), 404, "not-found").await;

    let res = c.post(d.https_url("/v1/auth/logout")).bearer_auth(at_a).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_problem(d.get_auth("/v1/auth/me", at_a).await, 401, "unauthorized").await;
    let res = d.get_auth("/v1/auth/me", at_a).await;
    assert_eq!(res.headers()["www-authenticate"], r#"Bearer error="invalid_token""#);

    let x = login(&d, "mia@example.test", PASSWORD).await;
    let y = login(&d, "mia@example.test", PASSWORD).await;
    let res = c
        .post(d.https_url("/v1/auth/logout-all"))
        .bearer_auth(x["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(d.get_auth("/v1/auth/me", y["access_token"].as_str().unwrap()).await.status(), 401);
}

/// A login whose body is still arriving when SIGTERM comes is answered,
/// then the daemon exits 0.
#[tokio::test]
async fn sigterm_drains_an_in_flight_request() {
    let mut d = Latchd::start().await;
    let body = br#"{"email":"nobody@example.test","password":"whatever password"}"#;
    let mut sock = std::net::TcpStream::connect(d.addr("http")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // First a whole request on the same connection, so the daemon has
    // surely accepted it before the signal, however loaded the machine.
    sock.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut first = Vec::new();
    while !String::from_utf8_lossy(&first).ends_with(r#"{"status":"ok"}"#) {
        let mut chunk = [0u8; 512];
        let n = sock.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed: {}", String::from_utf8_lossy(&first));
        first.extend_from_slice(&chunk[..n]);
    }
    assert!(first.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first));
    let head = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).unwrap();
    sock.write_all(&body[..10]).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    d.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sock.write_all(&body[10..]).unwrap();
    let mut answer = String::new();
    let _ = sock.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "in-flight request answered: {answer:?}");
    let status = d.stop_within(Duration::from_secs(10));
    assert!(status.success(), "exit {status}");
}

/// A script that signs in every minute and never signs out keeps tens of
/// thousands of sessions live: the list shows the current one and the
/// newest others, 1,000 in all; signing out everywhere still ends all.
#[tokio::test]
async fn a_session_list_is_bounded_and_keeps_the_current_session() {
    let (d, smtp) = with_smtp("").await;
    register_verified(&d, &smtp, "bot@example.test", 0).await;
    let first = login(&d, "bot@example.test", PASSWORD).await;
    let (at, current) = (first["access_token"].as_str().unwrap(), first["session_id"].as_str().unwrap());
    let user = first["user"]["id"].as_str().unwrap();
    let db = rusqlite::Connection::open(d.state_dir().join("latch.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    db.execute_batch("BEGIN").unwrap();
    for i in 0..1200 {
        db.execute(
            "INSERT INTO sessions (id, user_id, amr, created_at, last_seen_at, expires_at)
             VALUES (?1, ?2, 'pwd', ?3, ?3, ?4)",
            rusqlite::params![format!("script-{i:04}"), user, now + i, now + 86400],
        )
        .unwrap();
    }
    db.execute_batch("COMMIT").unwrap();
    let list: Value = d.get_auth("/v1/auth/sessions", at).await.json().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1000);
    assert_eq!(items[0]["id"], "script-1199", "newest first");
    assert_eq!(items[998]["id"], "script-0201", "the newest 999 others");
    assert_eq!((items[999]["id"].as_str(), items[999]["current"].as_bool()), (Some(current), Some(true)));
    let res = d.client().post(d.https_url("/v1/auth/logout-all")).bearer_auth(at).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let live: i64 =
        db.query_row("SELECT count(*) FROM sessions WHERE revoked_at IS NULL", [], |r| r.get(0)).unwrap();
    assert_eq!(live, 0, "every one of the 1,201 ended");
}
