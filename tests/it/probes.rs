//! What an outside prober tries: forged access tokens (a future `nbf`, a
//! `crit` header, an oversized bearer), oversized request heads, proxy
//! headers, a file where a socket should be, and what `/metrics` and the
//! openid-configuration reveal.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use crate::flows::{PASSWORD, login, register_verified, with_smtp};
use crate::harness::{Latchd, assert_problem, base_config, hs256_tokens, secret_file, spawn, write_config};

const SECRET: &str = "0123456789abcdef0123456789abcdef-probe";

/// A compact HS256 JWS over `header` and `claims`, signed with `SECRET`.
fn sign(header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    format!("{input}.{}", B64.encode(aws_lc_rs::hmac::sign(&key, input.as_bytes())))
}

fn claims_of(jwt: &str) -> Value {
    serde_json::from_slice(&B64.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn forged_tokens_with_a_future_nbf_a_crit_header_or_an_oversized_body_are_refused() {
    let (_dir, secret) = secret_file("hs256.key", SECRET);
    let extra = hs256_tokens(&secret);
    let (d, smtp) = with_smtp(&extra).await;
    register_verified(&d, &smtp, "forge@example.test", 0).await;
    let real = login(&d, "forge@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    let claims = claims_of(&real);
    let header = json!({"alg": "HS256", "typ": "at+jwt"});
    // The forgery works at all: the same claims, signed here, are accepted.
    assert_eq!(d.get_auth("/v1/auth/me", &sign(&header, &claims)).await.status(), 200);

    let mut future = claims.clone();
    future["nbf"] = json!(latch::clock::now_unix() + 3600);
    assert_problem(d.get_auth("/v1/auth/me", &sign(&header, &future)).await, 401, "unauthorized").await;
    let mut soon = claims.clone();
    soon["nbf"] = json!(latch::clock::now_unix() + 2);
    assert_eq!(d.get_auth("/v1/auth/me", &sign(&header, &soon)).await.status(), 200, "within the leeway");

    let crit = json!({"alg": "HS256", "typ": "at+jwt", "crit": ["exp-ext"], "exp-ext": true});
    assert_problem(d.get_auth("/v1/auth/me", &sign(&crit, &claims)).await, 401, "unauthorized").await;

    // Over 8 KiB the bearer is refused before any parsing: the request
    // head's 8 KiB line limit answers first (the signer has its own cap).
    let mut padded = claims.clone();
    padded["pad"] = json!("x".repeat(8 * 1024));
    assert_problem(d.get_auth("/v1/auth/me", &sign(&header, &padded)).await, 431, "headers-too-large").await;
}

#[tokio::test]
async fn an_oversized_request_head_gets_431_as_problem_json() {
    let d = Latchd::start().await;
    let c = d.client();
    let get = |headers: Vec<(String, String)>| {
        let mut req = c.get(d.https_url("/health"));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let res = get(vec![("x-big".into(), "a".repeat(4 * 1024))]).await.unwrap();
    assert_eq!(res.status(), 200, "4 KiB is fine");
    let res = get(vec![("x-big".into(), "a".repeat(9 * 1024))]).await.unwrap();
    let body = assert_problem(res, 431, "headers-too-large").await;
    assert!(body["detail"].as_str().unwrap().contains("8 KiB"), "{body}");
    let many = (0..3).map(|i| (format!("x-part-{i}"), "b".repeat(6 * 1024))).collect();
    assert_problem(get(many).await.unwrap(), 431, "headers-too-large").await;
}

#[tokio::test]
async fn every_forwarded_for_line_counts_behind_a_trusted_proxy() {
    let (d, smtp) = with_smtp("\n[defense]\ntrusted_proxies = [\"127.0.0.1/32\"]\n").await;
    register_verified(&d, &smtp, "proxied@example.test", 0).await;
    let c = d.client();
    let body = json!({"email": "proxied@example.test", "password": PASSWORD});
    for (lines, client) in [
        (vec!["1.1.1.1", "203.0.113.9"], "203.0.113.9"),
        (vec!["1.1.1.1, 203.0.113.7:4711"], "203.0.113.7"),
        (vec!["1.1.1.1, 127.0.0.1"], "1.1.1.1"),
    ] {
        let mut req = c.post(d.http_url("/v1/auth/login")).json(&body);
        for line in &lines {
            req = req.header("x-forwarded-for", *line);
        }
        let tokens: Value = req.send().await.unwrap().json().await.unwrap();
        let at = tokens["access_token"].as_str().unwrap();
        let list: Value = d.get_auth("/v1/auth/sessions", at).await.json().await.unwrap();
        let mine = list["items"].as_array().unwrap().iter().find(|s| s["current"] == true).unwrap();
        assert_eq!(mine["ip"], client, "{lines:?}");
    }
}

#[tokio::test]
async fn a_file_where_a_socket_should_be_is_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &base_config(""));
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let path = state.join("api.sock");
    std::fs::write(&path, "precious data").unwrap();
    let status = spawn(dir.path()).wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("latchd.log")).unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("not a socket"), "{log}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious data");
}

#[tokio::test]
async fn public_metrics_do_not_tell_new_from_existing_registrations() {
    let (d, smtp) = with_smtp("").await;
    register_verified(&d, &smtp, "counted@example.test", 0).await;
    let again = json!({"email": "counted@example.test", "password": "another long password"});
    assert_eq!(d.post("/v1/auth/register", again).await.status(), 202);
    let text = d.get("/metrics").await.text().await.unwrap();
    assert!(text.contains(r#"latch_auth_events_total{kind="register",result="success"} 2"#), "{text}");
    assert!(!text.contains(r#"kind="register",result="existing""#), "{text}");
}

#[tokio::test]
async fn metrics_pass_promtool_and_carry_the_process_series() {
    let (d, smtp) = with_smtp("").await;
    register_verified(&d, &smtp, "prom@example.test", 0).await;
    login(&d, "prom@example.test", PASSWORD).await;
    d.post("/v1/auth/login", json!({"email": "prom@example.test", "password": "wrong password!"})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = d.get("/metrics").await.text().await.unwrap();
    for series in ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"] {
        assert!(text.contains(&format!("\n{series} ")), "{series} missing:\n{text}");
    }
    assert!(text.contains("# HELP latch_http_requests_total "), "{text}");
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let findings =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && findings.trim().is_empty(), "promtool check metrics:\n{findings}");
}

#[tokio::test]
async fn openid_configuration_names_only_endpoints_that_exist() {
    let d = Latchd::start().await;
    let oidc: Value = d.get("/.well-known/openid-configuration").await.json().await.unwrap();
    for (key, url) in
        oidc.as_object().unwrap().iter().filter(|(k, _)| k.ends_with("_endpoint") || *k == "jwks_uri")
    {
        let path = url.as_str().unwrap().trim_start_matches("https://localhost:8443");
        let method = if *key == "token_endpoint" { reqwest::Method::POST } else { reqwest::Method::GET };
        let res = d.client().request(method, d.https_url(path)).json(&json!({})).send().await.unwrap();
        assert_ne!(res.status(), 404, "{key} = {url} has no route");
    }
    assert_eq!(oidc["introspection_endpoint"], "https://localhost:8443/v1/auth/introspect", "{oidc}");
}
