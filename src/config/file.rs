//! The shape of `latch.toml`: every section and key of API.md "Config file",
//! each optional with its documented default. Unknown keys are errors so a
//! typo never silently falls back to a default.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::defense::DefenseSection;
use super::values::{ByteSize, HumanDuration, Rate, optional_duration, optional_path};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: ServerSection,
    #[serde(rename = "listener")]
    pub listeners: Option<Vec<ListenerSection>>,
    pub tls: TlsSection,
    pub admin: AdminSection,
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

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub state_dir: Option<PathBuf>,
    pub public_url: Option<String>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    Https,
    Http,
    Unix,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    pub kind: ListenerKind,
    pub addr: Option<String>,
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub metrics: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    pub socket: Option<PathBuf>,
    pub group: String,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection { socket: None, group: "latch-admin".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum TokenAlgorithm {
    EdDSA,
    HS256,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensSection {
    pub algorithm: TokenAlgorithm,
    #[serde(deserialize_with = "optional_path")]
    pub secret_file: Option<PathBuf>,
    pub access_ttl: HumanDuration,
    pub refresh_ttl: HumanDuration,
    pub session_max_age: HumanDuration,
    pub ended_session_retention: HumanDuration,
    pub refresh_reuse_grace: HumanDuration,
    pub leeway: HumanDuration,
    pub issuer: String,
    pub audience: String,
}

impl Default for TokensSection {
    fn default() -> Self {
        TokensSection {
            algorithm: TokenAlgorithm::EdDSA,
            secret_file: None,
            access_ttl: HumanDuration::secs(15 * 60),
            refresh_ttl: HumanDuration::secs(7 * 86_400),
            session_max_age: HumanDuration::secs(30 * 86_400),
            ended_session_retention: HumanDuration::secs(30 * 86_400),
            refresh_reuse_grace: HumanDuration::secs(0),
            leeway: HumanDuration::secs(5),
            issuer: String::new(),
            audience: "latch".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Argon2Params { memory_kib: 19_456, iterations: 2, parallelism: 1 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordsSection {
    pub min_length: u32,
    pub max_length: u32,
    pub argon2: Argon2Params,
    #[serde(deserialize_with = "optional_path")]
    pub pepper_file: Option<PathBuf>,
    #[serde(deserialize_with = "optional_path")]
    pub breached_list: Option<PathBuf>,
    /// A password check that would wait longer than this for a hashing
    /// thread is refused at once with 503 `overloaded`.
    pub max_queue_wait: HumanDuration,
}

impl Default for PasswordsSection {
    fn default() -> Self {
        PasswordsSection {
            min_length: 12,
            max_length: 128,
            argon2: Argon2Params::default(),
            pepper_file: None,
            breached_list: None,
            max_queue_wait: HumanDuration::secs(1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    Open,
    Closed,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsSection {
    pub registration: Registration,
    pub require_verified_email: bool,
}

impl Default for AccountsSection {
    fn default() -> Self {
        AccountsSection { registration: Registration::Open, require_verified_email: true }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailSection {
    pub from: String,
    pub verify_url: String,
    pub reset_url: String,
    pub max_per_recipient: u32,
    pub file_retention: HumanDuration,
}

impl Default for EmailSection {
    fn default() -> Self {
        EmailSection {
            from: "latch <noreply@localhost>".into(),
            verify_url: "{public_url}/verify-email?token={token}".into(),
            reset_url: "{public_url}/reset-password?token={token}".into(),
            max_per_recipient: 5,
            file_retention: HumanDuration::secs(7 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSection {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: String,
    #[serde(deserialize_with = "optional_path")]
    pub password_file: Option<PathBuf>,
    /// PEM certificates of the CAs that may vouch for the relay, besides
    /// the public roots: a relay with a private CA or its own certificate.
    #[serde(deserialize_with = "optional_path")]
    pub ca_file: Option<PathBuf>,
    pub max_attempts: u32,
}

impl Default for SmtpSection {
    fn default() -> Self {
        SmtpSection {
            host: "localhost".into(),
            port: 25,
            security: SmtpSecurity::None,
            username: String::new(),
            password_file: None,
            ca_file: None,
            max_attempts: 8,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsSection {
    pub global: Rate,
    pub ip: Rate,
    pub ip_hourly: Rate,
    pub credential: Rate,
    pub account: Rate,
}

fn rate(count: u32, secs: u64) -> Rate {
    Rate { count, period: std::time::Duration::from_secs(secs) }
}

impl Default for RateLimitsSection {
    fn default() -> Self {
        RateLimitsSection {
            global: rate(10_000, 60),
            ip: rate(100, 60),
            ip_hourly: rate(1000, 3600),
            credential: rate(20, 60),
            account: rate(10, 60),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub cors_origins: Vec<String>,
    pub trusted_hosts: Vec<String>,
    pub request_timeout: HumanDuration,
    pub header_timeout: HumanDuration,
    pub max_body: ByteSize,
    /// HTTPS connections open at once from one client address; 0: no limit.
    pub max_connections_per_ip: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            cors_origins: Vec::new(),
            trusted_hosts: Vec::new(),
            request_timeout: HumanDuration::secs(30),
            header_timeout: HumanDuration::secs(5),
            max_body: ByteSize(64 * 1024),
            max_connections_per_ip: 128,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Auto,
    Json,
    Text,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub format: LogFormat,
    #[serde(deserialize_with = "optional_path")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// `None` (empty in the file) keeps audit rows forever.
    #[serde(deserialize_with = "optional_duration")]
    pub retention: Option<HumanDuration>,
}

/// The pages for people; `product_name` also names latch to them
/// elsewhere (the issuer an authenticator app shows next to a code).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagesSection {
    pub enabled: bool,
    pub product_name: String,
}

impl Default for PagesSection {
    fn default() -> Self {
        PagesSection { enabled: true, product_name: "latch".into() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupSection {
    pub interval: HumanDuration,
    pub keep: u32,
    #[serde(deserialize_with = "optional_path")]
    pub dir: Option<PathBuf>,
    pub wal_archive: bool,
    #[serde(deserialize_with = "optional_path")]
    pub archive_dir: Option<PathBuf>,
}

impl Default for BackupSection {
    fn default() -> Self {
        BackupSection {
            interval: HumanDuration::secs(15 * 60),
            keep: 96,
            dir: None,
            wal_archive: true,
            archive_dir: None,
        }
    }
}
