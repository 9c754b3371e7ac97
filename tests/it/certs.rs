//! A certificate renewed the way certbot renews one — new files in an
//! archive folder, then the `live/` symlinks swapped by rename — is served
//! to the next handshake without a signal or a restart, and the expiry
//! metric follows it; a chain (leaf and intermediate) is served whole; a
//! generated certificate near its expiry is renewed by the running daemon.

use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;

use crate::flows::metric;
use crate::harness::{Latchd, base_config, client_tls, write_config};

/// A self-signed certificate for localhost valid until `year`: (cert, key) PEM.
fn certificate(year: i32) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(year, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Points `live/<name>` at `archive/<target>` the way certbot does: a new
/// symlink under a temp name, renamed over the old one.
fn relink(dir: &Path, name: &str, target: &str) {
    let tmp = dir.join(format!("live/.{name}.new"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("../archive/{target}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(format!("live/{name}"))).unwrap();
}

/// The DER of the certificate the daemon presents to a new handshake.
fn served(d: &Latchd, trust: &Path) -> Vec<u8> {
    handshake(d, trust).unwrap()
}

/// As `served`, or the handshake's error: while a renewal is under way
/// the file trusted may already be the new certificate and the one served
/// still the old (same name, another key: `BadSignature`).
fn handshake(d: &Latchd, trust: &Path) -> Result<Vec<u8>, std::io::Error> {
    let config: Arc<rustls::ClientConfig> = client_tls(trust, &[&rustls::version::TLS13]);
    let mut conn = rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut sock = TcpStream::connect(d.addr("https"))?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(conn.peer_certificates().unwrap()[0].to_vec())
}

fn der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
}

#[tokio::test]
async fn a_certbot_style_renewal_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("archive")).unwrap();
    std::fs::create_dir_all(root.join("live")).unwrap();
    let (old, new) = (certificate(2030), certificate(2031));
    for (n, (cert, key)) in [(1, &old), (2, &new)] {
        std::fs::write(root.join(format!("archive/cert{n}.pem")), cert).unwrap();
        std::fs::write(root.join(format!("archive/key{n}.pem")), key).unwrap();
    }
    std::fs::write(root.join("trust.pem"), format!("{}{}", old.0, new.0)).unwrap();
    // The harness's own client trusts `state/tls/cert.pem`; with [tls] set
    // latchd never touches that file, so it can hold both certificates.
    std::fs::create_dir_all(root.join("state/tls")).unwrap();
    std::fs::copy(root.join("trust.pem"), root.join("state/tls/cert.pem")).unwrap();
    relink(root, "cert.pem", "cert1.pem");
    relink(root, "key.pem", "key1.pem");
    let tls =
        format!("\n[tls]\ncert = {:?}\nkey = {:?}\n", root.join("live/cert.pem"), root.join("live/key.pem"));
    write_config(root, &base_config(&tls));
    let trust = root.join("trust.pem");
    let d = Latchd::start_in(dir).await;
    let trust_path = trust.as_path();
    assert_eq!(served(&d, trust_path), der(&old.0));
    let old_expiry = metric(&d, "latch_tls_cert_expiry_timestamp_seconds").await;

    let root = d.dir.path().to_path_buf();
    relink(&root, "cert.pem", "cert2.pem");
    relink(&root, "key.pem", "key2.pem");
    let deadline = Instant::now() + Duration::from_secs(5);
    while served(&d, trust_path) != der(&new.0) {
        assert!(Instant::now() < deadline, "the renewed certificate is served within seconds:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new_expiry = metric(&d, "latch_tls_cert_expiry_timestamp_seconds").await;
    assert!(new_expiry - old_expiry > 300.0 * 86400.0, "the metric follows: {old_expiry} → {new_expiry}");
}

/// The generated certificate is renewed while the daemon runs, not only at
/// start: one that expires within 30 days (here written over it, as if the
/// daemon had run for eleven months) is replaced by a new year-long one at
/// the next reload, or by the daemon's own hourly check of it for one that
/// never reloads, and served at once, its key file private.
#[tokio::test]
async fn a_generated_certificate_near_its_expiry_is_renewed_without_a_restart() {
    renewed_near_expiry(true).await;
    renewed_near_expiry(false).await;
}

async fn renewed_near_expiry(by_reload: bool) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &base_config(""));
    // Without a reload, the check comes every 300 ms instead of hourly.
    let every = if by_reload { vec![] } else { vec![("LATCH_TEST_PAUSE", "cert_check_every:300")] };
    let d = Latchd::start_in_with_env(dir, &every).await;
    let (cert, key) = (d.state_dir().join("tls/cert.pem"), d.state_dir().join("tls/key.pem"));
    let first = std::fs::read_to_string(&cert).unwrap();
    assert_eq!(served(&d, &cert), der(&first));
    let now = time::OffsetDateTime::now_utc();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_after = now + time::Duration::days(10);
    let near_key = rcgen::KeyPair::generate().unwrap();
    let near = params.self_signed(&near_key).unwrap().pem();
    // Each file whole (written aside, renamed), the key first: the check
    // every 300 ms reads the certificate, and one that saw the new
    // certificate before its key was written renewed both, and then had
    // its new key overwritten by this test's.
    for (path, pem) in [(&key, near_key.serialize_pem()), (&cert, near.clone())] {
        let aside = path.with_extension("pem.test");
        std::fs::write(&aside, pem).unwrap();
        std::fs::rename(&aside, path).unwrap();
    }

    if by_reload {
        d.signal(libc::SIGHUP);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let renewed = loop {
        let now_on_disk = std::fs::read_to_string(&cert).unwrap();
        if now_on_disk != near && handshake(&d, &cert).ok() == Some(der(&now_on_disk)) {
            break now_on_disk;
        }
        assert!(
            Instant::now() < deadline,
            "a new certificate is made and served within seconds:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(renewed, first);
    let expiry = metric(&d, "latch_tls_cert_expiry_timestamp_seconds").await;
    let days_left = (expiry - now.unix_timestamp() as f64) / 86400.0;
    assert!((360.0..366.0).contains(&days_left), "a year-long certificate: {days_left} days");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    d.log_with("expires soon").await; // the renewal is logged
}

/// A CA certificate named `name`, signed by `issuer` (self-signed without one).
fn ca(
    name: &str,
    issuer: Option<&rcgen::Issuer<'_, rcgen::KeyPair>>,
) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    (cert.pem(), rcgen::Issuer::new(params, key))
}

/// A certificate from a CA that signs through an intermediate, as Let's
/// Encrypt's do: latch serves the whole chain of `fullchain.pem`, so a
/// client that trusts only the root connects.
#[tokio::test]
async fn a_full_chain_is_served_whole() {
    let (root_pem, root) = ca("Example Root CA", None);
    let (intermediate_pem, intermediate) = ca("Example Intermediate R1", Some(&root));
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let leaf = leaf.signed_by(&key, &intermediate).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    std::fs::write(path.join("fullchain.pem"), format!("{}{intermediate_pem}", leaf.pem())).unwrap();
    std::fs::write(path.join("privkey.pem"), key.serialize_pem()).unwrap();
    // The harness's client trusts `state/tls/cert.pem`: there, the root alone.
    std::fs::create_dir_all(path.join("state/tls")).unwrap();
    std::fs::write(path.join("state/tls/cert.pem"), &root_pem).unwrap();
    let tls =
        format!("\n[tls]\ncert = {:?}\nkey = {:?}\n", path.join("fullchain.pem"), path.join("privkey.pem"));
    write_config(path, &base_config(&tls));
    let d = Latchd::start_in(dir).await;
    let trust = d.dir.path().join("state/tls/cert.pem");
    assert_eq!(served(&d, &trust), der(&leaf.pem()));
    let config: Arc<rustls::ClientConfig> = client_tls(&trust, &[&rustls::version::TLS12]);
    let mut conn = rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut sock = TcpStream::connect(d.addr("https")).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    let chain: Vec<Vec<u8>> = conn.peer_certificates().unwrap().iter().map(|c| c.to_vec()).collect();
    assert_eq!(chain, [der(&leaf.pem()), der(&intermediate_pem)], "leaf and intermediate, over TLS 1.2 too");
}
