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

/// Every rule a file breaks, not the first: one `check-config` names them
/// all, so a file with three mistakes takes one edit, not three tries.
#[derive(Default)]
struct Faults(Vec<ConfigError>);

impl Faults {
    fn when(&mut self, at_fault: bool, key: impl Into<String>, reason: impl Into<String>) {
        if at_fault {
            self.0.push(invalid(key, reason));
        }
    }

    /// The value a rule produced, or its default with the fault noted, so
    /// the checks after it still run.
    fn value<T: Default>(&mut self, result: Result<T, ConfigError>) -> T {
        result.unwrap_or_else(|fault| {
            self.0.push(fault);
            T::default()
        })
    }
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
    let mut faults = Faults::default();
    let paths = Paths::new(source);
    let default_state = if source.is_some() { PACKAGED_STATE_DIR } else { DEFAULT_STATE_DIR };
    let state_dir = paths.resolve(raw.server.state_dir.as_deref().unwrap_or(Path::new(default_state)));
    let key_file = raw.server.key_file.as_deref().filter(|p| !p.as_os_str().is_empty());
    let state = StateDir::new(state_dir, key_file.map(|p| paths.resolve(p)));
    let (public_url, public_host) = faults.value(public_url(&raw));
    let listeners = listeners(&raw, &paths, &mut faults);
    let tls = faults.value(tls_files(&raw, &paths));
    let admin_socket = raw.admin.socket.as_deref().map_or_else(|| state.admin_socket(), |p| paths.resolve(p));
    // The email links default to latch's own pages at `public_url`; a
    // refused one stands in as its default, so its fault is told once,
    // not again for each link built on it.
    let base = if public_url.is_empty() { DEFAULT_PUBLIC_URL } else { public_url.trim_end_matches('/') };
    for url in [&mut raw.email.verify_url, &mut raw.email.reset_url] {
        *url = url.replace("{public_url}", base);
    }
    check_tokens(&raw, &mut faults);
    check_passwords(&raw, &mut faults);
    check_misc(&raw, &mut faults);
    check_defense(&raw, &mut faults);
    let http = http_names(std::mem::take(&mut raw.http), &mut faults);
    if !faults.0.is_empty() {
        return Err(ConfigError::of(faults.0));
    }
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
        http,
        log: raw.log,
        audit: raw.audit,
        backup: raw.backup,
        pages: raw.pages,
    })
}

const DEFAULT_PUBLIC_URL: &str = "https://localhost:8443";

/// `server.public_url` (default `DEFAULT_PUBLIC_URL`) and its host.
fn public_url(raw: &RawConfig) -> Result<(String, String), ConfigError> {
    let public_url = raw.server.public_url.clone().unwrap_or_else(|| DEFAULT_PUBLIC_URL.into());
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

/// The listeners, each checked: one at fault is noted and left out.
fn listeners(raw: &RawConfig, paths: &Paths, faults: &mut Faults) -> Vec<Listener> {
    let Some(list) = &raw.listeners else {
        let addr = SocketAddr::from(([127, 0, 0, 1], 8443));
        return vec![Listener { kind: ListenerKind::Https, addr: ListenAddr::Tcp(addr), metrics: false }];
    };
    faults.when(list.is_empty(), "listener", "at least one [[listener]] is needed");
    let mut out: Vec<(usize, Listener)> = Vec::with_capacity(list.len());
    for (i, l) in list.iter().enumerate() {
        let key = |k: &str| format!("listener[{i}].{k}");
        let addr = match (l.kind, &l.addr, &l.path) {
            (ListenerKind::Unix, None, Some(path)) => Ok(ListenAddr::Unix(paths.resolve(path))),
            (ListenerKind::Unix, _, _) => {
                Err(invalid(key("kind"), "a unix listener takes `path` (and no `addr`)"))
            }
            (_, Some(addr), None) => addr.parse().map(ListenAddr::Tcp).map_err(|_| {
                invalid(key("addr"), format!("expected IP:PORT like \"127.0.0.1:8443\", got {addr:?}"))
            }),
            (_, _, _) => Err(invalid(key("kind"), "an http/https listener takes `addr` (and no `path`)")),
        };
        let Some(addr) = addr.map_err(|fault| faults.0.push(fault)).ok() else { continue };
        // Port 0 asks the system for a free port each time, so it may repeat.
        let fixed = !matches!(addr, ListenAddr::Tcp(a) if a.port() == 0);
        if let Some((j, _)) = out.iter().find(|(_, o)| fixed && o.addr == addr) {
            let at = key(if l.kind == ListenerKind::Unix { "path" } else { "addr" });
            faults.0.push(invalid(at, format!("listener[{j}] is there already")));
            continue;
        }
        out.push((i, Listener { kind: l.kind, addr, metrics: l.metrics }));
    }
    out.into_iter().map(|(_, l)| l).collect()
}

fn check_tokens(raw: &RawConfig, faults: &mut Faults) {
    let t = &raw.tokens;
    let needs_secret = t.algorithm == TokenAlgorithm::HS256 && t.secret_file.is_none();
    faults.when(
        needs_secret,
        "tokens.algorithm",
        "HS256 needs tokens.secret_file (a file of at least 32 bytes)",
    );
    faults.when(t.access_ttl.0 < Duration::from_secs(1), "tokens.access_ttl", "must be at least 1s");
    faults.when(
        t.refresh_ttl.0 < t.access_ttl.0,
        "tokens.refresh_ttl|tokens.access_ttl",
        "refresh_ttl must not be shorter than access_ttl",
    );
    faults.when(
        t.session_max_age.0 < t.refresh_ttl.0,
        "tokens.session_max_age|tokens.refresh_ttl",
        "session_max_age must not be shorter than refresh_ttl",
    );
    faults.when(t.leeway.0 > Duration::from_secs(300), "tokens.leeway", "must be at most 5m");
    // Security: the grace is for a client retrying a refresh whose answer
    // it lost; a spent token that still works for minutes is a stolen one
    // that reuse detection no longer catches.
    faults.when(
        t.refresh_reuse_grace.0 > Duration::from_secs(60),
        "tokens.refresh_reuse_grace",
        "must be at most 1m (it covers a retried request; longer lets a stolen spent token keep working)",
    );
    faults.when(t.audience.trim().is_empty(), "tokens.audience", "must not be empty");
}

fn check_passwords(raw: &RawConfig, faults: &mut Faults) {
    let p = &raw.passwords;
    faults.when(p.min_length < 8, "passwords.min_length", "must be at least 8 (NIST SP 800-63B)");
    faults.when(p.max_length > 1024, "passwords.max_length", "must be at most 1024");
    faults.when(
        p.max_length < p.min_length,
        "passwords.min_length|passwords.max_length",
        format!("min_length ({}) must not exceed max_length ({})", p.min_length, p.max_length),
    );
    let a = &p.argon2;
    faults.when(
        !(1..=16).contains(&a.parallelism),
        "passwords.argon2.parallelism|passwords.argon2",
        "parallelism must be between 1 and 16",
    );
    faults.when(
        a.iterations == 0 || a.memory_kib < 8 * a.parallelism || a.memory_kib > 4 * 1024 * 1024,
        "passwords.argon2.memory_kib|passwords.argon2.iterations|passwords.argon2",
        "needs iterations >= 1 and 8*parallelism <= memory_kib <= 4 GiB",
    );
    faults.when(
        p.max_queue_wait.0 > Duration::from_secs(60),
        "passwords.max_queue_wait",
        "must be at most 60s",
    );
}

/// The `[smtp]` section, when there is one.
fn check_smtp(smtp: &SmtpSection, faults: &mut Faults) {
    faults.when(smtp.max_attempts == 0, "smtp.max_attempts", "must be at least 1");
    faults.when(smtp.host.trim().is_empty(), "smtp.host", "must not be empty");
    faults.when(smtp.port == 0, "smtp.port", "must be above 0");
    // Security: AUTH over a plaintext connection sends the password in
    // clear to anyone on the path; only the same host is exempt.
    faults.when(
        !smtp.username.is_empty() && smtp.security == SmtpSecurity::None && !is_loopback(&smtp.host),
        "smtp.username",
        "would send the SMTP password in clear: set security = \"starttls\" or \"tls\" (or use a loopback host)",
    );
    faults.when(
        smtp.ca_file.is_some() && smtp.security == SmtpSecurity::None,
        "smtp.ca_file",
        "is used only to check the relay's certificate: set security = \"starttls\" or \"tls\"",
    );
    faults.when(
        !smtp.username.is_empty() && smtp.password_file.is_none(),
        "smtp.password_file",
        "must be set when smtp.username is (a file holding the password)",
    );
}

fn check_misc(raw: &RawConfig, faults: &mut Faults) {
    for (key, url) in [("email.verify_url", &raw.email.verify_url), ("email.reset_url", &raw.email.reset_url)]
    {
        let usable = url.contains("{token}") && url_host(url).is_some();
        faults.when(!usable, key, "expected an http(s) URL containing {token}");
    }
    // Every message is built from it: a bad one would fail each request
    // that sends mail (register, forgot) instead of the start.
    faults.when(
        raw.email.from.parse::<lettre::message::Mailbox>().is_err(),
        "email.from",
        format!("expected an address like \"latch <noreply@example.com>\", got {:?}", raw.email.from),
    );
    if let Some(smtp) = &raw.smtp {
        check_smtp(smtp, faults);
    }
    faults.when(
        !(1..=128).contains(&raw.defense.ipv6_prefix),
        "defense.ipv6_prefix",
        "must be between 1 and 128",
    );
    let name = &raw.pages.product_name;
    faults.when(
        name.trim().is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control),
        "pages.product_name",
        "must be 1 to 64 printable characters",
    );
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
        faults.when(zero, key, "must be above zero");
    }
}

/// The brute-force and anomaly thresholds. A zero count would fire on the
/// first event (a single mistyped password would block its address for
/// `duration`; `bot.requests = 0` would block every client at its second
/// request), though an operator writing 0 more likely meant "off"; a zero
/// time would make the rule do nothing. Both are refused, named.
fn check_defense(raw: &RawConfig, faults: &mut Faults) {
    let (block, lock, anomaly) = (&raw.defense.ip_block, &raw.defense.account_lock, &raw.defense.anomaly);
    let counts = [
        ("defense.ip_block.failures|defense.ip_block", block.failures),
        ("defense.account_lock.failures|defense.account_lock", lock.failures),
        ("defense.account_lock.max_failures_per_hour|defense.account_lock", lock.max_failures_per_hour),
        ("defense.anomaly.bot.requests|defense.anomaly.bot", anomaly.bot.requests),
        ("defense.anomaly.new_devices.count|defense.anomaly.new_devices", anomaly.new_devices.count),
        ("defense.anomaly.rapid_refresh.count|defense.anomaly.rapid_refresh", anomaly.rapid_refresh.count),
    ];
    for (key, count) in counts {
        let why = "must be at least 1 (0 would act on the very first one; to soften an anomaly rule, set its action to \"flag\")";
        faults.when(count == 0, key, why);
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
    for (key, time) in times {
        faults.when(time.is_zero(), key, "must be above zero");
    }
    // Security: a proxy is believed about the client's address; trusting
    // every address lets any client pick the address its limits, blocks
    // and audit rows count against.
    let why = "must not contain a /0 network: every client could then choose its own address with X-Forwarded-For; list your proxies' addresses";
    faults.when(
        raw.defense.trusted_proxies.iter().any(|p| p.0.prefix_len() == 0),
        "defense.trusted_proxies",
        why,
    );
    faults.when(
        lock.max_delay.0 < lock.base_delay.0,
        "defense.account_lock.max_delay|defense.account_lock",
        format!("max_delay ({}) must not be shorter than base_delay ({})", lock.max_delay, lock.base_delay),
    );
}

/// Checks `[http].cors_origins` (`*` or `scheme://host[:port]`, nothing
/// after) and `trusted_hosts` (a host name, `*.` + a domain, or an IP
/// address, no port), and lower-cases both for matching.
fn http_names(mut h: super::HttpSection, faults: &mut Faults) -> super::HttpSection {
    for (i, origin) in h.cors_origins.iter_mut().enumerate() {
        *origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        let rest = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
        let bare = rest.is_some_and(|r| !r.contains(['/', '?', '#', '@'])) && url_host(origin).is_some();
        faults.when(
            origin != "*" && !bare,
            format!("http.cors_origins[{i}]"),
            format!("expected \"*\" or an origin like \"https://app.example.com\" (no path), got {origin:?}"),
        );
    }
    for (i, host) in h.trusted_hosts.iter_mut().enumerate() {
        *host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        let name = host.strip_prefix("*.").unwrap_or(host);
        let is_name = !name.is_empty()
            && name
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        faults.when(
            !is_name && host.parse::<std::net::IpAddr>().is_err(),
            format!("http.trusted_hosts[{i}]"),
            format!("expected a host name, \"*.\" and a domain, or an IP address (no port), got {host:?}"),
        );
    }
    h
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
