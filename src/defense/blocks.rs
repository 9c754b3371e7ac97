//! IP blocks: the ones in force, cached in memory for the check every
//! request makes (a scan of a short list), and persisted in `ip_blocks`
//! so a restart keeps them. Also the credential-failure counts per client
//! address that start an automatic block (`[defense].ip_block`).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::Serialize;

/// Who created a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Auto,
    Admin,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Auto => "auto",
            Source::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Source {
        if s == "admin" { Source::Admin } else { Source::Auto }
    }
}

/// One block, as `GET /v1/admin/blocked-ips` lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Block {
    pub id: String,
    #[serde(serialize_with = "as_text")]
    #[schema(value_type = String)]
    pub cidr: IpNet,
    pub reason: String,
    pub source: Source,
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String)]
    pub created_at: i64,
    #[serde(serialize_with = "as_rfc3339_opt")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<i64>,
}

fn as_text<S: serde::Serializer>(net: &IpNet, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(net)
}

fn as_rfc3339<S: serde::Serializer>(t: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::clock::rfc3339(*t))
}

fn as_rfc3339_opt<S: serde::Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&crate::clock::rfc3339(*t)),
        None => s.serialize_none(),
    }
}

impl Block {
    pub fn live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

/// The blocks in force and the failure counts that lead to new ones.
#[derive(Default)]
pub struct Blocks {
    active: RwLock<Vec<Block>>,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Blocks {
    pub fn new(loaded: Vec<Block>) -> Blocks {
        Blocks { active: RwLock::new(loaded), failures: Mutex::default() }
    }

    /// The live block covering `ip`, if any.
    pub fn covering(&self, ip: IpAddr, now: i64) -> Option<Block> {
        let active = self.active.read().ok()?;
        active.iter().find(|b| b.live(now) && b.cidr.contains(&ip)).cloned()
    }

    pub fn insert(&self, block: Block) {
        if let Ok(mut active) = self.active.write() {
            active.retain(|b| b.id != block.id);
            active.push(block);
        }
    }

    /// Forgets block `id`; true if it was there.
    pub fn remove(&self, id: &str) -> bool {
        let Ok(mut active) = self.active.write() else { return false };
        let before = active.len();
        active.retain(|b| b.id != id);
        active.len() < before
    }

    /// Drops expired blocks; returns the ids dropped.
    pub fn expire(&self, now: i64) -> Vec<String> {
        let Ok(mut active) = self.active.write() else { return Vec::new() };
        let gone = active.iter().filter(|b| !b.live(now)).map(|b| b.id.clone()).collect();
        active.retain(|b| b.live(now));
        gone
    }

    pub fn list(&self, now: i64) -> Vec<Block> {
        let mut live: Vec<Block> = self
            .active
            .read()
            .map(|a| a.iter().filter(|b| b.live(now)).cloned().collect())
            .unwrap_or_default();
        live.sort_by_key(|b| b.created_at);
        live
    }

    /// Counts a credential failure from `key`; true when `failures` of
    /// them fell inside `window` — time to block (the count starts over).
    pub fn note_failure(&self, key: &str, failures: u32, window: Duration) -> bool {
        let Ok(mut all) = self.failures.lock() else { return false };
        let now = Instant::now();
        let seen = all.entry(key.to_string()).or_default();
        seen.push_back(now);
        while seen.front().is_some_and(|t| now.duration_since(*t) > window) {
            seen.pop_front();
        }
        while seen.len() > failures as usize {
            seen.pop_front();
        }
        if seen.len() >= failures.max(1) as usize {
            all.remove(key);
            return true;
        }
        false
    }

    /// Forgets failure counts older than `window` (memory stays bounded).
    pub fn evict_idle(&self, window: Duration) {
        if let Ok(mut all) = self.failures.lock() {
            all.retain(|_, seen| seen.back().is_some_and(|t| t.elapsed() <= window));
            all.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_inside_the_window_start_a_block_and_blocks_cover_their_network() {
        let blocks = Blocks::default();
        let window = Duration::from_secs(300);
        assert!(!(0..4).any(|_| blocks.note_failure("203.0.113.9", 5, window)));
        assert!(blocks.note_failure("203.0.113.9", 5, window));
        assert!(!blocks.note_failure("203.0.113.9", 5, window), "counting starts over");
        let b = Block {
            id: "b1".into(),
            cidr: "2001:db8::/64".parse().unwrap(),
            reason: "test".into(),
            source: Source::Admin,
            created_at: 0,
            expires_at: Some(100),
        };
        blocks.insert(b);
        assert!(blocks.covering("2001:db8::42".parse().unwrap(), 50).is_some());
        assert!(blocks.covering("2001:db8:1::42".parse().unwrap(), 50).is_none());
        assert!(blocks.covering("2001:db8::42".parse().unwrap(), 100).is_none(), "expired");
        assert_eq!(blocks.expire(100), ["b1"]);
    }
}
