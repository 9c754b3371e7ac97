//! Who is calling: the client address (API.md "Client address and
//! defenses"), user agent and request id, for sessions, audit and limits.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use super::config_of;
use super::problem::REQUEST_ID;
use crate::config::Cidr;

#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// An IP address, or `unix` for a Unix-socket caller without a header.
    pub ip: String,
    pub user_agent: Option<String>,
    pub request_id: String,
}

/// IPv4-mapped IPv6 addresses are read as IPv4.
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn trusted(ip: IpAddr, proxies: &[Cidr]) -> bool {
    proxies.iter().any(|c| c.0.contains(&ip))
}

/// One `X-Forwarded-For` hop: an address, with or without a port
/// (`203.0.113.9`, `203.0.113.9:4711`, `[2001:db8::1]:443`).
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical)
}

/// A hop that is not an address, as a key that cannot inject anything:
/// at most 64 characters of `[A-Za-z0-9.:_-]`.
fn opaque_hop(hop: &str) -> String {
    let kept: String =
        hop.trim().chars().filter(|c| c.is_ascii_alphanumeric() || ".:_-".contains(*c)).take(64).collect();
    format!("invalid:{kept}")
}

/// The TCP peer, unless it is a trusted proxy (or the call came over a Unix
/// socket): then the right-most `X-Forwarded-For` hop that is not itself a
/// trusted proxy, reading every header line as one list (proxies append
/// lines as well as entries). Walking right to left, a hop that is not an
/// address ends the walk and is the client: whatever stands left of it was
/// written by someone no trusted proxy vouches for. A header from an
/// untrusted peer is ignored.
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: &[&str], proxies: &[Cidr]) -> String {
    let peer = peer.map(canonical);
    let believe_header = peer.is_none_or(|p| trusted(p, proxies));
    if believe_header {
        let mut last = None;
        for hop in
            forwarded_for.iter().rev().flat_map(|line| line.rsplit(',')).filter(|h| !h.trim().is_empty())
        {
            let Some(ip) = hop_address(hop) else { return opaque_hop(hop) };
            last = Some(ip);
            if !trusted(ip, proxies) {
                return ip.to_string();
            }
        }
        if let Some(ip) = last {
            return ip.to_string();
        }
    }
    peer.map_or_else(|| "unix".to_string(), |p| p.to_string())
}

/// Whether a TLS-terminating proxy says the browser's connection is HTTPS:
/// the peer is a trusted proxy (or the call came over a Unix socket) and
/// every `X-Forwarded-Proto` value is `https`. A header from anyone else is
/// ignored, as for `X-Forwarded-For`.
pub fn forwarded_https(
    head: &actix_web::http::header::HeaderMap,
    peer: Option<IpAddr>,
    proxies: &[Cidr],
) -> bool {
    if !peer.map(canonical).is_none_or(|p| trusted(p, proxies)) {
        return false;
    }
    let mut values = head
        .get_all("x-forwarded-proto")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .peekable();
    values.peek().is_some() && values.all(|v| v.eq_ignore_ascii_case("https"))
}

impl ClientInfo {
    /// Works out who is calling from the request head; the request-context
    /// middleware does this once per request (see `of`).
    pub fn read(
        head: &actix_web::http::header::HeaderMap,
        peer: Option<IpAddr>,
        proxies: &[Cidr],
        request_id: &str,
    ) -> ClientInfo {
        let lines: Vec<&str> = head.get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect();
        let ip = client_ip(peer, &lines, proxies);
        let user_agent =
            head.get("user-agent").and_then(|v| v.to_str().ok()).map(|s| s.chars().take(256).collect());
        ClientInfo { ip, user_agent, request_id: request_id.to_string() }
    }

    /// The caller of `req`: as the middleware recorded it, else worked out.
    pub fn of(req: &HttpRequest) -> ClientInfo {
        if let Some(known) = req.extensions().get::<ClientInfo>() {
            return known.clone();
        }
        let cfg = config_of(req);
        let proxies = cfg.as_ref().map_or(&[][..], |c| &c.defense.trusted_proxies[..]);
        let request_id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
        ClientInfo::read(req.headers(), req.peer_addr().map(|a| a.ip()), proxies, &request_id)
    }
}

impl FromRequest for ClientInfo {
    type Error = Infallible;
    type Future = Ready<Result<Self, Infallible>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(ClientInfo::of(req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_https_is_believed_only_from_trusted_proxies_and_only_when_every_hop_says_so() {
        use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
        let proxies = cidrs(&["10.0.0.0/8"]);
        let head = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let proxy = Some("10.1.1.1".parse().unwrap());
        let stranger = Some("198.51.100.7".parse().unwrap());
        assert!(forwarded_https(&head(&["https"]), proxy, &proxies));
        assert!(forwarded_https(&head(&["HTTPS"]), None, &proxies), "a Unix-socket caller is a proxy");
        assert!(!forwarded_https(&head(&["https"]), stranger, &proxies));
        assert!(!forwarded_https(&head(&["https, http"]), proxy, &proxies));
        assert!(!forwarded_https(&head(&["https", "http"]), proxy, &proxies));
        assert!(!forwarded_https(&head(&[]), proxy, &proxies));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = cidrs(&["10.0.0.0/8"]);
        let peer = Some("10.1.1.1".parse().unwrap());
        assert_eq!(client_ip(peer, &["203.0.113.9, 10.2.2.2"], &proxies), "203.0.113.9");
        let stranger = Some("198.51.100.7".parse().unwrap());
        assert_eq!(client_ip(stranger, &["203.0.113.9"], &proxies), "198.51.100.7");
        assert_eq!(client_ip(None, &[], &proxies), "unix");
        assert_eq!(client_ip(None, &["203.0.113.9"], &proxies), "203.0.113.9");
        assert_eq!(client_ip(Some("::ffff:192.0.2.1".parse().unwrap()), &[], &proxies), "192.0.2.1");
    }

    #[test]
    fn every_line_counts_and_the_walk_stops_at_a_hop_that_is_no_address() {
        let proxies = cidrs(&["10.0.0.0/8"]);
        let peer = Some("10.1.1.1".parse().unwrap());
        // A second line appended by the proxy holds the real client.
        assert_eq!(client_ip(peer, &["1.1.1.1", "203.0.113.9, 10.2.2.2"], &proxies), "203.0.113.9");
        // A proxy writing ip:port is still understood.
        assert_eq!(client_ip(peer, &["1.1.1.1, 203.0.113.9:4711"], &proxies), "203.0.113.9");
        assert_eq!(client_ip(peer, &["[2001:db8::1]:443"], &proxies), "2001:db8::1");
        // Garbage is the client; what the attacker wrote left of it is not.
        assert_eq!(client_ip(peer, &["1.1.1.1, unknown"], &proxies), "invalid:unknown");
        assert_eq!(client_ip(peer, &["1.1.1.1, <script>"], &proxies), "invalid:script");
    }
}
