//! Slow clients (slowloris): 100 TLS connections trickle a request head at
//! one byte a second. Meanwhile `/health` keeps answering quickly on a
//! connection of its own, and every trickling connection is cut once
//! `[http].header_timeout` has passed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;

use crate::harness::{Latchd, base_config, client_tls};
use crate::reliability::{Table, percentile};

const TRICKLERS: usize = 100;
const HEAD: &[u8] = b"GET /health HTTP/1.1\r\nHost: localhost\r\nUser-Agent: loris\r\n";

/// Trickles `HEAD` one byte a second; returns how long after the TLS
/// handshake the server closed the connection (None: still open at 10 s).
fn trickle(d_addr: std::net::SocketAddr, config: Arc<rustls::ClientConfig>) -> Option<Duration> {
    let conn = rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let sock = TcpStream::connect(d_addr).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).ok()?;
    }
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    for byte in HEAD.iter().cycle() {
        if started.elapsed() > Duration::from_secs(10) {
            return None;
        }
        if tls.write_all(&[*byte]).and_then(|()| tls.flush()).is_err() {
            return Some(started.elapsed());
        }
        match tls.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed()),
            // An answer (408) before the close: keep reading until it closes.
            Ok(_) => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_slow_clients_are_cut_and_health_answers_meanwhile() {
    let d = Latchd::start_with(&base_config("\n[http]\nheader_timeout = \"2s\"\n")).await;
    let config = client_tls(&d.cert_path(), &[&rustls::version::TLS13]);
    let addr = d.addr("https");
    let tricklers: Vec<_> = (0..TRICKLERS)
        .map(|_| {
            let config = Arc::clone(&config);
            std::thread::spawn(move || trickle(addr, config))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = d.client();
    let mut health = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let t = Instant::now();
        let res = client.get(d.https_url("/health")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        health.push(t.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cuts: Vec<Option<Duration>> = tricklers.into_iter().map(|t| t.join().unwrap()).collect();
    health.sort_by(f64::total_cmp);
    let mut cut: Vec<f64> = cuts.iter().flatten().map(Duration::as_secs_f64).collect();
    cut.sort_by(f64::total_cmp);
    let mut table = Table::new("Slow clients (100 TLS connections, 1 byte/s)", &["measure", "value"]);
    table.row(&["connections cut", &format!("{} of {TRICKLERS}", cut.len())]);
    let spread = format!("{:.2} / {:.2}", cut.first().unwrap_or(&0.0), cut.last().unwrap_or(&0.0));
    table.row(&["cut after, first / last s (header_timeout 2 s)", &spread]);
    table.row(&["/health meanwhile: requests", &health.len().to_string()]);
    let p = format!("{:.1} / {:.1}", percentile(&health, 0.5), percentile(&health, 0.99));
    table.row(&["/health meanwhile: p50 / p99 ms", &p]);
    table.publish("slow-clients");
    assert_eq!(cut.len(), TRICKLERS, "every trickling connection is cut");
    assert!(cut[0] >= 1.5 && cut[cut.len() - 1] < 4.5, "cut between {spread} s, header_timeout 2 s");
    assert!(percentile(&health, 0.99) < 500.0, "/health p99 {p} ms while 100 clients trickle");
}
