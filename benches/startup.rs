//! Start-up benchmark: time from spawning `latchd` to `ready.json` (cold:
//! fresh state dir, so key, certificate and schema are created; warm: the
//! same state again; large: a database holding 100,000 users with a live
//! session each and 1,000,000 refresh-token rows, target < 300 ms), time to
//! the first `/health` answer, and the idle resident memory. Prints a table
//! of medians; run with `cargo bench --bench startup`.

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
        // Hashing threads free their argon2 workspace after 2 s idle.
        std::thread::sleep(Duration::from_secs(3));
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

/// A realistic mature install: 100 k users, a live session each and ten
/// refresh-token rows per session (1 M), written straight into the
/// database latchd made (argon2id-shaped hashes; nothing checks them here).
fn seed_large(dir: &Path) {
    let db = rusqlite::Connection::open(dir.join("state/latch.db")).expect("open");
    let phc = "$argon2id$v=19$m=19456,t=2,p=1$c2VlZHNlZWRzZWVkc2VlZA$WmFrZUhhc2hGb3JTdGFydHVwQmVuY2htYXJrcw";
    db.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
         INSERT INTO users (id, email, email_norm, password_hash, created_at, updated_at)
             SELECT printf('u%06d', i), printf('user%d@seed.test', i), printf('user%d@seed.test', i),
                    '{phc}', unixepoch(), unixepoch() FROM n;
         INSERT INTO sessions (id, user_id, amr, created_at, last_seen_at, expires_at)
             SELECT 's' || substr(id, 2), id, 'pwd', unixepoch(), unixepoch(), unixepoch() + 86400 FROM users
             WHERE id LIKE 'u%';
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)
         INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at, used_at)
             SELECT randomblob(32), printf('s%06d', (i % 100000) + 1), unixepoch(), unixepoch() + 86400,
                    CASE WHEN i > 100000 THEN unixepoch() END FROM n;
         COMMIT;
         PRAGMA wal_checkpoint(TRUNCATE);"
    ))
    .expect("seed");
}

fn main() {
    let mut rows = Vec::new();
    let starts = [("cold (new state dir)", false, false), ("warm (existing state)", true, false)];
    let large = [("large (100 k users, 1 M refresh rows)", true, true)];
    for (label, warm, big) in starts.into_iter().chain(large) {
        let (mut ready, mut first, mut rss) = (Vec::new(), Vec::new(), Vec::new());
        let shared = tempfile::tempdir().expect("tempdir");
        config(shared.path());
        if warm {
            one_start(shared.path(), false);
        }
        if big {
            seed_large(shared.path());
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
    println!("| start | to ready.json (ms) | to first /health (ms) | idle RSS after 3 s (MiB) |");
    println!("|---|---|---|---|");
    for (label, ready, first, rss) in rows {
        println!("| {label} | {ready:.1} | {first:.1} | {:.1} |", rss / 1024.0);
    }
}
