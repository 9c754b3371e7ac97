//! Test harness: starts the real `latchd` binary in a temp directory on
//! ephemeral ports, waits for `ready.json` and `/ready`, hands out an HTTPS
//! client that trusts the generated certificate, and on drop stops the
//! daemon with SIGTERM and fails the test unless it exits 0 in time (STYLE.md
//! §7). The benchmarks start their daemons through this file too.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;

pub const LATCHD: &str = env!("CARGO_BIN_EXE_latchd");

/// The default listeners of a test daemon: HTTPS with metrics, plain HTTP
/// without, and a Unix socket.
pub const LISTENERS: &str = r#"
[[listener]]
kind = "https"
addr = "127.0.0.1:0"
metrics = true

[[listener]]
kind = "http"
addr = "127.0.0.1:0"

[[listener]]
kind = "unix"
path = "STATE/api.sock"
"#;

pub struct Latchd {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub ready: Value,
}

/// Writes `body` as the config file (STATE is replaced by the state dir).
pub fn write_config(dir: &Path, body: &str) -> PathBuf {
    let state = dir.join("state");
    let text = body.replace("STATE", &state.display().to_string());
    let path = dir.join("latch.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A file holding `contents` alone in a new directory, as an operator
/// keeps a secret beside the config; the directory goes with the guard.
pub fn secret_file(name: &str, contents: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, contents).expect("write secret file");
    (dir, path)
}

/// `[tokens]` signing HS256 with the shared secret in file `secret`.
pub fn hs256_tokens(secret: &Path) -> String {
    format!("\n[tokens]\nalgorithm = \"HS256\"\nsecret_file = {:?}\n", secret.display().to_string())
}

/// Limits no test trips unless it is about them: tests that hammer the
/// daemon for other reasons (overload, queues, races) stay deterministic.
/// A test about a defense writes its own `[rate_limits]`, `[defense]` or
/// `[http]`.
const ROOMY_RATE_LIMITS: &str = "\n[rate_limits]\nglobal = \"1000000/1m\"\nip = \"1000000/1m\"\n\
    ip_hourly = \"1000000/1h\"\ncredential = \"1000000/1m\"\naccount = \"1000000/1m\"\n";
const ROOMY_DEFENSE: &str = "\n[defense]\nip_block = { failures = 100000, window = \"5m\", duration = \"1h\" }\n\
    account_lock = { failures = 100000, base_delay = \"2s\", max_delay = \"15m\", max_failures_per_hour = 100000 }\n\
    [defense.anomaly]\nbot = { requests = 1000000, window = \"1m\", action = \"block\", block_for = \"30m\" }\n";

/// Bursts of concurrent requests from 127.0.0.1 (a queue filled, a race)
/// take a connection each.
const ROOMY_HTTP: &str = "\n[http]\nmax_connections_per_ip = 0\n";

/// The resident memory of process `pid` in KiB (0 once it is gone).
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The config every test starts from; `extra` is appended (other sections).
pub fn base_config(extra: &str) -> String {
    let limits = if extra.contains("[rate_limits]") { "" } else { ROOMY_RATE_LIMITS };
    let defense = if extra.contains("[defense") { "" } else { ROOMY_DEFENSE };
    let http = if extra.contains("[http]") { "" } else { ROOMY_HTTP };
    format!(
        "[server]\nstate_dir = \"STATE\"\npublic_url = \"https://localhost:8443\"\n{LISTENERS}\n[log]\nformat = \"json\"\n{extra}{limits}{defense}{http}"
    )
}

impl Latchd {
    pub async fn start() -> Latchd {
        Self::start_with(&base_config("")).await
    }

    /// Starts latchd with a full config text.
    pub async fn start_with(config: &str) -> Latchd {
        let dir = tempfile::tempdir().expect("tempdir");
        write_config(dir.path(), config);
        Self::start_in(dir).await
    }

    /// Starts latchd on the config already in `dir/latch.toml`.
    pub async fn start_in(dir: tempfile::TempDir) -> Latchd {
        Self::start_in_with_env(dir, &[]).await
    }

    /// As `start_in`, with extra environment variables for latchd.
    pub async fn start_in_with_env(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Latchd {
        let child = spawn_with_env(dir.path(), env);
        let mut d = Latchd { dir, child: Some(child), ready: Value::Null };
        d.wait_ready().await;
        d
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The log as written so far. `info` lines reach the file a moment
    /// after they are logged (they share writes); `log_with` waits for one.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("latchd.log")).unwrap_or_default()
    }

    /// The log once it holds `needle`; fails the test after 20 s.
    pub async fn log_with(&self, needle: &str) -> String {
        // Generous: beside a release build a debug daemon's timers run late.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(Instant::now() < deadline, "no {needle:?} in the log:\n{log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("latchd exited with {status} before ready:\n{}", self.log());
            }
            if let Some(ready) = read_ready(self.dir.path()) {
                self.ready = ready;
                break;
            }
            assert!(Instant::now() < deadline, "latchd not ready in 20 s:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let res = self.get("/ready").await;
        assert_eq!(res.status(), 200, "/ready after ready.json");
    }

    /// The bound address of the first listener of `kind`.
    pub fn addr(&self, kind: &str) -> SocketAddr {
        self.listener(kind)["addr"].as_str().expect("addr").parse().expect("socket addr")
    }

    pub fn listener(&self, kind: &str) -> &Value {
        self.ready["listeners"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["kind"] == kind))
            .unwrap_or_else(|| panic!("no {kind} listener in {}", self.ready))
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr("https").port())
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr("http"))
    }

    pub fn cert_path(&self) -> PathBuf {
        self.state_dir().join("tls/cert.pem")
    }

    /// An HTTPS client trusting exactly this daemon's certificate.
    pub fn client(&self) -> reqwest::Client {
        let tls = client_tls(&self.cert_path(), &[&rustls::version::TLS13, &rustls::version::TLS12]);
        reqwest::Client::builder().use_preconfigured_tls((*tls).clone()).build().expect("client")
    }

    /// As `client`, speaking HTTP/2 (ALPN `h2` alone).
    pub fn client_h2(&self) -> reqwest::Client {
        let mut tls = (*client_tls(&self.cert_path(), &[&rustls::version::TLS13])).clone();
        tls.alpn_protocols = vec![b"h2".to_vec()];
        reqwest::Client::builder().use_preconfigured_tls(tls).build().expect("client")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client().get(self.https_url(path)).send().await.expect("GET")
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client().post(self.https_url(path)).json(&body).send().await.expect("POST")
    }

    pub async fn post_auth(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.client().post(self.https_url(path)).bearer_auth(token).json(&body).send().await.expect("POST")
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> reqwest::Response {
        self.client().get(self.https_url(path)).bearer_auth(token).send().await.expect("GET")
    }

    /// A read-only connection to the daemon's database.
    pub fn db(&self) -> rusqlite::Connection {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        rusqlite::Connection::open_with_flags(self.state_dir().join("latch.db"), flags).expect("open db")
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGTERM, then wait up to `within` for the exit status.
    pub fn stop_within(&mut self, within: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("latchd did not exit within {within:?} of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (no clean stop at all) and takes the temp dir back, without
    /// the ready.json the killed daemon left (a supervisor's part), so a
    /// restart in it waits for the new daemon's.
    pub fn kill_keep_dir(mut self) -> tempfile::TempDir {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.state_dir().join("ready.json"));
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// Stops and takes the temp dir back, to restart on the same state.
    pub fn stop_keep_dir(mut self) -> tempfile::TempDir {
        let status = self.stop_within(Duration::from_secs(10));
        assert!(status.success(), "exit {status}:\n{}", self.log());
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }
}

/// Every daemon a test started must stop cleanly: SIGTERM, exit 0 within
/// 10 s. A test already failing just cleans up.
impl Drop for Latchd {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SAFETY: as in `signal`.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut status = None;
        while status.is_none() && Instant::now() < deadline {
            status = child.try_wait().ok().flatten();
            if status.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            return;
        }
        match status {
            Some(s) if s.success() => {}
            Some(s) => panic!("latchd exited with {s} after SIGTERM:\n{}", self.log()),
            None => panic!("latchd did not exit within 10 s of SIGTERM:\n{}", self.log()),
        }
    }
}

/// Runs `latchd serve --config dir/latch.toml`, logs to `dir/latchd.log`.
pub fn spawn(dir: &Path) -> Child {
    spawn_with_env(dir, &[])
}

/// As `spawn`, with extra environment variables (they may override
/// `RUST_LOG`). `LATCH_TEST_NOFILE` is the harness's own: latchd starts
/// under that open-file limit.
pub fn spawn_with_env(dir: &Path, env: &[(&str, &str)]) -> Child {
    let log = std::fs::File::create(dir.join("latchd.log")).expect("log file");
    let nofile = env.iter().find(|(k, _)| *k == "LATCH_TEST_NOFILE").map(|(_, v)| v);
    let watchdog = env.iter().any(|(k, _)| *k == "WATCHDOG_USEC");
    let mut cmd = if nofile.is_some() || watchdog {
        // systemd names the watched process in WATCHDOG_PID; a shell that
        // execs latchd knows that pid before latchd starts.
        let limit = nofile.map(|n| format!("ulimit -n {n} && ")).unwrap_or_default();
        let pid = if watchdog { "WATCHDOG_PID=$$ " } else { "" };
        let mut sh = Command::new("sh");
        sh.args(["-c", &format!("{limit}{pid}exec \"$0\" \"$@\""), LATCHD]);
        sh
    } else {
        Command::new(LATCHD)
    };
    cmd.args(["serve", "--config"])
        .arg(dir.join("latch.toml"))
        .env_remove("LATCH_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        // The daemon's own default filter, as an operator runs it.
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn latchd")
}

/// `state/ready.json` under `dir`, once latchd wrote it.
pub fn read_ready(dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join("state/ready.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Runs latchd to completion (for commands and failing starts).
pub fn run_latchd(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(LATCHD)
        .args(args)
        .env_remove("LATCH_CONFIG")
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run latchd")
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A rustls client config trusting the PEM certificate at `cert`.
pub fn client_tls(
    cert: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(cert).expect("cert pem") {
        roots.add(der.expect("cert")).expect("add root");
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// One HTTP/1.1 request over a Unix socket; returns (status, headers+body text).
pub fn unix_request(path: &Path, request_line: &str) -> (u16, String) {
    let mut s = UnixStream::connect(path).expect("connect unix socket");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(s, "{request_line} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out)
}

/// Asserts `res` is an RFC 9457 problem with `status` and `slug`; returns its body.
pub async fn assert_problem(res: reqwest::Response, status: u16, slug: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_string());
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    let request_id = res.headers().get("x-request-id").expect("x-request-id").to_str().unwrap().to_string();
    let body: Value = res.json().await.expect("problem body is JSON");
    assert_eq!(body["type"], format!("urn:latch:problem:{slug}"), "{body}");
    assert_eq!(body["status"], status);
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert_eq!(body["instance"], request_id, "instance is the request id");
    body
}

/// The fields a problem's `errors` name, in its order.
pub fn fields_of(problem: &Value) -> Vec<&str> {
    problem["errors"].as_array().into_iter().flatten().filter_map(|e| e["field"].as_str()).collect()
}
