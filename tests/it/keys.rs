//! Signing-key rotation as an app sees it: a rotated-in key is in the JWKS
//! at once and signs after the JWKS max-age; tokens signed before keep
//! verifying with PyJWT until they expire, then their key leaves; revoking
//! a key ends its tokens at once; HS256 has nothing to rotate.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::admin_api::{admin_daemon, ctl, ok_json};
use crate::flows::{PASSWORD, login};
use crate::harness::{Latchd, assert_problem, hs256_tokens, secret_file};
use crate::tokens::{header_of, pyjwt_verify};

const ISSUER: &str = "https://localhost:8443";

async fn with_admin(extra: &str, env: &[(&str, &str)]) -> Latchd {
    admin_daemon(extra, env).await.0
}

async fn token(d: &Latchd) -> String {
    login(d, "root@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string()
}

fn kid(token: &str) -> String {
    header_of(token)["kid"].as_str().unwrap().to_string()
}

async fn jwks_kids(d: &Latchd) -> Vec<String> {
    let jwks: Value = d.get("/.well-known/jwks.json").await.json().await.unwrap();
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
}

fn states(d: &Latchd) -> Vec<(String, String)> {
    let list = ok_json(ctl(d, &["--json", "keys", "list"], ""));
    let items = list["items"].as_array().unwrap();
    items.iter().map(|k| (k["kid"].as_str().unwrap().into(), k["state"].as_str().unwrap().into())).collect()
}

#[tokio::test]
async fn a_rotated_key_is_published_first_and_signs_after_the_jwks_max_age() {
    // The JWKS max-age (and so the wait) is 2 s instead of 300 s.
    let env = [("LATCH_TEST_PAUSE", "jwks_max_age:2000")];
    let d = with_admin("\n[tokens]\naccess_ttl = \"6s\"\nleeway = \"0s\"\n", &env).await;
    let before = token(&d).await;
    let old = kid(&before);
    let res = d.get("/.well-known/jwks.json").await;
    assert_eq!(res.headers()["cache-control"], "public, max-age=2");

    let rotated = ok_json(ctl(&d, &["--json", "keys", "rotate"], ""));
    let new = rotated["kid"].as_str().unwrap().to_string();
    assert_eq!(rotated["state"], "pending");
    assert_eq!(jwks_kids(&d).await, vec![new.clone(), old.clone()], "published at once");
    assert_eq!(states(&d), vec![(new.clone(), "pending".into()), (old.clone(), "signing".into())]);
    assert_eq!(kid(&token(&d).await), old, "apps may not have the new key yet");
    let again = ctl(&d, &["keys", "rotate"], "");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already starts signing"));

    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let t = token(&d).await;
        if kid(&t) == new {
            break t;
        }
        assert!(Instant::now() < deadline, "the new key never started signing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    pyjwt_verify(&d, &after, ISSUER, None).expect("PyJWT accepts a token of the new key");
    pyjwt_verify(&d, &before, ISSUER, None).expect("and one signed before the rotation");
    assert_eq!(states(&d)[1].1, "retired");

    let deadline = Instant::now() + Duration::from_secs(10);
    while jwks_kids(&d).await.contains(&old) {
        assert!(Instant::now() < deadline, "the retired key never left the JWKS");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(pyjwt_verify(&d, &before, ISSUER, None).is_err(), "its last token has expired by then");
    assert_eq!(states(&d)[1].1, "expired");
}

#[tokio::test]
async fn rotate_now_switches_at_once_and_revoke_ends_a_keys_tokens() {
    let d = with_admin("", &[]).await;
    let first = token(&d).await;
    let k1 = kid(&first);
    let k2 =
        ok_json(ctl(&d, &["--json", "keys", "rotate", "--now"], ""))["kid"].as_str().unwrap().to_string();
    let second = token(&d).await;
    assert_eq!(kid(&second), k2, "signs at once");
    assert_eq!(d.get_auth("/v1/auth/me", &first).await.status(), 200, "the retired key still verifies");
    assert_eq!(jwks_kids(&d).await, vec![k2.clone(), k1.clone()]);

    let revoked = ctl(&d, &["keys", "revoke", &k1], "");
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    assert_problem(d.get_auth("/v1/auth/me", &first).await, 401, "unauthorized").await;
    assert_eq!(jwks_kids(&d).await, vec![k2.clone()]);

    // Revoking the key that signs now puts a fresh one in its place.
    let revoked = ctl(&d, &["keys", "revoke", &k2], "");
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    let after = d.get_auth("/v1/auth/me", &second).await.status();
    let keys = String::from_utf8_lossy(&ctl(&d, &["--json", "keys", "list"], "").stdout).to_string();
    assert_eq!(after, 401, "k2 {k2} revoked; keys now {keys}; JWKS {:?}", jwks_kids(&d).await);
    let third = token(&d).await;
    let k3 = kid(&third);
    assert!(k3 != k1 && k3 != k2);
    pyjwt_verify(&d, &third, ISSUER, None).expect("PyJWT accepts the replacement's token");
    let listed = states(&d);
    assert_eq!(listed[0], (k3, "signing".into()));
    assert!(listed[1..].iter().all(|(_, s)| s == "revoked"), "{listed:?}");

    let unknown = ctl(&d, &["keys", "revoke", "no-such-kid"], "");
    assert!(!unknown.status.success());
    assert_eq!(String::from_utf8_lossy(&unknown.stderr).trim(), "latchctl: no such signing key");
    let rows: i64 = d
        .db()
        .query_row("SELECT count(*) FROM audit_log WHERE action LIKE 'signing_key_%'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 3);
}

#[tokio::test]
async fn hs256_has_no_keys_to_rotate() {
    let (_secret_dir, secret) = secret_file("hs256.key", "0123456789abcdef0123456789abcdef-shared\n");
    let extra = hs256_tokens(&secret);
    let d = with_admin(&extra, &[]).await;
    let out = ctl(&d, &["keys", "rotate"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("replacing tokens.secret_file"));
    assert_eq!(d.get_auth("/v1/auth/me", &token(&d).await).await.status(), 200);
}
