//! Test mail: a real SMTP server (aiosmtpd, `tests/support/smtp_sink.py`) on
//! loopback, and helpers to read the messages latch sent through it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SmtpSink {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        Self::start_on(0)
    }

    /// A port for a relay that starts later (latch is pointed at it while
    /// it is down): free now, and outside the kernel's ephemeral range,
    /// where every port-0 listener and outgoing connection of the tests
    /// running alongside gets its own, so none can take it meanwhile (one
    /// did: the sink then failed to bind). Below the range, or above it on
    /// a host whose range starts too low to leave room.
    pub fn port_for_later() -> u16 {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
        let mut bounds = range.split_whitespace().map(|p| p.parse::<u16>().ok());
        let start = bounds.next().flatten().unwrap_or(32_768);
        let end = bounds.next().flatten().unwrap_or(60_999);
        let (floor, ceiling) = match start > 2048 {
            true => (start.saturating_sub(12_000).max(1024), start),
            false => (end.saturating_add(1), u16::MAX),
        };
        let span = u32::from(ceiling.saturating_sub(floor)).max(1);
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let first = (seed ^ std::process::id()) % span;
        (0..1000)
            .map(|i| floor + ((first + i) % span) as u16)
            .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .expect("a free port outside the ephemeral range")
    }

    /// Starts on `port` (0: any free port).
    pub fn start_on(port: u16) -> SmtpSink {
        Self::start_with(port, &[])
    }

    /// Starts on `port` with `options` (see `smtp_sink.py`: `--starttls` or
    /// `--tls` CERT KEY, `--login` USER PASSWORD).
    pub fn start_with(port: u16, options: &[&str]) -> SmtpSink {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir.path())
            .arg(port.to_string())
            .args(options)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with aiosmtpd (see .ci/run)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("port line");
        let port = line.trim().parse().unwrap_or_else(|_| panic!("smtp_sink did not start: {line:?}"));
        SmtpSink { child, dir, port }
    }

    /// The `[smtp]` section pointing latch at this server.
    pub fn config(&self) -> String {
        format!("\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n", self.port)
    }

    /// Waits until `n` messages arrived; returns them in arrival order.
    pub async fn wait_for(&self, n: usize) -> Vec<String> {
        wait_for_files(self.dir.path().to_path_buf(), n, "eml").await
    }

    /// Waits for the first message to `rcpt` (however many came before).
    pub async fn wait_for_mail_to(&self, rcpt: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mails = self.wait_for(1).await;
            if let Some(mail) = mails.into_iter().find(|m| header_of(m, "X-Envelope-To") == rcpt) {
                return mail;
            }
            assert!(Instant::now() < deadline, "no mail to {rcpt} within 15 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a mail file (`*.eml`) in `dir` holding `needle`; its text.
pub async fn wait_for_file_with(dir: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = std::fs::read_dir(dir).into_iter().flatten().flatten().find_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            (e.path().extension().is_some_and(|x| x == "eml") && text.contains(needle)).then_some(text)
        });
        if let Some(text) = found {
            return text;
        }
        assert!(Instant::now() < deadline, "no mail file with {needle:?} in {} within 15 s", dir.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `dir` holds `n` files ending in `ext`; returns their text.
pub async fn wait_for_files(dir: PathBuf, n: usize, ext: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == ext)).collect()
            })
            .unwrap_or_default();
        if files.len() >= n {
            files.sort();
            return files.iter().map(|p| std::fs::read_to_string(p).expect("read mail")).collect();
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} messages arrived in {}",
            files.len(),
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A message as its reader sees it: decoded when its transfer encoding is
/// quoted-printable (soft line breaks and `=XX`), else as it stands.
pub fn text_of(text: &str) -> String {
    if !text.contains("Content-Transfer-Encoding: quoted-printable") {
        return text.to_string();
    }
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `token` query parameter of the link in a message.
pub fn token_in(message: &str) -> String {
    let body = text_of(message);
    let start = body.find("token=").unwrap_or_else(|| panic!("no token link in:\n{body}")) + "token=".len();
    body[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

pub fn subject_of(message: &str) -> String {
    header_of(message, "Subject")
}

/// The value of the first header `name` (case as written), "" when absent.
pub fn header_of(message: &str, name: &str) -> String {
    let prefix = format!("{name}: ");
    let mut head = message.lines().take_while(|l| !l.trim().is_empty());
    head.find_map(|l| l.strip_prefix(prefix.as_str())).unwrap_or("").trim().to_string()
}
