//! The ops surface and the HTTP conventions every answer follows: request
//! ids, problem+json errors, security headers, metrics.

use crate::harness::{Latchd, assert_problem, base_config, unix_request};

#[tokio::test]
async fn health_and_ready_answer_json_with_request_ids() {
    let d = Latchd::start().await;
    let res = d.get("/health").await;
    assert_eq!(res.status(), 200);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "generated ids are UUIDs: {id}");
    assert_eq!(res.json::<serde_json::Value>().await.unwrap(), serde_json::json!({"status": "ok"}));
    let res = d.get("/ready").await;
    assert_eq!(res.json::<serde_json::Value>().await.unwrap(), serde_json::json!({"status": "ready"}));
}

#[tokio::test]
async fn request_ids_are_echoed_only_when_safe() {
    let d = Latchd::start().await;
    let c = d.client();
    let res = c.get(d.https_url("/health")).header("x-request-id", "trace-42.a_b").send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-42.a_b");
    for bad in ["has space", "quote\"", &"x".repeat(65)] {
        let res = c.get(d.https_url("/health")).header("x-request-id", bad).send().await.unwrap();
        let got = res.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(got, bad);
        assert!(uuid::Uuid::parse_str(got).is_ok(), "replaced by a UUID: {got}");
    }
}

#[tokio::test]
async fn framework_errors_are_problem_json() {
    let d = Latchd::start().await;
    let c = d.client();
    assert_problem(d.get("/no/such/route").await, 404, "not-found").await;
    let res = c.post(d.https_url("/health")).send().await.unwrap();
    assert_problem(res, 405, "method-not-allowed").await;
    // /metrics is only on listeners that ask for it: not on plain HTTP here.
    let res = c.get(d.http_url("/metrics")).send().await.unwrap();
    assert_problem(res, 404, "not-found").await;
}

/// HEAD is answered wherever GET is (an operator's `curl -I`, a load
/// balancer's check): the GET's status and headers without its body, on a
/// connection that then serves the next request; the access log keeps the
/// method as sent, and a 405 names HEAD beside GET.
#[tokio::test]
async fn head_is_answered_wherever_get_is() {
    let mut d = Latchd::start().await;
    let c = d.client();
    let get = d.get("/health").await;
    let length = get.headers()["content-length"].clone();
    let res = c.head(d.https_url("/health")).header("x-request-id", "head-probe").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], length, "the length the GET's body has");
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert!(res.bytes().await.unwrap().is_empty());
    let res = c.head(d.https_url("/v1/auth/me")).send().await.unwrap();
    assert_eq!(res.status(), 401, "a GET's refusal too");
    assert!(res.bytes().await.unwrap().is_empty());
    let res = c.head(d.https_url("/v1/auth/login")).send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.headers()["allow"].to_str().unwrap()), (405, "POST"));
    let res = c.put(d.https_url("/health")).send().await.unwrap();
    assert_eq!(res.headers()["allow"], "GET, HEAD");
    assert_problem(res, 405, "method-not-allowed").await;
    assert_eq!(d.get("/health").await.json::<serde_json::Value>().await.unwrap()["status"], "ok");
    assert!(d.stop_within(std::time::Duration::from_secs(10)).success());
    let line = d.log().lines().find(|l| l.contains("\"head-probe\"")).map(str::to_string);
    let entry: serde_json::Value = serde_json::from_str(&line.expect("an access-log line")).unwrap();
    assert_eq!((entry["method"].as_str(), entry["status"].as_u64()), (Some("HEAD"), Some(200)));
}

/// A request the HTTP reader cannot take (both a length and chunked: a
/// smuggling attempt) gets a bare 400 and its connection closed; the
/// client's mistake is not the daemon's error, and the log (anyone could
/// send these) carries no ERROR line for it.
#[tokio::test]
async fn a_malformed_request_gets_400_and_no_error_line() {
    use std::io::{Read, Write};
    let mut d = Latchd::start().await;
    let url = d.http_url("");
    let addr = url.trim_start_matches("http://").to_string();
    let smuggled = "POST /v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\
                    Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        s.write_all(smuggled.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    assert_eq!(d.get("/health").await.status(), 200);
    assert!(d.stop_within(std::time::Duration::from_secs(10)).success());
    let log = d.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("\"level\":\"ERROR\"")).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test]
async fn security_headers_are_on_every_answer() {
    let d = Latchd::start().await;
    let c = d.client();
    for res in [d.get("/health").await, d.get("/missing").await] {
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-store");
        assert!(h["strict-transport-security"].to_str().unwrap().starts_with("max-age="));
    }
    // HSTS means nothing over plain HTTP and must not be sent there.
    let res = c.get(d.http_url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("strict-transport-security").is_none());
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn unix_socket_listener_serves_the_api() {
    let d = Latchd::start().await;
    let path = d.listener("unix")["path"].as_str().unwrap().to_string();
    let (status, text) = unix_request(std::path::Path::new(&path), "GET /health");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#"{"status":"ok"}"#), "{text}");
    let mode =
        std::fs::metadata(&path).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions())).unwrap();
    assert_eq!(mode & 0o777, 0o660);
}

/// A socket in a directory not made yet: latchd makes it one the
/// socket's group may enter, or the apps in that group (README: `usermod
/// -aG latch`) could not reach a socket whose own mode lets them in.
#[tokio::test]
async fn a_unix_socket_in_a_new_directory_is_reachable_by_its_group() {
    let d = Latchd::start_with(&base_config("").replace("STATE/api.sock", "STATE/run/app/api.sock")).await;
    let path = std::path::PathBuf::from(d.listener("unix")["path"].as_str().unwrap());
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap()
    };
    let app = path.parent().unwrap();
    assert_eq!((mode(app.parent().unwrap()), mode(app), mode(&path)), (0o750, 0o750, 0o660));
    assert_eq!(mode(&d.state_dir()), 0o700, "a directory already there keeps its mode");
    assert_eq!(unix_request(&path, "GET /health").0, 200);
}

/// Parses Prometheus text format strictly enough to catch a broken line:
/// every sample is `name{labels} value` with a float value.
fn parse_samples(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad name: {line}");
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unclosed labels: {line}");
        }
        out.push((series.to_string(), value));
    }
    out
}

#[tokio::test]
async fn metrics_parse_and_count_requests_by_route_pattern() {
    let d = Latchd::start().await;
    d.get("/health").await;
    d.get("/does-not-exist/probe-zq7k").await;
    let res = d.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = res.text().await.unwrap();
    let samples = parse_samples(&text);
    let find = |series: &str| samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(find(&format!("latch_build_info{{version=\"{version}\"}}")), Some(1.0), "{text}");
    let health = find(r#"latch_http_requests_total{method="GET",route="/health",status="200"}"#);
    assert!(health.is_some_and(|v| v >= 1.0), "{text}");
    // Unmatched paths share one label value so scanners cannot blow up cardinality.
    assert!(
        find(r#"latch_http_requests_total{method="GET",route="unmatched",status="404"}"#).is_some(),
        "{text}"
    );
    assert!(!text.contains("probe-zq7k"), "raw paths never become labels");
    assert!(text.contains("# TYPE latch_http_request_duration_seconds histogram"), "{text}");
    assert!(text.contains("latch_tls_cert_expiry_timestamp_seconds"), "{text}");
}

/// Access-log lines share writes under load; each request must still get
/// exactly one whole JSON line, none lost or torn, and a clean stop writes
/// whatever was still waiting.
#[tokio::test]
async fn every_request_gets_one_whole_access_log_line() {
    let mut d = Latchd::start().await;
    let c = d.client();
    let ids: Vec<String> = (0..400).map(|i| format!("burst-{i}")).collect();
    for chunk in ids.chunks(16) {
        let calls = chunk.iter().map(|id| c.get(d.https_url("/health")).header("x-request-id", id).send());
        for res in futures_util::future::join_all(calls).await {
            assert_eq!(res.unwrap().status(), 200);
        }
    }
    assert!(d.stop_within(std::time::Duration::from_secs(10)).success());
    let log = d.log();
    let mut seen = std::collections::HashMap::new();
    for line in log.lines() {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not one whole JSON line ({e}): {line}"));
        if entry["target"] == "latch::access" {
            *seen.entry(entry["request_id"].as_str().unwrap().to_string()).or_insert(0) += 1;
        }
    }
    for id in &ids {
        assert_eq!(seen.get(id), Some(&1), "{id} in the access log once");
    }
}
