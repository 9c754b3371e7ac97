//! The WAL archive when its snapshots do not finish (a crash, a failing
//! archive disk) or a new generation cannot start (a reader in the way):
//! status and the backup list name the stretches a restore cannot reach,
//! a restore into one is refused with the latest earlier moment it can
//! restore, the lag gauge counts what the archive does not hold, and the
//! generation going on goes on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::admin_api::{admin_daemon, ok_json};
use crate::backups::{create_roles, ctl, pq_roles};
use crate::flows::metric;
use crate::harness::Latchd;

/// The archive's generation folders, oldest first.
fn generation_folders(state: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(state.join("archive"))
        .map_or_else(|_| Vec::new(), |e| e.flatten().map(|e| e.path()).collect());
    found.sort();
    found
}

async fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "still not: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A first run whose generation holds roles p1 and p2 (finished: that run
/// stopped cleanly), then a second run with `pauses` (`LATCH_TEST_PAUSE`),
/// which hold its new generation's snapshot. Returns the second run, its
/// admin token, its state dir.
async fn restarted_with_snapshot_held(pauses: &str) -> (Latchd, String, PathBuf) {
    let (d, admin) = admin_daemon("", &[]).await;
    create_roles(&d, &admin, &["p1", "p2"]).await;
    let state = d.state_dir();
    let dir = d.stop_keep_dir();
    // So that the last second before the restart is after p1 and p2.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let d = Latchd::start_in_with_env(dir, &[("LATCH_TEST_PAUSE", pauses)]).await;
    wait_for("the restart began a second generation", || generation_folders(&state).len() == 2).await;
    (d, admin, state)
}

/// Restoring to `t` is refused for the unfinished generation, naming the
/// latest earlier moment; restoring to that one brings back p1 and p2 only.
async fn refused_then_restored_before(state: &Path, dir: tempfile::TempDir, t: &str) {
    let refused = ctl(state, &["backup", "restore", "--to-time", t]);
    let why = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(!refused.status.success() && why.contains("snapshot was never finished"), "{why}");
    assert!(why.contains(&format!("cannot restore {t}")), "{why}");
    let after = why.rsplit("--to-time ").next().unwrap();
    let before: String = after.chars().take_while(|c| !c.is_whitespace() && *c != ';').collect();
    ok_json(ctl(state, &["--json", "backup", "restore", "--to-time", &before]));
    let d = Latchd::start_in(dir).await;
    assert_eq!(pq_roles(&d), ["p1", "p2"], "the first run's rows, as of {before}");
}

/// A daemon that dies while writing a new generation's snapshot leaves a
/// folder no restore can use: a target past its start must be refused with
/// the last moment that can be restored, not answered with the older
/// generation's end as if that were the moment asked for.
#[tokio::test]
async fn a_restore_past_a_generation_whose_snapshot_never_finished_is_refused() {
    // The restart's snapshot is held until the kill, as a crash would end it.
    let (d, admin, state) = restarted_with_snapshot_held("archive_snapshot:60000").await;
    create_roles(&d, &admin, &["q1"]).await;
    let dir = d.kill_keep_dir();
    let now = time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let t =
        now.replace_nanosecond(0).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap();
    refused_then_restored_before(&state, dir, &t).await;
}

/// A snapshot that fails (a failing archive disk) starts a new generation
/// soon after; the commits between the two are in no usable generation,
/// and a restore to a moment among them must say so.
#[tokio::test]
async fn a_restore_into_the_stretch_a_failed_snapshot_left_unarchived_is_refused() {
    // Each snapshot held 1.5 s; the next generation 5 s after a failure.
    let (d, admin, state) = restarted_with_snapshot_held("archive_snapshot:1500,archive_retry:5000").await;
    let failing = generation_folders(&state)[1].clone();
    // Where the snapshot's temp file goes: creating it fails.
    std::fs::create_dir(failing.join(".snapshot.db.zst.partial")).unwrap();
    create_roles(&d, &admin, &["q1"]).await;
    // The commits since the failed generation began are in no usable one:
    // the lag gauge counts them, and keeps counting while nothing is sent
    // to the archive (a failure 1.5 s in, the retry 5 s later).
    let lag = "latch_wal_archive_lag_seconds";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(&d, lag).await < 3.0 {
        assert!(std::time::Instant::now() < deadline, "{lag} {}", metric(&d, lag).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(generation_folders(&state).len(), 2, "no new generation before the retry is due");
    wait_for("a third generation with its snapshot", || {
        generation_folders(&state).get(2).is_some_and(|g| g.join("snapshot.db.zst").exists())
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while metric(&d, lag).await >= 1.0 {
        assert!(std::time::Instant::now() < deadline, "the new snapshot holds every commit before it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(d.log().contains("the snapshot failed"), "{}", d.log());
    assert!(failing.exists(), "the failed generation's folder stays, marking the stretch");
    // From the second it began in (the next one began 1.5 s later at
    // least) to the second the next one began in.
    let second = |folder: &Path| {
        let name = folder.file_name().unwrap().to_string_lossy().into_owned();
        let started_ms: i64 = name.strip_prefix("gen-").unwrap().parse().unwrap();
        let at = time::OffsetDateTime::from_unix_timestamp(started_ms.div_euclid(1000)).unwrap();
        at.format(&time::format_description::well_known::Rfc3339).unwrap()
    };
    let (t, until) = (second(&failing), second(&generation_folders(&state)[2]));
    // Status and the backup list name the stretch before a restore meets it.
    let status = ok_json(ctl(&state, &["--json", "status"]));
    assert_eq!(status["archive"]["gaps"], json!([{ "from": t, "until": until }]), "{status}");
    let listed = String::from_utf8_lossy(&ctl(&state, &["backup", "list"]).stdout).into_owned();
    assert!(listed.contains(&format!(", except from {t} until {until} (restore --to-time T)")), "{listed}");
    refused_then_restored_before(&state, d.stop_keep_dir(), &t).await;
}

/// The newest commit (Unix ms) among the segments in `generation`.
fn newest_segment_ms(generation: &Path) -> i64 {
    let names = std::fs::read_dir(generation)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned());
    names.filter_map(|n| n.strip_suffix(".wal")?.split_once('-')?.1.parse().ok()).max().unwrap_or(0)
}

/// A new generation begins with a TRUNCATE checkpoint, which an outside
/// reader's open transaction keeps from finishing: the generation going
/// on must go on taking the commits meanwhile, or a restore to a moment
/// then would silently end at the failure.
#[tokio::test]
async fn a_generation_that_cannot_start_leaves_the_one_going_on_archiving() {
    let pauses = [("LATCH_TEST_PAUSE", "archive_retry:300")];
    let (d, admin) = admin_daemon("\n[backup]\ninterval = \"1s\"\n", &pauses).await;
    let state = d.state_dir();
    wait_for("a first snapshot", || {
        generation_folders(&state).first().is_some_and(|g| g.join("snapshot.db.zst").exists())
    })
    .await;
    // An operator's sqlite3 session with a transaction open.
    let reader = d.db();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader.query_row("SELECT count(*) FROM roles", [], |r| r.get(0)).unwrap();
    // A commit after the reader's snapshot: begun on an empty log (a
    // generation had just truncated it), the reader holds nothing back
    // until a later frame exists, and a new generation may start meanwhile.
    create_roles(&d, &admin, &["h0"]).await;
    d.log_with("could not start a generation").await;
    let held = generation_folders(&state);
    let going = held.last().unwrap().clone();
    let before =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    // The tries (every 300 ms here) wait for the reader briefly, not for
    // the writer's whole 5 s busy timeout: writes go on meanwhile.
    let started = std::time::Instant::now();
    for name in ["h1", "h2", "h3", "h4", "h5"] {
        create_roles(&d, &admin, &[name]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // 1.5 s of pauses: a try waiting the whole busy timeout would add 5 s.
    assert!(started.elapsed() < Duration::from_millis(5500), "writes held up: {:?}", started.elapsed());
    wait_for("the commit archived in the generation going on", || newest_segment_ms(&going) >= before).await;
    assert_eq!(generation_folders(&state), held, "no generation began while the reader held the log");
    drop(reader);
    wait_for("a new generation once the reader is gone", || generation_folders(&state).len() > held.len())
        .await;
}
