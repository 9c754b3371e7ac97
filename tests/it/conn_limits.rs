//! Connection limits: one client address holds at most
//! `[http].max_connections_per_ip` HTTPS connections (the allowlist is
//! exempt, and a reload applies to the next connection), and latchd never
//! holds so many that it runs out of file descriptors for its own work:
//! past the ceiling new connections are closed at once while backups and
//! the API over its other listeners go on, and a plain-HTTP listener stops
//! accepting at its share.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;

use crate::admin_cli::latchctl_on;
use crate::harness::{Latchd, client_tls, write_config};

type Held = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// HTTPS without metrics (so that scraping takes no HTTPS connection), and
/// plain-HTTP and Unix listeners with them.
fn config(extra: &str) -> String {
    format!(
        "[server]\nstate_dir = \"STATE\"\npublic_url = \"https://localhost:8443\"\n\
         [[listener]]\nkind = \"https\"\naddr = \"127.0.0.1:0\"\n\
         [[listener]]\nkind = \"http\"\naddr = \"127.0.0.1:0\"\nmetrics = true\n\
         [[listener]]\nkind = \"unix\"\npath = \"STATE/api.sock\"\nmetrics = true\n\
         [log]\nformat = \"json\"\n{extra}"
    )
}

/// One HTTPS connection that asked for `/health` and is kept open (idle
/// in keep-alive), or `None` when latchd closed it instead.
fn hold(d: &Latchd) -> Option<Held> {
    let tls = client_tls(&d.cert_path(), &[&rustls::version::TLS13]);
    let conn = rustls::ClientConnection::new(tls, ServerName::try_from("localhost").unwrap()).unwrap();
    let sock = TcpStream::connect(d.addr("https")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut held = rustls::StreamOwned::new(conn, sock);
    held.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains("{\"status\":\"ok\"}") {
        match held.read(&mut buf) {
            Ok(n) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    Some(held)
}

/// A series' value on the plain-HTTP metrics listener.
async fn metric(d: &Latchd, series: &str) -> f64 {
    let text = d.client().get(d.http_url("/metrics")).send().await.unwrap().text().await.unwrap();
    crate::flows::series_value(&text, series)
}

/// `latch_http_plain_connections_open` and `_max` for the listener
/// `labels` names, read over the Unix listener.
async fn plain_gauges(d: &Latchd, labels: &str) -> (f64, f64) {
    let (status, page) = crate::harness::unix_request(&d.state_dir().join("api.sock"), "GET /metrics");
    assert_eq!(status, 200, "{page}");
    let read = |name: &str| crate::flows::series_value(&page, &format!("{name}{labels}"));
    (read("latch_http_plain_connections_open"), read("latch_http_plain_connections_max"))
}

/// Waits until latchd counts `open` HTTPS connections.
async fn wait_open(d: &Latchd, open: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = metric(d, "latch_http_connections_open").await;
        if now == open as f64 {
            return;
        }
        assert!(Instant::now() < deadline, "latch_http_connections_open stays {now}, not {open}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &config("[http]\nmax_connections_per_ip = 3\n"));
    let d = Latchd::start_in(dir).await;
    wait_open(&d, 0).await;
    let mut held: Vec<Held> = (0..3).map(|i| hold(&d).unwrap_or_else(|| panic!("connection {i}"))).collect();
    wait_open(&d, 3).await;

    assert!(hold(&d).is_none(), "a fourth connection from 127.0.0.1 is closed at once");
    assert_eq!(metric(&d, "latch_http_connections_refused_total{reason=\"per_address\"}").await, 1.0);
    let log = d.log_with("already holds 3").await;
    assert!(log.contains("max_connections_per_ip"), "the log names the key:\n{log}");
    wait_open(&d, 3).await;

    // One ends: its place is free for the next.
    drop(held.pop());
    wait_open(&d, 2).await;
    held.push(hold(&d).expect("a connection in the place of one that ended"));

    // The allowlist is exempt, from the reload on.
    write_config(
        d.dir.path(),
        &config("[http]\nmax_connections_per_ip = 3\n[defense]\nallowlist = [\"127.0.0.0/8\"]\n"),
    );
    assert!(latchctl_on(&d.state_dir(), &["config", "reload"]).status.success());
    held.extend((0..5).map(|i| hold(&d).unwrap_or_else(|| panic!("allowlisted connection {i}"))));
    wait_open(&d, 8).await;
    assert_eq!(metric(&d, "latch_http_connections_refused_total{reason=\"per_address\"}").await, 1.0);
}

/// latchd under a small open-file limit: it holds at most the ceiling it
/// reports, closes the rest at once, and keeps descriptors enough to take a
/// backup and to serve over its Unix socket meanwhile. (Before the
/// ceiling, 420 such connections under this limit had accept fail with
/// "Too many open files", logged 150 times, and whether a backup found a
/// descriptor depended on which connections had timed out.)
#[tokio::test]
async fn connections_stop_short_of_the_open_file_limit() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &config("[http]\nmax_connections_per_ip = 0\n"));
    let d = Latchd::start_in_with_env(dir, &[("LATCH_TEST_NOFILE", "400")]).await;
    let ceiling = metric(&d, "latch_http_connections_max").await as usize;
    // Less the plain-HTTP and Unix listeners' quarter.
    assert!((50..400).contains(&ceiling), "ceiling {ceiling} under a limit of 400");
    wait_open(&d, 0).await;

    let tries = ceiling + 300;
    let held: Vec<Held> = (0..tries).filter_map(|_| hold(&d)).collect();
    assert_eq!(held.len(), ceiling, "of {tries} connections, as many as the ceiling are held");
    wait_open(&d, ceiling).await;
    let refused = metric(&d, "latch_http_connections_refused_total{reason=\"ceiling\"}").await;
    assert_eq!(refused, 300.0);

    let backup = latchctl_on(&d.state_dir(), &["backup", "now"]);
    assert!(backup.status.success(), "backup now: {}", String::from_utf8_lossy(&backup.stderr));
    let (status, _) = crate::harness::unix_request(&d.state_dir().join("api.sock"), "GET /ready");
    assert_eq!(status, 200, "the Unix listener still answers");
    let log = d.log();
    assert!(!log.contains("Too many open files"), "no descriptor ran out:\n{log}");
    assert!(log.contains("raise LimitNOFILE"), "the refusal is logged:\n{log}");
}

fn open_descriptors(d: &Latchd) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", d.pid())).unwrap().count()
}

/// A flood of connections to a plain-HTTP listener (which has no ceiling
/// of its own to close them at): it stops accepting at its share, so latchd
/// keeps descriptors for a backup meanwhile, and accepts again once they
/// end. (Before, 418 of 600 were accepted and latchd held all 400
/// descriptors this limit allows.)
#[tokio::test]
async fn a_flood_on_a_plain_listener_leaves_descriptors_for_latchd_itself() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &config(""));
    let d = Latchd::start_in_with_env(dir, &[("LATCH_TEST_NOFILE", "400")]).await;
    let log = d.log_with("plain HTTP and Unix listeners: at most").await;
    assert!(log.contains("\"each\":") && log.contains("they stop accepting"), "the share is logged:\n{log}");
    let before = open_descriptors(&d);

    // Opened at once: past the share and the listen backlog a connect waits
    // on SYN retries, and those are given up after a second.
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..600 {
        let addr = d.addr("http");
        opening.spawn(tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)));
    }
    let flood: Vec<tokio::net::TcpStream> =
        opening.join_all().await.into_iter().filter_map(|c| c.ok().and_then(Result::ok)).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = open_descriptors(&d);
    assert!(
        held.saturating_sub(before) > 10 && held < 400 - 64,
        "{before} descriptors before, {held} with {} connections open",
        flood.len()
    );
    let backup = latchctl_on(&d.state_dir(), &["backup", "now"]);
    assert!(backup.status.success(), "backup now: {}", String::from_utf8_lossy(&backup.stderr));
    let (status, _) = crate::harness::unix_request(&d.state_dir().join("api.sock"), "GET /ready");
    assert_eq!(status, 200, "the Unix listener still answers");
    // Requests to the plain listener now wait: its gauges (read over the
    // Unix listener) show it at its cap.
    let plain = format!("{{listener=\"{}\"}}", d.addr("http"));
    let (open, max) = plain_gauges(&d, &plain).await;
    assert!(max >= 1.0 && open == max, "open {open} of {max}, with {} connections open", flood.len());
    let unix = format!("{{listener=\"{}\"}}", d.state_dir().join("api.sock").display());
    // This scrape at least (the one before may not have ended yet).
    let (open, unix_max) = plain_gauges(&d, &unix).await;
    assert!(open >= 1.0 && unix_max == max, "the Unix listener: {open} of {unix_max}");

    drop(flood);
    let health = d.client().get(d.http_url("/health")).timeout(Duration::from_secs(10)).send().await;
    assert_eq!(health.map(|r| r.status().as_u16()).ok(), Some(200), "the plain listener accepts again");
    let deadline = Instant::now() + Duration::from_secs(10);
    while plain_gauges(&d, &plain).await.0 > 1.0 {
        assert!(Instant::now() < deadline, "the ended connections stay counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = d.log();
    assert!(!log.contains("Too many open files"), "no descriptor ran out:\n{log}");
}

/// The same flood on the admin socket (its callers are operators, but a
/// script looping on `latchctl` without waiting is one too many): latchd
/// accepts at most its share there too, answers HTTPS meanwhile, and the
/// socket serves again once the flood ends. (Before, the admin socket took
/// connections until no descriptor was left.)
#[tokio::test]
async fn a_flood_on_the_admin_socket_leaves_descriptors_for_the_api() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &config(""));
    let d = Latchd::start_in_with_env(dir, &[("LATCH_TEST_NOFILE", "400")]).await;
    let before = open_descriptors(&d);

    let socket = d.state_dir().join("admin.sock");
    let flood: Vec<std::os::unix::net::UnixStream> =
        (0..600).filter_map(|_| std::os::unix::net::UnixStream::connect(&socket).ok()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = open_descriptors(&d);
    assert!(
        held.saturating_sub(before) <= 64,
        "{before} descriptors before, {held} with {} open",
        flood.len()
    );
    let health = d.client().get(d.https_url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "HTTPS still answers");
    let (status, _) = crate::harness::unix_request(&d.state_dir().join("api.sock"), "GET /ready");
    assert_eq!(status, 200, "the Unix API listener still answers");

    drop(flood);
    let status = latchctl_on(&d.state_dir(), &["status"]);
    assert!(status.status.success(), "status: {}", String::from_utf8_lossy(&status.stderr));
    let log = d.log();
    assert!(!log.contains("Too many open files"), "no descriptor ran out:\n{log}");
}
