//! Fresh-connection latency of the real `latchd`: `GET /health` from
//! Python's http.client (`benches/fresh_connections.py`) over a new TCP
//! connection each time — TLS 1.3, TLS 1.2, plain HTTP — next to the same
//! request on one kept-alive TLS 1.3 connection. Many scripts and simple
//! app clients open a connection per request and pay the fresh figure on
//! every call. The target: TLS 1.3 fresh within 2× of TLS 1.2 fresh (before
//! latch set TCP_NODELAY, Nagle's algorithm held the response behind the
//! TLS 1.3 session ticket until the client's delayed ACK: up to 40 ms).
//!
//! Then what an idle connection costs: latchd's resident memory before,
//! while `benches/idle_connections.py` holds `IDLE` kept-alive TLS 1.3
//! connections, and after they closed (README and latch.toml(5) size
//! `LimitNOFILE` by it).
//!
//! Run: `cargo bench --bench connections` (about 20 s). Each round makes
//! `REQUESTS` sequential requests per row; the table shows the median over
//! `ROUNDS` rounds of each round's p50 and p99.

// A panic here is a failed bench run, with its message: what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

// The daemon is started exactly as the integration tests start it.
#[path = "../tests/it/harness.rs"]
#[allow(dead_code)]
mod harness;

const REQUESTS: usize = 200;
const ROUNDS: usize = 3;
/// Idle connections held at once for the memory figure.
const IDLE: usize = 2000;
const ROWS: [(&str, &str); 4] = [
    ("tls13", "fresh TLS 1.3 connection"),
    ("tls12", "fresh TLS 1.2 connection"),
    ("http", "fresh plain HTTP connection"),
    ("kept_alive", "kept-alive TLS 1.3 connection"),
];

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    // One client address holds them all.
    harness::write_config(dir.path(), &harness::base_config("[http]\nmax_connections_per_ip = 0\n"));
    let d = harness::Latchd::start_in_with_env(dir, &[("RUST_LOG", "warn")]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fresh_connections.py");
    let (https, http) = (d.addr("https").port().to_string(), d.addr("http").port().to_string());
    let cert = d.cert_path().display().to_string();
    let mut rounds: Vec<serde_json::Value> = Vec::new();
    for _ in 0..ROUNDS {
        let out = Command::new("python3")
            .args([script, &https, &http, &cert, &REQUESTS.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        rounds.push(serde_json::from_slice(&out.stdout).unwrap());
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "latchd GET /health from Python http.client: {REQUESTS} sequential requests per row and round, {ROUNDS} rounds, {cpus} CPUs"
    );
    println!("(median over rounds of each round's p50 and p99; client and daemon share the machine)\n");
    println!("| connection | p50 ms | p99 ms |");
    println!("|---|---|---|");
    let mut p50 = std::collections::HashMap::new();
    for (key, name) in ROWS {
        let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
        for round in &rounds {
            let mut times: Vec<f64> =
                round[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            times.sort_by(f64::total_cmp);
            p50s.push(percentile(&times, 0.5));
            p99s.push(percentile(&times, 0.99));
        }
        let (a, b) = (median(p50s), median(p99s));
        p50.insert(key, a);
        println!("| {name} | {a:.2} | {b:.2} |");
    }
    println!(
        "\nTLS 1.3 fresh p50 is {:.2}× TLS 1.2 fresh p50 (target: at most 2×)",
        p50["tls13"] / p50["tls12"]
    );
    idle_memory(&d, &https, &cert);
}

/// latchd's resident memory in KiB.
fn rss_kib(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap();
    line.trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// Resident memory before, while `IDLE` connections are held and after.
fn idle_memory(d: &harness::Latchd, https: &str, cert: &str) {
    let before = rss_kib(d.pid());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/idle_connections.py");
    let mut holder = Command::new("python3")
        .args([script, https, cert, &IDLE.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("held {IDLE}"), "the holder could not hold them all");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let held = rss_kib(d.pid());
    drop(holder.stdin.take());
    holder.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let after = rss_kib(d.pid());
    println!("\n| {IDLE} idle TLS 1.3 connections | latchd RSS MiB |");
    println!("|---|---|");
    println!("| before | {:.1} |", before / 1024.0);
    println!("| while held | {:.1} |", held / 1024.0);
    println!("| after they closed | {:.1} |", after / 1024.0);
    println!("\n{:.1} KiB per idle connection", (held - before) / IDLE as f64);
}
