//! Cross-field rules and path resolution: turns a `RawConfig` that parsed
//! into a `Config` that makes sense. Each failure names the key it is about;
//! `Config::parse` adds the file and line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    Config, ConfigError, DEFAULT_STATE_DIR, ListenAddr, Listener, ListenerKind, PACKAGED_STATE_DIR,
    RawConfig, SmtpSection, SmtpSecurity, TlsFiles, TokenAlgorithm,
};
use crate::state_dir::StateDir;

/// `key` may name several keys, `|`-separated, for a rule across them:
/// the error then names the first one the file sets (`locate::first_set`).
fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { path: String::new(), line: 0, key: key.into(), reason: reason.into() }
}

/// Resolves the paths a config names: absolute as written, else against
/// the directory of the config file (against the working directory for the
/// built-in defaults), so neither the directory latchd was started from nor
/// a later `chdir` (daemonize) changes which files are meant.
struct Paths {
    base: PathBuf,
}

impl Paths {
    fn new(source: Option<&Path>) -> Paths {
        let cwd = || std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let base = match source.map(|s| std::path::absolute(s).unwrap_or_else(|_| s.to_path_buf())) {
            Some(file) => file.parent().map_or_else(cwd, Path::to_path_buf),
            None => cwd(),
        };
        Paths { base }
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_path_buf() } else { self.base.join(p) }
    }

    fn resolve_opt(&self, p: &mut Option<PathBuf>) {
        if let Some(path) = p {
            *path = self.resolve(path);
        }
    }
}

pub(super) fn resolve(mut raw: RawConfig, source: Option<&Path>) -> Result<Config, ConfigError> {
    let paths = Paths::new(source);
    let default_state = if source.is_some() { PACKAGED_STATE_DIR } else { DEFAULT_STATE_DIR };
    let state_dir = paths.resolve(raw.server.state_dir.as_deref().unwrap_or(Path::new(default_state)));
    let key_file = raw.server.key_file.as_deref().filter(|p| !p.as_os_str().is_empty());
    let state = StateDir::new(state_dir, key_file.map(|p| paths.resolve(p)));
    let (public_url, public_host) = public_url(&raw)?;
    let listeners = listeners(&raw, &paths)?;
    let tls = tls_files(&raw, &paths)?;
    let admin_socket = raw.admin.socket.as_deref().map_or_else(|| state.admin_socket(), |p| paths.resolve(p));
    // The email links default to latch's own pages at `public_url`.
    let base = public_url.trim_end_matches('/');
    for url in [&mut raw.email.verify_url, &mut raw.email.reset_url] {
        *url = url.replace("{public_url}", base);
    }
    check_tokens(&raw)?;
    check_passwords(&raw)?;
    check_misc(&raw)?;
    check_defense(&raw)?;
    resolve_files(&mut raw, &paths);
    Ok(Config {
        // The file's own path is relative to the working directory, not to
        // its folder (that is for the paths inside it).
        source: source.map(|s| std::path::absolute(s).unwrap_or_else(|_| s.to_path_buf())),
        state,
        public_url: public_url.trim_end_matches('/').to_string(),
        public_host,
        listeners,
        tls,
        admin_socket,
        admin_group: raw.admin.group,
        tokens: raw.tokens,
        passwords: raw.passwords,
        accounts: raw.accounts,
        email: raw.email,
        smtp: raw.smtp,
        rate_limits: raw.rate_limits,
        defense: raw.defense,
        http: http_names(raw.http)?,
        log: raw.log,
        audit: raw.audit,
        backup: raw.backup,
        pages: raw.pages,
    })
}

/// `server.public_url` (default `https://localhost:8443`) and its host.
fn public_url(raw: &RawConfig) -> Result<(String, String), ConfigError> {
    let public_url = raw.server.public_url.clone().unwrap_or_else(|| "https://localhost:8443".into());
    let public_host = url_host(&public_url).ok_or_else(|| {
        invalid(
            "server.public_url",
            "expected an absolute http(s) URL like \"https://auth.example.lan:8443\"",
        )
    })?;
    if let Some(part) = url_extra(&public_url) {
        // Links are built by appending paths to it, and it is the tokens' `iss`.
        let reason =
            format!("must not have {part}: mail links are built by appending to it, and it is the `iss`");
        return Err(invalid("server.public_url", reason));
    }
    Ok((public_url, public_host))
}

/// `[tls]`: both files or neither (then a generated certificate).
fn tls_files(raw: &RawConfig, paths: &Paths) -> Result<Option<TlsFiles>, ConfigError> {
    match (&raw.tls.cert, &raw.tls.key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert: paths.resolve(cert), key: paths.resolve(key) })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(invalid("tls.cert", "tls.key must be set together with tls.cert")),
        (None, Some(_)) => Err(invalid("tls.key", "tls.cert must be set together with tls.key")),
    }
}

/// Every other file named in the config, relative to the config's folder.
fn resolve_files(raw: &mut RawConfig, paths: &Paths) {
    for p in [
        &mut raw.tokens.secret_file,
        &mut raw.passwords.pepper_file,
        &mut raw.passwords.breached_list,
        &mut raw.log.file,
        &mut raw.backup.dir,
        &mut raw.backup.archive_dir,
    ] {
        paths.resolve_opt(p);
    }
    if let Some(smtp) = &mut raw.smtp {
        paths.resolve_opt(&mut smtp.password_file);
        paths.resolve_opt(&mut smtp.ca_file);
    }
}

/// `localhost` or a loopback address.
pub(super) fn is_loopback(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host of an absolute http(s) URL, without port or IPv6 brackets.
pub(super) fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    authority_host(rest.split(['/', '?', '#']).next()?).map(str::to_string)
}

/// What an absolute URL has that a base for links cannot: a query, a
/// fragment or user info.
fn url_extra(url: &str) -> Option<&'static str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        Some("user info (user@)")
    } else if rest.contains('?') {
        Some("a query (?…)")
    } else if rest.contains('#') {
        Some("a fragment (#…)")
    } else {
        None
    }
}

/// The host of a URL authority (`user@host:port`, `[v6]:port`), without
/// user info, port or IPv6 brackets; shared with the Host check in `http`.
pub fn authority_host(authority: &str) -> Option<&str> {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => authority.split(':').next()?,
    };
    Some(host).filter(|h| !h.is_empty())
}

fn listeners(raw: &RawConfig, paths: &Paths) -> Result<Vec<Listener>, ConfigError> {
    let Some(list) = &raw.listeners else {
        let addr = SocketAddr::from(([127, 0, 0, 1], 8443));
        return Ok(vec![Listener { kind: ListenerKind::Https, addr: ListenAddr::Tcp(addr), metrics: false }]);
    };
    if list.is_empty() {
        return Err(invalid("listener", "at least one [[listener]] is needed"));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, l) in list.iter().enumerate() {
        let key = |k: &str| format!("listener[{i}].{k}");
        let addr = match (l.kind, &l.addr, &l.path) {
            (ListenerKind::Unix, None, Some(path)) => ListenAddr::Unix(paths.resolve(path)),
            (ListenerKind::Unix, _, _) => {
                return Err(invalid(key("kind"), "a unix listener takes `path` (and no `addr`)"));
            }
            (_, Some(addr), None) => ListenAddr::Tcp(addr.parse().map_err(|_| {
                invalid(key("addr"), format!("expected IP:PORT like \"127.0.0.1:8443\", got {addr:?}"))
            })?),
            (_, _, _) => {
                return Err(invalid(key("kind"), "an http/https listener takes `addr` (and no `path`)"));
            }
        };
        // Port 0 asks the system for a free port each time, so it may repeat.
        let fixed = !matches!(addr, ListenAddr::Tcp(a) if a.port() == 0);
        if let Some(j) = out.iter().position(|o: &Listener| fixed && o.addr == addr) {
            return Err(invalid(
                key(if l.kind == ListenerKind::Unix { "path" } else { "addr" }),
                format!("listener[{j}] is there already"),
            ));
        }
        out.push(Listener { kind: l.kind, addr, metrics: l.metrics });
    }
    Ok(out)
}

fn check_tokens(raw: &RawConfig) -> Result<(), ConfigError> {
    let t = &raw.tokens;
    if t.algorithm == TokenAlgorithm::HS256 && t.secret_file.is_none() {
        return Err(invalid(
            "tokens.algorithm",
            "HS256 needs tokens.secret_file (a file of at least 32 bytes)",
        ));
    }
    if t.access_ttl.0 < Duration::from_secs(1) {
        return Err(invalid("tokens.access_ttl", "must be at least 1s"));
    }
    if t.refresh_ttl.0 < t.access_ttl.0 {
        return Err(invalid(
            "tokens.refresh_ttl|tokens.access_ttl",
            "refresh_ttl must not be shorter than access_ttl",
        ));
    }
    if t.session_max_age.0 < t.refresh_ttl.0 {
        return Err(invalid(
            "tokens.session_max_age|tokens.refresh_ttl",
            "session_max_age must not be shorter than refresh_ttl",
        ));
    }
    if t.leeway.0 > Duration::from_secs(300) {
        return Err(invalid("tokens.leeway", "must be at most 5m"));
    }
    // Security: the grace is for a client retrying a refresh whose answer
    // it lost; a spent token that still works for minutes is a stolen one
    // that reuse detection no longer catches.
    if t.refresh_reuse_grace.0 > Duration::from_secs(60) {
        return Err(invalid(
            "tokens.refresh_reuse_grace",
            "must be at most 1m (it covers a retried request; longer lets a stolen spent token keep working)",
        ));
    }
    if t.audience.trim().is_empty() {
        return Err(invalid("tokens.audience", "must not be empty"));
    }
    Ok(())
}

fn check_passwords(raw: &RawConfig) -> Result<(), ConfigError> {
    let p = &raw.passwords;
    if p.min_length < 8 {
        return Err(invalid("passwords.min_length", "must be at least 8 (NIST SP 800-63B)"));
    }
    if p.max_length > 1024 {
        return Err(invalid("passwords.max_length", "must be at most 1024"));
    }
    if p.max_length < p.min_length {
        let why = format!("min_length ({}) must not exceed max_length ({})", p.min_length, p.max_length);
        return Err(invalid("passwords.min_length|passwords.max_length", why));
    }
    let a = &p.argon2;
    if !(1..=16).contains(&a.parallelism) {
        return Err(invalid(
            "passwords.argon2.parallelism|passwords.argon2",
            "parallelism must be between 1 and 16",
        ));
    }
    if a.iterations == 0 || a.memory_kib < 8 * a.parallelism || a.memory_kib > 4 * 1024 * 1024 {
        return Err(invalid(
            "passwords.argon2.memory_kib|passwords.argon2.iterations|passwords.argon2",
            "needs iterations >= 1 and 8*parallelism <= memory_kib <= 4 GiB",
        ));
    }
    if p.max_queue_wait.0 > Duration::from_secs(60) {
        return Err(invalid("passwords.max_queue_wait", "must be at most 60s"));
    }
    Ok(())
}

/// The `[smtp]` section, when there is one.
fn check_smtp(smtp: &SmtpSection) -> Result<(), ConfigError> {
    if smtp.max_attempts == 0 {
        return Err(invalid("smtp.max_attempts", "must be at least 1"));
    }
    if smtp.host.trim().is_empty() {
        return Err(invalid("smtp.host", "must not be empty"));
    }
    if smtp.port == 0 {
        return Err(invalid("smtp.port", "must be above 0"));
    }
    // Security: AUTH over a plaintext connection sends the password in
    // clear to anyone on the path; only the same host is exempt.
    if !smtp.username.is_empty() && smtp.security == SmtpSecurity::None && !is_loopback(&smtp.host) {
        return Err(invalid(
            "smtp.username",
            "would send the SMTP password in clear: set security = \"starttls\" or \"tls\" (or use a loopback host)",
        ));
    }
    if smtp.ca_file.is_some() && smtp.security == SmtpSecurity::None {
        return Err(invalid(
            "smtp.ca_file",
            "is used only to check the relay's certificate: set security = \"starttls\" or \"tls\"",
        ));
    }
    if !smtp.username.is_empty() && smtp.password_file.is_none() {
        return Err(invalid(
            "smtp.password_file",
            "must be set when smtp.username is (a file holding the password)",
        ));
    }
    Ok(())
}

fn check_misc(raw: &RawConfig) -> Result<(), ConfigError> {
    for (key, url) in [("email.verify_url", &raw.email.verify_url), ("email.reset_url", &raw.email.reset_url)]
    {
        if !url.contains("{token}") || url_host(url).is_none() {
            return Err(invalid(key, "expected an http(s) URL containing {token}"));
        }
    }
    // Every message is built from it: a bad one would fail each request
    // that sends mail (register, forgot) instead of the start.
    if raw.email.from.parse::<lettre::message::Mailbox>().is_err() {
        let why =
            format!("expected an address like \"latch <noreply@example.com>\", got {:?}", raw.email.from);
        return Err(invalid("email.from", why));
    }
    if let Some(smtp) = &raw.smtp {
        check_smtp(smtp)?;
    }
    if !(1..=128).contains(&raw.defense.ipv6_prefix) {
        return Err(invalid("defense.ipv6_prefix", "must be between 1 and 128"));
    }
    let name = &raw.pages.product_name;
    if name.trim().is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(invalid("pages.product_name", "must be 1 to 64 printable characters"));
    }
    let h = &raw.http;
    for (key, zero) in [
        ("backup.keep", raw.backup.keep == 0),
        ("backup.interval", raw.backup.interval.0.is_zero()),
        ("http.request_timeout", h.request_timeout.0.is_zero()),
        ("http.header_timeout", h.header_timeout.0.is_zero()),
        ("http.max_body", h.max_body.0 == 0),
        // "0s" would delete every audit row at the next upkeep.
        ("audit.retention", raw.audit.retention.is_some_and(|r| r.0.is_zero())),
        // 0 would let through the mails anyone can ask for and drop every
        // notice that the password or second factor changed.
        ("email.max_per_recipient", raw.email.max_per_recipient == 0),
    ] {
        if zero {
            return Err(invalid(key, "must be above zero"));
        }
    }
    Ok(())
}

/// The brute-force and anomaly thresholds. A zero count would fire on the
/// first event (a single mistyped password would block its address for
/// `duration`; `bot.requests = 0` would block every client at its second
/// request), though an operator writing 0 more likely meant "off"; a zero
/// time would make the rule do nothing. Both are refused, named.
fn check_defense(raw: &RawConfig) -> Result<(), ConfigError> {
    let (block, lock, anomaly) = (&raw.defense.ip_block, &raw.defense.account_lock, &raw.defense.anomaly);
    let counts = [
        ("defense.ip_block.failures|defense.ip_block", block.failures),
        ("defense.account_lock.failures|defense.account_lock", lock.failures),
        ("defense.account_lock.max_failures_per_hour|defense.account_lock", lock.max_failures_per_hour),
        ("defense.anomaly.bot.requests|defense.anomaly.bot", anomaly.bot.requests),
        ("defense.anomaly.new_devices.count|defense.anomaly.new_devices", anomaly.new_devices.count),
        ("defense.anomaly.rapid_refresh.count|defense.anomaly.rapid_refresh", anomaly.rapid_refresh.count),
    ];
    if let Some((key, _)) = counts.iter().find(|(_, n)| *n == 0) {
        let why = "must be at least 1 (0 would act on the very first one; to soften an anomaly rule, set its action to \"flag\")";
        return Err(invalid(*key, why));
    }
    let times = [
        ("defense.ip_block.window|defense.ip_block", block.window.0),
        ("defense.ip_block.duration|defense.ip_block", block.duration.0),
        ("defense.account_lock.base_delay|defense.account_lock", lock.base_delay.0),
        ("defense.anomaly.bot.window|defense.anomaly.bot", anomaly.bot.window.0),
        ("defense.anomaly.bot.block_for|defense.anomaly.bot", anomaly.bot.block_for.0),
        (
            "defense.anomaly.scanner_user_agent.block_for|defense.anomaly.scanner_user_agent",
            anomaly.scanner_user_agent.block_for.0,
        ),
        ("defense.anomaly.new_devices.window|defense.anomaly.new_devices", anomaly.new_devices.window.0),
        (
            "defense.anomaly.rapid_refresh.window|defense.anomaly.rapid_refresh",
            anomaly.rapid_refresh.window.0,
        ),
    ];
    if let Some((key, _)) = times.iter().find(|(_, t)| t.is_zero()) {
        return Err(invalid(*key, "must be above zero"));
    }
    // Security: a proxy is believed about the client's address; trusting
    // every address lets any client pick the address its limits, blocks
    // and audit rows count against.
    if raw.defense.trusted_proxies.iter().any(|p| p.0.prefix_len() == 0) {
        let why = "must not contain a /0 network: every client could then choose its own address with X-Forwarded-For; list your proxies' addresses";
        return Err(invalid("defense.trusted_proxies", why));
    }
    if lock.max_delay.0 < lock.base_delay.0 {
        let why = format!(
            "max_delay ({}) must not be shorter than base_delay ({})",
            lock.max_delay, lock.base_delay
        );
        return Err(invalid("defense.account_lock.max_delay|defense.account_lock", why));
    }
    Ok(())
}

/// Checks `[http].cors_origins` (`*` or `scheme://host[:port]`, nothing
/// after) and `trusted_hosts` (a host name, `*.` + a domain, or an IP
/// address, no port), and lower-cases both for matching.
fn http_names(mut h: super::HttpSection) -> Result<super::HttpSection, ConfigError> {
    for (i, origin) in h.cors_origins.iter_mut().enumerate() {
        *origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        let rest = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
        let bare = rest.is_some_and(|r| !r.contains(['/', '?', '#', '@'])) && url_host(origin).is_some();
        if origin != "*" && !bare {
            return Err(invalid(
                format!("http.cors_origins[{i}]"),
                format!(
                    "expected \"*\" or an origin like \"https://app.example.com\" (no path), got {origin:?}"
                ),
            ));
        }
    }
    for (i, host) in h.trusted_hosts.iter_mut().enumerate() {
        *host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        let name = host.strip_prefix("*.").unwrap_or(host);
        let is_name = !name.is_empty()
            && name
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if !is_name && host.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(
                format!("http.trusted_hosts[{i}]"),
                format!(
                    "expected a host name, \"*.\" and a domain, or an IP address (no port), got {host:?}"
                ),
            ));
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts_are_extracted() {
        assert_eq!(url_host("https://auth.example.lan:8443/x").as_deref(), Some("auth.example.lan"));
        assert_eq!(url_host("http://[::1]:80").as_deref(), Some("::1"));
        assert_eq!(url_host("https://localhost").as_deref(), Some("localhost"));
        assert_eq!(url_host("ftp://x"), None);
        assert_eq!(url_host("https://"), None);
    }
}
