//! No secret rests in clear: after a full account life (register, verify,
//! login, refresh, forgot, reset, login again) the raw bytes of the
//! database, its WAL and the log hold no password, one-time token, refresh
//! or access token, nor the master key.

use std::path::Path;

use serde_json::{Value, json};

use crate::flows::{PASSWORD, login, with_smtp};
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

#[tokio::test]
async fn secrets_never_rest_in_clear_in_the_database_wal_or_log() {
    let (d, smtp) = with_smtp("").await;
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

    let state = d.state_dir();
    let master = std::fs::read_to_string(state.join("keys/master.key")).unwrap().trim().to_string();
    let text = |v: &Value| v.as_str().unwrap().to_string();
    let secrets = [
        ("first password", PASSWORD.to_string()),
        ("new password", new_password.to_string()),
        ("verification token", verify_token),
        ("reset token", reset_token),
        ("first refresh token", text(&first["refresh_token"])),
        ("second refresh token", text(&second["refresh_token"])),
        ("third refresh token", text(&third["refresh_token"])),
        ("access token", text(&third["access_token"])),
        ("master key", master),
    ];
    let wal_path = state.join("latch.db-wal");
    assert!(std::fs::metadata(&wal_path).is_ok_and(|m| m.len() > 0), "the WAL holds the recent writes");
    let mut leaks = Vec::new();
    for file in [state.join("latch.db"), wal_path.clone(), d.dir.path().join("latchd.log")] {
        leaks.extend(found_in(&file, &secrets));
    }
    assert!(leaks.is_empty(), "secrets at rest in clear: {leaks:?}");
    // The scan itself works: the database and WAL do hold the (public) address.
    let address = [("address", email.to_string())];
    let seen = found_in(&state.join("latch.db"), &address).len() + found_in(&wal_path, &address).len();
    assert!(seen > 0, "the scan finds what is stored");
}
