//! The rate limits of `[rate_limits]` (and the `bot` rule's request count):
//! GCRA buckets from `governor`, keyed by client address or email, in
//! memory (losing them on restart is fine). A reload rebuilds only the
//! limiters whose rate changed, so buckets keep their state otherwise.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::{Config, Rate};
use crate::http::RateLimitInfo;

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// A keyed limiter, as the `ip`, `credential` and `account` classes use
/// (public for the memory benchmark).
pub type KeyedLimiter = Limiter<Keyed>;
type Direct = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// A class of limit, as `latch_rate_limited_total{scope}` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Ip,
    IpHourly,
    Credential,
    Account,
}

impl Scope {
    pub fn label(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Ip => "ip",
            Scope::IpHourly => "ip_hourly",
            Scope::Credential => "credential",
            Scope::Account => "account",
        }
    }
}

/// A bucket said no.
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    pub scope: Scope,
    /// Whole seconds until one more request would pass.
    pub retry_after: u64,
    pub info: RateLimitInfo,
}

fn quota(rate: Rate) -> Quota {
    let count = NonZeroU32::new(rate.count).unwrap_or(NonZeroU32::MIN);
    let per_cell = (rate.period / count.get()).max(Duration::from_nanos(1));
    Quota::with_period(per_cell).unwrap_or_else(|| Quota::per_second(count)).allow_burst(count)
}

/// One limiter with the rate it was built for.
pub struct Limiter<L> {
    rate: Rate,
    limiter: L,
}

impl Limiter<Keyed> {
    pub fn keyed(rate: Rate) -> Arc<Self> {
        Arc::new(Limiter { rate, limiter: RateLimiter::keyed(quota(rate)).with_middleware() })
    }

    /// Takes one cell from `key`'s bucket.
    pub fn check(&self, scope: Scope, key: &str) -> Result<RateLimitInfo, Refused> {
        let key = key.to_string();
        self.outcome(scope, self.limiter.check_key(&key), self.limiter.clock())
    }

    /// Keys whose buckets are full again are forgotten: memory stays
    /// bounded however many addresses an attacker rotates through.
    pub fn evict_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys with state (for the memory benchmark).
    pub fn keys(&self) -> usize {
        self.limiter.len()
    }
}

impl Limiter<Direct> {
    fn direct(rate: Rate) -> Arc<Self> {
        Arc::new(Limiter { rate, limiter: RateLimiter::direct(quota(rate)).with_middleware() })
    }

    pub fn check(&self, scope: Scope) -> Result<RateLimitInfo, Refused> {
        self.outcome(scope, self.limiter.check(), self.limiter.clock())
    }
}

impl<L> Limiter<L> {
    fn outcome(
        &self,
        scope: Scope,
        decided: Result<
            governor::middleware::StateSnapshot,
            governor::NotUntil<<DefaultClock as Clock>::Instant>,
        >,
        // The limiter's own clock: building a new one (`default()`) runs
        // CPUID calibration, which traps to the hypervisor on a VM and cost
        // a refused caller more than the rest of its request.
        clock: &DefaultClock,
    ) -> Result<RateLimitInfo, Refused> {
        let limit = self.rate.count;
        let per_cell = self.rate.period.as_secs_f64() / f64::from(limit.max(1));
        match decided {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let reset_secs = (f64::from(limit.saturating_sub(remaining)) * per_cell).ceil() as u64;
                Ok(RateLimitInfo { limit, remaining, reset_secs })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(clock.now());
                let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
                let reset_secs = (f64::from(limit) * per_cell).ceil() as u64;
                Err(Refused { scope, retry_after, info: RateLimitInfo { limit, remaining: 0, reset_secs } })
            }
        }
    }
}

/// Every limiter of one config.
#[derive(Clone)]
pub struct Limits {
    pub global: Arc<Limiter<Direct>>,
    pub ip: Arc<Limiter<Keyed>>,
    pub ip_hourly: Arc<Limiter<Keyed>>,
    pub credential: Arc<Limiter<Keyed>>,
    pub account: Arc<Limiter<Keyed>>,
    /// `[defense.anomaly].bot`: requests per window from one address.
    pub bot: Arc<Limiter<Keyed>>,
    /// `[defense.anomaly].rapid_refresh`: refreshes per window of a session.
    pub rapid_refresh: Arc<Limiter<Keyed>>,
}

fn bot_rate(cfg: &Config) -> Rate {
    let bot = &cfg.defense.anomaly.bot;
    Rate { count: bot.requests.max(1), period: bot.window.0.max(Duration::from_millis(1)) }
}

fn refresh_rate(cfg: &Config) -> Rate {
    let rule = &cfg.defense.anomaly.rapid_refresh;
    Rate { count: rule.count.max(1), period: rule.window.0.max(Duration::from_millis(1)) }
}

impl Limits {
    pub fn new(cfg: &Config) -> Limits {
        let r = &cfg.rate_limits;
        Limits {
            global: Limiter::direct(r.global),
            ip: Limiter::keyed(r.ip),
            ip_hourly: Limiter::keyed(r.ip_hourly),
            credential: Limiter::keyed(r.credential),
            account: Limiter::keyed(r.account),
            bot: Limiter::keyed(bot_rate(cfg)),
            rapid_refresh: Limiter::keyed(refresh_rate(cfg)),
        }
    }

    /// The limits of `cfg`, keeping every limiter (and its buckets) whose
    /// rate did not change.
    pub fn rebuilt(&self, cfg: &Config) -> Limits {
        let r = &cfg.rate_limits;
        let keep = |old: &Arc<Limiter<Keyed>>, rate: Rate| {
            if old.rate == rate { Arc::clone(old) } else { Limiter::keyed(rate) }
        };
        Limits {
            global: if self.global.rate == r.global {
                Arc::clone(&self.global)
            } else {
                Limiter::direct(r.global)
            },
            ip: keep(&self.ip, r.ip),
            ip_hourly: keep(&self.ip_hourly, r.ip_hourly),
            credential: keep(&self.credential, r.credential),
            account: keep(&self.account, r.account),
            bot: keep(&self.bot, bot_rate(cfg)),
            rapid_refresh: keep(&self.rapid_refresh, refresh_rate(cfg)),
        }
    }

    pub fn evict_idle(&self) {
        for keyed in
            [&self.ip, &self.ip_hourly, &self.credential, &self.account, &self.bot, &self.rapid_refresh]
        {
            keyed.evict_idle();
        }
    }
}

/// The tighter of two allowances: fewer requests left.
pub fn tighter(a: Option<RateLimitInfo>, b: RateLimitInfo) -> Option<RateLimitInfo> {
    match a {
        Some(a) if a.remaining <= b.remaining => Some(a),
        _ => Some(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_a_minute_lets_twenty_through_then_says_when() {
        let l = Limiter::keyed(Rate { count: 20, period: Duration::from_secs(60) });
        let passed = (0..25).filter(|_| l.check(Scope::Ip, "k").is_ok()).count();
        assert_eq!(passed, 20);
        let refused = l.check(Scope::Ip, "k").unwrap_err();
        assert!((1..=3).contains(&refused.retry_after), "{refused:?}");
        assert_eq!(refused.info.limit, 20);
        assert!(l.check(Scope::Ip, "other").is_ok(), "keys are separate");
    }

    #[test]
    fn idle_keys_are_evicted() {
        let l = Limiter::keyed(Rate { count: 1000, period: Duration::from_millis(1) });
        for i in 0..10_000 {
            let _ = l.check(Scope::Ip, &format!("10.0.{}.{}", i / 256, i % 256));
        }
        std::thread::sleep(Duration::from_millis(20));
        l.evict_idle();
        assert_eq!(l.keys(), 0, "every bucket is full again, so every key goes");
    }
}
