//! The OpenAPI document: served at /v1/openapi.json, every operation in it
//! answered by a route (none unmatched), every operation of API.md in it
//! (less what is not built yet, named below), and a bounded schemathesis
//! run against the live daemon that finds no 5xx and no answer outside the
//! document.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::admin_api::{ctl, ok_json};
use crate::flows::PASSWORD;
use crate::harness::{Latchd, base_config};

/// API.md operations that are not built yet, each with its issue. The
/// test fails when one of them appears, so this list only shrinks.
const NOT_YET: &[(&str, &str)] = &[];

/// Operations latch serves beyond API.md's list, for `latchctl`: daemon
/// status, config, creating users (`users add`) and signing keys.
const BEYOND: &[&str] = &[
    "POST /v1/admin/users",
    "GET /v1/admin/status",
    "GET /v1/admin/config",
    "POST /v1/admin/config/reload",
    "GET /v1/admin/signing-keys",
    "POST /v1/admin/signing-keys",
    "DELETE /v1/admin/signing-keys/{kid}",
    "GET /v1/admin/backups",
    "POST /v1/admin/backups",
    "POST /v1/auth/email/change",
    "PATCH /v1/auth/me",
    // The pages for people (API.md "Pages" names them without methods).
    "POST /verify-email",
    "POST /verify-email/resend",
    "GET /account/forgot",
    "POST /account/forgot",
    "GET /account/login",
    "POST /account/login",
    "POST /account/login/mfa",
    "GET /account",
    "POST /account/sessions/{id}/revoke",
    "POST /account/logout",
    "POST /account/logout-all",
    "POST /account/password",
    "POST /account/email",
    "POST /account/delete",
    "POST /account/name",
    "POST /account/totp",
    "POST /account/totp/confirm",
    "POST /account/recovery-codes",
    "POST /account/totp/off",
    "GET /assets/latch.css",
];

fn documented(doc: &Value) -> BTreeSet<String> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    ops
}

/// `METHOD /path` and `GET|POST /path` in API.md's backticks.
fn api_md() -> BTreeSet<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/API.md")).unwrap();
    let mut ops = BTreeSet::new();
    for chunk in text.split('`').skip(1).step_by(2) {
        let Some((methods, rest)) = chunk.split_once(' ') else { continue };
        let path = rest.split([' ', '?']).next().unwrap_or("");
        if !path.starts_with('/') || !methods.split('|').all(|m| m.chars().all(|c| c.is_ascii_uppercase())) {
            continue;
        }
        for m in methods.split('|').filter(|m| !m.is_empty()) {
            ops.insert(format!("{m} {path}"));
        }
    }
    ops
}

#[tokio::test]
async fn every_documented_operation_is_served_and_api_md_is_documented() {
    let d = Latchd::start().await;
    let res = d.get("/v1/openapi.json").await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = documented(&doc);
    let ids: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values().map(|op| op["operationId"].as_str().unwrap()))
        .collect();
    assert_eq!(ids.len(), ops.len(), "operation ids are unique");
    for op in &ops {
        let (method, path) = op.split_once(' ').unwrap();
        let url = d.https_url(&path.replace(['{', '}'], ""));
        let res = d.client().request(method.parse().unwrap(), url).send().await.unwrap();
        assert!(
            ![404, 405].contains(&res.status().as_u16()),
            "{op} is documented but answers {}",
            res.status()
        );
    }
    let wanted = api_md();
    let missing: Vec<&String> =
        wanted.iter().filter(|op| !ops.contains(*op) && !NOT_YET.iter().any(|(n, _)| n == op)).collect();
    assert!(missing.is_empty(), "in API.md, not served: {missing:?}");
    for (op, why) in NOT_YET {
        assert!(!ops.contains(*op), "{op} ({why}) is served now: take it off NOT_YET");
    }
    let extra: Vec<&String> =
        ops.iter().filter(|op| !wanted.contains(*op) && !BEYOND.contains(&op.as_str())).collect();
    assert!(extra.is_empty(), "served, not in API.md or BEYOND: {extra:?}");
}

fn schemathesis(d: &Latchd, bearer: &str, filters: &[&str]) -> std::process::Output {
    let seed = std::env::var("LATCH_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261201".into());
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "schemathesis.cli", "run"])
        .arg(d.https_url("/v1/openapi.json"))
        .arg("--tls-verify")
        .arg(d.cert_path())
        .args(["-H", &format!("Authorization: Bearer {bearer}")])
        .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
        .args(["--max-examples", "25", "--workers", "1", "--seed", &seed, "--request-timeout", "10"])
        .args(filters)
        .current_dir(d.dir.path());
    cmd.output().expect("schemathesis (scripts/test.sh installs it from PyPI)")
}

/// `positive_data_acceptance` is left out: whether a well-formed request
/// succeeds depends on state the document cannot describe (a token must
/// exist, a password must meet the configured policy).
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let extra = "\n[accounts]\nregistration = \"closed\"\n[defense]\nallowlist = [\"127.0.0.0/8\"]\n";
    let d = Latchd::start_with(&base_config(extra)).await;
    let args = ["users", "add", "root@example.test", "--role", "admin", "--password-stdin", "--verified"];
    assert!(ctl(&d, &args, PASSWORD).status.success());
    let made = ok_json(ctl(
        &d,
        &["--json", "api-keys", "create", "--name", "fuzz", "--scope", "admin", "--scope", "introspect"],
        "",
    ));
    let key = made["key"].as_str().unwrap();
    let token = crate::flows::login(&d, "root@example.test", PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    // First a user's own account and sessions, read-only so the token
    // lives on; then everything as an admin's API key (which may well
    // disable that user), except revoking the key itself.
    let out = schemathesis(
        &d,
        &token,
        &["--include-path-regex", "^/v1/auth/(me|sessions)$", "--include-method", "GET"],
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", String::from_utf8_lossy(&out.stderr));
    let out = schemathesis(&d, key, &["--exclude-path-regex", "^/v1/admin/api-keys/"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!d.log().contains("panicked"), "{}", d.log());
    let text = d.get("/metrics").await.text().await.unwrap();
    let answered: Vec<&str> = text.lines().filter(|l| l.starts_with("latch_http_requests_total{")).collect();
    assert!(answered.len() > 20, "the fuzzing reached many routes: {answered:?}");
    let server_errors: Vec<&&str> = answered.iter().filter(|l| l.contains("status=\"5")).collect();
    assert!(server_errors.is_empty(), "{server_errors:?}");
}
