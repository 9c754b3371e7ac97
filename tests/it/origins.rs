//! `[http].trusted_hosts` and `[http].cors_origins`: a Host outside the list
//! is refused (probes and the Unix socket excepted), browser origins on the
//! list get CORS answers, others get none (a refused preflight says why),
//! and a reload changes both.

use reqwest::Method;

use crate::harness::{Latchd, assert_problem, base_config, unix_request, write_config};

const HTTP: &str = "\n[http]\ncors_origins = [\"https://app.example.test\"]\n\
                    trusted_hosts = [\"localhost\", \"*.example.lan\"]\n";

fn preflight(d: &Latchd, origin: &str) -> reqwest::RequestBuilder {
    d.client()
        .request(Method::OPTIONS, d.https_url("/v1/auth/login"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
}

#[tokio::test]
async fn hosts_outside_trusted_hosts_are_refused() {
    let d = Latchd::start_with(&base_config(HTTP)).await;
    let jwks = d.https_url("/.well-known/jwks.json");
    let with_host = |host: &str| d.client().get(&jwks).header("host", host.to_string()).send();
    assert_eq!(with_host("localhost").await.unwrap().status(), 200);
    assert_eq!(with_host("auth.example.lan:8443").await.unwrap().status(), 200, "wildcard, port ignored");
    let refused = with_host("evil.test").await.unwrap();
    assert_eq!(refused.headers()["x-content-type-options"], "nosniff", "refusals carry security headers");
    let body = assert_problem(refused, 400, "invalid-request").await;
    assert!(body["detail"].as_str().unwrap().contains("trusted_hosts"), "{body}");
    assert_problem(with_host("example.lan").await.unwrap(), 400, "invalid-request").await;
    let probe = d.client().get(d.https_url("/health")).header("host", "10.0.0.7").send().await.unwrap();
    assert_eq!(probe.status(), 200, "probes answer whatever the Host");
    // A Unix socket has no Host to spoof.
    let path = d.listener("unix")["path"].as_str().unwrap().to_string();
    let (status, text) = unix_request(std::path::Path::new(&path), "GET /.well-known/jwks.json");
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn listed_origins_get_cors_answers_and_a_reload_changes_the_list() {
    let d = Latchd::start_with(&base_config(HTTP)).await;
    let res = preflight(&d, "https://app.example.test").send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.test");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert!(h["access-control-allow-headers"].to_str().unwrap().contains("content-type"));
    assert_eq!(h["access-control-max-age"], "600");
    assert!(!h.contains_key("access-control-allow-credentials"), "bearer tokens, not cookies");

    let res =
        d.client().get(d.https_url("/.well-known/jwks.json")).header("origin", "https://app.example.test");
    let res = res.send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example.test");
    assert!(res.headers()["vary"].to_str().unwrap().to_ascii_lowercase().contains("origin"));
    let exposed = res.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(exposed.contains("x-request-id") && exposed.contains("retry-after"), "{exposed}");

    // Another origin: the preflight is refused, a plain request is answered
    // without CORS headers (the browser then keeps the answer from the page).
    assert_problem(preflight(&d, "https://evil.test").send().await.unwrap(), 400, "invalid-request").await;
    let res = d.client().get(d.https_url("/.well-known/jwks.json")).header("origin", "https://evil.test");
    let res = res.send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(!res.headers().contains_key("access-control-allow-origin"));

    let swapped = HTTP.replace("https://app.example.test", "https://evil.test");
    write_config(d.dir.path(), &base_config(&swapped));
    d.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !preflight(&d, "https://evil.test").send().await.unwrap().status().is_success() {
        assert!(std::time::Instant::now() < deadline, "reload did not apply:\n{}", d.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let old = preflight(&d, "https://app.example.test").send().await.unwrap();
    assert_eq!(old.status(), 400, "the old origin is gone after the reload");
}

/// A refused preflight says which part of it the config does not allow,
/// since the browser's console shows only that CORS blocked the call.
#[tokio::test]
async fn a_refused_preflight_says_why() {
    let d = Latchd::start_with(&base_config(HTTP)).await;
    let asking = |d: &Latchd, origin: &str, method: &str, headers: &str| {
        let req = d.client().request(Method::OPTIONS, d.https_url("/v1/auth/login"));
        let req = req.header("origin", origin).header("access-control-request-method", method);
        req.header("access-control-request-headers", headers).send()
    };
    let detail = |res: reqwest::Response| async {
        let body = assert_problem(res, 400, "invalid-request").await;
        body["detail"].as_str().unwrap().to_string()
    };
    let (listed, other) = ("https://app.example.test", "https://app.example.test:8443");
    let origin = detail(asking(&d, other, "POST", "content-type").await.unwrap()).await;
    assert_eq!(origin, "The origin https://app.example.test:8443 is not in [http].cors_origins.");
    let method = detail(asking(&d, listed, "TRACE", "content-type").await.unwrap()).await;
    assert_eq!(method, "Cross-origin calls may use GET, POST, PUT, PATCH, DELETE.");
    let headers = detail(asking(&d, listed, "POST", "Content-Type, X-Tenant").await.unwrap()).await;
    assert!(headers.contains("authorization, content-type, accept, x-request-id"), "{headers}");
    assert!(headers.ends_with("the preflight asked for x-tenant."), "{headers}");

    let closed = Latchd::start().await;
    let off = detail(asking(&closed, listed, "POST", "content-type").await.unwrap()).await;
    assert!(off.starts_with("Cross-origin calls are off") && off.contains("which is empty"), "{off}");
}
