//! What sessions and accounts ask of the defenses: may this email try to
//! log in from here (throttle, per-email limit), a login failed or
//! succeeded, a reset cleared the email, and the anomaly rules that look at
//! logins (`new_ip`, `new_devices`) and refreshes (`rapid_refresh`).

use super::anomaly::Rule;
use super::limits::Scope;
use super::places::{Login, Verdict};
use super::worker::Event;
use super::{Defense, client_key, queries, rate_limited};
use crate::auth::{LoginGuard, LoginRefused, Pending};
use crate::config::{AnomalyAction, Config};
use crate::http::ClientInfo;
use crate::store::StoreError;

impl Defense {
    /// Before a password is checked: the email's throttle for this
    /// address, then the per-email limit. Decided in memory, no database.
    /// The caller counts a refusal under its own kind (a login's, or the
    /// change that asked for the password again).
    pub fn check_login(&self, email: &str, client: &ClientInfo, cfg: &Config) -> Result<(), LoginRefused> {
        let (key, _) = client_key(&client.ip, cfg.defense.ipv6_prefix);
        if let Err(secs) = self.throttle.check(email, &key, crate::clock::now_unix()) {
            return Err(LoginRefused::Throttled(secs));
        }
        self.check_account(email)
    }

    /// The `account` limit: credential attempts per email, from anywhere.
    pub fn check_account(&self, email: &str) -> Result<(), LoginRefused> {
        self.limits.load().account.check(Scope::Account, email).map(|_| ()).map_err(|r| {
            rate_limited(Scope::Account.label());
            LoginRefused::RateLimited { retry_after: r.retry_after, info: r.info }
        })
    }

    /// A wrong password for `email` from `client` (known email or not).
    pub fn login_failed(&self, email: &str, client: &ClientInfo, cfg: &Config) {
        let (key, _) = client_key(&client.ip, cfg.defense.ipv6_prefix);
        let now = crate::clock::now_unix();
        if let Some(until) = self.throttle.failed(email, &key, &cfg.defense.account_lock, now) {
            metrics::gauge!("latch_locked_accounts").set(self.throttle.locked(now) as f64);
            self.send(Event::Lock { email: email.to_string(), until });
        }
    }

    /// The right password from `client`: its per-address delay is over.
    pub fn login_succeeded(&self, email: &str, client: &ClientInfo, cfg: &Config) {
        let (key, _) = client_key(&client.ip, cfg.defense.ipv6_prefix);
        self.throttle.succeeded(email, &key);
    }

    /// A password reset proved the address: every failure and lock of the
    /// email goes.
    pub async fn clear_login_failures(&self, email: &str) -> Result<(), StoreError> {
        if self.throttle.clear(email) {
            metrics::gauge!("latch_locked_accounts")
                .set(self.throttle.locked(crate::clock::now_unix()) as f64);
        }
        let email = email.to_string();
        self.store.write(move |c| queries::delete_lock(c, &email)).await
    }

    /// Until when `email` is locked for login from every address, if it is
    /// (what admins see as a user's `locked_until`).
    pub fn locked_until(&self, email: &str) -> Option<i64> {
        self.throttle.locked_until(email, crate::clock::now_unix())
    }

    /// After a login made session `session_id`: `new_ip` and `new_devices`.
    pub async fn after_login(
        &self,
        user_id: &str,
        session_id: &str,
        client: &ClientInfo,
        device_name: Option<&str>,
        cfg: &Config,
    ) -> Result<(), StoreError> {
        let rules = &cfg.defense.anomaly;
        let device = device_name.or(client.user_agent.as_deref());
        let login = Login { ip: &client.ip, device, at: crate::clock::now_unix() };
        let verdict = self.judge(user_id, session_id, &login, cfg).await?;
        if verdict.new_network {
            self.fired(
                Rule::NewIp,
                client,
                Some(user_id),
                serde_json::json!({"action": rules.new_ip.action}),
            );
            match rules.new_ip.action {
                AnomalyAction::Email => {
                    let (user_id, client) = (user_id.to_string(), client.clone());
                    self.send(Event::NewSignIn { user_id, client });
                }
                action => self.act(action, session_id, user_id, client, cfg, rules.bot.block_for.0),
            }
        }
        let rule = &rules.new_devices;
        let devices = verdict.new_devices;
        if devices >= rule.count as usize && self.recent.first_in(Rule::NewDevices, user_id, rule.window.0) {
            let details =
                serde_json::json!({"action": rule.action, "devices": devices, "window": rule.window});
            self.fired(Rule::NewDevices, client, Some(user_id), details);
            self.act(rule.action, session_id, user_id, client, cfg, rules.bot.block_for.0);
        }
        Ok(())
    }

    /// What the login rules make of `login`: from memory when its account
    /// is there, else from the account's other sessions in the store.
    async fn judge(
        &self,
        user_id: &str,
        session_id: &str,
        login: &Login<'_>,
        cfg: &Config,
    ) -> Result<Verdict, StoreError> {
        let (window, v6_prefix) = (cfg.defense.anomaly.new_devices.window.0, cfg.defense.ipv6_prefix);
        if let Some(verdict) = self.places.judge(user_id, login, window, v6_prefix) {
            return Ok(verdict);
        }
        let (uid, sid) = (user_id.to_string(), session_id.to_string());
        let earlier = self.store.read(move |c| queries::other_sessions(c, &uid, &sid)).await?;
        Ok(self.places.judge_read(user_id, &earlier, login, window, v6_prefix))
    }

    /// After session `session_id` refreshed: `rapid_refresh`.
    pub fn refreshed(&self, session_id: &str, user_id: &str, client: &ClientInfo, cfg: &Config) {
        let rule = &cfg.defense.anomaly.rapid_refresh;
        let burst = self.limits.load().rapid_refresh.check(Scope::Account, session_id);
        if burst.is_ok() || !self.recent.first_in(Rule::RapidRefresh, session_id, rule.window.0) {
            return;
        }
        let details = serde_json::json!({"action": rule.action, "session_id": session_id, "count": rule.count, "window": rule.window});
        self.fired(Rule::RapidRefresh, client, Some(user_id), details);
        self.act(rule.action, session_id, user_id, client, cfg, cfg.defense.anomaly.bot.block_for.0);
    }

    /// What a session-related rule does beyond flagging.
    fn act(
        &self,
        action: AnomalyAction,
        session_id: &str,
        user_id: &str,
        client: &ClientInfo,
        cfg: &Config,
        block_for: std::time::Duration,
    ) {
        match action {
            AnomalyAction::Revoke => self.send(Event::Revoke {
                session_id: session_id.to_string(),
                user_id: user_id.to_string(),
                client: client.clone(),
            }),
            AnomalyAction::Block => {
                if let (_, Some(ip)) = client_key(&client.ip, cfg.defense.ipv6_prefix) {
                    self.auto_block(
                        ip,
                        cfg,
                        "anomaly on an account".into(),
                        block_for,
                        crate::clock::now_unix(),
                    );
                }
            }
            AnomalyAction::Flag | AnomalyAction::Email => {}
        }
    }
}

/// What the features that log people in see of the defenses.
impl LoginGuard for Defense {
    fn check_login(&self, email: &str, client: &ClientInfo, cfg: &Config) -> Result<(), LoginRefused> {
        Defense::check_login(self, email, client, cfg)
    }

    fn check_account(&self, email: &str) -> Result<(), LoginRefused> {
        Defense::check_account(self, email)
    }

    fn login_failed(&self, email: &str, client: &ClientInfo, cfg: &Config) {
        Defense::login_failed(self, email, client, cfg)
    }

    fn login_succeeded(&self, email: &str, client: &ClientInfo, cfg: &Config) {
        Defense::login_succeeded(self, email, client, cfg)
    }

    fn clear_login_failures<'a>(&'a self, email: &'a str) -> Pending<'a, Result<(), StoreError>> {
        Box::pin(Defense::clear_login_failures(self, email))
    }

    fn locked_until(&self, email: &str) -> Option<i64> {
        Defense::locked_until(self, email)
    }

    fn after_login<'a>(
        &'a self,
        user_id: &'a str,
        session_id: &'a str,
        client: &'a ClientInfo,
        device_name: Option<&'a str>,
        cfg: &'a Config,
    ) -> Pending<'a, Result<(), StoreError>> {
        Box::pin(Defense::after_login(self, user_id, session_id, client, device_name, cfg))
    }

    fn refreshed(&self, session_id: &str, user_id: &str, client: &ClientInfo, cfg: &Config) {
        Defense::refreshed(self, session_id, user_id, client, cfg)
    }
}
