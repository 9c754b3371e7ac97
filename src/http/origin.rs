//! Who may talk to latch over the network, by name: `[http].trusted_hosts`
//! (the Host a request names) and `[http].cors_origins` (the browser origins
//! whose pages may call the API). Both are read from the live config on each
//! request, so a reload applies at once; empty lists mean "any host" and
//! "no cross-origin browser access".

use std::sync::Arc;

use actix_cors::Cors;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, Uri};
use arc_swap::ArcSwap;

use super::problem::echoable;
use crate::config::{Config, authority_host};

/// Paths a load balancer or monitor probes by IP address; they answer
/// whatever the Host, as they do with rate limits.
const PROBES: [&str; 3] = ["/health", "/ready", "/metrics"];

/// The host a request names (URI authority for HTTP/2 and absolute-form,
/// else the Host header), lower-cased, without port or IPv6 brackets.
pub fn request_host(uri: &Uri, host_header: Option<&str>) -> Option<String> {
    let authority = uri.authority().map(|a| a.as_str()).or(host_header)?;
    let host = authority_host(authority)?.trim_end_matches('.').to_ascii_lowercase();
    Some(host).filter(|h| !h.is_empty())
}

/// Whether a request for `path` naming `host` may proceed. An entry
/// `*.example.com` covers every subdomain of example.com, not example.com.
pub fn host_allowed(trusted: &[String], path: &str, host: Option<&str>) -> bool {
    if trusted.is_empty() || PROBES.contains(&path) {
        return true;
    }
    let Some(host) = host else { return false };
    trusted.iter().any(|entry| match entry.strip_prefix("*.") {
        Some(suffix) => host.strip_suffix(suffix).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => entry == host,
    })
}

/// Whether a browser page from `origin` may call the API: exact match
/// (scheme, host and port; entries are lower-cased by the config rules),
/// or any origin with `*`.
fn origin_allowed(allowed: &[String], origin: &[u8]) -> bool {
    allowed.iter().any(|a| a == "*" || a.as_bytes().eq_ignore_ascii_case(origin))
}

/// The CORS middleware. Bearer tokens travel in a header, not a cookie, so
/// credentials mode stays off; preflights are cached for 10 minutes.
pub fn cors(config: Arc<ArcSwap<Config>>) -> Cors {
    let name = HeaderName::from_static;
    Cors::default()
        .allowed_origin_fn(move |origin, _| {
            origin_allowed(&config.load().http.cors_origins, origin.as_bytes())
        })
        .allowed_methods(CORS_METHODS)
        .allowed_headers(CORS_HEADERS.map(name))
        .max_age(600)
}

/// What a cross-origin page may use: methods, and headers in lower case
/// (a preflight's `Access-Control-Request-Headers` is compared lowered).
const CORS_METHODS: [Method; 5] = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
const CORS_HEADERS: [&str; 4] = ["authorization", "content-type", "accept", "x-request-id"];

/// Why a CORS preflight was refused, in the config's terms: actix-cors
/// answers a bare 400, and the developer of a browser app, whose console
/// shows only "blocked by CORS policy", tries it again with curl to learn
/// why. `None` when the request is not a preflight or nothing below fits.
pub fn preflight_refusal(method: &Method, headers: &HeaderMap, allowed: &[String]) -> Option<String> {
    let asked = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    if method != Method::OPTIONS {
        return None;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Some("A CORS preflight needs an Origin header.".into());
    };
    if !origin_allowed(allowed, origin.as_bytes()) {
        let shown = shown(origin).map_or_else(String::new, |o| format!(" {o}"));
        return Some(if allowed.is_empty() {
            format!(
                "Cross-origin calls are off: the origin{shown} is not in [http].cors_origins, which is empty."
            )
        } else {
            format!("The origin{shown} is not in [http].cors_origins.")
        });
    }
    if !CORS_METHODS.iter().any(|m| m.as_str().as_bytes() == asked.as_bytes()) {
        let methods: Vec<&str> = CORS_METHODS.iter().map(Method::as_str).collect();
        return Some(format!("Cross-origin calls may use {}.", methods.join(", ")));
    }
    let names = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).and_then(|v| v.to_str().ok());
    let unknown: Vec<String> = (names.unwrap_or_default().split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty() && !CORS_HEADERS.contains(&n.as_str()))
        .collect();
    (!unknown.is_empty()).then(|| {
        format!(
            "Cross-origin calls may send only the headers {}; the preflight asked for {}.",
            CORS_HEADERS.join(", "),
            shown_list(&unknown)
        )
    })
}

/// An origin as the client sent it, if it may go back into the answer.
fn shown(value: &HeaderValue) -> Option<&str> {
    value.to_str().ok().filter(|v| echoable(v))
}

fn shown_list(names: &[String]) -> String {
    let joined = names.join(", ");
    if echoable(&joined) { joined } else { "others".into() }
}

/// Response headers a cross-origin page may read. Set here rather than with
/// actix-cors' `expose_headers`, whose list comes out of a HashSet in a
/// different order on each worker, so two answers would not be identical.
const EXPOSED: &str =
    "x-request-id, retry-after, www-authenticate, ratelimit-limit, ratelimit-remaining, ratelimit-reset";

/// Adds `Access-Control-Expose-Headers` to an answer that CORS let through.
pub fn expose_headers(h: &mut HeaderMap) {
    if h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hosts_are_read_without_port_brackets_or_case() {
        let plain = Uri::from_static("/v1/auth/login");
        assert_eq!(request_host(&plain, Some("Auth.Example.LAN:8443")).as_deref(), Some("auth.example.lan"));
        assert_eq!(request_host(&plain, Some("[::1]:8443")).as_deref(), Some("::1"));
        assert_eq!(request_host(&plain, Some("example.com.")).as_deref(), Some("example.com"));
        assert_eq!(request_host(&plain, None), None);
        let absolute = Uri::from_static("https://other.test/v1/auth/login");
        assert_eq!(request_host(&absolute, Some("auth.example.lan")).as_deref(), Some("other.test"));
    }

    #[test]
    fn trusted_hosts_match_exactly_or_by_subdomain_wildcard() {
        let trusted = list(&["auth.example.lan", "*.example.com"]);
        let ok = |host: &str| host_allowed(&trusted, "/v1/auth/login", Some(host));
        assert!(ok("auth.example.lan"));
        assert!(ok("a.example.com") && ok("b.a.example.com"));
        assert!(!ok("example.com"), "the wildcard covers subdomains only");
        assert!(!ok("evilexample.com") && !ok("auth.example.lan.evil.test"));
        assert!(!host_allowed(&trusted, "/v1/auth/login", None), "no Host at all");
        assert!(host_allowed(&trusted, "/health", Some("10.0.0.7")), "probes answer any Host");
        assert!(host_allowed(&[], "/v1/auth/login", Some("anything")), "empty list: any host");
    }

    #[test]
    fn only_a_refused_preflight_is_explained() {
        let mut h = HeaderMap::new();
        let listed = list(&["https://app.example.com"]);
        assert_eq!(preflight_refusal(&Method::OPTIONS, &h, &listed), None, "no preflight: no method asked");
        h.insert(header::ACCESS_CONTROL_REQUEST_METHOD, HeaderValue::from_static("POST"));
        assert_eq!(preflight_refusal(&Method::POST, &h, &listed), None, "not OPTIONS");
        let said = preflight_refusal(&Method::OPTIONS, &h, &listed).unwrap();
        assert!(said.contains("needs an Origin"), "{said}");
        h.insert(header::ORIGIN, HeaderValue::from_static("https://app.example.com"));
        assert_eq!(preflight_refusal(&Method::OPTIONS, &h, &listed), None, "nothing refused");
        h.insert(header::ORIGIN, HeaderValue::from_bytes(b"https://\xff.test").unwrap());
        let said = preflight_refusal(&Method::OPTIONS, &h, &listed).unwrap();
        assert_eq!(said, "The origin is not in [http].cors_origins.", "not echoed");
    }

    #[test]
    fn origins_match_whole_and_any_with_star() {
        let allowed = list(&["https://app.example.com"]);
        assert!(origin_allowed(&allowed, b"https://app.example.com"));
        assert!(origin_allowed(&allowed, b"HTTPS://APP.EXAMPLE.COM"));
        assert!(!origin_allowed(&allowed, b"https://app.example.com:8443"));
        assert!(!origin_allowed(&allowed, b"http://app.example.com"));
        assert!(!origin_allowed(&[], b"https://app.example.com"));
        assert!(origin_allowed(&list(&["*"]), b"https://anything.test"));
    }
}
