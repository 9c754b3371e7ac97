//! Who is calling: the client address (API.md "Client address and
//! defenses"), user agent and request id, for sessions, audit and limits.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};

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
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn trusted(ip: IpAddr, proxies: &[Cidr]) -> bool {
    proxies.iter().any(|c| c.0.contains(&ip))
}

/// The TCP peer, unless it is a trusted proxy (or the call came over a Unix
/// socket): then the right-most `X-Forwarded-For` entry that is not itself a
/// trusted proxy. A header from an untrusted peer is ignored.
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: Option<&str>, proxies: &[Cidr]) -> String {
    let peer = peer.map(canonical);
    let believe_header = peer.is_none_or(|p| trusted(p, proxies));
    if believe_header && let Some(header) = forwarded_for {
        let hops = header.split(',').rev().filter_map(|h| h.trim().parse::<IpAddr>().ok().map(canonical));
        let mut last = None;
        for hop in hops {
            last = Some(hop);
            if !trusted(hop, proxies) {
                return hop.to_string();
            }
        }
        if let Some(hop) = last {
            return hop.to_string();
        }
    }
    peer.map_or_else(|| "unix".to_string(), |p| p.to_string())
}

impl FromRequest for ClientInfo {
    type Error = Infallible;
    type Future = Ready<Result<Self, Infallible>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let cfg = config_of(req);
        let proxies = cfg.as_ref().map_or(&[][..], |c| &c.defense.trusted_proxies[..]);
        let header = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
        let ip = client_ip(req.peer_addr().map(|a| a.ip()), header, proxies);
        let user_agent = req
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect());
        let request_id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
        ready(Ok(ClientInfo { ip, user_agent, request_id }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = cidrs(&["10.0.0.0/8"]);
        let peer = Some("10.1.1.1".parse().unwrap());
        assert_eq!(client_ip(peer, Some("203.0.113.9, 10.2.2.2"), &proxies), "203.0.113.9");
        let stranger = Some("198.51.100.7".parse().unwrap());
        assert_eq!(client_ip(stranger, Some("203.0.113.9"), &proxies), "198.51.100.7");
        assert_eq!(client_ip(None, None, &proxies), "unix");
        assert_eq!(client_ip(None, Some("203.0.113.9"), &proxies), "203.0.113.9");
        assert_eq!(client_ip(Some("::ffff:192.0.2.1".parse().unwrap()), None, &proxies), "192.0.2.1");
    }
}
