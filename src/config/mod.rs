//! Configuration: where the file is found, how it is read and checked whole,
//! and the resolved, immutable `Config` the daemon runs on. A bad file is an
//! error naming `PATH:LINE: key: reason`; nothing is half-applied.

mod cautions;
mod defense;
mod file;
mod locate;
mod rules;
mod sift;
mod values;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;

pub use defense::{
    AccountLock, Anomaly, AnomalyAction, BotRule, CountRule, DefenseSection, IpBlock, NewIpRule, ScannerRule,
};
pub use file::*;
pub use rules::authority_host;
pub use values::{ByteSize, Cidr, HumanDuration, Rate};

use crate::state_dir::StateDir;

/// The system-wide config file, used when neither `--config` nor
/// `$LATCH_CONFIG` names one and it exists.
pub const SYSTEM_CONFIG: &str = "/etc/latch/latch.toml";
/// State directory when no config file is used at all.
pub const DEFAULT_STATE_DIR: &str = "latch-data";
/// State directory when a config file does not set one.
pub const PACKAGED_STATE_DIR: &str = "/var/lib/latch";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}: {key}: {reason}")]
    Invalid { path: String, line: usize, key: String, reason: String },
    #[error("{path}:{line}: {reason}")]
    Syntax { path: String, line: usize, reason: String },
    #[error(
        "{path}: the file is empty (caught while being rewritten?); write a new config beside it \
         and rename it over this one"
    )]
    EmptyOnReload { path: String },
    /// Every key at fault in one file, in the file's order: one line each.
    #[error("{}", lines(.0))]
    Several(Vec<ConfigError>),
}

fn lines(faults: &[ConfigError]) -> String {
    faults.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

impl ConfigError {
    /// One fault as itself, several as `Several`.
    pub fn of(mut faults: Vec<ConfigError>) -> ConfigError {
        match faults.len() {
            1 => faults.remove(0),
            _ => ConfigError::Several(faults),
        }
    }

    /// The line a fault is on (0 when it has none), to tell faults in
    /// the file's order.
    pub(crate) fn line(&self) -> usize {
        match self {
            ConfigError::Invalid { line, .. } | ConfigError::Syntax { line, .. } => *line,
            _ => 0,
        }
    }

    /// Each fault on its own, for a caller that prints or prefixes them.
    pub fn into_list(self) -> Vec<ConfigError> {
        match self {
            ConfigError::Several(faults) => faults,
            one => vec![one],
        }
    }
}

/// A file that did not pass: every fault, in the file's order, and the
/// config its other keys make (each key at fault left at its default), so
/// the files those name are checked in the same run.
pub struct Faulted {
    pub faults: Vec<ConfigError>,
    /// Boxed: a `Result` carries it.
    pub stand_in: Option<Box<Config>>,
    /// The keys whose default stands in for what the file says.
    pub stood_in: Vec<String>,
}

impl Faulted {
    fn alone(fault: ConfigError) -> Faulted {
        Faulted { faults: fault.into_list(), stand_in: None, stood_in: Vec::new() }
    }
}

/// The keys a rule's faults name (`a|b`: both).
fn rule_keys(broken: &[ConfigError]) -> Vec<String> {
    let keys = broken.iter().filter_map(|fault| match fault {
        ConfigError::Invalid { key, .. } => Some(key.split('|').map(str::to_string)),
        _ => None,
    });
    keys.flatten().collect()
}

/// The config `doc` makes with `keys` taken out (their defaults standing
/// in), taking out the keys of each rule still broken for a few rounds;
/// `None` when none is made. `keys` grows by what else was taken.
fn without(
    doc: &toml::Spanned<toml::de::DeTable<'_>>,
    keys: &mut Vec<String>,
    path: &Path,
) -> Option<Config> {
    for _ in 0..4 {
        let mut sifted = sift::sift_without(doc, keys);
        let taken = sifted.taken_out().iter().filter(|k| !keys.contains(k)).cloned().collect::<Vec<_>>();
        keys.extend(taken);
        let broken = match rules::resolve(sifted.raw.take()?, Some(path)) {
            Ok(cfg) => return Some(cfg),
            Err(broken) => broken.into_list(),
        };
        let more: Vec<String> = rule_keys(&broken).into_iter().filter(|k| !keys.contains(k)).collect();
        if more.is_empty() {
            return None;
        }
        keys.extend(more);
    }
    None
}

/// The config file's text. A file that is not UTF-8 (TOML must be) is
/// told on the line of its first stray byte, as a syntax error is: an
/// editor's Latin-1 "é" in a comment is then found at once.
fn read_text(path: &Path) -> Result<String, ConfigError> {
    let shown = || path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read { path: shown(), source })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        ConfigError::Syntax {
            path: shown(),
            line: locate::line_of_bytes(bytes, at),
            reason: format!("not UTF-8 text (byte 0x{:02X}); save the file as UTF-8", bytes[at]),
        }
    })
}

/// How a reload went.
#[derive(Debug, Clone)]
pub enum ReloadOutcome {
    /// The new config runs, except `needs_restart`: restart-only settings
    /// that changed in the file and still run with their old values.
    Applied { needs_restart: Vec<&'static str> },
    /// Nothing changed. `faults`: why the file was refused, one each in the
    /// file's order (`PATH:LINE: key: reason`, as check-config tells them).
    Refused { faults: Vec<String> },
}

/// Puts a prepared reload in force. Runs only after every service has
/// prepared its part, so a reload applies whole or not at all.
pub type Commit = Box<dyn FnOnce() + Send>;

/// A `Reloadable::prepare` in progress.
pub type Preparing<'a> = Pin<Box<dyn Future<Output = Result<Commit, String>> + Send + 'a>>;

/// A service holding state derived from the config or from the files it
/// names (signing keys, the pepper, the breached-password list): a reload
/// rebuilds that state from `next`, re-reading the files even when their
/// paths did not change (a rotated secret is a new file at the old path).
pub trait Reloadable: Send + Sync {
    /// Builds the state `next` asks for without applying it; the error
    /// names the key and the file.
    fn prepare<'a>(&'a self, next: &'a Config) -> Preparing<'a>;
}

/// Where a listener accepts connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub kind: ListenerKind,
    pub addr: ListenAddr,
    /// Whether `/metrics` is served on this listener.
    pub metrics: bool,
}

/// A certificate chain and key, read from the paths in `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The validated configuration. Immutable: a reload builds a new one.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from; `None` for the built-in defaults.
    pub source: Option<PathBuf>,
    /// The state directory and the master key file.
    pub state: StateDir,
    pub public_url: String,
    /// Host part of `public_url`, put in a generated certificate.
    pub public_host: String,
    pub listeners: Vec<Listener>,
    /// `None`: a self-signed certificate in `state_dir/tls`.
    pub tls: Option<TlsFiles>,
    pub admin_socket: PathBuf,
    pub admin_group: String,
    pub tokens: TokensSection,
    pub passwords: PasswordsSection,
    pub accounts: AccountsSection,
    pub email: EmailSection,
    pub smtp: Option<SmtpSection>,
    pub rate_limits: RateLimitsSection,
    pub defense: DefenseSection,
    pub http: HttpSection,
    pub log: LogSection,
    pub audit: AuditSection,
    pub backup: BackupSection,
    pub pages: PagesSection,
}

/// A setting read once at start: a reload that changes it reports the key
/// as "needs restart" and keeps the running value, so nothing is half-applied.
struct RestartOnly {
    key: &'static str,
    same: fn(&Config, &Config) -> bool,
    keep: fn(&mut Config, &Config),
}

macro_rules! restart_only {
    ($($key:literal => $($field:ident).+),* $(,)?) => {
        &[$(RestartOnly {
            key: $key,
            same: |a, b| a.$($field).+ == b.$($field).+,
            keep: |new, running| new.$($field).+ = running.$($field).+.clone(),
        }),*]
    };
}

/// The one list of restart-only keys: it drives both what a reload reports
/// and what it keeps. Listeners, sockets and the state directory are bound
/// or locked at start; logging is installed once per process; the header
/// timeout is set on each server when it is built.
const RESTART_ONLY: &[RestartOnly] = restart_only! {
    "listener" => listeners,
    "server.state_dir" => state,
    "server.key_file" => state,
    "admin.socket" => admin_socket,
    "admin.group" => admin_group,
    "http.header_timeout" => http.header_timeout,
    "log.format" => log.format,
    "log.file" => log.file,
};

impl Config {
    /// The config file to use: `--config`, else `$LATCH_CONFIG`, else the
    /// system file if it exists, else none (built-in defaults).
    pub fn locate(flag: Option<PathBuf>) -> Option<PathBuf> {
        Self::named(flag).or_else(|| Some(PathBuf::from(SYSTEM_CONFIG)).filter(|p| p.exists()))
    }

    /// The config file someone asked for: `--config`, else `$LATCH_CONFIG`
    /// (not the system file, which is only there).
    pub fn named(flag: Option<PathBuf>) -> Option<PathBuf> {
        flag.or_else(|| std::env::var_os("LATCH_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from))
    }

    /// Reads and validates `path`, or returns the built-in defaults for `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_all(path).map_err(|faulted| ConfigError::of(faulted.faults))
    }

    /// As `load`, with what the file's other keys make when it has faults
    /// (for the checks of the files they name).
    pub fn load_all(path: Option<&Path>) -> Result<Config, Faulted> {
        match path {
            None => rules::resolve(RawConfig::default(), None).map_err(Faulted::alone),
            Some(path) => {
                let text = read_text(path).map_err(Faulted::alone)?;
                Self::parse_all(&text, path)
            }
        }
    }

    /// The config file read again for a reload. An empty file is refused:
    /// it is what a reload sees between the truncation and the write of a
    /// file rewritten in place (the file watch, a SIGHUP at that moment),
    /// and applied it would put every setting back to its default: the
    /// configured certificate dropped for a generated one, the limits and
    /// defenses reset. A file of comments alone still means the defaults.
    pub fn reload_from(path: &Path) -> Result<Config, ConfigError> {
        let text = read_text(path)?;
        if text.trim().is_empty() {
            return Err(ConfigError::EmptyOnReload { path: path.display().to_string() });
        }
        Self::parse(&text, path)
    }

    /// Validates config `text` as if read from `path` (used in error
    /// messages, and as the base of relative paths in the file).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Self::parse_all(text, path).map_err(|faulted| ConfigError::of(faulted.faults))
    }

    fn parse_all(text: &str, path: &Path) -> Result<Config, Faulted> {
        let shown = path.display().to_string();
        let doc = toml::de::DeTable::parse(text)
            .map_err(|e| ConfigError::Syntax {
                path: shown.clone(),
                line: e.span().map_or(1, |s| locate::line_of(text, s.start)),
                reason: e.message().to_string(),
            })
            .map_err(Faulted::alone)?;
        let mut sifted = sift::sift(&doc);
        let mut faults: Vec<ConfigError> = (sifted.refused.iter())
            .map(|r| ConfigError::Invalid {
                path: shown.clone(),
                line: locate::line_of(text, r.offset),
                key: r.key.clone(),
                reason: r.reason.clone(),
            })
            .collect();
        let mut stood_in = sifted.taken_out().to_vec();
        // The rules run on what read, so a file is told its broken rules
        // beside its refused keys.
        let stand_in = match sifted.raw.take().map(|raw| rules::resolve(raw, Some(path))) {
            Some(Ok(cfg)) if faults.is_empty() => return Ok(cfg),
            Some(Ok(cfg)) => Some(Box::new(cfg)),
            Some(Err(broken)) => {
                let broken = broken.into_list();
                stood_in.extend(rule_keys(&broken));
                let placed = broken.into_iter().filter_map(|fault| match fault {
                    ConfigError::Invalid { key, .. } if sifted.stood_in(&key) => None,
                    ConfigError::Invalid { key, reason, .. } => {
                        let (key, span) = locate::first_set(&doc, &key);
                        let line = span.map_or(1, |s| locate::line_of(text, s.start));
                        Some(ConfigError::Invalid { path: shown.clone(), line, key, reason })
                    }
                    other => Some(other),
                });
                faults.extend(placed);
                without(&doc, &mut stood_in, path).map(Box::new)
            }
            None => None,
        };
        faults.sort_by_key(ConfigError::line);
        Err(Faulted { faults, stand_in, stood_in })
    }

    /// A problem with `key` found after the file was read (a file it names
    /// cannot be used), placed on the key's line like a parse error.
    pub fn problem_at(&self, key: &str, reason: String) -> ConfigError {
        let Some(path) = &self.source else {
            return ConfigError::Invalid {
                path: "built-in defaults".into(),
                line: 0,
                key: key.into(),
                reason,
            };
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let doc = toml::de::DeTable::parse(&text).ok();
        let (key, span) = doc.map_or((key.to_string(), None), |doc| locate::first_set(&doc, key));
        let line = span.map_or(1, |s| locate::line_of(&text, s.start));
        ConfigError::Invalid { path: path.display().to_string(), line, key, reason }
    }

    /// Restart-only keys whose value differs between `self` and `next`.
    pub fn restart_only_changes(&self, next: &Config) -> Vec<&'static str> {
        RESTART_ONLY.iter().filter(|r| !(r.same)(self, next)).map(|r| r.key).collect()
    }

    /// `self` with the restart-only settings taken from `running`.
    pub fn keep_restart_only(mut self, running: &Config) -> Config {
        for r in RESTART_ONLY {
            (r.keep)(&mut self, running);
        }
        self
    }

    pub fn database_path(&self) -> PathBuf {
        self.state.database()
    }

    /// Where scheduled and pre-migration backups go.
    pub fn backup_dir(&self) -> PathBuf {
        self.backup.dir.clone().unwrap_or_else(|| self.state.backups())
    }

    /// Where the WAL archive's generations go.
    pub fn archive_dir(&self) -> PathBuf {
        self.backup.archive_dir.clone().unwrap_or_else(|| self.state.archive())
    }

    /// The config in force, shaped like the file (sections and keys as in
    /// API.md), with every default and path resolved: `latchctl config show`.
    pub fn effective(&self) -> serde_json::Value {
        let listeners: Vec<serde_json::Value> = self.listeners.iter().map(Listener::effective).collect();
        serde_json::json!({
            "server": {
                "state_dir": self.state.root(),
                "public_url": self.public_url,
                "key_file": self.state.key_file(),
            },
            "listener": listeners,
            "tls": self.tls.as_ref().map(|t| serde_json::json!({"cert": t.cert, "key": t.key})),
            "admin": { "socket": self.admin_socket, "group": self.admin_group },
            "tokens": self.tokens,
            "passwords": self.passwords,
            "accounts": self.accounts,
            "email": self.email,
            "smtp": self.smtp,
            "rate_limits": self.rate_limits,
            "defense": self.defense,
            "http": self.http,
            "log": self.log,
            "audit": self.audit,
            "backup": self.backup,
            "pages": self.pages,
        })
    }
}

impl Listener {
    fn effective(&self) -> serde_json::Value {
        let (addr, path) = match &self.addr {
            ListenAddr::Tcp(a) => (Some(a.to_string()), None),
            ListenAddr::Unix(p) => (None, Some(p.clone())),
        };
        serde_json::json!({ "kind": self.kind, "addr": addr, "path": path, "metrics": self.metrics })
    }
}
