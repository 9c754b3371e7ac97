//! No secret rests in clear: after a full account life (register, verify,
//! login, refresh, forgot, reset, login again, TOTP on, a login with a
//! recovery code, an API key made and used, a change of address), logged at
//! debug level, the raw bytes of the database, its WAL and the log hold no
//! password, one-time token, refresh or access token, TOTP secret, recovery
//! code, mfa_token, API key, nor the master key.

use std::path::Path;

use serde_json::{Value, json};

use crate::flows::{PASSWORD, login, with_smtp_env};
use crate::harness::Latchd;
use crate::mail::token_in;

/// The names of the `secrets` found in the raw bytes of `file`.
fn found_in(file: &Path, secrets: &[(&str, String)]) -> Vec<String> {
    let bytes = std::fs::read(file).unwrap_or_default();
    secrets
        .iter()
        .filter(|(_, s)| bytes.windows(s.len()).any(|w| w == s.as_bytes()))
        .map(|(name, _)| format!("{name} in {}", file.display()))
        .collect()
}

/// Turns TOTP on, logs in with a recovery code and makes and uses an API
/// key; returns the secrets those steps handled.
async fn second_factor_and_api_key(
    d: &Latchd,
    email: &str,
    password: &str,
    signed_in: &Value,
) -> Vec<(&'static str, String)> {
    let access = signed_in["access_token"].as_str().unwrap();
    let res = d.post_auth("/v1/auth/mfa/totp", access, json!({})).await;
    let secret = res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string();
    let code = crate::mfa::code_at(&secret, 0);
    let res = d.post_auth("/v1/auth/mfa/totp/confirm", access, json!({"code": code})).await;
    let codes: Value = res.json().await.unwrap();
    let recovery: Vec<String> =
        codes["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let step_one: Value =
        d.post("/v1/auth/login", json!({"email": email, "password": password})).await.json().await.unwrap();
    let mfa_token = step_one["mfa_token"].as_str().unwrap().to_string();
    let body = json!({"mfa_token": mfa_token, "recovery_code": recovery[0]});
    assert_eq!(d.post("/v1/auth/login/mfa", body).await.status(), 200);
    let key = crate::apps::make_key(d, "secrets", &["introspect"], &[])["key"].as_str().unwrap().to_string();
    let res = d.post_auth("/v1/auth/introspect", &key, json!({"token": access})).await;
    assert_eq!(res.status(), 200);
    let mut found = vec![("TOTP secret", secret), ("mfa_token", mfa_token), ("API key", key)];
    found.extend(recovery.into_iter().map(|c| ("recovery code", c)));
    found
}

#[tokio::test]
async fn secrets_never_rest_in_clear_in_the_database_wal_or_log() {
    let (mut d, smtp) = with_smtp_env("", &[("RUST_LOG", "debug")]).await;
    let email = "sam@example.test";
    let res = d.post("/v1/auth/register", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(res.status(), 202);
    let verify_token = token_in(&smtp.wait_for(1).await[0]);
    assert_eq!(d.post("/v1/auth/verify-email", json!({"token": verify_token})).await.status(), 200);
    let first = login(&d, email, PASSWORD).await;
    let res = d.post("/v1/auth/refresh", json!({"refresh_token": first["refresh_token"]})).await;
    let second: Value = res.json().await.unwrap();
    assert_eq!(d.post("/v1/auth/password/forgot", json!({"email": email})).await.status(), 202);
    let reset_token = token_in(&smtp.wait_for(2).await[1]);
    let new_password = "a brand new passphrase";
    let res =
        d.post("/v1/auth/password/reset", json!({"token": reset_token, "new_password": new_password})).await;
    assert_eq!(res.status(), 200);
    let third = login(&d, email, new_password).await;
    let more = second_factor_and_api_key(&d, email, new_password, &third).await;
    let access = third["access_token"].as_str().unwrap();
    let change = json!({"password": new_password, "new_email": "sam@new.example"});
    assert_eq!(d.post_auth("/v1/auth/email/change", access, change).await.status(), 202);
    let change_token = token_in(&smtp.wait_for_mail_to("sam@new.example").await);
    assert_eq!(d.post("/v1/auth/verify-email", json!({"token": change_token})).await.status(), 200);

    let state = d.state_dir();
    let master = std::fs::read_to_string(state.join("keys/master.key")).unwrap().trim().to_string();
    let text = |v: &Value| v.as_str().unwrap().to_string();
    let secrets = [
        ("first password", PASSWORD.to_string()),
        ("new password", new_password.to_string()),
        ("verification token", verify_token),
        ("reset token", reset_token),
        ("address change token", change_token),
        ("first refresh token", text(&first["refresh_token"])),
        ("second refresh token", text(&second["refresh_token"])),
        ("third refresh token", text(&third["refresh_token"])),
        ("access token", text(&third["access_token"])),
        ("master key", master),
    ];
    let secrets: Vec<(&str, String)> = secrets.into_iter().chain(more).collect();
    let wal_path = state.join("latch.db-wal");
    assert!(std::fs::metadata(&wal_path).is_ok_and(|m| m.len() > 0), "the WAL holds the recent writes");
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let stored_bytes = size(&state.join("latch.db")) + size(&wal_path);
    let mut leaks = Vec::new();
    for file in [state.join("latch.db"), wal_path.clone()] {
        leaks.extend(found_in(&file, &secrets));
    }
    // The scan itself works: the database and WAL do hold the (public) address.
    let address = [("address", email.to_string())];
    let seen = found_in(&state.join("latch.db"), &address).len() + found_in(&wal_path, &address).len();
    assert!(seen > 0, "the scan finds what is stored");
    // The log after a clean stop: every line it took is written by then.
    assert!(d.stop_within(std::time::Duration::from_secs(10)).success());
    leaks.extend(found_in(&d.dir.path().join("latchd.log"), &secrets));
    let log = d.log();
    let mut table =
        crate::reliability::Table::new("Secrets at rest (full flow, debug log)", &["measure", "value"]);
    table.row(&["secrets used", &secrets.len().to_string()]);
    table.row(&["bytes scanned (db, WAL, log)", &(stored_bytes + log.len() as u64).to_string()]);
    table.row(&["found in clear", &leaks.len().to_string()]);
    table.publish("secrets");
    assert!(log.contains(r#""level":"DEBUG""#), "the log is at debug level");
    assert!(leaks.is_empty(), "secrets at rest in clear: {leaks:?}");
}
