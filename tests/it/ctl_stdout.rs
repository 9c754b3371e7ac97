//! latchctl's standard output: a reader that stops reading ends latchctl
//! quietly, as it ends `cat` (not a panic, not "talking to latchd"), and a
//! write that fails otherwise is one line on stderr and exit 1.

use std::process::{Command, Output, Stdio};

use crate::admin_cli::LATCHCTL;
use crate::harness::Latchd;

/// latchctl with its stdout a pipe whose reader is already gone.
fn with_reader_gone(d: &Latchd, args: &[&str]) -> Output {
    let mut child = Command::new(LATCHCTL)
        .arg("--state-dir")
        .arg(d.state_dir())
        .args(args)
        .env_remove("LATCH_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before latchctl has even connected to the daemon.
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn a_reader_that_stops_reading_ends_latchctl_quietly_and_a_full_disk_is_told() {
    let d = Latchd::start().await;
    let added = crate::admin_cli::latchctl_on(&d.state_dir(), &["users", "add", "someone@example.test"]);
    assert!(added.status.success(), "an audit row to export");
    for args in [&["users", "list", "--json"][..], &["users", "list"], &["audit", "export"], &["status"]] {
        let out = with_reader_gone(&d, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.is_empty(), "latchctl {args:?}: {} {stderr}", out.status);
    }
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let out = Command::new(LATCHCTL)
        .arg("--state-dir")
        .arg(d.state_dir())
        .args(["audit", "export"])
        .env_remove("LATCH_CONFIG")
        .stdout(full)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim(), "latchctl: writing the export: No space left on device (os error 28)");
}
