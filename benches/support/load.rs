//! What the load benchmarks share: run length, closed-loop clients, wrk,
//! CPU meters and all-core loops. Included by `benches/auth.rs` with
//! `#[path]`, like `stats.rs`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set while warming up: every run then lasts `WARMUP_SECS`.
pub static WARMING_UP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
pub const WARMUP_SECS: u64 = 2;

pub fn secs() -> Duration {
    if WARMING_UP.load(std::sync::atomic::Ordering::Relaxed) {
        return Duration::from_secs(WARMUP_SECS);
    }
    Duration::from_secs(std::env::var("LATCH_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(8))
}

/// CPU seconds (user + system) the process `pid` has used so far.
pub fn cpu_secs(pid: u32) -> f64 {
    stat_cpu_secs(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// CPU seconds so far of each of `pid`'s threads, by thread id: its kind
/// (the thread name with a numbered pool's number dropped: `latch-hash-0`
/// and `-1` are `latch-hash`) and its seconds, from `/proc/PID/task`.
pub fn cpu_by_thread(pid: u32) -> std::collections::BTreeMap<u32, (String, f64)> {
    let mut out = std::collections::BTreeMap::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
    for task in tasks {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let name = stat.split_once(" (").and_then(|(_, rest)| rest.rsplit_once(") ")).map_or("", |(n, _)| n);
        let kind = name.trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches('-');
        out.insert(tid, (kind.to_string(), stat_cpu_secs(&stat)));
    }
    out
}

/// User + system CPU seconds from a `/proc/.../stat` line.
fn stat_cpu_secs(stat: &str) -> f64 {
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<f64> = after.split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect();
    // SAFETY: sysconf only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / ticks
}

/// A closed-loop run: operations done, wall time and latency percentiles.
#[derive(Clone, Copy)]
pub struct Run {
    pub ops: usize,
    pub elapsed: Duration,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Run {
    pub fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

/// `clients` tasks each looping `op` for the bench duration.
pub async fn closed_loop<F, Fut>(clients: usize, op: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let until = started + secs();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < until {
                    let t = Instant::now();
                    op(i).await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    lat.sort();
    let pct =
        |p: f64| lat.get(((lat.len() as f64 - 1.0) * p) as usize).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    Run { ops: lat.len(), elapsed: started.elapsed(), p50_ms: pct(0.5), p99_ms: pct(0.99) }
}

pub fn wrk_installed() -> bool {
    Command::new("wrk").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// A wrk Lua script under `benches/` and the file it reads, named by the
/// environment variable `var`.
pub struct Script<'a> {
    pub path: &'a str,
    pub var: &'a str,
    pub file: &'a Path,
}

/// One wrk run (one thread, `clients` connections), optionally with a Lua
/// script fed a file (its path in the environment variable the script
/// reads); any non-2xx answer fails the bench.
pub fn wrk(url: &str, clients: usize, script: Option<Script>, header: Option<&str>) -> Run {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", &format!("-c{clients}"), &format!("-d{}s", secs().as_secs()), "--latency"]);
    if let Some(header) = header {
        cmd.args(["-H", header]);
    }
    if let Some(Script { path, var, file }) = script {
        cmd.arg("-s").arg(path).env(var, file).env("LATCH_WRK_THREADS", "1");
    }
    let out = cmd.arg(url).output().expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !text.contains("Non-2xx"), "wrk: a request failed:\n{text}");
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("wrk printed no {label}:\n{text}"))
    };
    let ms = |v: String| {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
        let num: f64 = num.parse().expect("latency");
        match unit {
            "us" => num / 1e3,
            "ms" => num,
            "s" => num * 1e3,
            other => panic!("wrk latency unit {other}"),
        }
    };
    let requests: usize = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ").map(|(n, _)| n.parse().expect("count")))
        .expect("request count");
    let rate: f64 = field("Requests/sec:").parse().expect("rate");
    Run {
        ops: requests,
        elapsed: Duration::from_secs_f64(requests as f64 / rate),
        p50_ms: ms(field("50%")),
        p99_ms: ms(field("99%")),
    }
}

/// Operations per second of `work` on every core for the bench duration.
pub fn on_all_cores(work: impl Fn() + Send + Sync + 'static) -> f64 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let work = Arc::new(work);
    let started = Instant::now();
    let until = started + secs();
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let work = Arc::clone(&work);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < until {
                    work();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    total as f64 / started.elapsed().as_secs_f64()
}
