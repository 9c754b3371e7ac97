//! Login throttling keyed by the normalized email whether or not an
//! account exists (so it reveals nothing), per `[defense].account_lock`:
//!
//! - per (email, client address): after `failures` failed logins, each
//!   further one doubles a delay from `base_delay` up to `max_delay`; while
//!   a delay runs, attempts are refused before any hashing and do not
//!   extend it. An attacker's address is slowed; the owner's is not.
//! - per email: `max_failures_per_hour` failures from all addresses
//!   together lock the email until the oldest of them is an hour old — the
//!   ceiling for guessing from many addresses. This lock is persisted
//!   (`login_locks`); the per-address delays live in memory.
//!
//! A password reset clears both for the email.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::config::AccountLock;

const HOUR_SECS: i64 = 3600;

/// Failures of one email from one address.
struct Delay {
    failures: u32,
    until: Option<Instant>,
    last: Instant,
}

#[derive(Default)]
pub struct Throttle {
    per_address: Mutex<HashMap<(String, String), Delay>>,
    /// Unix seconds of each email's failures within the last hour.
    per_email: Mutex<HashMap<String, VecDeque<i64>>>,
    /// Emails locked account-wide, until (Unix seconds).
    locks: RwLock<HashMap<String, i64>>,
}

impl Throttle {
    pub fn new(locks: HashMap<String, i64>) -> Throttle {
        Throttle { locks: RwLock::new(locks), ..Throttle::default() }
    }

    /// `Err(seconds to wait)` while `email` may not try from `key`.
    pub fn check(&self, email: &str, key: &str, now: i64) -> Result<(), u64> {
        if let Some(until) = self.locks.read().ok().and_then(|l| l.get(email).copied()).filter(|u| *u > now) {
            return Err(u64::try_from(until - now).unwrap_or(1).max(1));
        }
        let all = self.per_address.lock().map_err(|_| 1u64)?;
        let waiting = all.get(&(email.to_string(), key.to_string())).and_then(|d| d.until);
        match waiting.map(|until| until.saturating_duration_since(Instant::now())) {
            Some(left) if !left.is_zero() => Err(left.as_secs_f64().ceil().max(1.0) as u64),
            _ => Ok(()),
        }
    }

    /// Records a failed login; returns a new account-wide lock's end when
    /// this failure crossed the hourly ceiling.
    pub fn failed(&self, email: &str, key: &str, rule: &AccountLock, now: i64) -> Option<i64> {
        if let Ok(mut all) = self.per_address.lock() {
            let at = Instant::now();
            let d = all.entry((email.to_string(), key.to_string())).or_insert(Delay {
                failures: 0,
                until: None,
                last: at,
            });
            d.failures += 1;
            d.last = at;
            if d.failures >= rule.failures.max(1) {
                let doublings = (d.failures - rule.failures.max(1)).min(30);
                let delay = rule.base_delay.0.saturating_mul(1 << doublings).min(rule.max_delay.0);
                d.until = Some(at + delay);
            }
        }
        let mut per_email = self.per_email.lock().ok()?;
        let times = per_email.entry(email.to_string()).or_default();
        times.push_back(now);
        while times.front().is_some_and(|t| now - t >= HOUR_SECS) {
            times.pop_front();
        }
        if times.len() < rule.max_failures_per_hour.max(1) as usize {
            return None;
        }
        let until = times.front().copied().unwrap_or(now) + HOUR_SECS;
        self.locks.write().ok()?.insert(email.to_string(), until);
        Some(until)
    }

    /// A correct password from this address: its delay is over.
    pub fn succeeded(&self, email: &str, key: &str) {
        if let Ok(mut all) = self.per_address.lock() {
            all.remove(&(email.to_string(), key.to_string()));
        }
    }

    /// Forgets every failure and lock of `email` (a password reset proved
    /// the address); true if it was locked account-wide.
    pub fn clear(&self, email: &str) -> bool {
        if let Ok(mut all) = self.per_address.lock() {
            all.retain(|(e, _), _| e != email);
        }
        if let Ok(mut per_email) = self.per_email.lock() {
            per_email.remove(email);
        }
        self.locks.write().map(|mut l| l.remove(email).is_some()).unwrap_or(false)
    }

    /// Until when `email` is locked account-wide, if it is.
    pub fn locked_until(&self, email: &str, now: i64) -> Option<i64> {
        self.locks.read().ok()?.get(email).copied().filter(|u| *u > now)
    }

    /// Emails locked account-wide right now.
    pub fn locked(&self, now: i64) -> usize {
        self.locks.read().map(|l| l.values().filter(|u| **u > now).count()).unwrap_or(0)
    }

    /// Drops what can no longer matter: locks that ended, hourly counts
    /// over an hour old, and per-address counts idle longer than `idle`.
    /// Returns the emails whose locks ended (to delete from the database).
    pub fn evict(&self, now: i64, idle: Duration) -> Vec<String> {
        if let Ok(mut all) = self.per_address.lock() {
            all.retain(|_, d| d.last.elapsed() <= idle || d.until.is_some_and(|u| u > Instant::now()));
            all.shrink_to_fit();
        }
        if let Ok(mut per_email) = self.per_email.lock() {
            per_email.retain(|_, t| t.back().is_some_and(|last| now - last < HOUR_SECS));
            per_email.shrink_to_fit();
        }
        let Ok(mut locks) = self.locks.write() else { return Vec::new() };
        let ended: Vec<String> = locks.iter().filter(|(_, u)| **u <= now).map(|(e, _)| e.clone()).collect();
        locks.retain(|_, u| *u > now);
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn rule(failures: u32, per_hour: u32) -> AccountLock {
        AccountLock {
            failures,
            base_delay: HumanDuration::secs(2),
            max_delay: HumanDuration::secs(900),
            max_failures_per_hour: per_hour,
        }
    }

    #[test]
    fn delays_start_after_the_allowed_failures_and_stay_per_address() {
        let t = Throttle::default();
        let r = rule(3, 100);
        for _ in 0..2 {
            t.failed("a@x", "1.1.1.1", &r, 1000);
            assert!(t.check("a@x", "1.1.1.1", 1000).is_ok());
        }
        t.failed("a@x", "1.1.1.1", &r, 1000);
        assert_eq!(t.check("a@x", "1.1.1.1", 1000), Err(2));
        assert!(t.check("a@x", "2.2.2.2", 1000).is_ok(), "another address is not slowed");
        t.succeeded("a@x", "1.1.1.1");
        assert!(t.check("a@x", "1.1.1.1", 1000).is_ok());
    }

    #[test]
    fn the_hourly_ceiling_locks_the_email_from_every_address_until_a_reset() {
        let t = Throttle::default();
        let r = rule(1000, 3);
        assert_eq!(t.failed("b@x", "1.1.1.1", &r, 1000), None);
        assert_eq!(t.failed("b@x", "2.2.2.2", &r, 1100), None);
        assert_eq!(t.failed("b@x", "3.3.3.3", &r, 1200), Some(1000 + 3600));
        assert!(t.check("b@x", "9.9.9.9", 1300).is_err());
        assert_eq!(t.locked(1300), 1);
        assert!(t.clear("b@x"));
        assert!(t.check("b@x", "9.9.9.9", 1300).is_ok());
        assert_eq!(t.locked(1300), 0);
    }
}
