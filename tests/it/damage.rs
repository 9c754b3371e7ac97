//! A damaged database file as an operator meets it (a failing disk, a
//! file written over by something else): latchd will not start on it and
//! says which file and which restore mends it; damage it can serve around
//! is told once when read, in a gauge and by `status`, and the WAL archive
//! keeps its generation from before it; a backup of it fails saying the
//! live file is damaged; `db check` names the restore; the restore brings
//! every account back, says what it could not compare, and keeps the
//! replaced file with its WAL.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::admin_api::admin_daemon;
use crate::admin_cli::latchctl_on;
use crate::flows::{PASSWORD, login};
use crate::harness::Latchd;

/// A database SQLite finds damaged is not served: latchd's start ends
/// naming the file and the restore that mends it, and that restore (the
/// WAL archive up to its last commit) brings every account back, saying
/// it could not list what the damaged file held rather than "0 changes
/// undone". Both kinds: a damaged schema page, and no database at all.
#[tokio::test]
async fn a_damaged_database_is_refused_at_start_and_mended_by_the_restore_it_names() {
    let (d, _) = admin_daemon("", &[]).await;
    let (state, db) = (d.state_dir(), d.state_dir().join("latch.db"));
    let page: i64 = d.db().query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    let mut dir = d.stop_keep_dir();
    // The schema's page past the file header, then the header itself.
    let damages =
        [(100, vec![0xff; page as usize - 100]), (0, b"no SQLite database, a note saved over it".to_vec())];
    for (at, bytes) in damages {
        write_over(&db, at, &bytes);
        let said = failed_start(dir.path());
        let way_out = format!(
            "latchd: {} is damaged; `latchctl db check` shows where; `latchctl backup restore --to-time \
             0s` rebuilds it from the WAL archive up to its last commit",
            db.display()
        );
        assert!(said.lines().last().unwrap_or_default().starts_with(&way_out), "at {at}: {said}");
        // The damage is the check's finding, not an error of its own.
        let checked = latchctl_on(&state, &["db", "check"]);
        let found = String::from_utf8_lossy(&checked.stdout);
        assert!(!checked.status.success() && found.starts_with("integrity "), "at {at}: {checked:?}");
        assert!(found.trim_end().ends_with(RESTORE_TOLD), "at {at}: {found}");
        let restored = latchctl_on(&state, &["backup", "restore", "--to-time", "0s"]);
        let told = String::from_utf8_lossy(&restored.stdout);
        let unknown =
            "the replaced database could not be read, so changes it held after the backup are not listed";
        assert!(restored.status.success() && told.trim_end().ends_with(unknown), "at {at}: {restored:?}");
        let d = Latchd::start_in(dir).await;
        login(&d, "root@example.test", PASSWORD).await;
        dir = d.stop_keep_dir();
    }
}

/// Without the WAL archive the way out named, at the start and by `db
/// check`, is a backup: there is no archive to rebuild from.
#[tokio::test]
async fn without_the_archive_the_way_out_named_is_a_backup() {
    let (d, _) = admin_daemon("\n[backup]\nwal_archive = false\n", &[]).await;
    let db = d.state_dir().join("latch.db");
    let dir = d.stop_keep_dir();
    write_over(&db, 0, b"no SQLite database, a note saved over it");
    let from_a_backup = "`latchctl backup restore FILE` puts a backup in its place (`latchctl backup list` \
                         shows them)";
    let said = failed_start(dir.path());
    assert!(said.contains(from_a_backup) && !said.contains("--to-time"), "{said}");
    // As an operator runs it: the config tells that the archive is off.
    let config = dir.path().join("latch.toml");
    let checked = std::process::Command::new(crate::admin_cli::LATCHCTL)
        .arg("--config")
        .arg(&config)
        .args(["db", "check"])
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&checked.stdout);
    assert!(found.trim_end().ends_with(&format!("damaged: {from_a_backup}")), "{found}");
}

/// The restore keeps the damaged file it replaces for whoever would read
/// what they can of it, and keeps it with its WAL: when SQLite cannot fold
/// the WAL into a file whose first page is damaged, commits since the last
/// checkpoint are only there.
#[tokio::test]
async fn the_damaged_file_a_restore_replaces_is_kept_with_its_wal() {
    let (d, _) = admin_daemon("", &[]).await;
    let (state, db) = (d.state_dir(), d.state_dir().join("latch.db"));
    let _dir = d.kill_keep_dir();
    // A commit after a checkpoint that touches no first page, its
    // connection never closed (a crash): the WAL holds it alone.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); UPDATE users SET name = 'Root'").unwrap();
    std::mem::forget(conn);
    let wal = std::fs::read(state.join("latch.db-wal")).unwrap();
    assert!(!wal.is_empty(), "the last commit is in the WAL");
    write_over(&db, 0, b"no SQLite database, a note saved over it");
    let restored = latchctl_on(&state, &["backup", "restore", "--to-time", "0s"]);
    assert!(restored.status.success(), "{restored:?}");
    let kept: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("latch.db.replaced-"))
        .collect();
    assert_eq!(kept.len(), 2, "the file and its WAL: {kept:?}");
    let kept_wal = kept.iter().find(|name| name.ends_with("-wal")).expect("the WAL kept");
    assert_eq!(std::fs::read(state.join(kept_wal)).unwrap(), wal, "the WAL as the crash left it");
}

/// A WAL-archive generation begun on a damaged file copies the damage,
/// and each new one prunes the oldest: with the damage known, none is
/// pruned and none begins beside the current one, so the generation from
/// before the damage stays for the restore that mends it (here `keep` is
/// 1, and a generation is due every second).
#[tokio::test]
async fn the_archive_keeps_its_generation_from_before_the_damage() {
    let (d, _) = admin_daemon("\n[backup]\ninterval = \"1s\"\nkeep = 1\n", &[]).await;
    let (d, stopped) = damaged_under_the_archive(d, "users").await;
    let told = "WAL archive: the database is damaged; no new generation begins on it";
    assert!(d.log().contains(told), "{}", d.log());
    // A backup is due every second too: each would copy the whole damaged
    // file to fail its check again. At most the one that met the damage
    // first fails; the rest are held, said once.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let log = d.log();
    assert!(log.matches("backup failed").count() <= 1, "{log}");
    assert_eq!(log.matches("scheduled backups are held: the database is damaged").count(), 1, "{log}");
    mended_from_the_archive(d.stop_keep_dir(), &stopped).await;
}

/// Damage no request has read yet (a table the start does not touch) is
/// met by the check of the snapshot that copies it: that generation
/// prunes none, so the whole one stays, the gauge the alert watches turns
/// 1 without waiting for a request or a backup to meet it, and `status`,
/// `backup list` and `db check` say the archive restores up to the moment
/// before that generation, which is what a restore to its last commit
/// names.
#[tokio::test]
async fn a_generation_that_copies_unread_damage_prunes_none() {
    let (d, _) = admin_daemon("\n[backup]\ninterval = \"1s\"\nkeep = 1\n", &[]).await;
    let (d, stopped) = damaged_under_the_archive(d, "recovery_codes").await;
    let log = d.log();
    let told =
        "WAL archive: the new generation's snapshot fails SQLite's integrity check; no generation is pruned";
    assert!(log.contains(told), "{log}");
    let copied = "is damaged: requests and backups that read its damaged pages fail";
    assert!(
        log.lines().any(|l| l.contains(copied) && l.contains("the WAL archive's new generation copied it"))
    );
    let page = d.get("/metrics").await.text().await.unwrap();
    assert!(page.lines().any(|l| l == "latch_db_damaged 1"), "the gauge the alert watches");
    let state = d.state_dir();
    let status: Value = serde_json::from_slice(&latchctl_on(&state, &["--json", "status"]).stdout).unwrap();
    let until =
        status["archive"]["restorable_until"].as_str().unwrap_or_else(|| panic!("{status}")).to_string();
    assert!(until >= stopped, "{until} reaches the last stop at {stopped}");
    let shown = String::from_utf8_lossy(&latchctl_on(&state, &["status"]).stdout).into_owned();
    let said = format!("to {until} (the newest generation copied a damaged database)");
    assert!(shown.lines().any(|l| l.starts_with("WAL archive") && l.contains(&said)), "{shown}");
    let dir = d.stop_keep_dir();
    let listed = String::from_utf8_lossy(&latchctl_on(&state, &["backup", "list"]).stdout).into_owned();
    let said = format!("until {until} (the newest generation copied a damaged database)");
    assert!(listed.contains(&said), "{listed}");
    let checked = latchctl_on(&state, &["db", "check"]);
    let found = String::from_utf8_lossy(&checked.stdout);
    let said = format!(
        "damaged: `latchctl backup restore --to-time {until}` rebuilds it from the WAL archive as \
                        it was then, before the archive's newest generation copied the damage"
    );
    assert!(!checked.status.success() && found.contains(&said), "{found}");
    let refused = refused_restore_to_the_last_commit(&state);
    let said = format!(
        "on a damaged database (its snapshot failed SQLite's integrity check), so nothing from \
                        then until a later generation began is restored whole; the latest moment before it \
                        that the archive restores is --to-time {until}; nothing was changed"
    );
    assert!(refused.trim_end().ends_with(&said), "{refused}");
    mended_from_the_archive(dir, &until).await;
}

/// The names of the WAL archive's generations under `state`, oldest first.
fn generations(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state.join("archive"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Stops `d` (archiving with `keep = 1` and a generation due each second)
/// once its archive holds one whole generation, writes over the root page
/// of `table`, and starts it again: the started daemon (after 3 s, in
/// which generations were due) and when the first stopped, as a
/// `--to-time`. The whole generation must still be there beside the one
/// the start began.
async fn damaged_under_the_archive(d: Latchd, table: &str) -> (Latchd, String) {
    let (state, db) = (d.state_dir(), d.state_dir().join("latch.db"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let sql = "SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM sqlite_master WHERE name = ?1";
    let (root, page): (i64, i64) = d.db().query_row(sql, [table], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    let dir = d.stop_keep_dir();
    let whole = generations(&state);
    assert_eq!(whole.len(), 1, "pruned to keep = 1 while whole: {whole:?}");
    let stopped = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let stopped = stopped.format(&time::format_description::well_known::Rfc3339).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    write_over(&db, ((root - 1) * page) as u64, &vec![0xff; page as usize]);
    let d = Latchd::start_in(dir).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let after = generations(&state);
    assert_eq!((after.len(), &after[0]), (2, &whole[0]), "the start's generation beside the whole one");
    (d, stopped)
}

/// Restores the database of the stopped daemon in `dir` from its WAL
/// archive as it was at `to_time`: the account made before comes back,
/// and logs in.
async fn mended_from_the_archive(dir: tempfile::TempDir, to_time: &str) {
    let state = dir.path().join("state");
    let restored = latchctl_on(&state, &["backup", "restore", "--to-time", to_time]);
    assert!(restored.status.success(), "{restored:?}");
    let d = Latchd::start_in(dir).await;
    login(&d, "root@example.test", PASSWORD).await;
}

/// The last line of `db check` on a damaged database.
const RESTORE_TOLD: &str = "damaged: `latchctl backup restore --to-time 0s` rebuilds it from the WAL archive up \
                            to its last commit, or `latchctl backup restore FILE` from a backup (`latchctl backup \
                            list` shows both)";

/// Writes `bytes` over the file at `db` from byte `at`, as a failing disk
/// or a stray program would.
fn write_over(db: &Path, at: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(bytes).unwrap();
}

/// `latchd serve` in `dir`, which must end (within 20 s) with exit 1: its
/// standard error.
fn failed_start(dir: &Path) -> String {
    let config = dir.join("latch.toml");
    let mut child = std::process::Command::new(crate::harness::LATCHD)
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("latchd started on the damaged database");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{said}");
    said
}

/// Damage in a table's page does not stop the start (what it reads there,
/// a count of stored hash parameters, it can do without) and is told when
/// first read: the log says once which file is damaged and what to do,
/// not again for each request answered 500 meanwhile, `latch_db_damaged`
/// turns from 0 to 1 for the alert, and `latchctl status` says DAMAGED.
/// The next backup, whose copy holds the same pages, fails naming the
/// live database as damaged, not its own temporary copy, and the backups
/// before it stay. A restore into the WAL archive's generation that began
/// on the damaged file is refused, naming the moment before it began,
/// which restores whole from the generation before.
#[tokio::test]
async fn damage_in_a_table_is_told_once_when_read_and_by_the_backup() {
    let (d, _) = admin_daemon("", &[]).await;
    let (state, db) = (d.state_dir(), d.state_dir().join("latch.db"));
    let gauge = |page: String| page.lines().find(|l| l.starts_with("latch_db_damaged ")).map(str::to_string);
    assert_eq!(gauge(d.get("/metrics").await.text().await.unwrap()).as_deref(), Some("latch_db_damaged 0"));
    let status: Value = serde_json::from_slice(&latchctl_on(&state, &["--json", "status"]).stdout).unwrap();
    assert_eq!(status["database"]["damaged"], false, "{status}");
    assert!(latchctl_on(&state, &["backup", "now"]).status.success());
    let sql =
        "SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM sqlite_master WHERE name = 'users'";
    let (root, page): (i64, i64) = d.db().query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    let dir = d.stop_keep_dir();
    // The next start's generation begins in a later second than the
    // first's: the moment before it is then one the first one restores.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    write_over(&db, ((root - 1) * page) as u64, &vec![0xff; page as usize]);
    let d = Latchd::start_in(dir).await;
    for _ in 0..3 {
        let res = d.post("/v1/auth/login", json!({"email": "root@example.test", "password": PASSWORD})).await;
        crate::harness::assert_problem(res, 500, "internal").await;
    }
    let page = d.get("/metrics").await.text().await.unwrap();
    assert_eq!(gauge(page).as_deref(), Some("latch_db_damaged 1"), "the gauge the alert watches");
    let told = format!("{} is damaged: requests and backups that read its damaged pages fail", db.display());
    assert_eq!(d.log().matches(&told).count(), 1, "told once, not a line a request: {}", d.log());
    let status = latchctl_on(&state, &["status"]);
    let shown = String::from_utf8_lossy(&status.stdout);
    let line = shown.lines().find(|l| l.starts_with("database ")).unwrap_or_default();
    let said = "DAMAGED: requests that read its damaged pages fail; stop latchd, then `latchctl db check` \
                shows where (README: \"A damaged database\")";
    assert!(line.ends_with(said), "{shown}");
    let line = shown.lines().find(|l| l.starts_with("backups ")).unwrap_or_default();
    assert!(line.ends_with("; scheduled ones are held while the database is damaged"), "{shown}");
    let out = latchctl_on(&state, &["backup", "now"]);
    let said = String::from_utf8_lossy(&out.stderr);
    let damaged =
        format!("{} is damaged: this backup's copy of it fails SQLite's integrity check", db.display());
    assert!(!out.status.success() && said.contains(&damaged), "{said}");
    let listed = latchctl_on(&state, &["--json", "backup", "list"]);
    let backups: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(backups.as_array().map(Vec::len), Some(1), "the earlier one stays: {backups}");
    // The WAL archive's generation begun at that start copied the damage:
    // restoring into it is refused, naming the moment before it began,
    // which the first start's generation restores whole.
    let dir = d.stop_keep_dir();
    let db_check = || {
        let checked = latchctl_on(&state, &["db", "check"]);
        assert!(!checked.status.success(), "{checked:?}");
        String::from_utf8_lossy(&checked.stdout).trim_end().to_string()
    };
    let refused = refused_restore_to_the_last_commit(&state);
    let before = refused.split_once("restores is --to-time ").and_then(|(_, rest)| rest.split_once(';'));
    let (before, _) = before.unwrap_or_else(|| panic!("{refused}"));
    let found = db_check();
    assert!(
        found.contains(&format!("damaged: `latchctl backup restore --to-time {before}` rebuilds")),
        "{found}"
    );
    // Without its mark (an archive from before marks, or a stop between
    // the snapshot and the mark) the rebuild itself is found damaged, and
    // the refusal names the same moment.
    let newest = generations(&state).pop().unwrap();
    std::fs::remove_file(state.join("archive").join(newest).join("damaged.txt")).unwrap();
    let found = db_check();
    assert!(found.ends_with(RESTORE_TOLD), "{found}");
    let refused = refused_restore_to_the_last_commit(&state);
    let said = format!(
        "; the latest moment before it that the archive restores is --to-time {before}; or a backup \
                        may be whole)"
    );
    assert!(refused.trim_end().ends_with(&said), "{refused}");
    mended_from_the_archive(dir, before).await;
}

/// What `backup restore --to-time 0s` says, which must refuse: the
/// archive's newest generation copied the damage.
fn refused_restore_to_the_last_commit(state: &Path) -> String {
    let refused = latchctl_on(state, &["backup", "restore", "--to-time", "0s"]);
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(!refused.status.success(), "{said}");
    said
}
