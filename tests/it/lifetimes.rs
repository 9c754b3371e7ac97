//! Token lifetimes and the outbox's retries: caps, expiry, the reuse grace
//! window, the sweeping of ended sessions' tokens, SMTP outages and dead
//! letters, hash upgrades and a full hash queue.

use std::time::Duration;

use serde_json::{Value, json};

use crate::flows::{PASSWORD, login, metric, register_verified, with_smtp};
use crate::harness::{Latchd, assert_problem, base_config, write_config};
use crate::mail::SmtpSink;

fn outbox_state(d: &Latchd) -> (String, i64, bool) {
    d.db()
        .query_row("SELECT status, attempts, body IS NULL FROM outbox ORDER BY created_at LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap_or(("none".into(), 0, true))
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sessions_never_outlive_session_max_age_and_expired_tokens_fail() {
    // Margins wide enough that a loaded CI machine cannot cross a deadline
    // between two steps by accident.
    let cfg =
        "\n[tokens]\naccess_ttl = \"1s\"\nrefresh_ttl = \"4s\"\nsession_max_age = \"4s\"\nleeway = \"0s\"\n";
    let (d, smtp) = with_smtp(cfg).await;
    register_verified(&d, &smtp, "nia@example.test", 0).await;
    let t = login(&d, "nia@example.test", PASSWORD).await;
    assert_eq!(t["refresh_expires_in"], 4);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let res = d.post("/v1/auth/refresh", json!({"refresh_token": t["refresh_token"]})).await;
    let next: Value = res.json().await.unwrap();
    assert!(next["refresh_expires_in"].as_i64().is_some_and(|s| s <= 3), "capped at login + max age: {next}");
    tokio::time::sleep(Duration::from_millis(4100)).await;
    assert_problem(
        d.get_auth("/v1/auth/me", next["access_token"].as_str().unwrap()).await,
        401,
        "unauthorized",
    )
    .await;
    let res = d.post("/v1/auth/refresh", json!({"refresh_token": next["refresh_token"]})).await;
    assert_problem(res, 401, "invalid-token").await;
    // The sweeper then deletes the expired session's tokens, spent one included.
    let sid = t["session_id"].as_str().unwrap().to_string();
    wait_until("the expired session's tokens to be swept", || tokens_of(&d, &sid) == 0).await;
}

/// Rows in refresh_tokens for session `sid`.
fn tokens_of(d: &Latchd, sid: &str) -> i64 {
    d.db()
        .query_row("SELECT count(*) FROM refresh_tokens WHERE session_id = ?1", [sid], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn revoked_sessions_lose_their_refresh_tokens_and_live_ones_keep_theirs() {
    let (d, smtp) = with_smtp("").await;
    register_verified(&d, &smtp, "ivo@example.test", 0).await;
    let (gone, kept) =
        (login(&d, "ivo@example.test", PASSWORD).await, login(&d, "ivo@example.test", PASSWORD).await);
    for t in [&gone, &kept] {
        let res = d.post("/v1/auth/refresh", json!({"refresh_token": t["refresh_token"]})).await;
        assert_eq!(res.status(), 200);
    }
    let (gone_sid, kept_sid) = (gone["session_id"].as_str().unwrap(), kept["session_id"].as_str().unwrap());
    assert_eq!((tokens_of(&d, gone_sid), tokens_of(&d, kept_sid)), (2, 2), "spent and current");
    let res = d.post_auth("/v1/auth/logout", gone["access_token"].as_str().unwrap(), json!({})).await;
    assert_eq!(res.status(), 204);
    wait_until("the revoked session's tokens to be swept", || tokens_of(&d, gone_sid) == 0).await;
    assert_eq!(tokens_of(&d, kept_sid), 2, "a live session keeps its spent token for reuse detection");
    let res = d.post("/v1/auth/refresh", json!({"refresh_token": kept["refresh_token"]})).await;
    assert_problem(res, 401, "refresh-token-reused").await;
}

/// `latch_sessions_active` as the daemon reports it, once it has counted.
async fn sessions_active(d: &Latchd) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = d.get("/metrics").await.text().await.unwrap();
        if let Some(line) = text.lines().find(|l| l.starts_with("latch_sessions_active ")) {
            return line.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no latch_sessions_active in:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn live_sessions_are_counted_at_start_and_after() {
    let (d, smtp) = with_smtp("").await;
    register_verified(&d, &smtp, "ada@example.test", 0).await;
    let (a, _b) =
        (login(&d, "ada@example.test", PASSWORD).await, login(&d, "ada@example.test", PASSWORD).await);
    // Counted when it starts, then every 15 s: a restart shows both at once.
    let d = Latchd::start_in(d.stop_keep_dir()).await;
    assert_eq!(sessions_active(&d).await, "latch_sessions_active 2");
    let res = d.post_auth("/v1/auth/logout", a["access_token"].as_str().unwrap(), json!({})).await;
    assert_eq!(res.status(), 204);
    let d = Latchd::start_in(d.stop_keep_dir()).await;
    assert_eq!(sessions_active(&d).await, "latch_sessions_active 1", "a revoked session is not live");
    drop(smtp);
}

/// Migrations 0003 and 0011 rebuild refresh_tokens (without its session
/// index, then keyed by row): a token issued before them keeps working,
/// its successor names its row, and spending it twice is still reuse.
#[tokio::test]
async fn refresh_tokens_survive_the_migrations_that_rebuild_their_table() {
    let (d, smtp) = with_smtp("").await;
    register_verified(&d, &smtp, "lea@example.test", 0).await;
    login(&d, "lea@example.test", PASSWORD).await;
    let db = d.state_dir().join("latch.db");
    let dir = d.stop_keep_dir();
    let conn = rusqlite::Connection::open(&db).unwrap();
    // Back to the table as migration 0002 made it, holding a token as
    // latch issued them then: 32 random bytes, found by the hash of it all.
    let old = latch::keys::random_token().unwrap();
    conn.execute_batch(
        "BEGIN;
         CREATE TABLE v2 (hash BLOB PRIMARY KEY, session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
             created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, used_at INTEGER, replaced_by BLOB,
             successor BLOB) STRICT;",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO v2 (hash, session_id, created_at, expires_at)
             SELECT ?1, session_id, created_at, expires_at FROM refresh_tokens",
        [latch::keys::token_hash(&old)],
    )
    .unwrap();
    conn.execute_batch(
        "DROP TABLE refresh_tokens;
         ALTER TABLE v2 RENAME TO refresh_tokens;
         CREATE INDEX refresh_tokens_by_session ON refresh_tokens(session_id);
         DROP TABLE ip_blocks;
         DROP TABLE login_locks;
         DROP TABLE api_keys;
         ALTER TABLE signing_keys DROP COLUMN activates_at;
         ALTER TABLE one_time_tokens DROP COLUMN voided;
         ALTER TABLE outbox DROP COLUMN link_hash;
         DROP TABLE email_changes;
         DELETE FROM schema_migrations WHERE version > 2;
         COMMIT;",
    )
    .unwrap();
    drop(conn);

    let d = Latchd::start_in(dir).await;
    let index: i64 = d
        .db()
        .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'refresh_tokens_by_session'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(index, 0, "migration 0003 ran");
    let backups: Vec<String> = std::fs::read_dir(d.state_dir().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(backups.iter().any(|b| b.starts_with("pre-migrate-v2-")), "backed up first: {backups:?}");
    let listed = crate::admin_api::ok_json(crate::admin_cli::latchctl_on(
        &d.state_dir(),
        &["--json", "backup", "list"],
    ));
    let listed = listed.to_string();
    assert!(listed.contains("pre-migrate-v2-"), "backup list shows it: {listed}");
    let res = d.post("/v1/auth/refresh", json!({"refresh_token": old})).await;
    assert_eq!(res.status(), 200, "a token from before the migrations still refreshes");
    let next: Value = res.json().await.unwrap();
    let next = next["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(next.len(), 54, "its successor names its row: {next}");
    // Counted while the session is live: once reuse revokes it, the
    // sweeper's next step (every 2 s) deletes its tokens.
    let legacy: i64 =
        d.db().query_row("SELECT count(*) FROM refresh_tokens WHERE legacy = 1", [], |r| r.get(0)).unwrap();
    assert_eq!(legacy, 1, "only the token from before is in the legacy index");
    let res = d.post("/v1/auth/refresh", json!({"refresh_token": old})).await;
    assert_problem(res, 401, "refresh-token-reused").await;
    let res = d.post("/v1/auth/refresh", json!({"refresh_token": next})).await;
    assert_problem(res, 401, "invalid-token").await;
    drop(smtp);
}

#[tokio::test]
async fn reuse_grace_answers_a_retry_with_the_same_successor() {
    let (d, smtp) = with_smtp("\n[tokens]\nrefresh_reuse_grace = \"10s\"\n").await;
    register_verified(&d, &smtp, "omar@example.test", 0).await;
    let t = login(&d, "omar@example.test", PASSWORD).await;
    let first: Value =
        d.post("/v1/auth/refresh", json!({"refresh_token": t["refresh_token"]})).await.json().await.unwrap();
    let retry: Value =
        d.post("/v1/auth/refresh", json!({"refresh_token": t["refresh_token"]})).await.json().await.unwrap();
    assert_eq!(retry["refresh_token"], first["refresh_token"], "{retry}");
    // Once the successor itself is spent, the old token is plain reuse.
    let third: Value = d
        .post("/v1/auth/refresh", json!({"refresh_token": first["refresh_token"]}))
        .await
        .json()
        .await
        .unwrap();
    assert!(third["refresh_token"].is_string());
    let res = d.post("/v1/auth/refresh", json!({"refresh_token": t["refresh_token"]})).await;
    assert_problem(res, 401, "refresh-token-reused").await;
}

#[tokio::test]
async fn smtp_outages_are_retried_and_requests_never_wait() {
    let port = crate::mail::SmtpSink::port_for_later();
    let smtp_cfg = format!("\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\n");
    let d = Latchd::start_with(&base_config(&smtp_cfg)).await;
    let res = d.post("/v1/auth/register", json!({"email": "pia@example.test", "password": PASSWORD})).await;
    assert_eq!(res.status(), 202, "answered with the SMTP server down");
    wait_until("a failed attempt", || outbox_state(&d).1 >= 1).await;
    assert_eq!(outbox_state(&d).0, "queued");
    let smtp = SmtpSink::start_on(port);
    let mails = smtp.wait_for(1).await;
    assert!(mails[0].contains("Confirm your email address"));
    wait_until("sent", || outbox_state(&d).0 == "sent").await;
    let (_, attempts, erased) = outbox_state(&d);
    assert!(attempts >= 2 && erased, "attempts {attempts}, body erased {erased}");
    assert!(d.log().contains("email delivery failed"));
}

/// A link mail that waited out its link (an outage longer than the link
/// lives, here with the daemon stopped too) is not sent late: the person
/// would open a dead link. Mail whose link still works goes as usual.
#[tokio::test]
async fn a_link_that_stopped_working_while_its_mail_waited_is_not_sent() {
    let port = crate::mail::SmtpSink::port_for_later();
    let d =
        Latchd::start_with(&base_config(&format!("\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\n"))).await;
    for email in ["pia@example.test", "quin@example.test"] {
        let res = d.post("/v1/auth/register", json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(res.status(), 202);
    }
    wait_until("failed attempts", || outbox_state(&d).1 >= 1).await;
    let dir = d.stop_keep_dir();
    let db = rusqlite::Connection::open(dir.path().join("state/latch.db")).unwrap();
    db.execute_batch(
        "UPDATE one_time_tokens SET expires_at = 1
           WHERE user_id = (SELECT id FROM users WHERE email = 'pia@example.test');
         UPDATE outbox SET next_attempt_at = 0;",
    )
    .unwrap();
    drop(db);
    let smtp = SmtpSink::start_on(port);
    let d = Latchd::start_in(dir).await;
    let mails = smtp.wait_for(1).await;
    assert!(mails[0].contains("quin@example.test"), "the live link goes: {}", mails[0]);
    let pia = || {
        d.db().query_row(
            "SELECT status, last_error, body IS NULL FROM outbox WHERE recipient = 'pia@example.test'",
            [],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?)),
        )
    };
    wait_until("the dead link's mail dropped", || pia().is_ok_and(|(status, ..)| status == "dead")).await;
    let (_, error, erased) = pia().unwrap();
    assert!(error.contains("its link stopped working while it waited") && erased, "{error}");
    assert_eq!(metric(&d, r#"latch_emails_total{result="expired"}"#).await, 1.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let arrived = std::fs::read_dir(smtp.dir.path()).unwrap().flatten();
    assert_eq!(
        arrived.filter(|f| f.path().extension().is_some_and(|e| e == "eml")).count(),
        1,
        "none to pia"
    );
}

#[tokio::test]
async fn undeliverable_mail_becomes_a_dead_letter() {
    let port = crate::mail::SmtpSink::port_for_later();
    let smtp_cfg = format!("\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nmax_attempts = 2\n");
    let d = Latchd::start_with(&base_config(&smtp_cfg)).await;
    d.post("/v1/auth/register", json!({"email": "quinn@example.test", "password": PASSWORD})).await;
    wait_until("dead letter", || outbox_state(&d).0 == "dead").await;
    assert_eq!(outbox_state(&d), ("dead".to_string(), 2, true));
    let metrics = d.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(r#"latch_emails_total{result="dead"} 1"#), "{metrics}");
    assert!(metrics.contains("latch_email_queue_depth 0"), "{metrics}");
    let given_up = d.log().lines().find(|l| l.contains("email given up")).map(str::to_string);
    assert!(
        given_up.is_some_and(|l| l.contains("\"level\":\"ERROR\"")),
        "an error, not a warning:\n{}",
        d.log()
    );
    // The operator finds it, and why, without a token or SQL.
    let dead = crate::admin_cli::latchctl_on(&d.state_dir(), &["outbox", "list", "--status", "dead"]);
    let table = String::from_utf8_lossy(&dead.stdout).into_owned();
    let row = table.lines().find(|l| l.contains("quinn@example.test")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("verify_email") && row.contains(" 2 "), "kind and attempts: {row}");
    assert!(row.to_lowercase().contains("connection refused"), "the last error: {row}");
    let queued = crate::admin_cli::latchctl_on(&d.state_dir(), &["outbox", "list"]);
    assert_eq!(String::from_utf8_lossy(&queued.stdout).trim(), "no queued mail");
}

/// A relay that says a mailbox does not exist (550 5.1.1: a mistyped
/// address at registration) is believed at once: the message is dead after
/// one attempt, where it used to wait two hours of retries, and counted as
/// refused, not as a dead letter (whose alert says to check the relay). A
/// full mailbox (552 5.2.2) may empty, and is retried.
#[tokio::test]
async fn mail_to_a_mailbox_the_relay_says_does_not_exist_dies_at_once() {
    let (d, smtp) = with_smtp("").await;
    for email in ["no-such-mailbox@example.test", "mailbox-full@example.test", "ok@example.test"] {
        let res = d.post("/v1/auth/register", json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(res.status(), 202);
    }
    smtp.wait_for(1).await;
    let row = |to: &str| -> (String, i64, String) {
        let sql = "SELECT status, attempts, COALESCE(last_error, '') FROM outbox WHERE recipient = ?1";
        d.db().query_row(sql, [to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap()
    };
    wait_until("the refused mailbox", || row("no-such-mailbox@example.test").0 == "dead").await;
    let (_, attempts, error) = row("no-such-mailbox@example.test");
    assert_eq!(attempts, 1, "{error}");
    assert!(error.contains("5.1.1") && error.contains("User unknown"), "{error}");
    wait_until("the full mailbox tried", || row("mailbox-full@example.test").1 >= 1).await;
    let (status, _, error) = row("mailbox-full@example.test");
    assert_eq!(status, "queued", "retried: {error}");
    assert!(d.log().contains("the relay says the mailbox does not exist"), "{}", d.log());
    // Not a dead letter for the operator's alert: the relay is fine.
    let metrics = d.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(r#"latch_emails_total{result="refused"} 1"#), "{metrics}");
    assert!(!metrics.contains(r#"latch_emails_total{result="dead"}"#), "{metrics}");
}

#[tokio::test]
async fn hashes_are_upgraded_at_login_when_parameters_change() {
    let weak = "\n[passwords]\nargon2 = { memory_kib = 8192, iterations = 1, parallelism = 1 }\n";
    let (d, smtp) = with_smtp(weak).await;
    register_verified(&d, &smtp, "rui@example.test", 0).await;
    let hash = |d: &Latchd| -> String {
        d.db().query_row("SELECT password_hash FROM users", [], |r| r.get(0)).unwrap()
    };
    assert!(hash(&d).starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{}", hash(&d));
    write_config(d.dir.path(), &base_config(&smtp.config()));
    d.signal(libc::SIGHUP);
    wait_until("reload", || d.log().contains("config reloaded")).await;
    login(&d, "rui@example.test", PASSWORD).await;
    assert!(hash(&d).starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", hash(&d));
    login(&d, "rui@example.test", PASSWORD).await;
}

/// `n` simultaneous logins for an unknown email (each a dummy hash): per
/// answer its problem status, type and Retry-After.
async fn login_burst(d: &Latchd, n: usize) -> Vec<(Option<u64>, String, Option<String>)> {
    let (client, url) = (d.client(), d.https_url("/v1/auth/login"));
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let (c, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let body = json!({"email": "x@example.test", "password": "whatever it is"});
                let res = c.post(url).json(&body).send().await.unwrap();
                let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                let body: Value = res.json().await.unwrap_or(Value::Null);
                (body["status"].as_u64(), body["type"].as_str().unwrap_or("").to_string(), retry)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    answers
}

/// How many of a burst's answers were 503 `overloaded` (with Retry-After:
/// 1); every other one must be the 401 of a wrong login.
fn refused(answers: &[(Option<u64>, String, Option<String>)]) -> usize {
    let mut overloaded = 0;
    for (status, kind, retry) in answers {
        match status {
            Some(503) => {
                assert_eq!(kind, "urn:latch:problem:overloaded");
                assert_eq!(retry.as_deref(), Some("1"));
                overloaded += 1;
            }
            other => assert_eq!(*other, Some(401), "{kind}"),
        }
    }
    overloaded
}

const SLOW_HASHES: &str = "\n[passwords]\nargon2 = { memory_kib = 65536, iterations = 1, parallelism = 1 }\n";

#[tokio::test]
async fn a_full_hash_queue_answers_503_overloaded() {
    // Twice what the pool holds (a queue per core plus the one each thread
    // is hashing), whatever the number of cores; the wait allowed is the
    // longest there is, so only the queue's size refuses.
    let d = Latchd::start_with(&base_config(&format!("{SLOW_HASHES}max_queue_wait = \"60s\"\n"))).await;
    let cores = std::thread::available_parallelism().unwrap().get();
    let burst = 2 * cores * (latch::auth::HASH_QUEUE_PER_CORE + 1);
    let overloaded = refused(&login_burst(&d, burst).await);
    assert!(overloaded > 0, "{burst} concurrent slow hashes must overflow the queue");
}

/// A reload from the longest `max_queue_wait` to "0s" turns a burst of
/// three checks per core, taken whole before, into one where a check is
/// admitted only while a hashing thread is free and the surplus is refused.
#[tokio::test]
async fn checks_that_would_wait_past_max_queue_wait_are_refused_at_once() {
    let wait = |w: &str| base_config(&format!("{SLOW_HASHES}max_queue_wait = \"{w}\"\n"));
    let d = Latchd::start_with(&wait("60s")).await;
    let burst = 3 * std::thread::available_parallelism().unwrap().get();
    assert_eq!(refused(&login_burst(&d, burst).await), 0, "60 s absorbs {burst}");
    write_config(d.dir.path(), &wait("0s"));
    d.signal(libc::SIGHUP);
    wait_until("reload", || d.log().contains("config reloaded")).await;
    let overloaded = refused(&login_burst(&d, burst).await);
    assert!(overloaded > 0 && overloaded < burst, "{overloaded} of {burst} refused");
}

/// Once no hash has come for two seconds the pool frees every thread's
/// argon2 memory, not only the memory of the thread waiting on the queue
/// (which alone learns the pool went idle; another thread could free its
/// own only after it took the queue and waited two seconds more): with
/// 64 MiB hashes a workspace kept by any thread is plain in the heap.
#[tokio::test]
async fn an_idle_hashing_pool_frees_every_threads_memory() {
    let d = Latchd::start_with(&base_config(&format!("{SLOW_HASHES}max_queue_wait = \"60s\"\n"))).await;
    let burst = 3 * std::thread::available_parallelism().unwrap().get();
    assert_eq!(refused(&login_burst(&d, burst).await), 0, "every thread hashed");
    let mut heap_kib = 0;
    for _ in 0..35 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap().to_string();
        heap_kib = line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap();
        if heap_kib < 32 * 1024 {
            return;
        }
    }
    panic!("heap {heap_kib} KiB 3.5 s after the last hash: a 64 MiB workspace is still held");
}

/// After `[passwords].argon2` changes, accounts keep their old hashes until
/// they log in, and a wrong password for them is verified with the old
/// parameters; the dummy hash for unknown emails follows the stored
/// majority, so both take the same time.
#[tokio::test]
async fn the_dummy_hash_follows_the_parameters_most_stored_hashes_use() {
    let weak = "\n[passwords]\nargon2 = { memory_kib = 8192, iterations = 1, parallelism = 1 }\n";
    let d = Latchd::start_with(&base_config(weak)).await;
    for who in ["ann", "bob", "cy"] {
        let body = json!({"email": format!("{who}@example.test"), "password": PASSWORD});
        assert_eq!(d.post("/v1/auth/register", body).await.status(), 202);
    }
    let dir = d.stop_keep_dir();
    write_config(dir.path(), &base_config(""));
    let d = Latchd::start_in(dir).await;
    let res = d.post("/v1/auth/login", json!({"email": "nobody@example.test", "password": PASSWORD})).await;
    assert_eq!(res.status(), 401);
    let log = d.log_with("dummy hash follows").await;
    let line = log.lines().find(|l| l.contains("dummy hash follows")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains(r#""memory_kib":8192"#) && line.contains(r#""stored_hashes":3"#), "{line}");
}

/// Each thread of `pid`: its name and its niceness (`/proc`, field 19).
fn niceness_by_thread(pid: i32) -> Vec<(String, i64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let stat = |t: std::fs::DirEntry| std::fs::read_to_string(t.path().join("stat")).ok();
    let parse = |s: String| {
        let (name, rest) = s.split_once(" (")?.1.rsplit_once(") ")?;
        Some((name.to_string(), rest.split(' ').nth(16)?.parse().ok()?))
    };
    tasks.flatten().filter_map(stat).filter_map(parse).collect()
}

/// A login flood must not slow every other call: the hashing threads run
/// ten steps nicer than the threads that answer requests and commit (the
/// daemon's own niceness, 0 unless the test runner's is not), so the
/// scheduler serves a refresh first when both want a core.
#[tokio::test]
async fn hashing_threads_yield_the_cores_to_request_handling() {
    let d = Latchd::start().await;
    let mut threads = Vec::new();
    for _ in 0..50 {
        threads = niceness_by_thread(d.pid());
        let main = threads.iter().find(|(n, _)| n == "latchd").map(|t| t.1).expect("the main thread");
        let hashing: Vec<i64> =
            threads.iter().filter(|(n, _)| n.starts_with("latch-hash")).map(|t| t.1).collect();
        if !hashing.is_empty() && hashing.iter().all(|nice| *nice == (main + 10).min(19)) {
            let serving = threads.iter().filter(|(n, _)| n.starts_with("actix") || n == "latch-writer");
            assert!(serving.clone().count() >= 2, "{threads:?}");
            assert!(serving.into_iter().all(|(_, nice)| *nice == main), "{threads:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("the hashing threads did not lower their priority: {threads:?}");
}
