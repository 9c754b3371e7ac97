//! Start-up, restart and stop: what persists, what is private, what refuses
//! to start, and that SIGTERM is a clean exit.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::harness::{Latchd, base_config, spawn, write_config};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn state_files_are_private() {
    let d = Latchd::start().await;
    let state = d.state_dir();
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("latch.db")), 0o600);
    assert_eq!(mode(&state.join("keys")), 0o700);
    assert_eq!(mode(&state.join("keys/master.key")), 0o600);
    assert_eq!(mode(&state.join("ready.json")), 0o600);
    let key = std::fs::read_to_string(state.join("keys/master.key")).unwrap();
    assert_eq!(key.trim().len(), 64, "256-bit key in hex");
    assert!(!d.log().contains(key.trim()), "the master key never reaches the log");
}

/// An operator's sqlite3 session with a transaction open keeps the stop's
/// checkpoint from folding the last commits into latch.db: the stop says
/// so (a copy of latch.db alone would lack them) instead of waiting out
/// the writer's 5 s busy timeout in silence, and nothing is lost: the log
/// left beside the file holds them for the next start.
#[tokio::test]
async fn a_stop_with_an_outside_reader_open_says_the_log_is_still_needed() {
    let mut d = Latchd::start().await;
    let reader = d.db();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader.query_row("SELECT count(*) FROM users", [], |r| r.get(0)).unwrap();
    let body = serde_json::json!({"email": "after@example.test", "password": "a long enough passphrase"});
    assert_eq!(d.post("/v1/auth/register", body).await.status(), 202);
    let asked = std::time::Instant::now();
    let status = d.stop_within(Duration::from_secs(10));
    let took = asked.elapsed();
    assert!(status.success(), "exit {status}:\n{}", d.log());
    assert!(took < Duration::from_secs(3), "the stop waited {took:?} for the reader");
    let log = d.log();
    assert!(log.contains("latch.db alone lacks"), "the stop says the log is still needed:\n{log}");
    let state = d.state_dir();
    drop(reader);
    assert!(state.join("latch.db-wal").exists(), "the log stays beside the file");
    let d = Latchd::start_in(std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap())).await;
    let users: i64 = d.db().query_row("SELECT count(*) FROM users", [], |r| r.get(0)).unwrap();
    assert_eq!(users, 1, "the registration made after the reader began is there");
}

#[tokio::test]
async fn sigterm_exits_zero_and_removes_ready_file_and_sockets() {
    let mut d = Latchd::start().await;
    let sockets = [d.listener("unix")["path"].as_str().unwrap(), d.ready["admin_socket"].as_str().unwrap()]
        .map(std::path::PathBuf::from);
    assert!(sockets.iter().all(|s| s.exists()));
    let body = serde_json::json!({"email": "last@example.test", "password": "a long enough passphrase"});
    assert_eq!(d.post("/v1/auth/register", body).await.status(), 202);
    let status = d.stop_within(Duration::from_secs(10));
    assert!(status.success(), "exit {status}:\n{}", d.log());
    assert!(!d.state_dir().join("ready.json").exists());
    assert!(!sockets.iter().any(|s| s.exists()), "socket files are removed at a clean stop");
    let log = d.log();
    assert!(log.contains("draining"), "{log}");
    assert!(log.contains("\"stopped\""), "{log}");
    let stopping = &log[log.find("draining").unwrap()..];
    assert!(!stopping.contains("\"WARN\""), "a clean stop warns of nothing:\n{stopping}");
    // What an operator reads in the journal: latch's own lines, not the web
    // server's chatter about its workers, and request times in microseconds.
    assert!(!log.contains("\"target\":\"actix_server"), "{log}");
    let access = log.lines().find(|l| l.contains("\"route\":\"/v1/auth/register\"")).expect("access line");
    let ms = access.split("\"duration_ms\":").nth(1).and_then(|r| r.split(',').next()).unwrap();
    assert!(ms.split('.').nth(1).is_none_or(|decimals| decimals.len() <= 3), "{access}");
    // The store was closed: the log folded into the database and removed,
    // so a copy of latch.db alone holds the last write.
    let state = d.state_dir();
    assert!(!state.join("latch.db-wal").exists(), "the WAL is gone after a clean stop");
    let copy = d.dir.path().join("copy.db");
    std::fs::copy(state.join("latch.db"), &copy).unwrap();
    let db = rusqlite::Connection::open(&copy).unwrap();
    let users: i64 = db.query_row("SELECT count(*) FROM users", [], |r| r.get(0)).unwrap();
    assert_eq!(users, 1, "latch.db alone has the registration");
}

#[tokio::test]
async fn restart_reuses_certificate_database_and_key() {
    let d = Latchd::start().await;
    let state = d.state_dir();
    let cert = std::fs::read(state.join("tls/cert.pem")).unwrap();
    let key = std::fs::read(state.join("keys/master.key")).unwrap();
    // A first start says it made the database, once, not each step that
    // built its schema; a start on an existing one says nothing of it.
    let first_log = d.log();
    let dir = d.stop_keep_dir();
    let conn = rusqlite::Connection::open(state.join("latch.db")).unwrap();
    let applied: String = conn
        .query_row("SELECT applied_at FROM schema_migrations WHERE version = 1", [], |r| r.get(0))
        .unwrap();
    drop(conn);

    let d = Latchd::start_in(dir).await;
    assert_eq!(std::fs::read(state.join("tls/cert.pem")).unwrap(), cert, "same certificate");
    assert_eq!(std::fs::read(state.join("keys/master.key")).unwrap(), key, "same master key");
    let conn = rusqlite::Connection::open(state.join("latch.db")).unwrap();
    let again: String = conn
        .query_row("SELECT applied_at FROM schema_migrations WHERE version = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(applied, again, "migrations are not re-applied");
    assert_eq!(d.get("/health").await.status(), 200);
    let said = |log: &str, what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!((said(&d.log(), "database created"), said(&d.log(), "migration applied")), (0, 0));
    assert_eq!((said(&first_log, "database created"), said(&first_log, "migration applied")), (1, 0));
}

/// Starts latchd on `dir` and expects exit 1 with `needle` in its output.
fn assert_start_fails(dir: &std::path::Path, needle: &str) {
    let mut child = spawn(dir);
    // A start that does not fail must fail the test, not hang the suite.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(dir.join("latchd.log")).unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains(needle), "expected {needle:?} in:\n{log}");
    assert!(!dir.join("state/ready.json").exists());
}

/// An SMTP password file that cannot be read stops the start (naming the
/// file) instead of letting every message fail until it is dead.
#[test]
fn an_unreadable_smtp_password_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = "\n[smtp]\nhost = \"127.0.0.1\"\nport = 2525\nusername = \"latch\"\npassword_file = \"smtp-password\"\n";
    write_config(dir.path(), &base_config(smtp));
    assert_start_fails(dir.path(), "smtp.password_file");
    std::fs::write(dir.path().join("smtp-password"), "\n").unwrap();
    assert_start_fails(dir.path(), "is empty");
}

/// A certificate pair that cannot be read stops the start before the
/// database is made or migrated, naming the key and its line (it used to
/// name only the path, after the migrations ran).
#[test]
fn a_missing_certificate_key_stops_the_start_before_the_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "not read: its key is missing").unwrap();
    let text = base_config("\n[tls]\ncert = \"cert.pem\"\nkey = \"gone.pem\"\n");
    let path = write_config(dir.path(), &text);
    let line = text.lines().position(|l| l.starts_with("key = ")).unwrap() + 1;
    assert_start_fails(dir.path(), &format!("{}:{line}: tls.key: ", path.display()));
    assert!(!dir.path().join("state/latch.db").exists(), "no database was made");
}

#[tokio::test]
async fn wrong_master_key_stops_the_start() {
    let d = Latchd::start().await;
    let key_path = d.state_dir().join("keys/master.key");
    let dir = d.stop_keep_dir();
    std::fs::write(&key_path, format!("{}\n", "ab".repeat(32))).unwrap();
    assert_start_fails(dir.path(), "does not match this database");
    std::fs::remove_file(&key_path).unwrap();
    assert_start_fails(dir.path(), "is missing but the database was created with a master key");
}

#[tokio::test]
async fn a_changed_applied_migration_stops_the_start() {
    let d = Latchd::start().await;
    let db = d.state_dir().join("latch.db");
    let dir = d.stop_keep_dir();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE schema_migrations SET checksum = 'tampered' WHERE version = 1", []).unwrap();
    drop(conn);
    assert_start_fails(dir.path(), "was changed after it was applied");
}

#[tokio::test]
async fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let d = Latchd::start().await;
    let other = tempfile::tempdir().unwrap();
    let cfg = base_config("").replace("STATE", &d.state_dir().display().to_string());
    write_config(other.path(), &cfg);
    assert_start_fails(other.path(), "in use by another latchd");
    assert_eq!(d.get("/ready").await.status(), 200, "the first daemon is untouched");
}

/// SysV/OpenRC style: `--daemon --pid-file` detaches, logs to `[log].file`,
/// and a SIGTERM to the pid in the file stops it and removes the file.
#[tokio::test]
async fn daemon_mode_detaches_and_writes_a_pid_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("latchd-daemon.log");
    let cfg =
        base_config("").replace("[log]\nformat = \"json\"", &format!("[log]\nfile = \"{}\"", log.display()));
    let config = write_config(dir.path(), &cfg);
    let pid_file = dir.path().join("latchd.pid");
    let out = std::process::Command::new(crate::harness::LATCHD)
        .args(["serve", "--daemon", "--pid-file"])
        .arg(&pid_file)
        .arg("--config")
        .arg(&config)
        .env_remove("LATCH_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "the parent exits 0: {}", String::from_utf8_lossy(&out.stderr));
    let ready_path = dir.path().join("state/ready.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ready_path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    // A failed assertion below must not leave the detached daemon running.
    let mut guard = KillOnDrop(Some(pid));
    let ready: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ready_path).unwrap()).unwrap();
    assert_eq!(ready["pid"], pid);
    assert_eq!(mode(&log), 0o600);
    // Info lines reach the file within a millisecond or so of ready.json.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap().contains("\"ready\"") {
        assert!(std::time::Instant::now() < deadline, "logs go to [log].file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SAFETY: signalling the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // SAFETY: signal 0 only probes whether the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(std::time::Instant::now() < deadline, "daemon did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    guard.0 = None; // gone: its pid may be someone else's from now on
    assert!(!pid_file.exists(), "pid file removed on exit");
    assert!(!ready_path.exists());
}

/// SIGKILLs a process this test detached, whatever happens to the test.
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: signalling the daemon this test started and saw alive.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Reads the systemd notifications latchd sends to `sock` for `for_`.
fn notifications(sock: &std::os::unix::net::UnixDatagram, for_: Duration) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let (mut out, until) = (Vec::new(), std::time::Instant::now() + for_);
    let mut buf = [0u8; 512];
    while std::time::Instant::now() < until {
        if let Ok(n) = sock.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    out
}

/// Under systemd's watchdog, WATCHDOG=1 keeps coming only while the writer
/// can commit: a write lock held elsewhere (reads still answer) stops it,
/// and releasing the lock brings it back.
#[tokio::test]
async fn the_watchdog_is_fed_only_while_the_writer_commits() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &base_config(""));
    let notify_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    let env = [("NOTIFY_SOCKET", notify_path.to_str().unwrap()), ("WATCHDOG_USEC", "400000")];
    let d = Latchd::start_in_with_env(dir, &env).await;
    let seen = notifications(&sock, Duration::from_millis(1500));
    assert!(seen.iter().any(|m| m.contains("READY=1")), "{seen:?}");
    assert!(seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2, "fed while healthy: {seen:?}");

    let other = rusqlite::Connection::open(d.state_dir().join("latch.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    notifications(&sock, Duration::from_millis(500)); // a ping already under way may finish
    let stuck = notifications(&sock, Duration::from_millis(1500));
    assert!(!stuck.iter().any(|m| m.contains("WATCHDOG=1")), "starved while the writer is stuck: {stuck:?}");
    assert_eq!(d.get("/ready").await.status(), 200, "reads still answer, which is why reads are not enough");
    other.execute_batch("ROLLBACK").unwrap();
    let back = notifications(&sock, Duration::from_millis(3000));
    assert!(back.iter().any(|m| m.contains("WATCHDOG=1")), "fed again once the writer commits: {back:?}");
}

/// systemd hears RELOADING=1 with the monotonic time, then READY=1, around
/// every reload, and STOPPING=1 as soon as SIGTERM arrives.
#[tokio::test]
async fn systemd_hears_reloading_ready_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &base_config(""));
    let notify_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    let mut d = Latchd::start_in_with_env(dir, &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())]).await;
    assert!(notifications(&sock, Duration::from_millis(300)).iter().any(|m| m.contains("READY=1")));
    d.signal(libc::SIGHUP);
    let reload = notifications(&sock, Duration::from_millis(1500));
    let first = reload.first().map(String::as_str).unwrap_or("");
    let usec: Option<u64> = first.lines().find_map(|l| l.strip_prefix("MONOTONIC_USEC=")?.parse().ok());
    assert!(first.contains("RELOADING=1") && usec.is_some_and(|u| u > 0), "{reload:?}");
    assert!(reload.get(1).is_some_and(|m| m.contains("READY=1")), "READY=1 after the reload: {reload:?}");
    assert!(d.stop_within(Duration::from_secs(10)).success());
    let stopping = notifications(&sock, Duration::from_millis(300));
    assert!(stopping.first().is_some_and(|m| m.contains("STOPPING=1")), "{stopping:?}");
}

/// A `systemctl reload` right after a start sends SIGHUP the moment systemd
/// hears READY=1: latchd must already be listening for it (its default
/// action ends the process, and once did, about one start in three).
#[tokio::test]
async fn a_sighup_as_soon_as_systemd_hears_ready_reloads_and_kills_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &base_config(""));
    let notify_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    let env = [("NOTIFY_SOCKET", notify_path.to_str().unwrap())];
    for round in 0..12 {
        let mut child = crate::harness::spawn_with_env(dir.path(), &env);
        sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 512];
        loop {
            let n = sock.recv(&mut buf).expect("READY=1 within 20 s");
            if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
                break;
            }
        }
        // SAFETY: signalling the daemon this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut reload = Vec::new();
        while !reload.last().is_some_and(|m: &String| m.contains("READY=1")) {
            let Ok(n) = sock.recv(&mut buf) else { break };
            reload.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let log = std::fs::read_to_string(dir.path().join("latchd.log")).unwrap_or_default();
        assert!(child.try_wait().unwrap().is_none(), "round {round}: SIGHUP ended latchd:\n{log}");
        assert!(reload.first().is_some_and(|m| m.contains("RELOADING=1")), "round {round}: {reload:?}");
        // SAFETY: as above.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(status.success(), "round {round}: exit {status}");
        notifications(&sock, Duration::from_millis(100)); // STOPPING=1
    }
}

/// SIGTERM while latchd still starts (here held after its migrations) is
/// a clean stop once started: exit 0, no `ready.json` left, where the
/// signal's default action used to end the process on the spot.
#[tokio::test]
async fn a_sigterm_during_start_up_is_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &base_config(""));
    let mut child = crate::harness::spawn_with_env(dir.path(), &[("LATCH_TEST_PAUSE", "starting:1500")]);
    let log = dir.path().join("latchd.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("database created") {
        assert!(std::time::Instant::now() < deadline, "no database created");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SAFETY: signalling the daemon this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "exit {status}:\n{log}");
    assert!(log.contains("\"stopped\""), "a clean stop:\n{log}");
    assert!(!dir.path().join("state/ready.json").exists());
}

/// Relative paths in the config mean "next to the config file", whatever
/// the working directory — also after `--daemon` changed it to `/`.
#[tokio::test]
async fn relative_paths_resolve_against_the_config_file_also_when_detached() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("breached.txt"), "correct horse battery staple\n").unwrap();
    std::fs::write(dir.path().join("hs256.key"), "0123456789abcdef0123456789abcdef-relative\n").unwrap();
    let cfg = base_config(
        "\n[passwords]\nbreached_list = \"breached.txt\"\n\
         [tokens]\nalgorithm = \"HS256\"\nsecret_file = \"hs256.key\"\n",
    )
    .replace("\"STATE", "\"state")
    .replace("[log]\nformat = \"json\"", "[log]\nfile = \"daemon.log\"");
    assert!(cfg.contains("state_dir = \"state\"") && cfg.contains("path = \"state/api.sock\""), "{cfg}");
    let config = write_config(dir.path(), &cfg);
    let out = std::process::Command::new(crate::harness::LATCHD)
        .args(["serve", "--daemon", "--pid-file"])
        .arg(dir.path().join("latchd.pid"))
        .arg("--config")
        .arg(&config)
        .current_dir("/")
        .env_remove("LATCH_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let ready = loop {
        if let Some(r) = crate::harness::read_ready(dir.path()) {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(dir.path().join("daemon.log").exists(), "[log].file next to the config");
    let http = ready["listeners"].as_array().unwrap().iter().find(|l| l["kind"] == "http").unwrap();
    let base = format!("http://{}", http["addr"].as_str().unwrap());
    let tls = crate::harness::client_tls(&dir.path().join("state/tls/cert.pem"), &[&rustls::version::TLS13]);
    let c = reqwest::Client::builder().use_preconfigured_tls((*tls).clone()).build().unwrap();
    let jwks: serde_json::Value =
        c.get(format!("{base}/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks, serde_json::json!({"keys": []}), "HS256 secret read from next to the config");
    let res = c
        .post(format!("{base}/v1/auth/register"))
        .json(&serde_json::json!({"email": "rel@example.test", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422, "the breached list next to the config is in force");
    let pid: i32 = std::fs::read_to_string(dir.path().join("latchd.pid")).unwrap().trim().parse().unwrap();
    // SAFETY: signalling the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // SAFETY: signal 0 only probes whether the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(std::time::Instant::now() < deadline, "daemon did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Plain HTTP is for loopback; on any other address the start warns that
/// passwords and tokens would cross the network in clear.
#[tokio::test]
async fn a_plain_http_listener_off_loopback_is_warned_about() {
    let open = "\n[[listener]]\nkind = \"http\"\naddr = \"0.0.0.0:0\"\n";
    let d = Latchd::start_with(&crate::harness::base_config(open)).await;
    let log = d.log_with("non-loopback address").await;
    let line = log.lines().find(|l| l.contains("non-loopback address")).unwrap();
    assert!(line.contains("\"WARN\"") && line.contains("0.0.0.0:0"), "{line}");
    assert_eq!(log.matches("non-loopback address").count(), 1, "only the open one:\n{log}");
}
