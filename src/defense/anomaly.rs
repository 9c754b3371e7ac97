//! The anomaly rules of `[defense.anomaly]`: what each one looks at and
//! when it fires. What a firing does (flag, block, revoke, email) is done
//! by `Defense`; every firing is counted in `latch_anomalies_total{rule}`
//! and written to the audit log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

#[cfg(test)]
mod tests {
    use super::*;

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
