//! Configuration: where the file is found, how it is read and checked whole,
//! and the resolved, immutable `Config` the daemon runs on. A bad file is an
//! error naming `PATH:LINE: key: reason`; nothing is half-applied.

mod defense;
mod file;
mod locate;
mod rules;
mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use defense::{AnomalyAction, DefenseSection};
pub use file::*;
pub use rules::authority_host;
pub use values::{ByteSize, Cidr, HumanDuration, Rate};

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
}

/// How a reload went: `error` set means nothing changed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadOutcome {
    pub applied: bool,
    pub error: Option<String>,
    /// Restart-only settings that changed in the file and still run with
    /// their old values.
    pub needs_restart: Vec<&'static str>,
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
    pub state_dir: PathBuf,
    pub public_url: String,
    /// Host part of `public_url`, put in a generated certificate.
    pub public_host: String,
    pub key_file: PathBuf,
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
}

impl Config {
    /// The config file to use: `--config`, else `$LATCH_CONFIG`, else the
    /// system file if it exists, else none (built-in defaults).
    pub fn locate(flag: Option<PathBuf>) -> Option<PathBuf> {
        flag.or_else(|| std::env::var_os("LATCH_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from))
            .or_else(|| Some(PathBuf::from(SYSTEM_CONFIG)).filter(|p| p.exists()))
    }

    /// Reads and validates `path`, or returns the built-in defaults for `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => rules::resolve(RawConfig::default(), None),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
                Self::parse(&text, path)
            }
        }
    }

    /// Validates config `text` as if read from `path` (used in error messages).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let doc = toml::de::DeTable::parse(text).map_err(|e| ConfigError::Syntax {
            path: shown.clone(),
            line: e.span().map_or(1, |s| locate::line_of(text, s.start)),
            reason: e.message().to_string(),
        })?;
        let raw: RawConfig = serde::Deserialize::deserialize(toml::de::Deserializer::from(doc.clone()))
            .map_err(|e| {
                let offset = e.span().map_or(0, |s| s.start);
                ConfigError::Invalid {
                    path: shown.clone(),
                    line: locate::line_of(text, offset),
                    key: locate::key_at(&doc, offset).unwrap_or_else(|| "(top level)".into()),
                    reason: e.message().to_string(),
                }
            })?;
        rules::resolve(raw, Some(path)).map_err(|e| match e {
            ConfigError::Invalid { key, reason, .. } => {
                let segments: Vec<&str> = key.split(['.', '[', ']']).filter(|s| !s.is_empty()).collect();
                let span = locate::span_of(&doc, &segments);
                ConfigError::Invalid {
                    path: shown.clone(),
                    line: span.map_or(1, |s| locate::line_of(text, s.start)),
                    key,
                    reason,
                }
            }
            other => other,
        })
    }

    /// Names of restart-only settings that differ between `self` and `next`.
    pub fn restart_only_changes(&self, next: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.listeners != next.listeners {
            changed.push("listener");
        }
        if self.state_dir != next.state_dir {
            changed.push("server.state_dir");
        }
        if self.key_file != next.key_file {
            changed.push("server.key_file");
        }
        if self.admin_socket != next.admin_socket || self.admin_group != next.admin_group {
            changed.push("admin");
        }
        changed
    }

    /// `self` with the restart-only settings taken from `running`, so a
    /// reload never half-applies them.
    pub fn keep_restart_only(mut self, running: &Config) -> Config {
        self.listeners = running.listeners.clone();
        self.state_dir = running.state_dir.clone();
        self.key_file = running.key_file.clone();
        self.admin_socket = running.admin_socket.clone();
        self.admin_group = running.admin_group.clone();
        self
    }

    pub fn database_path(&self) -> PathBuf {
        self.state_dir.join("latch.db")
    }
}
