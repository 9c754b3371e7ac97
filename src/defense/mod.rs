//! The defenses of DESIGN.md §6 and API.md "Client address and defenses":
//! rate limits, IP blocks, login throttling and anomaly rules. A layer:
//! the HTTP gate (`http::Gate`) asks it about every request before the
//! handler, sessions ask it about logins and refreshes, accounts clear it
//! on a password reset, and the admin feature lists and edits blocks.
//!
//! Refusals are cheap by design: a blocked, rate-limited or throttled
//! request is decided in memory — no argon2, no database read or write.
//! What must survive a restart (IP blocks, account-wide login locks) is
//! written by a background worker (`worker.rs`) off the request path.

mod admin;
mod anomaly;
mod blocks;
mod handlers;
mod limits;
mod logins;
mod places;
mod queries;
mod throttle;
mod worker;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::auth::ApiKeys;
use crate::config::{AnomalyAction, Commit, Config, Preparing, Reloadable};
use crate::http::problem::{Kind, RateLimitInfo};
use crate::http::{Admission, ClientInfo, Gate, Problem};
use crate::store::Store;

pub use admin::{BlockError, BlockRequest};
pub use anomaly::Rule;
pub use blocks::{Block, Source};
pub use handlers::routes;
pub use limits::{KeyedLimiter, Refused, Scope};
pub use worker::{Context, start};

use anomaly::Recent;
use blocks::Blocks;
use limits::{Limits, tighter};
use places::Places;
use throttle::Throttle;
use worker::Event;

/// Probes answer whatever happens, as load balancers expect.
const PROBES: [&str; 3] = ["/health", "/ready", "/metrics"];
/// Routes of the stricter `credential` class (API.md: login, forgot,
/// reset, mfa), per client address — and the pages' forms that do the same.
const CREDENTIAL_ROUTES: [&str; 8] = [
    "/v1/auth/login",
    "/v1/auth/login/mfa",
    "/v1/auth/password/forgot",
    "/v1/auth/password/reset",
    "/account/login",
    "/account/login/mfa",
    "/account/forgot",
    "/reset-password",
];

/// The defenses' state; one per daemon, shared.
pub struct Defense {
    limits: ArcSwap<Limits>,
    blocks: Blocks,
    throttle: Throttle,
    recent: Recent,
    places: Places,
    events: mpsc::Sender<Event>,
    store: Store,
    api_keys: Arc<ApiKeys>,
}

/// A client's key for limits and failure counts (its address, or its
/// IPv6 /`prefix` network, or `unix`) and its address, if it has one.
pub fn client_key(ip: &str, v6_prefix: u8) -> (String, Option<IpAddr>) {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => {
            let net = ipnet::Ipv6Net::new(v6, v6_prefix.min(128)).map(|n| n.trunc());
            (net.map_or_else(|_| ip.to_string(), |n| n.to_string()), Some(IpAddr::V6(v6)))
        }
        Ok(v4) => (ip.to_string(), Some(v4)),
        Err(_) => (ip.to_string(), None),
    }
}

fn rate_limited(scope: &'static str) {
    metrics::counter!("latch_rate_limited_total", "scope" => scope).increment(1);
}

fn blocked_answer(block: &Block, now: i64) -> Problem {
    let retry = block.expires_at.map_or(3600, |t| u64::try_from(t - now).unwrap_or(1).max(1));
    Problem::new(Kind::IpBlocked).with_retry_after(retry)
}

fn allowlisted(cfg: &Config, ip: Option<IpAddr>) -> bool {
    ip.is_some_and(|ip| cfg.defense.allowlist.iter().any(|c| c.0.contains(&ip)))
}

impl Defense {
    /// Records a firing of `rule`: counted, and audited by the worker.
    fn fired(&self, rule: Rule, client: &ClientInfo, user_id: Option<&str>, details: serde_json::Value) {
        metrics::counter!("latch_anomalies_total", "rule" => rule.label()).increment(1);
        let client = client.clone();
        self.send(Event::Anomaly { rule, client, user_id: user_id.map(str::to_string), details });
    }

    fn send(&self, event: Event) {
        if self.events.try_send(event).is_err() {
            metrics::counter!("latch_background_dropped_total", "queue" => "defense").increment(1);
        }
    }

    /// Blocks `ip`'s network now (memory) and for good (the worker).
    fn auto_block(&self, ip: IpAddr, cfg: &Config, reason: String, duration: Duration, now: i64) -> Block {
        let prefix = if ip.is_ipv4() { 32 } else { cfg.defense.ipv6_prefix.min(128) };
        let cidr =
            ipnet::IpNet::new(ip, prefix).map(|n| n.trunc()).unwrap_or_else(|_| ipnet::IpNet::from(ip));
        let secs = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 2);
        let block = Block {
            id: uuid::Uuid::now_v7().to_string(),
            cidr,
            reason,
            source: Source::Auto,
            created_at: now,
            expires_at: Some(now + secs),
        };
        self.blocks.insert(block.clone());
        metrics::gauge!("latch_blocked_ips").set(self.blocks.list(now).len() as f64);
        self.send(Event::Persist(block.clone()));
        block
    }

    /// The anomaly rules that look at every request: `bot` (requests from
    /// one address, refused ones included; API-key traffic exempt) and
    /// `scanner_user_agent`. A block they start refuses this request too.
    fn screen(
        &self,
        adm: &Admission,
        limits: &Limits,
        key: &str,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Option<Block> {
        let cfg = &adm.config;
        let rules = &cfg.defense.anomaly;
        let mut block = None;
        // Only a real key is exempt: anyone can send something that looks
        // like one.
        let api_key = adm.api_key.as_deref().is_some_and(|k| self.api_keys.check(k).is_some());
        if !api_key
            && limits.bot.check(Scope::Ip, key).is_err()
            && self.recent.first_in(Rule::Bot, key, rules.bot.window.0)
        {
            let details = serde_json::json!({"action": rules.bot.action, "requests": rules.bot.requests, "window": rules.bot.window});
            self.fired(Rule::Bot, &adm.client, None, details);
            if rules.bot.action == AnomalyAction::Block {
                block =
                    ip.map(|ip| self.auto_block(ip, cfg, "anomaly: bot".into(), rules.bot.block_for.0, now));
            }
        }
        let scanner = &rules.scanner_user_agent;
        let once_per = scanner.block_for.0.max(Duration::from_secs(60));
        if let Some(pattern) = anomaly::scanner(adm.client.user_agent.as_deref(), scanner)
            && self.recent.first_in(Rule::ScannerUserAgent, key, once_per)
        {
            let details = serde_json::json!({"pattern": pattern, "action": scanner.action});
            self.fired(Rule::ScannerUserAgent, &adm.client, None, details);
            if scanner.action == AnomalyAction::Block {
                let reason = format!("anomaly: scanner user agent ({pattern})");
                block =
                    block.or_else(|| ip.map(|ip| self.auto_block(ip, cfg, reason, scanner.block_for.0, now)));
            }
        }
        block
    }
}

impl Gate for Defense {
    fn admit(&self, adm: &Admission) -> Result<Option<RateLimitInfo>, Problem> {
        if PROBES.contains(&adm.route.as_str()) {
            return Ok(None);
        }
        let (cfg, now) = (&adm.config, crate::clock::now_unix());
        let (key, ip) = client_key(&adm.client.ip, cfg.defense.ipv6_prefix);
        let exempt = allowlisted(cfg, ip);
        if let Some(block) = ip.filter(|_| !exempt).and_then(|ip| self.blocks.covering(ip, now)) {
            rate_limited("ip_block");
            return Err(blocked_answer(&block, now));
        }
        let limits = self.limits.load();
        let (mut tight, mut refused) = (None, None);
        let mut take = |r: Result<RateLimitInfo, Refused>| match r {
            Ok(info) => tight = tighter(tight, info),
            Err(r) => {
                refused.get_or_insert(r);
            }
        };
        take(limits.global.check(Scope::Global));
        if !exempt {
            take(limits.ip.check(Scope::Ip, &key));
            take(limits.ip_hourly.check(Scope::IpHourly, &key));
            // Showing a page's form is not an attempt: only what it posts
            // counts, so reloading the sign-in page spends nothing.
            if !adm.reads && CREDENTIAL_ROUTES.contains(&adm.route.as_str()) {
                take(limits.credential.check(Scope::Credential, &key));
            }
            if let Some(block) = self.screen(adm, &limits, &key, ip, now) {
                rate_limited("ip_block");
                return Err(blocked_answer(&block, now));
            }
        }
        match refused {
            Some(r) => {
                rate_limited(r.scope.label());
                Err(Problem::new(Kind::RateLimited).with_retry_after(r.retry_after).with_rate_limit(r.info))
            }
            None => Ok(tight),
        }
    }

    /// Failed credentials (a wrong password or code, an unknown reset
    /// token) count towards blocking the address. On the reset routes only
    /// a token that does not work counts: their other 400s are a person's
    /// form mistakes ("the passwords differ") or an app's malformed body,
    /// and ten of those from one office must not block it for an hour.
    fn answered(&self, adm: &Admission, status: u16, kind: Option<Kind>) {
        let failed = match adm.route.as_str() {
            "/v1/auth/login" | "/v1/auth/login/mfa" | "/account/login" | "/account/login/mfa" => {
                status == 401
            }
            "/v1/auth/password/reset" | "/reset-password" => kind == Some(Kind::InvalidToken),
            _ => false,
        };
        let cfg = &adm.config;
        let (key, ip) = client_key(&adm.client.ip, cfg.defense.ipv6_prefix);
        let (Some(ip), true) = (ip, failed) else { return };
        let rule = &cfg.defense.ip_block;
        if allowlisted(cfg, Some(ip)) || !self.blocks.note_failure(&key, rule.failures, rule.window.0) {
            return;
        }
        let reason = format!("{} credential failures within {}", rule.failures, rule.window);
        self.auto_block(ip, cfg, reason, rule.duration.0, crate::clock::now_unix());
    }
}

/// A reload rebuilds the limiters whose rate changed; the others keep
/// their buckets.
impl Reloadable for Arc<Defense> {
    fn prepare<'a>(&'a self, next: &'a Config) -> Preparing<'a> {
        Box::pin(async move {
            let limits = self.limits.load().rebuilt(next);
            let defense = Arc::clone(self);
            Ok(Box::new(move || defense.limits.store(Arc::new(limits))) as Commit)
        })
    }
}
