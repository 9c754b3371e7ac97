//! Start-up benchmark: time from spawning `latchd` to `ready.json` (cold:
//! fresh state dir, so key, certificate and schema are created; warm: the
//! same state again), time to the first `/health` answer, and the idle
//! resident memory. Prints a table of medians; run with
//! `cargo bench --bench startup`.

// A panic here is a failed test or bench run, with its message: what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

// The daemon is started exactly as the integration tests start it.
#[path = "../tests/it/harness.rs"]
#[allow(dead_code)]
mod harness;

const RUNS: usize = 10;

fn config(dir: &Path) {
    let text = "[server]\nstate_dir = \"STATE\"\n[[listener]]\nkind = \"https\"\naddr = \"127.0.0.1:0\"\n\n\
                [[listener]]\nkind = \"http\"\naddr = \"127.0.0.1:0\"\n";
    harness::write_config(dir, text);
}

fn spawn(dir: &Path) -> Child {
    harness::spawn_with_env(dir, &[("RUST_LOG", "warn")])
}

/// Waits for ready.json; returns the plain-HTTP address it names.
fn wait_ready(dir: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = harness::read_ready(dir) {
            let http = v["listeners"].as_array().and_then(|l| l.iter().find(|l| l["kind"] == "http"));
            return http.and_then(|l| l["addr"].as_str()).expect("http addr").to_string();
        }
        assert!(Instant::now() < deadline, "not ready");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn health(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else { return false };
    let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn stop(mut child: Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// One start: (ms to ready.json, ms to first /health, idle RSS KiB).
fn one_start(dir: &Path, measure_rss: bool) -> (f64, f64, u64) {
    let started = Instant::now();
    let child = spawn(dir);
    let addr = wait_ready(dir);
    let ready = started.elapsed().as_secs_f64() * 1000.0;
    while !health(&addr) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let first = started.elapsed().as_secs_f64() * 1000.0;
    let rss = if measure_rss {
        std::thread::sleep(Duration::from_secs(2));
        rss_kib(child.id())
    } else {
        0
    };
    stop(child);
    (ready, first, rss)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut rows = Vec::new();
    for (label, warm) in [("cold (new state dir)", false), ("warm (existing state)", true)] {
        let (mut ready, mut first, mut rss) = (Vec::new(), Vec::new(), Vec::new());
        let shared = tempfile::tempdir().expect("tempdir");
        config(shared.path());
        if warm {
            one_start(shared.path(), false);
        }
        for i in 0..RUNS {
            let fresh = tempfile::tempdir().expect("tempdir");
            let dir = if warm { shared.path() } else { fresh.path() };
            if !warm {
                config(dir);
            }
            let (r, f, m) = one_start(dir, i == 0);
            ready.push(r);
            first.push(f);
            if m > 0 {
                rss.push(m as f64);
            }
        }
        rows.push((label, median(ready), median(first), rss.first().copied().unwrap_or(0.0)));
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("latchd start-up, {RUNS} runs each, {cpus} CPUs, medians");
    println!("| start | to ready.json (ms) | to first /health (ms) | idle RSS after 2 s (MiB) |");
    println!("|---|---|---|---|");
    for (label, ready, first, rss) in rows {
        println!("| {label} | {ready:.1} | {first:.1} | {:.1} |", rss / 1024.0);
    }
}
