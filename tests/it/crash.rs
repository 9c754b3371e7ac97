//! Crash durability: a write load (registrations, refresh rotations,
//! logouts) runs while latchd is killed with SIGKILL at a random moment,
//! fifty times over one state directory. After each restart every request
//! that was answered 2xx is still true — the account exists, the newest
//! refresh token of a chain refreshes, a logged-out session stays out —
//! `PRAGMA integrity_check` is ok, and no session has two unspent refresh
//! tokens. Prints (and writes to `target/reliability/crash.md`) kills,
//! acknowledged writes, lost writes and restart times. The same load under
//! ten SIGTERMs (`stop.md`): each drains without a 5xx, a logged error or
//! a connection left for the drain time to cut, exits 0 and loses nothing.
//! Half the clients speak HTTP/1.1, half HTTP/2. And an operator's
//! `sqlite3` reading the live database takes no later commit with it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latch::sessions::refresh_token::Presented;
use serde_json::{Value, json};

use crate::harness::{Latchd, base_config, write_config};
use crate::reliability::{Dice, Table, percentile};

const PASSWORD: &str = "correct horse battery staple";
/// Cheap hashes: the test is about commits, not argon2. A long
/// `max_queue_wait`: the hashing threads run niced, and beside a build
/// they were starved past the default 1 s, so a login answered 503
/// `overloaded` (an honest refusal, but not what this test is about).
const CONFIG: &str = "\n[accounts]\nrequire_verified_email = false\n\
    [passwords]\nargon2 = { memory_kib = 1024, iterations = 1, parallelism = 1 }\nmax_queue_wait = \"30s\"\n";

/// What the daemon acknowledged, to check after each restart.
#[derive(Default)]
struct Ledger {
    registered: Vec<String>,
    /// Refresh chains: (newest acknowledged token, tokens it replaced).
    chains: Vec<(String, Vec<String>)>,
    /// Refresh tokens of sessions whose logout was acknowledged.
    logged_out: Vec<String>,
    acknowledged: usize,
    /// Answers of 500 and above: a kill cuts connections, a stop drains
    /// them, neither may answer with a server error.
    server_errors: Vec<String>,
}

async fn post(d: &Latchd, path: &str, token: Option<&str>, body: Value) -> Option<(u16, Value)> {
    send(&d.client(), d, path, token, body).await
}

async fn send(
    client: &reqwest::Client,
    d: &Latchd,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Option<(u16, Value)> {
    let mut req = client.post(d.https_url(path)).json(&body).timeout(Duration::from_secs(5));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.ok()?;
    let status = res.status().as_u16();
    // An answer whose body was cut (over HTTP/2 the head goes first) never
    // came: the client cannot use it.
    let body = res.bytes().await.ok()?;
    Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// One client's loop until the daemon dies: register, log in, rotate three
/// times, then keep the chain or log out. A write whose answer never came
/// may or may not have committed: its chain is left out of the checks.
async fn load(d: Arc<Latchd>, ledger: Arc<Mutex<Ledger>>, tag: String, h2: bool) {
    let client = if h2 { d.client_h2() } else { d.client() };
    let post = |path: &'static str, token: Option<String>, body: Value| {
        let (client, d, ledger) = (client.clone(), Arc::clone(&d), Arc::clone(&ledger));
        async move {
            let answer = send(&client, &d, path, token.as_deref(), body).await;
            if let Some((status, body)) = answer.as_ref().filter(|(status, _)| *status >= 500) {
                ledger.lock().unwrap().server_errors.push(format!("{path}: {status} {body}"));
            }
            answer
        }
    };
    for n in 0.. {
        let email = format!("{tag}-{n}@crash.test");
        let body = json!({"email": email, "password": PASSWORD});
        let Some((202, _)) = post("/v1/auth/register", None, body.clone()).await else { return };
        ledger.lock().unwrap().register(email.clone());
        let Some((200, tokens)) = post("/v1/auth/login", None, body).await else { return };
        let mut chain = (tokens["refresh_token"].as_str().unwrap().to_string(), Vec::new());
        for _ in 0..3 {
            let body = json!({"refresh_token": chain.0});
            let Some((200, next)) = post("/v1/auth/refresh", None, body).await else { return };
            let spent = std::mem::replace(&mut chain.0, next["refresh_token"].as_str().unwrap().to_string());
            chain.1.push(spent);
            ledger.lock().unwrap().acknowledged += 1;
        }
        if n % 2 == 0 {
            ledger.lock().unwrap().chains.push(chain);
            continue;
        }
        let access = tokens["access_token"].as_str().map(str::to_string);
        let Some((204, _)) = post("/v1/auth/logout", access, json!({})).await else { return };
        let mut ledger = ledger.lock().unwrap();
        ledger.logged_out.push(chain.0);
        ledger.acknowledged += 1;
    }
}

impl Ledger {
    fn register(&mut self, email: String) {
        self.registered.push(email);
        self.acknowledged += 1;
    }
}

fn count(db: &rusqlite::Connection, sql: &str, param: &dyn rusqlite::ToSql) -> i64 {
    db.query_row(sql, [param], |r| r.get(0)).unwrap()
}

/// Everything acknowledged so far that the restarted daemon lost.
async fn lost_writes(d: &Latchd, ledger: &mut Ledger) -> Vec<String> {
    let db = d.db();
    let mut lost = Vec::new();
    let ok: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    if ok != "ok" {
        lost.push(format!("integrity_check: {ok}"));
    }
    let doubled = "SELECT count(*) FROM (SELECT session_id FROM refresh_tokens WHERE used_at IS NULL \
                   GROUP BY session_id HAVING count(*) > ?1)";
    if count(&db, doubled, &1) > 0 {
        lost.push("a session has two unspent refresh tokens".into());
    }
    for email in &ledger.registered {
        if count(&db, "SELECT count(*) FROM users WHERE email_norm = ?1", email) != 1 {
            lost.push(format!("registration of {email}"));
        }
    }
    // Chains and logouts are checked once, after the first restart that
    // follows them (a later check would only repeat it).
    for (_, spent) in &ledger.chains {
        for token in spent {
            let Presented::Row { id, hash } = Presented::parse(token) else {
                lost.push(format!("a refresh token that names no row: {token}"));
                continue;
            };
            let spent =
                "SELECT count(*) FROM refresh_tokens WHERE id = ?1 AND hash = ?2 AND used_at IS NOT NULL";
            if db.query_row(spent, rusqlite::params![id, hash], |r| r.get::<_, i64>(0)).unwrap() != 1 {
                lost.push("a spent refresh token is not marked spent".into());
            }
        }
    }
    // The newest token of each chain must still refresh.
    for (live, _) in std::mem::take(&mut ledger.chains) {
        match post(d, "/v1/auth/refresh", None, json!({"refresh_token": live})).await {
            Some((200, _)) => ledger.acknowledged += 1,
            other => lost.push(format!("an acknowledged refresh token was refused: {other:?}")),
        }
    }
    for token in std::mem::take(&mut ledger.logged_out) {
        if !matches!(post(d, "/v1/auth/refresh", None, json!({"refresh_token": token})).await, Some((401, _)))
        {
            lost.push("a logged-out session refreshed".into());
        }
    }
    lost
}

/// How each cycle ends the daemon.
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    /// SIGKILL: no clean stop at all.
    Kill,
    /// SIGTERM, as `systemctl stop` and a package upgrade send: it must
    /// exit 0 within 10 s, having logged no error.
    Term,
}

/// What a run of cycles found.
struct Run {
    seed: u64,
    ledger: Ledger,
    /// Acknowledged writes lost.
    lost: Vec<String>,
    /// For `Stop::Term`: errors logged, and stops that had to cut
    /// connections at the end of the drain time.
    logged: Vec<String>,
    restarts_ms: Vec<f64>,
    /// From SIGTERM to the exit, for `Stop::Term`.
    stops_ms: Vec<f64>,
}

/// `cycles` times: start on the same state, check what was acknowledged
/// before, run four clients of write load (two over HTTP/1.1, two over
/// HTTP/2), `stop` the daemon at a random
/// moment 150–750 ms in.
async fn run_cycles(cycles: usize, stop: Stop) -> Run {
    let mut dice = Dice::seeded(None);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &base_config(CONFIG));
    let mut ledger = Ledger::default();
    let (mut restarts_ms, mut stops_ms, mut lost, mut logged) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut dir = Some(dir);
    for cycle in 0..cycles {
        let started = Instant::now();
        let d = Arc::new(Latchd::start_in(dir.take().unwrap()).await);
        restarts_ms.push(started.elapsed().as_secs_f64() * 1e3);
        for what in lost_writes(&d, &mut ledger).await {
            lost.push(format!("cycle {cycle}: {what}"));
        }
        let shared = Arc::new(Mutex::new(std::mem::take(&mut ledger)));
        let clients: Vec<_> = (0..4)
            .map(|i| {
                let tag = format!("c{cycle}-{i}");
                tokio::spawn(load(Arc::clone(&d), Arc::clone(&shared), tag, i % 2 == 1))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(150 + dice.below(600))).await;
        let stopping = Instant::now();
        d.signal(if stop == Stop::Kill { libc::SIGKILL } else { libc::SIGTERM });
        for client in clients {
            client.await.unwrap();
        }
        ledger = std::mem::take(&mut *shared.lock().unwrap());
        let d = Arc::into_inner(d).expect("clients are done");
        let kept = if stop == Stop::Kill { d.kill_keep_dir() } else { d.stop_keep_dir() };
        stops_ms.push(stopping.elapsed().as_secs_f64() * 1e3);
        let log = std::fs::read_to_string(kept.path().join("latchd.log")).unwrap_or_default();
        if stop == Stop::Term {
            let failed = |l: &&str| l.contains("\"ERROR\"") || l.contains("still open after the drain time");
            logged.extend(log.lines().filter(failed).map(|l| format!("cycle {cycle}: {l}")));
        }
        dir = Some(kept);
    }
    let d = Latchd::start_in(dir.take().unwrap()).await;
    for what in lost_writes(&d, &mut ledger).await {
        lost.push(format!("after the last stop: {what}"));
    }
    restarts_ms.sort_by(f64::total_cmp);
    stops_ms.sort_by(f64::total_cmp);
    Run { seed: dice.seed(), ledger, lost, logged, restarts_ms, stops_ms }
}

impl Run {
    /// Prints and writes the table, then fails on anything lost.
    fn report(self, name: &str, title: &str, ended_by: &str, cycles: usize) {
        let (ledger, restarts, stops) = (&self.ledger, &self.restarts_ms, &self.stops_ms);
        let p50_p99 = |ms: &[f64]| format!("{:.0} / {:.0}", percentile(ms, 0.5), percentile(ms, 0.99));
        let mut table = Table::new(title, &["measure", "value"]);
        table.row(&[ended_by, &cycles.to_string()]);
        table.row(&["acknowledged writes", &ledger.acknowledged.to_string()]);
        table.row(&["lost", &self.lost.len().to_string()]);
        table.row(&["server errors (5xx) answered", &ledger.server_errors.len().to_string()]);
        table.row(&["restart to ready, p50 / p99 ms", &p50_p99(restarts)]);
        if name == "stop" {
            table.row(&["errors logged, drains out of time", &self.logged.len().to_string()]);
            table.row(&["SIGTERM to exit (clients drained), p50 / p99 ms", &p50_p99(stops)]);
        }
        table.row(&["seed", &self.seed.to_string()]);
        table.publish(name);
        let seed = self.seed;
        assert!(self.lost.is_empty(), "lost (seed {seed}): {:#?}", self.lost);
        assert!(self.logged.is_empty(), "logged (seed {seed}): {:#?}", self.logged);
        assert!(ledger.server_errors.is_empty(), "answered 5xx (seed {seed}): {:#?}", ledger.server_errors);
        assert!(ledger.acknowledged > cycles * 5, "the load did too little: {}", ledger.acknowledged);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sigkills_under_write_load_lose_no_acknowledged_write() {
    let cycles: usize = std::env::var("LATCH_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let run = run_cycles(cycles, Stop::Kill).await;
    run.report("crash", "Crash durability (SIGKILL under write load)", "kills", cycles);
}

/// Stops under the same load: each SIGTERM drains what is in flight
/// (answered, never with a 5xx), latchd exits 0 within 10 s and logs no
/// error, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_graceful_stops_under_write_load_answer_what_they_accepted_and_lose_nothing() {
    let run = run_cycles(10, Stop::Term).await;
    run.report("stop", "Graceful stops (SIGTERM under write load)", "stops", 10);
}

/// The WAL archive's first snapshot of the database is on disk.
fn snapshot_written(state: &std::path::Path) -> bool {
    let Ok(generations) = std::fs::read_dir(state.join("archive")) else { return false };
    generations.flatten().any(|g| g.path().join("snapshot.db.zst").exists())
}

/// An outside connection to the live database (an operator's `sqlite3
/// latch.db 'SELECT …'`) closes without deleting the log under the daemon,
/// also after the WAL archive has read the file for its snapshot: what
/// latchd acknowledges afterwards survives a SIGKILL. The snapshot used to
/// open and close the file itself, which dropped the daemon's locks on it.
#[tokio::test]
async fn an_outside_reader_of_the_live_database_takes_no_commit_with_it() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &base_config(CONFIG));
    let d = Latchd::start_in(dir).await;
    let state = d.state_dir();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !snapshot_written(&state) {
        assert!(Instant::now() < deadline, "no archive snapshot within 10 s:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The Debian CLI (SQLite 3.40) deletes a log it believes no one else
    // holds when it closes; the SQLite built into latch's tests does not.
    let outside = std::process::Command::new("sqlite3")
        .arg(state.join("latch.db"))
        .arg("SELECT count(*) FROM users")
        .output()
        .unwrap();
    assert!(outside.status.success(), "{outside:?}");
    let before: i64 = String::from_utf8_lossy(&outside.stdout).trim().parse().unwrap();
    assert!(state.join("latch.db-wal").exists(), "the outside connection deleted the daemon's log");
    for i in 0..3 {
        let body = json!({ "email": format!("after-reader-{i}@example.com"), "password": PASSWORD });
        let answer = post(&d, "/v1/auth/register", None, body).await;
        assert!(answer.as_ref().is_some_and(|(s, _)| *s < 300), "{answer:?}");
    }
    let d = Latchd::start_in(d.kill_keep_dir()).await;
    let after = count(&d.db(), "SELECT count(*) FROM users WHERE email GLOB ?1", &"after-reader-*");
    assert_eq!((before, after), (0, 3), "every registration acknowledged after the outside read");
}
