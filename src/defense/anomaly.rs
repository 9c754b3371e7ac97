//! The anomaly rules of `[defense.anomaly]`: what each one looks at and
//! when it fires. What a firing does (flag, block, revoke, email) is done
//! by `Defense`; every firing is counted in `latch_anomalies_total{rule}`
//! and written to the audit log.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::queries::SeenSession;
use crate::config::ScannerRule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    Bot,
    ScannerUserAgent,
    NewDevices,
    RapidRefresh,
    NewIp,
}

impl Rule {
    pub fn label(self) -> &'static str {
        match self {
            Rule::Bot => "bot",
            Rule::ScannerUserAgent => "scanner_user_agent",
            Rule::NewDevices => "new_devices",
            Rule::RapidRefresh => "rapid_refresh",
            Rule::NewIp => "new_ip",
        }
    }
}

/// When each rule last fired for each subject: a rule fires once per
/// window and subject, not on every request that keeps it true.
#[derive(Default)]
pub struct Recent(Mutex<HashMap<(Rule, String), Instant>>);

impl Recent {
    /// True (and remembered) unless `rule` fired for `subject` within `window`.
    pub fn first_in(&self, rule: Rule, subject: &str, window: Duration) -> bool {
        let Ok(mut seen) = self.0.lock() else { return false };
        let now = Instant::now();
        match seen.get(&(rule, subject.to_string())) {
            Some(at) if now.duration_since(*at) < window => false,
            _ => {
                seen.insert((rule, subject.to_string()), now);
                true
            }
        }
    }

    /// Forgets firings older than `older_than` (memory stays bounded).
    pub fn evict(&self, older_than: Duration) {
        if let Ok(mut seen) = self.0.lock() {
            seen.retain(|_, at| at.elapsed() < older_than);
            seen.shrink_to_fit();
        }
    }
}

/// The user agent names a known scanner (case-insensitive substring).
pub fn scanner(user_agent: Option<&str>, rule: &ScannerRule) -> Option<String> {
    let ua = user_agent?.to_ascii_lowercase();
    rule.patterns.iter().find(|p| !p.is_empty() && ua.contains(&p.to_ascii_lowercase())).cloned()
}

/// The network an address belongs to for `new_ip`: its /24 for IPv4, its
/// /`v6_prefix` for IPv6 (a home connection keeps neither exactly).
fn network(ip: &str, v6_prefix: u8) -> Option<ipnet::IpNet> {
    let ip: IpAddr = ip.parse().ok()?;
    let prefix = if ip.is_ipv4() { 24 } else { v6_prefix.min(128) };
    ipnet::IpNet::new(ip, prefix).ok().map(|n| n.trunc())
}

/// A login from `ip` is from a network none of the account's earlier
/// sessions came from. An account's first session is not an anomaly.
pub fn new_network(ip: &str, earlier: &[SeenSession], v6_prefix: u8) -> bool {
    let Some(net) = network(ip, v6_prefix) else { return false };
    !earlier.is_empty()
        && !earlier.iter().any(|s| s.ip.as_deref().and_then(|i| network(i, v6_prefix)) == Some(net))
}

/// How many devices (including `current`) were first seen on this account
/// within `window` before `now`.
pub fn new_devices(current: Option<&str>, earlier: &[SeenSession], now: i64, window: Duration) -> usize {
    let since = now - i64::try_from(window.as_secs()).unwrap_or(i64::MAX / 2);
    let old: HashSet<&str> =
        earlier.iter().filter(|s| s.created_at < since).filter_map(|s| s.device.as_deref()).collect();
    let mut fresh: HashSet<&str> = earlier
        .iter()
        .filter(|s| s.created_at >= since)
        .filter_map(|s| s.device.as_deref())
        .filter(|d| !old.contains(d))
        .collect();
    if let Some(current) = current.filter(|d| !old.contains(d)) {
        fresh.insert(current);
    }
    fresh.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(created_at: i64, ip: &str, device: &str) -> SeenSession {
        SeenSession { created_at, ip: Some(ip.into()), device: Some(device.into()) }
    }

    #[test]
    fn new_networks_and_new_devices_are_told_from_known_ones() {
        let earlier = [seen(0, "198.51.100.7", "laptop")];
        assert!(!new_network("198.51.100.99", &earlier, 64), "same /24");
        assert!(new_network("203.0.113.9", &earlier, 64));
        assert!(!new_network("203.0.113.9", &[], 64), "a first login is not new");
        let recent = [seen(0, "x", "laptop"), seen(5000, "x", "phone"), seen(5100, "x", "tablet")];
        assert_eq!(new_devices(Some("watch"), &recent, 5200, Duration::from_secs(3600)), 3);
        assert_eq!(new_devices(Some("laptop"), &recent, 5200, Duration::from_secs(3600)), 2);
    }

    #[test]
    fn a_rule_fires_once_per_window_and_subject() {
        let recent = Recent::default();
        let w = Duration::from_secs(60);
        assert!(recent.first_in(Rule::Bot, "1.1.1.1", w));
        assert!(!recent.first_in(Rule::Bot, "1.1.1.1", w));
        assert!(recent.first_in(Rule::Bot, "2.2.2.2", w));
        assert!(recent.first_in(Rule::ScannerUserAgent, "1.1.1.1", w));
    }
}
