//! TLS: rustls with TLS 1.2 and 1.3 only, aws-lc-rs as the one crypto
//! provider. The certificate sits behind a swappable resolver so a renewed
//! file can be picked up without a restart; with no `[tls]` files a
//! self-signed certificate is generated into `state_dir/tls/`, reused, and
//! made anew a month before it expires.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Config, TlsFiles};
use crate::state_dir::write_private;

/// Generated certificates are renewed (at start, on a reload and by the
/// daemon's hourly check) when fewer days remain.
const RENEW_GENERATED_DAYS: i64 = 30;
/// With the day of back-dating, a lifespan of 365 days: Mozilla's TLS
/// guidelines (and sslyze's check of them) want less than 366.
const GENERATED_VALID_DAYS: i64 = 364;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: no usable PEM {what} found: {reason}")]
    Pem { path: PathBuf, what: &'static str, reason: String },
    #[error("certificate and key do not match or the key type is unsupported: {0}")]
    Key(rustls::Error),
    #[error("generating a self-signed certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Certificate files in use: the configured ones, or the generated pair.
pub fn cert_files(cfg: &Config) -> TlsFiles {
    cfg.tls.clone().unwrap_or_else(|| TlsFiles { cert: cfg.state.tls_cert(), key: cfg.state.tls_key() })
}

/// Resolver holding the current certificate; `swap` replaces it atomically.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn swap(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Loads (generating first if needed) the certificate and builds the rustls
/// server config shared by every HTTPS listener.
pub fn server_config(cfg: &Config) -> Result<(Arc<ServerConfig>, Arc<CertStore>), TlsError> {
    renew_generated(cfg)?;
    let key = load_certified_key(&cert_files(cfg))?;
    let store = Arc::new(CertStore { current: ArcSwap::from_pointee(key) });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(store.clone());
    // A client that names only http/1.0 (`curl --http1.0`, health
    // checkers) is otherwise refused the handshake ("no application
    // protocol"); actix's HTTP/1 side serves it.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    // Resumption: one TLS 1.3 ticket per handshake (rustls sends two by
    // default), backed by an in-memory cache of 1,024 sessions. A client
    // that reconnects with it skips the certificate signature; one ticket is
    // enough for that, and a stateful cache needs no ticket key to rotate.
    config.send_tls13_tickets = 1;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(1024);
    Ok((Arc::new(config), store))
}

/// Reads a PEM chain and key, checks they match, and exports the leaf's
/// expiry as `latch_tls_cert_expiry_timestamp_seconds`.
pub fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let pem_err = |path: &Path, what, e: rustls_pki_types::pem::Error| TlsError::Pem {
        path: path.to_path_buf(),
        what,
        reason: e.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| pem_err(&files.cert, "certificate", e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(&files.cert, "certificate", e))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Pem {
            path: files.cert.clone(),
            what: "certificate",
            reason: "file is empty".into(),
        });
    };
    let expiry = not_after(leaf);
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| pem_err(&files.key, "private key", e))?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(TlsError::Key)?;
    if let Some(expiry) = expiry {
        metrics::gauge!("latch_tls_cert_expiry_timestamp_seconds").set(expiry as f64);
    }
    Ok(certified)
}

/// The leaf certificate's notAfter as Unix seconds.
pub fn not_after(der: &CertificateDer<'_>) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Whether the certificate's subject alternative names hold `host` (a DNS
/// name, any case, or an IP address).
fn holds_name(der: &CertificateDer<'_>, host: &str) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else { return false };
    let Ok(Some(san)) = cert.subject_alternative_name() else { return false };
    let ip: Option<std::net::IpAddr> = host.parse().ok();
    san.value.general_names.iter().any(|name| match name {
        GeneralName::DNSName(dns) => dns.eq_ignore_ascii_case(host),
        GeneralName::IPAddress(bytes) => ip.is_some_and(|ip| match ip {
            std::net::IpAddr::V4(v4) => v4.octets().as_slice() == *bytes,
            std::net::IpAddr::V6(v6) => v6.octets().as_slice() == *bytes,
        }),
        _ => false,
    })
}

/// With no `[tls]` files: makes a new self-signed pair when there is none,
/// the one there expires within `RENEW_GENERATED_DAYS`, or it does not
/// name `public_url`'s host. True when it
/// wrote one (the caller then serves it). A daemon that runs for a year
/// must not start serving an expired certificate.
pub fn renew_generated(cfg: &Config) -> Result<bool, TlsError> {
    if cfg.tls.is_some() {
        return Ok(false);
    }
    ensure_generated(&cert_files(cfg), &cfg.public_host)
}

/// Creates `state_dir/tls/{cert,key}.pem` unless a usable pair is there;
/// true when it did.
fn ensure_generated(files: &TlsFiles, host: &str) -> Result<bool, TlsError> {
    if files.cert.exists() && files.key.exists() {
        let renew_by = crate::clock::now_unix() + RENEW_GENERATED_DAYS * 86_400;
        let leaf =
            CertificateDer::pem_file_iter(&files.cert).ok().and_then(|mut it| it.next()).and_then(Result::ok);
        let lasts = leaf.as_ref().and_then(not_after).is_some_and(|t| t > renew_by);
        // public_url moved to another name: clients reaching latch by it
        // would refuse a certificate made for the old one.
        let names_host = leaf.as_ref().is_some_and(|der| holds_name(der, host));
        match (lasts, names_host) {
            (true, true) => return Ok(false),
            (false, _) => {
                tracing::info!(path = %files.cert.display(), "generated certificate expires soon; making a new one")
            }
            (true, false) => tracing::info!(
                path = %files.cert.display(), host,
                "generated certificate does not name server.public_url's host; making a new one"
            ),
        }
    }
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if !names.iter().any(|n| n == host) {
        names.insert(0, host.to_string());
    }
    let key_pair = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names)?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(GENERATED_VALID_DAYS);
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("latch self-signed ({host})"));
    // A server certificate that strict RFC 5280 verifiers accept once a
    // client trusts it: key identifiers, not a CA, for TLS servers only.
    params.use_authority_key_identifier_extension = true;
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key_pair)?;
    let write = |path: &Path, data: String| {
        write_private(path, data.as_bytes())
            .map_err(|source| TlsError::Io { path: path.to_path_buf(), source })
    };
    write(&files.key, key_pair.serialize_pem())?;
    write(&files.cert, cert.pem())?;
    tracing::warn!(
        cert = %files.cert.display(),
        "no [tls] certificate configured: generated a self-signed one (clients must trust it explicitly)"
    );
    Ok(true)
}
