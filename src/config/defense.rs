//! The `[defense]` section: client-address rules, brute-force thresholds and
//! anomaly rules (API.md "Client address and defenses").

use serde::{Deserialize, Serialize};

use super::values::{Cidr, HumanDuration};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefenseSection {
    pub trusted_proxies: Vec<Cidr>,
    pub allowlist: Vec<Cidr>,
    pub ipv6_prefix: u8,
    pub ip_block: IpBlock,
    pub account_lock: AccountLock,
    pub anomaly: Anomaly,
}

impl Default for DefenseSection {
    fn default() -> Self {
        DefenseSection {
            trusted_proxies: Vec::new(),
            allowlist: Vec::new(),
            ipv6_prefix: 64,
            ip_block: IpBlock::default(),
            account_lock: AccountLock::default(),
            anomaly: Anomaly::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpBlock {
    pub failures: u32,
    pub window: HumanDuration,
    pub duration: HumanDuration,
}

impl Default for IpBlock {
    fn default() -> Self {
        IpBlock { failures: 10, window: HumanDuration::secs(300), duration: HumanDuration::secs(3600) }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountLock {
    pub failures: u32,
    pub base_delay: HumanDuration,
    pub max_delay: HumanDuration,
    pub max_failures_per_hour: u32,
}

impl Default for AccountLock {
    fn default() -> Self {
        AccountLock {
            failures: 5,
            base_delay: HumanDuration::secs(2),
            max_delay: HumanDuration::secs(900),
            max_failures_per_hour: 100,
        }
    }
}

/// What an anomaly rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnomalyAction {
    Flag,
    Block,
    Revoke,
    Email,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Anomaly {
    pub bot: BotRule,
    pub scanner_user_agent: ScannerRule,
    pub new_devices: CountRule,
    pub rapid_refresh: CountRule,
    pub new_ip: NewIpRule,
}

impl Default for Anomaly {
    fn default() -> Self {
        Anomaly {
            bot: BotRule::default(),
            scanner_user_agent: ScannerRule::default(),
            new_devices: CountRule {
                count: 3,
                window: HumanDuration::secs(3600),
                action: AnomalyAction::Flag,
            },
            rapid_refresh: CountRule {
                count: 10,
                window: HumanDuration::secs(600),
                action: AnomalyAction::Flag,
            },
            new_ip: NewIpRule { action: AnomalyAction::Email },
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BotRule {
    pub requests: u32,
    pub window: HumanDuration,
    pub action: AnomalyAction,
    pub block_for: HumanDuration,
}

impl Default for BotRule {
    fn default() -> Self {
        BotRule {
            requests: 300,
            window: HumanDuration::secs(60),
            action: AnomalyAction::Block,
            block_for: HumanDuration::secs(1800),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScannerRule {
    pub patterns: Vec<String>,
    pub action: AnomalyAction,
    pub block_for: HumanDuration,
}

impl Default for ScannerRule {
    fn default() -> Self {
        ScannerRule {
            patterns: ["sqlmap", "nikto", "nmap", "masscan", "zgrab", "nuclei"].map(String::from).to_vec(),
            action: AnomalyAction::Block,
            block_for: HumanDuration::secs(3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CountRule {
    pub count: u32,
    pub window: HumanDuration,
    pub action: AnomalyAction,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewIpRule {
    pub action: AnomalyAction,
}
