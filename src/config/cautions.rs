//! Settings the rules accept that are almost surely a mistake given the
//! rest of the file: mail leaving this machine in clear, with links only
//! this machine can open, or from a sender no relay takes; plain HTTP open
//! beyond this machine. Each may be meant (a sandbox relay, a relay on a
//! trusted network, a browser on the same host, a TLS proxy on a private
//! network), so they are said — by `check-config`, at start and at each
//! reload, on the key's line — and never refused.

use super::rules::{is_loopback, url_host};
use super::{Config, ConfigError, ListenAddr, ListenerKind, SmtpSecurity};

impl Config {
    /// Each caution as `PATH:LINE: key: reason`.
    pub fn cautions(&self) -> Vec<ConfigError> {
        let mut said = self.plain_http_beyond_loopback();
        said.extend(self.links_to_pages_turned_off());
        said.extend(self.mail_for_other_machines());
        said
    }

    /// With the pages off, the default mail links open latch's own pages,
    /// which then answer 404 (unless a proxy sends those paths to an app).
    fn links_to_pages_turned_off(&self) -> Option<ConfigError> {
        if self.pages.enabled {
            return None;
        }
        let base = self.public_url.trim_end_matches('/');
        let own = [
            ("email.verify_url", &self.email.verify_url, "/verify-email"),
            ("email.reset_url", &self.email.reset_url, "/reset-password"),
        ];
        let left: Vec<&str> = own
            .iter()
            .filter(|(_, url, page)| **url == format!("{base}{page}?token={{token}}"))
            .map(|(key, _, _)| *key)
            .collect();
        if left.is_empty() {
            return None;
        }
        let reason = format!(
            "the pages are off, but {} still point{} at them, so each mailed link opens a 404 page; \
             point {} at your app's pages",
            left.join(" and "),
            if left.len() == 1 { "s" } else { "" },
            if left.len() == 1 { "it" } else { "them" },
        );
        Some(self.problem_at("pages.enabled", reason))
    }

    /// Passwords and tokens cross a plain HTTP listener unencrypted; the
    /// design has it on loopback, behind a proxy on the same host.
    fn plain_http_beyond_loopback(&self) -> Vec<ConfigError> {
        let open = self.listeners.iter().enumerate().filter_map(|(i, l)| match (&l.kind, &l.addr) {
            (ListenerKind::Http, ListenAddr::Tcp(addr)) if !addr.ip().is_loopback() => Some((i, addr)),
            _ => None,
        });
        open.map(|(i, addr)| {
            let reason = format!(
                "plain http on {addr} carries passwords and tokens unencrypted to any host that reaches \
                 it; bind it to 127.0.0.1 behind a proxy on this machine, or use kind = \"https\""
            );
            self.problem_at(&format!("listener[{i}].addr"), reason)
        })
        .collect()
    }

    fn mail_for_other_machines(&self) -> Vec<ConfigError> {
        let Some(smtp) = self.smtp.as_ref().filter(|s| !is_loopback(&s.host)) else { return Vec::new() };
        let mut said = Vec::new();
        if smtp.security == SmtpSecurity::None {
            let reason = format!(
                "mail to {} crosses the network in clear, and its reset and confirmation links let \
                 whoever reads them into the account; set security = \"starttls\" or \"tls\"",
                smtp.host
            );
            said.push(self.problem_at("smtp.security", reason));
        }
        let links =
            [("email.verify_url", &self.email.verify_url), ("email.reset_url", &self.email.reset_url)];
        let local_link = links.into_iter().find_map(|(key, url)| {
            let host = url_host(url).filter(|h| is_loopback(h))?;
            let from_base = url.starts_with(self.public_url.trim_end_matches('/'));
            Some((if from_base { "server.public_url" } else { key }, host))
        });
        if let Some((key, host)) = local_link {
            let reason = format!(
                "mail goes out through {} but its links point at {host}, which only this machine can \
                 open; set it to the name people reach latch by",
                smtp.host
            );
            said.push(self.problem_at(key, reason));
        }
        let sender = self.email.from.parse::<lettre::message::Mailbox>().ok();
        if let Some(domain) = sender.as_ref().map(|m| m.email.domain())
            && (is_loopback(domain) || !domain.contains('.'))
        {
            let reason = format!(
                "mail goes out through {} from an address at {domain:?}, which relays and receivers \
                 refuse or file as spam; send from a domain of yours",
                smtp.host
            );
            said.push(self.problem_at("email.from", reason));
        }
        said
    }
}
