//! Mail over TLS to a real relay (aiosmtpd with a certificate from a
//! private CA): STARTTLS with AUTH, as a submission port and every hosted
//! mail service run it, and TLS from the first byte (port 465), trusting
//! the CA that `[smtp].ca_file` names. Without that CA, or from a relay
//! that does not offer STARTTLS, nothing is sent — no fallback to clear
//! text, so the SMTP password never crosses in clear — and the outbox
//! says why. A relay password fixed in its file is used at the next retry.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::flows::PASSWORD;
use crate::harness::{Latchd, base_config, write_config};
use crate::mail::{SmtpSink, header_of};

const RELAY_USER: &str = "latch";
const RELAY_PASSWORD: &str = "relay password 4711";

/// A private CA and the relay's certificate for 127.0.0.1 signed by it,
/// as PEM files in `dir`: (ca.pem, relay.pem, relay.key).
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Example Corp mail CA");
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let relay_key = rcgen::KeyPair::generate().unwrap();
    let relay = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let relay = relay.signed_by(&relay_key, &ca).unwrap();
    let files = (dir.join("ca.pem"), dir.join("relay.pem"), dir.join("relay.key"));
    std::fs::write(&files.0, ca.pem()).unwrap();
    std::fs::write(&files.1, relay.pem()).unwrap();
    std::fs::write(&files.2, relay_key.serialize_pem()).unwrap();
    files
}

/// The `[smtp]` section for `sink` with `security`, and `ca_file` and a
/// login when given.
fn smtp_section(sink: &SmtpSink, security: &str, ca: Option<&Path>, password_file: Option<&Path>) -> String {
    let mut section =
        format!("\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"{security}\"\n", sink.port);
    if let Some(ca) = ca {
        section.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
    }
    if let Some(file) = password_file {
        section.push_str(&format!("username = \"{RELAY_USER}\"\npassword_file = \"{}\"\n", file.display()));
    }
    section
}

/// A daemon with `smtp`, and a registration that mails `email`.
async fn registered(smtp: &str, email: &str) -> Latchd {
    registered_as(smtp, "https://localhost:8443", email).await
}

/// As `registered`, with `public_url`.
async fn registered_as(smtp: &str, public_url: &str, email: &str) -> Latchd {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &base_config(smtp).replace("https://localhost:8443", public_url));
    let d = Latchd::start_in(dir).await;
    let res = d.post("/v1/auth/register", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(res.status(), 202);
    d
}

/// The outbox's last error for its one message, once there is one.
async fn last_error(d: &Latchd) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let error: Option<String> =
            d.db().query_row("SELECT last_error FROM outbox", [], |r| r.get(0)).unwrap_or(None);
        if let Some(error) = error {
            return error;
        }
        assert!(Instant::now() < deadline, "no delivery attempt recorded within 15 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn mail_goes_through_starttls_and_auth_to_a_relay_of_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(certs.path());
    let password_file = certs.path().join("smtp-password");
    std::fs::write(&password_file, format!("{RELAY_PASSWORD}\n")).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let sink = SmtpSink::start_with(0, &["--starttls", cert, key, "--login", RELAY_USER, RELAY_PASSWORD]);
    let smtp = smtp_section(&sink, "starttls", Some(&ca), Some(&password_file));
    let _d = registered(&smtp, "ann@example.test").await;
    let mail = sink.wait_for_mail_to("ann@example.test").await;
    assert!(header_of(&mail, "X-Sink-TLS").starts_with("TLSv1."), "{mail}");
    assert_eq!(header_of(&mail, "X-Sink-Login"), RELAY_USER);
    assert_eq!(header_of(&mail, "X-Sink-Helo"), "[127.0.0.1]", "public_url names localhost: no name to give");
}

#[tokio::test]
async fn mail_goes_through_tls_from_the_first_byte() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(certs.path());
    let sink = SmtpSink::start_with(0, &["--tls", cert.to_str().unwrap(), key.to_str().unwrap()]);
    // The EHLO name is public_url's host, latch's own name.
    let smtp = smtp_section(&sink, "tls", Some(&ca), None);
    let _d = registered_as(&smtp, "https://Auth.Example.test", "bob@example.test").await;
    let mail = sink.wait_for_mail_to("bob@example.test").await;
    assert!(header_of(&mail, "X-Sink-TLS").starts_with("TLSv1."), "{mail}");
    assert_eq!(header_of(&mail, "X-Sink-Helo"), "auth.example.test");
}

#[tokio::test]
async fn nothing_is_sent_to_a_relay_not_vouched_for_or_without_starttls() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(certs.path());
    let password_file = certs.path().join("smtp-password");
    std::fs::write(&password_file, RELAY_PASSWORD).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    // The relay's CA is not among the public roots latch trusts.
    let sink = SmtpSink::start_with(0, &["--starttls", cert, key, "--login", RELAY_USER, RELAY_PASSWORD]);
    let d = registered(&smtp_section(&sink, "starttls", None, Some(&password_file)), "cy@example.test").await;
    let error = last_error(&d).await;
    assert!(error.contains("certificate"), "{error}");
    // latchctl status says mail is stuck, and why.
    let status = String::from_utf8(crate::admin_api::ctl(&d, &["status"], "").stdout).unwrap();
    let mail = status.lines().find(|l| l.starts_with("mail")).unwrap_or_default();
    let expected = format!("(STARTTLS); failing: {error} (latchctl outbox list)");
    assert!(
        mail.contains("1 queued, 0 dead; sent by SMTP to 127.0.0.1:") && mail.ends_with(&expected),
        "{status}"
    );
    // A relay in clear (or a path that strips STARTTLS from its answer).
    let clear = SmtpSink::start();
    let d = registered(&smtp_section(&clear, "starttls", Some(&ca), Some(&password_file)), "di@example.test")
        .await;
    let error = last_error(&d).await;
    assert!(error.to_lowercase().contains("starttls"), "{error}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sink.wait_for(0).await.is_empty() && clear.wait_for(0).await.is_empty(), "nothing delivered");
}

/// A wrong relay password fails the delivery with the relay's answer, and
/// the right one written over the file is used at the next retry: no
/// reload, no restart.
#[tokio::test]
async fn a_relay_password_fixed_in_place_delivers_at_the_next_retry() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(certs.path());
    let password_file = certs.path().join("smtp-password");
    std::fs::write(&password_file, "not the relay password\n").unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let sink = SmtpSink::start_with(0, &["--starttls", cert, key, "--login", RELAY_USER, RELAY_PASSWORD]);
    let smtp = smtp_section(&sink, "starttls", Some(&ca), Some(&password_file));
    let d = registered(&smtp, "ed@example.test").await;
    let error = last_error(&d).await;
    assert!(error.contains("535"), "the relay's refusal: {error}");
    std::fs::write(&password_file, format!("{RELAY_PASSWORD}\n")).unwrap();
    let mail = sink.wait_for_mail_to("ed@example.test").await;
    assert_eq!(header_of(&mail, "X-Sink-Login"), RELAY_USER);
}
