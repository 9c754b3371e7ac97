//! Backups and restore as an operator meets them: scheduled and on-demand
//! online backups taken while writes go on, checked, compressed, listed and
//! pruned; a restore that refuses while latchd runs, refuses to undo a
//! later security change unless told to, voids every session, keeps the
//! replaced database, and leaves a database latchd starts on, even when
//! killed before its last step.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::admin_api::{admin_daemon, ok_json};
use crate::admin_cli::latchctl_on;
use crate::flows::{PASSWORD, login, metric};
use crate::harness::{Latchd, base_config, write_config};
use crate::tokens::header_of;

/// The roles (`r<N>`) a database holds, as numbers, sorted.
fn roles_in(conn: &rusqlite::Connection) -> Vec<usize> {
    let mut stmt = conn.prepare("SELECT name FROM roles WHERE name LIKE 'r%'").unwrap();
    let mut found: Vec<usize> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .filter_map(|n| n.ok()?.strip_prefix('r')?.parse().ok())
        .collect();
    found.sort_unstable();
    found
}

/// Unpacks a backup with the zstd library (not latch's code) and opens it.
fn unpack(file: &Path, into: &Path) -> rusqlite::Connection {
    let bytes = zstd::decode_all(std::fs::File::open(file).unwrap()).unwrap();
    std::fs::write(into, bytes).unwrap();
    rusqlite::Connection::open(into).unwrap()
}

pub(crate) fn ctl(state: &Path, args: &[&str]) -> std::process::Output {
    latchctl_on(state, args)
}

/// Creates roles r0, r1, … one after another until `stop`; counts the
/// acknowledged ones in `acked`.
fn role_load(
    d: &Latchd,
    admin: &str,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    let (client, url, admin) = (d.client(), d.https_url("/v1/admin/roles"), admin.to_string());
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            let n = acked.load(Ordering::SeqCst);
            let res =
                client.post(&url).bearer_auth(&admin).json(&json!({ "name": format!("r{n}") })).send().await;
            assert_eq!(res.unwrap().status(), 201);
            acked.fetch_add(1, Ordering::SeqCst);
        }
    })
}

#[tokio::test]
async fn a_backup_taken_during_writes_holds_every_acknowledged_row_and_is_pruned_by_keep() {
    let (d, admin) = admin_daemon("\n[backup]\ninterval = \"1s\"\nkeep = 3\n", &[]).await;
    let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let load = role_load(&d, &admin, Arc::clone(&stop), Arc::clone(&acked));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked_before = acked.load(Ordering::SeqCst);
    let state = d.state_dir();
    let out = tokio::task::spawn_blocking(move || ctl(&state, &["backup", "now"])).await.unwrap();
    let acked_after = acked.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(file.starts_with(d.state_dir().join("backups")), "{file:?}");

    let scratch = tempfile::tempdir().unwrap();
    let copy = unpack(&file, &scratch.path().join("copy.db"));
    let ok: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let in_backup = roles_in(&copy);
    assert!(in_backup.len() >= acked_before, "every role acknowledged before the backup is in it");
    assert!(in_backup.len() <= acked_after + 1, "nothing from after it");
    assert_eq!(in_backup, (0..in_backup.len()).collect::<Vec<_>>(), "one consistent snapshot: no gaps");
    assert_eq!(roles_in(&d.db()).len(), acked.load(Ordering::SeqCst), "the live database has the rest");
    assert!(acked.load(Ordering::SeqCst) > in_backup.len(), "writes went on past the backup");

    // The master key is a file apart: no backup holds it, raw or in hex.
    let key = std::fs::read(d.state_dir().join("keys/master.key")).unwrap();
    let plain = std::fs::read(scratch.path().join("copy.db")).unwrap();
    let needle = String::from_utf8_lossy(&key).trim().to_string();
    assert!(needle.len() >= 32 && !plain.windows(needle.len()).any(|w| w == needle.as_bytes()));

    let verified = ctl(&d.state_dir(), &["backup", "verify", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success() && text.contains(": ok (schema"), "{text}");
    let mut damaged = std::fs::read(&file).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    let bad = scratch.path().join("bad.db.zst");
    std::fs::write(&bad, damaged).unwrap();
    let refused = ctl(&d.state_dir(), &["backup", "verify", bad.to_str().unwrap()]);
    assert!(!refused.status.success(), "a flipped byte fails verification");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("damaged, it does not decompress"), "{said}");
    // A file that never was a backup (the live database, say) is called so.
    let live = d.state_dir().join("latch.db");
    let refused = ctl(&d.state_dir(), &["backup", "verify", live.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && said.contains("latch.db: not a latch backup"), "{said}");
    assert_eq!(said.trim_end().lines().count(), 1, "{said}");

    // Scheduled every second, kept to three. A loaded CI machine (a debug
    // build, the whole suite beside it) may take over a second per backup,
    // so wait for the schedule to have run three more times, not a fixed 4 s.
    let names = scheduled_until_gone(&d, &file, 3, Duration::from_secs(30)).await;
    assert!(names.len() == 3, "pruned to keep = 3: {names:?}");
    assert!(!names.contains(&file.to_string_lossy().into_owned()), "the oldest went first: {names:?}");
    assert!(metric(&d, "latch_backup_last_success_timestamp_seconds").await > 1.7e9);
    assert!(metric(&d, "latch_backup_size_bytes").await > 0.0);
    d.log_with("backup taken and verified").await;
}

/// The listed backups, once `gone` is no longer among them and pruning has
/// caught up to `keep` (or `within` has passed: the caller asserts).
async fn scheduled_until_gone(d: &Latchd, gone: &Path, keep: usize, within: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let listed = ok_json(ctl(&d.state_dir(), &["--json", "backup", "list"]));
        let names: Vec<String> =
            listed.as_array().unwrap().iter().map(|l| l["path"].as_str().unwrap().to_string()).collect();
        let settled = names.len() == keep && !names.iter().any(|n| Path::new(n) == gone);
        if settled || std::time::Instant::now() > deadline {
            return names;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn count(conn: &rusqlite::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn a_restore_refuses_to_undo_a_password_change_unless_told_and_voids_every_session() {
    let (d, admin) = admin_daemon("", &[]).await;
    let body = json!({"email": "kim@example.test", "password": PASSWORD, "email_verified": true});
    let res =
        d.client().post(d.https_url("/v1/admin/users")).bearer_auth(&admin).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let kim = login(&d, "kim@example.test", PASSWORD).await;
    let out = ctl(&d.state_dir(), &["backup", "now"]);
    let file = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (users_at_backup, audit_at_backup) =
        (count(&d.db(), "SELECT count(*) FROM users"), count(&d.db(), "SELECT max(id) FROM audit_log"));

    // After the backup: a password change (tightening) and a new role.
    let new_password = "a completely different passphrase";
    let change = json!({"current_password": PASSWORD, "new_password": new_password});
    let res = d.post_auth("/v1/auth/password/change", kim["access_token"].as_str().unwrap(), change).await;
    assert_eq!(res.status(), 200);
    let res = d.post_auth("/v1/admin/roles", &admin, json!({"name": "later"})).await;
    assert_eq!(res.status(), 201);
    // And a move off an address the person may no longer hold.
    let access = kim["access_token"].as_str().unwrap();
    let move_to = json!({"password": new_password, "new_email": "kim@new.example"});
    assert_eq!(d.post_auth("/v1/auth/email/change", access, move_to).await.status(), 202);
    let mails = d.state_dir().join("mail");
    let link = crate::mail::wait_for_file_with(&mails, "To: kim@new.example").await;
    let res = d.post("/v1/auth/verify-email", json!({"token": crate::mail::token_in(&link)})).await;
    assert_eq!(res.status(), 200);

    let running = ctl(&d.state_dir(), &["backup", "restore", &file]);
    assert!(!running.status.success());
    assert!(String::from_utf8_lossy(&running.stderr).contains("stop it first"));

    let state = d.state_dir();
    let dir = d.stop_keep_dir();
    let refused = ctl(&state, &["backup", "restore", &file]);
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{why}");
    assert!(why.contains("password_changed") && why.contains("--accept-rollback"), "{why}");
    let live = rusqlite::Connection::open(state.join("latch.db")).unwrap();
    assert_eq!(count(&live, "SELECT count(*) FROM roles WHERE name = 'later'"), 1, "nothing was changed");
    drop(live);

    let restored = ok_json(ctl(&state, &["--json", "backup", "restore", &file, "--accept-rollback"]));
    let undone: Vec<&str> =
        restored["rolled_back"].as_array().unwrap().iter().map(|t| t["action"].as_str().unwrap()).collect();
    assert_eq!(undone, ["password_changed", "email_changed"], "{restored}");
    assert!(restored["voided"]["refresh_tokens"].as_u64() >= Some(2), "{restored}");
    let aside = PathBuf::from(restored["replaced_kept_at"].as_str().unwrap());
    let old = rusqlite::Connection::open(&aside).unwrap();
    assert_eq!(
        count(&old, "SELECT count(*) FROM roles WHERE name = 'later'"),
        1,
        "the replaced database is kept whole"
    );

    let d = Latchd::start_in(dir).await;
    let db = d.db();
    assert_eq!(count(&db, "SELECT count(*) FROM users"), users_at_backup, "every user of the backup");
    assert_eq!(count(&db, "SELECT count(*) FROM roles WHERE name = 'later'"), 0, "nothing after it");
    assert_eq!(count(&db, "SELECT count(*) FROM sessions WHERE revoked_at IS NULL"), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM audit_log WHERE action = 'backup_restored'"), 1);
    assert!(count(&db, "SELECT max(id) FROM audit_log") > audit_at_backup);
    let res = d.post("/v1/auth/refresh", json!({"refresh_token": kim["refresh_token"]})).await;
    assert_eq!(res.status(), 401, "a refresh token from before the restore is void");
    let again: Value = login(&d, "kim@example.test", PASSWORD).await;
    assert!(again["access_token"].is_string(), "the backup's password is the one in force");
    let verify = ok_json(ctl(&d.state_dir(), &["--json", "audit", "verify"]));
    assert_eq!(verify["ok"], true, "the audit chain goes on unbroken: {verify}");
}

#[tokio::test]
async fn a_damaged_backup_is_refused_before_anything_changes() {
    let (d, _admin) = admin_daemon("", &[]).await;
    let file = String::from_utf8(ctl(&d.state_dir(), &["backup", "now"]).stdout).unwrap().trim().to_string();
    let state = d.state_dir();
    let _dir = d.stop_keep_dir();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&file, bytes).unwrap();
    let before = std::fs::read(state.join("latch.db")).unwrap();
    let out = ctl(&state, &["backup", "restore", &file, "--accept-rollback"]);
    assert!(!out.status.success());
    let why = String::from_utf8_lossy(&out.stderr);
    assert_eq!(why.trim().lines().count(), 1, "one line: {why}");
    assert!(why.contains("damaged, it does not decompress"), "{why}");
    assert_eq!(std::fs::read(state.join("latch.db")).unwrap(), before, "the live database is untouched");
    let leftovers: Vec<_> = std::fs::read_dir(&state).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!leftovers.iter().any(|n| n.to_string_lossy().contains("restoring")), "{leftovers:?}");
}

/// A restore cut short just before it puts the restored copy in place (a
/// kill, a power cut) leaves `latch.db` the database it was, not a gap
/// that latchd would fill with a new, empty database; run again, the
/// restore completes and the first attempt's kept copy stays.
#[tokio::test]
async fn a_restore_killed_before_its_last_step_leaves_the_database_it_was() {
    let (d, admin) = admin_daemon("", &[]).await;
    let state = d.state_dir();
    let file = String::from_utf8(ctl(&state, &["backup", "now"]).stdout).unwrap().trim().to_string();
    create_roles(&d, &admin, &["p1"]).await;
    let dir = d.stop_keep_dir();
    let mut restore = std::process::Command::new(crate::admin_cli::LATCHCTL)
        .arg("--state-dir")
        .arg(&state)
        .args(["backup", "restore", &file, "--accept-rollback"])
        .env_remove("LATCH_CONFIG")
        .env("LATCH_TEST_PAUSE", "restore_swap:10000")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let kept = || {
        std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("latch.db.replaced-") && !name.ends_with("-wal"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while kept() == 0 {
        assert!(std::time::Instant::now() < deadline, "the restore never reached its last step");
        std::thread::sleep(Duration::from_millis(10));
    }
    restore.kill().unwrap();
    restore.wait().unwrap();
    let d = Latchd::start_in(dir).await;
    assert_eq!(pq_roles(&d), ["p1"], "the database as it was before the restore");
    login(&d, "root@example.test", PASSWORD).await;
    let dir = d.stop_keep_dir();
    ok_json(ctl(&state, &["--json", "backup", "restore", &file, "--accept-rollback"]));
    assert_eq!(kept(), 2, "each attempt's copy kept");
    let d = Latchd::start_in(dir).await;
    assert!(pq_roles(&d).is_empty(), "restored to before the role");
}

/// Creates roles named `names` as the admin.
pub(crate) async fn create_roles(d: &Latchd, admin: &str, names: &[&str]) {
    for name in names {
        let res = d.post_auth("/v1/admin/roles", admin, json!({ "name": name })).await;
        assert_eq!(res.status(), 201);
    }
}

/// The roles named a letter p or q and a digit, sorted.
pub(crate) fn pq_roles(d: &Latchd) -> Vec<String> {
    let db = d.db();
    let mut stmt = db.prepare("SELECT name FROM roles WHERE name GLOB '[pq][0-9]' ORDER BY name").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

#[tokio::test]
async fn a_restore_to_a_time_brings_back_exactly_the_rows_committed_by_then() {
    let (d, admin) = admin_daemon("", &[]).await;
    create_roles(&d, &admin, &["p1", "p2", "p3"]).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let t = now.format(&time::format_description::well_known::Rfc3339).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    create_roles(&d, &admin, &["q1", "q2"]).await;
    let generations: Vec<PathBuf> =
        std::fs::read_dir(d.state_dir().join("archive")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(generations.len(), 1, "{generations:?}");
    let files = std::fs::read_dir(&generations[0]).unwrap().count();
    assert!(files >= 3, "a snapshot and segments: {files}");
    let metrics = d.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("latch_wal_archive_lag_seconds 0"), "caught up");

    let state = d.state_dir();
    let dir = d.stop_keep_dir();
    let too_early = ctl(&state, &["backup", "restore", "--to-time", "2001-01-01T00:00:00Z"]);
    let why = String::from_utf8_lossy(&too_early.stderr);
    assert!(!too_early.status.success() && why.contains("no WAL archive generation"), "{why}");
    // The refusal says how far back the archive does reach: the second its
    // generation began in, which restores (`--to-time` counts all of it).
    let name = generations[0].file_name().unwrap().to_string_lossy().into_owned();
    let started_ms: i64 = name.strip_prefix("gen-").unwrap().parse().unwrap();
    let reach = time::OffsetDateTime::from_unix_timestamp(started_ms.div_euclid(1000)).unwrap();
    let reach = reach.format(&time::format_description::well_known::Rfc3339).unwrap();
    assert!(why.contains(&format!("; it reaches back to {reach}")), "{why}");
    ok_json(ctl(&state, &["--json", "backup", "restore", "--to-time", &reach]));
    let restored = ok_json(ctl(&state, &["--json", "backup", "restore", "--to-time", &t]));
    assert!(restored["replayed"]["segments"].as_u64() > Some(0), "{restored}");
    assert!(restored["replayed"]["through"].as_str().unwrap() <= t.as_str(), "{restored}");
    // A while ago: an hour back is before this archive began.
    let an_hour_ago = ctl(&state, &["backup", "restore", "--to-time", "1h"]);
    let why = String::from_utf8_lossy(&an_hour_ago.stderr);
    assert!(!an_hour_ago.status.success() && why.contains("no WAL archive generation"), "{why}");
    let d = Latchd::start_in(dir).await;
    assert_eq!(pq_roles(&d), ["p1", "p2", "p3"], "exactly the rows committed by {t}");
    let ok: String = d.db().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
}

/// Waits until the wall clock reads `at` (Unix seconds, fractional).
async fn sleep_until_unix(at: f64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64((at - now).max(0.0))).await;
}

/// Segments keep only the last version of each page their batches wrote;
/// under a steady write load (the roles table's last leaf rewritten by
/// every batch) a restore to a moment in the middle must still be a whole,
/// gap-free database holding what was committed by then.
#[tokio::test]
async fn a_restore_to_a_moment_inside_a_write_load_is_whole_and_gap_free() {
    // A generation a second: snapshots are taken (by the archive thread)
    // while the load goes on, and the restore starts from one of them.
    let (d, admin) = admin_daemon("\n[backup]\ninterval = \"1s\"\nkeep = 3\n", &[]).await;
    let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let load = role_load(&d, &admin, Arc::clone(&stop), Arc::clone(&acked));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let t = now as f64 + 2.0;
    // A segment is named by its last commit: commits up to ~100 ms before
    // `t` may share one with commits after it, so the lower bound is taken
    // well before.
    sleep_until_unix(t - 1.0).await;
    let surely_in = acked.load(Ordering::SeqCst);
    // `--to-time` names a whole second: every commit within it counts.
    // The load stops soon after, so that of the three newest generations
    // (`keep`) one still starts by `t`.
    sleep_until_unix(t + 1.1).await;
    let at_most = acked.load(Ordering::SeqCst);
    sleep_until_unix(t + 1.2).await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    let state = d.state_dir();
    let dir = d.stop_keep_dir();
    let generations: Vec<PathBuf> =
        std::fs::read_dir(state.join("archive")).unwrap().flatten().map(|e| e.path()).collect();
    assert!((2..=3).contains(&generations.len()), "a new one each second, pruned to keep: {generations:?}");
    assert!(generations.iter().all(|g| g.join("snapshot.db.zst").exists()), "{generations:?}");
    let to = time::OffsetDateTime::from_unix_timestamp(t as i64).unwrap();
    let to = to.format(&time::format_description::well_known::Rfc3339).unwrap();
    ok_json(ctl(&state, &["--json", "backup", "restore", "--to-time", &to]));
    let db = rusqlite::Connection::open(state.join("latch.db")).unwrap();
    let ok: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let restored = roles_in(&db);
    assert_eq!(restored, (0..restored.len()).collect::<Vec<_>>(), "a prefix of the load, no gaps");
    assert!(
        restored.len() >= surely_in,
        "{} roles; {surely_in} were acknowledged 1 s before",
        restored.len()
    );
    assert!(restored.len() <= at_most, "{} roles; only {at_most} by 1.1 s after", restored.len());
    drop(dir);
}

#[tokio::test]
async fn a_clean_stop_archives_the_commits_of_its_last_moments() {
    let (d, admin) = admin_daemon("", &[]).await;
    // A burst acknowledged just before SIGTERM: its frames are still on
    // their way to the archive thread when the stop begins.
    let names: Vec<String> = (0..20).map(|i| format!("last{i:02}")).collect();
    let calls = names.iter().map(|n| d.post_auth("/v1/admin/roles", &admin, json!({ "name": n })));
    for res in futures_util::future::join_all(calls).await {
        assert_eq!(res.status(), 201);
    }
    let state = d.state_dir();
    let dir = d.stop_keep_dir();
    let now = time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let t =
        now.replace_nanosecond(0).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap();
    let restored = ok_json(ctl(&state, &["--json", "backup", "restore", "--to-time", &t]));
    assert!(restored["replayed"]["segments"].as_u64() > Some(0), "{restored}");
    let d = Latchd::start_in(dir).await;
    let found: i64 = d
        .db()
        .query_row("SELECT COUNT(*) FROM roles WHERE name GLOB 'last[0-9][0-9]'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(found, 20, "every role acknowledged before the stop is in the archive");
}

/// Run as root, a restore acts as the state directory's owner: every file
/// it leaves is that user's, so an unprivileged latchd can open them.
#[tokio::test]
async fn a_restore_leaves_files_to_the_state_directorys_owner_as_root() {
    use std::os::unix::fs::MetadataExt;
    assert!(nix::unistd::Uid::effective().is_root(), "needs root to run latchctl as root for another owner");
    let (d, _admin) = admin_daemon("", &[]).await;
    let file = String::from_utf8(ctl(&d.state_dir(), &["backup", "now"]).stdout).unwrap().trim().to_string();
    let state = d.state_dir();
    let _dir = d.stop_keep_dir();
    let nobody = 65534;
    let chown =
        std::process::Command::new("chown").arg("-R").arg("65534:65534").arg(&state).status().unwrap();
    assert!(chown.success());
    let restored = ok_json(ctl(&state, &["--json", "backup", "restore", &file]));
    let aside = PathBuf::from(restored["replaced_kept_at"].as_str().unwrap());
    for path in [state.join("latch.db"), aside] {
        assert_eq!(std::fs::metadata(&path).unwrap().uid(), nobody, "{path:?}");
    }
}

/// Taking a backup is not cut off by `[http].request_timeout`, and
/// `latchctl backup now` waits for it: a database large enough to take
/// longer than the timeout still gets its backup and the path.
#[tokio::test]
async fn backup_now_outlasts_the_request_timeout() {
    let slow = [("LATCH_TEST_PAUSE", "backup_taking:2500")];
    let (d, _) = admin_daemon("\n[http]\nrequest_timeout = \"1s\"\n", &slow).await;
    let (state, started) = (d.state_dir(), std::time::Instant::now());
    let out = tokio::task::spawn_blocking(move || ctl(&state, &["backup", "now"])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() >= Duration::from_millis(2500), "it went through the pause");
    let file = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(file.is_file(), "{file:?}");
}

/// Like `role_load`, but ends quietly at the first request that fails (the
/// daemon was killed under it).
fn role_load_until_gone(d: &Latchd, admin: &str, acked: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
    let (client, url, admin) = (d.client(), d.https_url("/v1/admin/roles"), admin.to_string());
    tokio::spawn(async move {
        loop {
            let n = acked.load(Ordering::SeqCst);
            let body = json!({ "name": format!("r{n}") });
            match client.post(&url).bearer_auth(&admin).json(&body).send().await {
                Ok(res) if res.status() == 201 => acked.fetch_add(1, Ordering::SeqCst),
                _ => return,
            };
        }
    })
}

/// A standby host: the primary's config and master key (as `keys
/// export-master` printed it), no database.
fn standby_with_key(master_key_hex: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &base_config("\n[accounts]\nregistration = \"closed\"\n"));
    let keys = dir.path().join("state/keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::set_permissions(dir.path().join("state"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(keys.join("master.key"), master_key_hex).unwrap();
    std::fs::set_permissions(keys.join("master.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    dir
}

/// The failover README describes: the primary archives onto a disk a
/// standby can read and dies mid-load (SIGKILL); the standby, holding only
/// the config and the master key, restores the archive to now and starts.
/// It holds a gap-free prefix of the load with everything acknowledged two
/// seconds before the kill (segments go out ten times a second, but a CI
/// machine running two test suites at once once lagged just over one), and
/// signs with the primary's key, so tokens apps verify against a cached
/// JWKS keep verifying.
#[tokio::test]
async fn a_standby_takes_over_from_the_archive_of_a_primary_killed_under_load() {
    let other_disk = tempfile::tempdir().unwrap();
    let archive = other_disk.path().join("archive");
    let (primary, admin) =
        admin_daemon(&format!("\n[backup]\narchive_dir = \"{}\"\n", archive.display()), &[]).await;
    let key = String::from_utf8(ctl(&primary.state_dir(), &["keys", "export-master"]).stdout).unwrap();
    let signing_kid = header_of(&admin)["kid"].as_str().unwrap().to_string();
    let acked = Arc::new(AtomicUsize::new(0));
    let load = role_load_until_gone(&primary, &admin, Arc::clone(&acked));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let surely_archived = acked.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_kill = acked.load(Ordering::SeqCst);
    let _dead = primary.kill_keep_dir();
    load.await.unwrap();
    let acked = acked.load(Ordering::SeqCst);

    let standby = standby_with_key(&key);
    let state = standby.path().join("state");
    let now = time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let t =
        now.replace_nanosecond(0).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap();
    let restored =
        ok_json(ctl(&state, &["--json", "backup", "restore", archive.to_str().unwrap(), "--to-time", &t]));
    assert!(restored["replayed"]["segments"].as_u64() > Some(0), "{restored}");
    let d = Latchd::start_in(standby).await;
    let roles = roles_in(&d.db());
    assert_eq!(roles, (0..roles.len()).collect::<Vec<_>>(), "a prefix of the load, no gaps");
    assert!(
        roles.len() >= surely_archived,
        "{} roles; {surely_archived} acknowledged 2 s before the kill",
        roles.len()
    );
    // A request in flight at the kill may have committed unanswered.
    assert!(roles.len() <= acked + 1, "{} roles; {acked} acknowledged", roles.len());
    eprintln!("failover: {at_kill} acknowledged at the kill, {} on the standby", roles.len());
    let token = login(&d, "root@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    assert_eq!(header_of(&token)["kid"], signing_kid, "the primary's signing key");
}

/// With the WAL archive off, `status` without a daemon says so, not only
/// that the archive folder holds nothing.
#[tokio::test]
async fn status_without_a_daemon_tells_an_archive_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &base_config("\n[backup]\nwal_archive = false\n"));
    let d = Latchd::start_in(dir).await;
    let state = d.state_dir();
    let _dir = d.stop_keep_dir();
    let config = config.display().to_string();
    let out = ctl(&state, &["--config", &config, "status"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("WAL archive  off ([backup].wal_archive = false); none in"), "{said}");
    let out = ctl(&state, &["--config", &config, "--json", "status"]);
    let said: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((said["running"].clone(), said["archive"]["enabled"].clone()), (json!(false), json!(false)));
}
