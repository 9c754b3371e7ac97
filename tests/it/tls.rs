//! TLS: versions offered and refused, the generated certificate and its key.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use rustls_pki_types::ServerName;

use crate::harness::{Latchd, client_tls};

/// Completes a handshake offering `versions`; returns the negotiated one and
/// the status line of GET /health.
fn handshake(
    d: &Latchd,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (rustls::ProtocolVersion, String) {
    let config = client_tls(&d.cert_path(), versions);
    let request = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (version, status) = health_over(d, config, request);
    (version.expect("handshake done"), status)
}

/// Sends `request` over a connection made with `config`; the negotiated
/// version (none without a handshake) and the answer's status line.
fn health_over(
    d: &Latchd,
    config: std::sync::Arc<rustls::ClientConfig>,
    request: &str,
) -> (Option<rustls::ProtocolVersion>, String) {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut sock = TcpStream::connect(d.addr("https")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let _ = tls.write_all(request.as_bytes());
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out);
    (conn.protocol_version(), out.lines().next().unwrap_or("").to_string())
}

/// A client that asks for HTTP/1.0 by ALPN (`curl --http1.0`, health
/// checkers set to it) was refused the handshake with "no application
/// protocol" while latch offered only h2 and http/1.1.
#[tokio::test]
async fn a_client_asking_for_http10_is_served() {
    let d = Latchd::start().await;
    let mut config = (*client_tls(&d.cert_path(), &[&rustls::version::TLS13])).clone();
    config.alpn_protocols = vec![b"http/1.0".to_vec()];
    let (_, status) = health_over(&d, std::sync::Arc::new(config), "GET /health HTTP/1.0\r\n\r\n");
    assert!(status.starts_with("HTTP/1.") && status.ends_with(" 200 OK"), "{status:?}");
}

#[tokio::test]
async fn serves_tls13_by_default_and_tls12_when_asked() {
    let d = Latchd::start().await;
    let (v, status) = handshake(&d, &[&rustls::version::TLS13, &rustls::version::TLS12]);
    assert_eq!(v, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let (v, status) = handshake(&d, &[&rustls::version::TLS12]);
    assert_eq!(v, rustls::ProtocolVersion::TLSv1_2);
    assert_eq!(status, "HTTP/1.1 200 OK");
}

/// A TLS 1.1 ClientHello (no supported_versions extension), as an old
/// client would send it: legacy version 0x0302 and TLS 1.1-era suites.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[7u8; 32]); // client random
    body.push(0); // no session id
    let suites: [u16; 4] = [0xc013, 0xc009, 0x002f, 0x0035];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // null compression
    // extensions: supported_groups (secp256r1), ec_point_formats (uncompressed)
    let ext: &[u8] = &[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, 0x00, 0x0b, 0x00, 0x02, 0x01, 0x00];
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(ext);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x02];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[tokio::test]
async fn refuses_tls11_with_an_alert() {
    let d = Latchd::start().await;
    let mut sock = TcpStream::connect(d.addr("https")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.write_all(&tls11_client_hello()).unwrap();
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer);
    assert!(!answer.is_empty(), "server closed without an alert");
    assert_eq!(answer[0], 0x15, "expected an alert record, got {answer:02x?}");
    // A fatal alert (level 2): protocol_version (70) or handshake_failure (40).
    assert_eq!(answer[5], 2, "{answer:02x?}");
    assert!([40, 70].contains(&answer[6]), "{answer:02x?}");
}

/// `curl http://` at an HTTPS port: a plain-HTTP 400 that says to use
/// https, as problem JSON, instead of a TLS alert the client shows as
/// garbage; the listener goes on serving TLS.
#[tokio::test]
async fn plain_http_at_an_https_port_is_told_to_use_https() {
    let mut d = Latchd::start().await;
    let mut sock = TcpStream::connect(d.addr("https")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = String::new();
    sock.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{answer:?}"));
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(head.contains("content-type: application/problem+json"), "{head}");
    let problem: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(problem["type"], "urn:latch:problem:invalid-request");
    assert!(problem["detail"].as_str().unwrap().contains("https://"), "{problem}");
    assert_eq!(d.get("/health").await.status(), 200);
    // Like every answer: a request id, the security headers, an access-log line.
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    let id = head.lines().find_map(|l| l.strip_prefix("x-request-id: ")).unwrap_or_else(|| panic!("{head}"));
    assert!(d.stop_within(Duration::from_secs(10)).success());
    let line = d.log().lines().find(|l| l.contains(id) && l.contains("\"request\"")).map(str::to_string);
    let entry: serde_json::Value = serde_json::from_str(&line.expect("an access-log line")).unwrap();
    assert_eq!((entry["method"].as_str(), entry["status"].as_u64()), (Some("GET"), Some(400)), "{entry}");
}

#[tokio::test]
async fn generated_certificate_is_private_and_names_localhost() {
    let d = Latchd::start().await;
    let tls_dir = d.state_dir().join("tls");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tls_dir.join("key.pem")), 0o600);
    assert_eq!(mode(&tls_dir), 0o700);
    // The client verifies the name: a certificate without localhost fails.
    assert_eq!(d.get("/health").await.status(), 200);
    let by_ip = d.client().get(format!("https://{}/health", d.addr("https"))).send().await.unwrap();
    assert_eq!(by_ip.status(), 200, "127.0.0.1 is in the certificate too");
    assert!(d.log().contains("generated a self-signed"), "start-up says the certificate is self-signed");
}

/// `public_url` moved to another name: the generated certificate follows
/// at the reload (as at a start), so a client reaching latch by the new
/// name can verify it; the old one named only localhost and loopback.
#[tokio::test]
async fn the_generated_certificate_follows_public_url_to_a_new_name() {
    let d = Latchd::start().await;
    let before = std::fs::read(d.cert_path()).unwrap();
    let moved =
        crate::harness::base_config("").replace("https://localhost:8443", "https://auth.example.test:8443");
    crate::harness::write_config(d.dir.path(), &moved);
    let out = std::process::Command::new(crate::admin_cli::LATCHCTL)
        .arg("--state-dir")
        .arg(d.state_dir())
        .args(["config", "reload"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(d.cert_path()).unwrap() != before, "a new certificate");
    assert!(d.log().contains("does not name server.public_url's host"), "{}", d.log());
    let tls = client_tls(&d.cert_path(), &[&rustls::version::TLS13]);
    let addr = d.addr("https");
    let client = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .resolve("auth.example.test", addr)
        .build()
        .unwrap();
    let res = client.get(format!("https://auth.example.test:{}/health", addr.port())).send().await.unwrap();
    assert_eq!(res.status(), 200, "served and verified by the new name");
    assert_eq!(d.get("/health").await.status(), 200, "localhost still in it");
}

/// sslyze (PyPI), the scanner operators point at a server: Mozilla's
/// "intermediate" guidelines hold for the generated certificate once it is
/// trusted, no SSL or TLS below 1.2, no compression, secure renegotiation.
#[tokio::test]
async fn sslyze_finds_the_https_listener_mozilla_intermediate_compliant() {
    let d = Latchd::start().await;
    let out_dir = tempfile::tempdir().unwrap();
    let report = out_dir.path().join("sslyze.json");
    let target = format!("localhost:{}{{127.0.0.1}}", d.addr("https").port());
    let out = std::process::Command::new("python3")
        .args(["-m", "sslyze", "--mozilla_config=intermediate", "--certinfo_ca_file"])
        .arg(d.cert_path())
        .arg("--json_out")
        .arg(&report)
        .arg(&target)
        .output()
        .expect("python3 -m sslyze (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "sslyze: not compliant:\n{text}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let scan = &json["server_scan_results"][0]["scan_result"];
    let accepted =
        |suite: &str| scan[suite]["result"]["accepted_cipher_suites"].as_array().map_or(0, Vec::len);
    let mut table =
        crate::reliability::Table::new("TLS (sslyze, Mozilla intermediate)", &["check", "result"]);
    for old in ["ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"] {
        let n = accepted(&format!("{old}_cipher_suites"));
        table.row(&[&format!("{old} suites accepted"), &n.to_string()]);
        assert_eq!(n, 0, "{old} must be refused");
    }
    for new in ["tls_1_2", "tls_1_3"] {
        let n = accepted(&format!("{new}_cipher_suites"));
        table.row(&[&format!("{new} suites accepted"), &n.to_string()]);
        assert!(n > 0, "{new} must be offered");
    }
    let compression = &scan["tls_compression"]["result"]["supports_compression"];
    let renegotiation = &scan["session_renegotiation"]["result"];
    table.row(&["compression", &compression.to_string()]);
    table.row(&["secure renegotiation", &renegotiation["supports_secure_renegotiation"].to_string()]);
    table.row(&[
        "client renegotiation DoS",
        &renegotiation["is_vulnerable_to_client_renegotiation_dos"].to_string(),
    ]);
    table.row(&["Mozilla intermediate", "compliant"]);
    table.publish("tls");
    assert_eq!(compression, false);
    assert_eq!(renegotiation["supports_secure_renegotiation"], true);
    assert_eq!(renegotiation["is_vulnerable_to_client_renegotiation_dos"], false);
}
