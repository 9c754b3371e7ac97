//! Crash durability: a write load (registrations, refresh rotations,
//! logouts) runs while latchd is killed with SIGKILL at a random moment,
//! fifty times over one state directory. After each restart every request
//! that was answered 2xx is still true — the account exists, the newest
//! refresh token of a chain refreshes, a logged-out session stays out —
//! `PRAGMA integrity_check` is ok, and no session has two unspent refresh
//! tokens. Prints (and writes to `target/reliability/crash.md`) kills,
//! acknowledged writes, lost writes and restart times. And an operator's
//! `sqlite3` reading the live database takes no later commit with it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latch::sessions::refresh_token::Presented;
use serde_json::{Value, json};

use crate::harness::{Latchd, base_config, write_config};
use crate::reliability::{Dice, Table, percentile};

const PASSWORD: &str = "correct horse battery staple";
/// Cheap hashes: the test is about commits, not argon2.
const CONFIG: &str = "\n[accounts]\nrequire_verified_email = false\n\
    [passwords]\nargon2 = { memory_kib = 1024, iterations = 1, parallelism = 1 }\n";

/// What the daemon acknowledged, to check after each restart.
#[derive(Default)]
struct Ledger {
    registered: Vec<String>,
    /// Refresh chains: (newest acknowledged token, tokens it replaced).
    chains: Vec<(String, Vec<String>)>,
    /// Refresh tokens of sessions whose logout was acknowledged.
    logged_out: Vec<String>,
    acknowledged: usize,
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
    Some((status, res.json().await.unwrap_or(Value::Null)))
}

/// One client's loop until the daemon dies: register, log in, rotate three
/// times, then keep the chain or log out. A write whose answer never came
/// may or may not have committed: its chain is left out of the checks.
async fn load(d: Arc<Latchd>, ledger: Arc<Mutex<Ledger>>, tag: String) {
    let client = d.client();
    let post = |path: &'static str, token: Option<String>, body: Value| {
        let (client, d) = (client.clone(), Arc::clone(&d));
        async move { send(&client, &d, path, token.as_deref(), body).await }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sigkills_under_write_load_lose_no_acknowledged_write() {
    let cycles: usize = std::env::var("LATCH_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let mut dice = Dice::seeded(None);
    let seed = dice.seed();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &base_config(CONFIG));
    let mut ledger = Ledger::default();
    let (mut restarts, mut lost) = (Vec::new(), Vec::new());
    let mut dir = Some(dir);
    for cycle in 0..cycles {
        let started = Instant::now();
        let d = Arc::new(Latchd::start_in(dir.take().unwrap()).await);
        restarts.push(started.elapsed().as_secs_f64() * 1e3);
        for what in lost_writes(&d, &mut ledger).await {
            lost.push(format!("cycle {cycle}: {what}"));
        }
        let shared = Arc::new(Mutex::new(std::mem::take(&mut ledger)));
        let clients: Vec<_> = (0..4)
            .map(|i| tokio::spawn(load(Arc::clone(&d), Arc::clone(&shared), format!("c{cycle}-{i}"))))
            .collect();
        tokio::time::sleep(Duration::from_millis(150 + dice.below(600))).await;
        d.signal(libc::SIGKILL);
        for client in clients {
            client.await.unwrap();
        }
        ledger = std::mem::take(&mut *shared.lock().unwrap());
        dir = Some(Arc::into_inner(d).expect("clients are done").kill_keep_dir());
    }
    let d = Latchd::start_in(dir.take().unwrap()).await;
    for what in lost_writes(&d, &mut ledger).await {
        lost.push(format!("after the last kill: {what}"));
    }
    restarts.sort_by(f64::total_cmp);
    let mut table = Table::new("Crash durability (SIGKILL under write load)", &["measure", "value"]);
    table.row(&["kills", &cycles.to_string()]);
    table.row(&["acknowledged writes", &ledger.acknowledged.to_string()]);
    table.row(&["lost", &lost.len().to_string()]);
    table.row(&[
        "restart to ready, p50 / p99 ms",
        &format!("{:.0} / {:.0}", percentile(&restarts, 0.5), percentile(&restarts, 0.99)),
    ]);
    table.row(&["seed", &seed.to_string()]);
    table.publish("crash");
    assert!(lost.is_empty(), "lost after SIGKILL (seed {seed}): {lost:#?}");
    assert!(ledger.acknowledged > cycles * 5, "the load did too little: {}", ledger.acknowledged);
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
