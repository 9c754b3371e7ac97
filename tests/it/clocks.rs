//! latchd when clocks disagree: a host whose clock ran ahead and is set
//! back (a clock kept in local time, put right by NTP after the start), or
//! a standby whose clock is behind its primary's. The WAL archive's times
//! never go back, so its generations sort in the order they began (a keep
//! of 1 once deleted the generation being written), and a restore to a
//! time this clock has not reached brings back every commit (the
//! failover's `--to-time now+1s` once missed the primary's last ones). A
//! signing key made while the clock ran ahead still signs once it is set
//! back (every login failed until the clock caught up), backups dated
//! ahead of the clock neither hold the schedule nor the staleness gauge,
//! a refresh token spent "later" than now is a reuse, never a retry
//! within the grace window, and mail whose retry was set while the clock
//! ran ahead does not wait out the skew, nor does mail queued then hold
//! the recipient's hourly allowance for as long.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::admin_api::{admin_daemon, ok_json};
use crate::backups::{create_roles, ctl, pq_roles};
use crate::flows::{PASSWORD, login};
use crate::harness::Latchd;

/// The archive's generation folders whose snapshot is written.
fn finished_generations(state: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(state.join("archive"))
        .map_or_else(|_| Vec::new(), |e| e.flatten().map(|e| e.path()).collect());
    found.retain(|g| g.join("snapshot.db.zst").exists());
    found.sort();
    found
}

/// The Unix ms now, by the real clock.
fn real_ms() -> i128 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000
}

/// `LATCH_TEST_PAUSE` for latchd's clock two hours ahead until 8 s from
/// now (room for a start and a login on a loaded machine), when it is set
/// right as NTP would; and that moment.
fn two_hours_ahead_for_a_while() -> (String, i128) {
    let set_back_at = real_ms() + 8_000;
    (format!("clock_ahead:7200000,clock_set_back_at:{set_back_at}"), set_back_at)
}

/// Waits until latchd's clock has been set back; `done` must come before.
async fn wait_for_set_back(set_back_at: i128, done: &str) {
    let left = set_back_at - real_ms();
    assert!(left > 0, "{done} only after the clock was set back");
    tokio::time::sleep(Duration::from_millis(left as u64 + 300)).await;
}

/// This host's time, `ahead_ms` from now, as `--to-time` takes it.
fn time_from_now(ahead_ms: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(ahead_ms);
    at.replace_nanosecond(0).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test]
async fn a_clock_set_back_keeps_the_generation_being_written() {
    let keep_one = "\n[backup]\nkeep = 1\n";
    let two_hours_ahead = [("LATCH_TEST_PAUSE", "clock_ahead:7200000")];
    let (d, admin) = admin_daemon(keep_one, &two_hours_ahead).await;
    create_roles(&d, &admin, &["p1", "p2"]).await;
    let state = d.state_dir();
    let dir = d.stop_keep_dir();
    let first = finished_generations(&state);
    assert_eq!(first.len(), 1, "{first:?}");

    // The clock set right: the new generation must outlast the old one.
    let d = Latchd::start_in(dir).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while finished_generations(&state) == first || finished_generations(&state).is_empty() {
        let left = finished_generations(&state);
        assert!(std::time::Instant::now() < deadline, "the restart's generation is gone: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.log_with("the clock is behind the archive's newest time").await;
    // The first run's token was issued "in the future": sign in again.
    let admin = login(&d, "root@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    create_roles(&d, &admin, &["p3", "p4"]).await;
    let dir = d.stop_keep_dir();
    let kept = finished_generations(&state);
    assert_eq!(kept.len(), 1, "keep = 1: {kept:?}");
    assert!(kept[0] > first[0], "named after the first, though begun at an earlier clock: {kept:?}");

    let restored = ok_json(ctl(&state, &["--json", "backup", "restore", "--to-time", &time_from_now(1000)]));
    assert!(restored["replayed"]["segments"].as_u64() > Some(0), "{restored}");
    let d = Latchd::start_in(dir).await;
    assert_eq!(pq_roles(&d), ["p1", "p2", "p3", "p4"], "every commit, those of both runs");
}

#[tokio::test]
async fn a_restore_to_a_time_not_yet_reached_here_brings_back_every_commit() {
    // A primary whose clock runs a minute ahead of the standby's.
    let (d, admin) = admin_daemon("", &[("LATCH_TEST_PAUSE", "clock_ahead:60000")]).await;
    create_roles(&d, &admin, &["p1", "p2"]).await;
    let state = d.state_dir();
    let dir = d.stop_keep_dir();

    // README's failover: `--to-time` one second from now, by this clock.
    let restored = ok_json(ctl(&state, &["--json", "backup", "restore", "--to-time", &time_from_now(1000)]));
    assert!(restored["replayed"].is_object(), "{restored}");
    let d = Latchd::start_in(dir).await;
    assert_eq!(pq_roles(&d), ["p1", "p2"], "the primary's last commits too");

    // A time this clock has passed still counts by the archive's times.
    let state = d.state_dir();
    let dir = d.stop_keep_dir();
    let before = ctl(&state, &["backup", "restore", "--to-time", &time_from_now(-1000)]);
    let why = String::from_utf8_lossy(&before.stderr);
    assert!(!before.status.success() && why.contains("starts at or before"), "{why}");
    drop(dir);
}

#[tokio::test]
async fn a_signing_key_made_while_the_clock_ran_ahead_signs_once_it_is_set_back() {
    // The first start makes the signing key, two hours ahead; the clock is
    // set right seconds later, with latchd running.
    let (pauses, set_back_at) = two_hours_ahead_for_a_while();
    let (d, _) = admin_daemon("", &[("LATCH_TEST_PAUSE", &pauses)]).await;
    let before = login(&d, "root@example.test", PASSWORD).await;
    wait_for_set_back(set_back_at, "the first login came").await;

    let after = login(&d, "root@example.test", PASSWORD).await;
    let token = after["access_token"].as_str().unwrap();
    let me = d.get_auth("/v1/auth/me", token).await;
    assert_eq!(me.status(), 200, "the new token verifies: {}", me.text().await.unwrap_or_default());
    let refresh = before["refresh_token"].as_str().unwrap();
    let res = d.post("/v1/auth/refresh", serde_json::json!({ "refresh_token": refresh })).await;
    assert_eq!(res.status(), 200, "a refresh token from before: {}", res.text().await.unwrap_or_default());

    // The operator sees it signing, and a rotation retires it (a pending
    // key would have been revoked, and every token it signed with it).
    let keys = ok_json(ctl(&d.state_dir(), &["--json", "keys", "list"]));
    assert_eq!(keys["items"][0]["state"], "signing", "{keys}");
    ok_json(ctl(&d.state_dir(), &["--json", "keys", "rotate", "--now"]));
    let me = d.get_auth("/v1/auth/me", token).await;
    assert_eq!(me.status(), 200, "still verifies after a rotation: {}", me.text().await.unwrap_or_default());
}

#[tokio::test]
async fn backups_written_while_the_clock_ran_ahead_do_not_hold_the_schedule() {
    let (d, _) = admin_daemon("\n[backup]\ninterval = \"2s\"\n", &[]).await;
    let state = d.state_dir();
    assert!(ctl(&state, &["backup", "now"]).status.success());
    let dir = d.stop_keep_dir();
    // As if written two hours ahead of the clock, which was then set back.
    let ahead = std::time::SystemTime::now() + Duration::from_secs(7200);
    for file in std::fs::read_dir(state.join("backups")).unwrap().flatten() {
        std::fs::File::options().write(true).open(file.path()).unwrap().set_modified(ahead).unwrap();
    }

    let d = Latchd::start_in(dir).await;
    let now = || time::OffsetDateTime::now_utc().unix_timestamp();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let listed = ok_json(ctl(&state, &["--json", "backup", "list"]));
        let by_this_clock =
            listed.as_array().unwrap().iter().filter(|b| b["written_at"].as_i64() <= Some(now()));
        if by_this_clock.count() > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no backup on schedule: it waits for the clock");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut gauge = 0.0;
    while gauge == 0.0 && std::time::Instant::now() < deadline {
        gauge = crate::flows::metric(&d, "latch_backup_last_success_timestamp_seconds").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gauge > 0.0 && gauge <= now() as f64 + 1.0,
        "the staleness gauge holds no time from ahead: {gauge}"
    );
}

#[tokio::test]
async fn a_refresh_token_spent_before_the_clock_was_set_back_is_a_reuse_not_a_retry() {
    let (pauses, set_back_at) = two_hours_ahead_for_a_while();
    let grace = "\n[tokens]\nrefresh_reuse_grace = \"30s\"\n";
    let (d, _) = admin_daemon(grace, &[("LATCH_TEST_PAUSE", &pauses)]).await;
    let first = login(&d, "root@example.test", PASSWORD).await;
    let spent = first["refresh_token"].as_str().unwrap();
    let res = d.post("/v1/auth/refresh", serde_json::json!({ "refresh_token": spent })).await;
    assert_eq!(res.status(), 200);
    wait_for_set_back(set_back_at, "the token was spent").await;

    // Two hours "before" it was spent, by the clock now: not within 30 s.
    let res = d.post("/v1/auth/refresh", serde_json::json!({ "refresh_token": spent })).await;
    assert_eq!(res.status(), 401);
    let problem: serde_json::Value = res.json().await.unwrap();
    assert_eq!(problem["type"], "urn:latch:problem:refresh-token-reused", "{problem}");
}

/// Mail queued while the clock ran ahead, whose first attempts failed (the
/// relay was down), goes out after the set back as soon as the relay is
/// back; it waited out the skew (two hours here) before.
#[tokio::test]
async fn mail_retried_while_the_clock_ran_ahead_goes_out_after_the_set_back() {
    let port = crate::mail::SmtpSink::port_for_later();
    let relay_down = format!("\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\n");
    let (pauses, set_back_at) = two_hours_ahead_for_a_while();
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write_config(dir.path(), &crate::harness::base_config(&relay_down));
    let d = Latchd::start_in_with_env(dir, &[("LATCH_TEST_PAUSE", &pauses)]).await;
    let ann = serde_json::json!({ "email": "ann@example.test", "password": PASSWORD });
    assert_eq!(d.post("/v1/auth/register", ann).await.status(), 202);
    // The second attempt fails too; the third is due 10 s later by the
    // clock ahead, after the set back.
    d.log_with("\"attempts\":2").await;
    let relay = crate::mail::SmtpSink::start_on(port);
    wait_for_set_back(set_back_at, "the second attempt").await;

    let mail = relay.wait_for_mail_to("ann@example.test").await;
    assert!(mail.contains("Confirm your email address"));
}

/// Mail queued while the clock ran ahead does not count against its
/// recipient's hourly allowance once the clock is set back: counted, it
/// held every message anyone may ask for to that address (a password
/// reset link among them) for as long as the clock had been ahead, two
/// hours here, not one.
#[tokio::test]
async fn mail_queued_while_the_clock_ran_ahead_does_not_hold_the_next_after_the_set_back() {
    let (pauses, set_back_at) = two_hours_ahead_for_a_while();
    let (d, _) = admin_daemon("", &[("LATCH_TEST_PAUSE", &pauses)]).await;
    let reset_links = || {
        let sql = "SELECT count(*) FROM outbox WHERE recipient = 'root@example.test'";
        d.db().query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap()
    };
    let forgot = || d.post("/v1/auth/password/forgot", serde_json::json!({ "email": "root@example.test" }));
    // Five asked for while ahead: four queued (the allowance for mail
    // anyone can ask for is one short of max_per_recipient), one dropped.
    for _ in 0..5 {
        assert_eq!(forgot().await.status(), 202);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while crate::flows::metric(&d, "latch_emails_total{result=\"dropped\"}").await < 1.0 {
        assert!(std::time::Instant::now() < deadline, "the fifth was not dropped: {} queued", reset_links());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reset_links(), 4);
    wait_for_set_back(set_back_at, "the five requests").await;

    assert_eq!(forgot().await.status(), 202);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while reset_links() < 5 {
        let dropped = crate::flows::metric(&d, "latch_emails_total{result=\"dropped\"}").await;
        assert!(std::time::Instant::now() < deadline, "not queued after the set back ({dropped} dropped)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A clock that jumps ten weeks ahead while latchd runs, and is set right
/// twenty seconds later, deletes nothing by its time: the session it
/// "ended" still refreshes afterwards, and `[audit].retention` (30 days)
/// took no row. Before, the sweeper deleted the session's refresh tokens
/// and the session, and the audit upkeep every row.
#[tokio::test]
async fn a_clock_that_jumps_ahead_while_running_deletes_nothing_by_its_time() {
    let (jump_at, set_back_at) = (real_ms() + 8_000, real_ms() + 28_000);
    let pauses = format!(
        "clock_ahead:{},clock_jump_at:{jump_at},clock_set_back_at:{set_back_at},audit_check_every:1000",
        70 * 86_400_000_i64
    );
    let (d, _) = admin_daemon("\n[audit]\nretention = \"30d\"\n", &[("LATCH_TEST_PAUSE", &pauses)]).await;
    let tokens = login(&d, "root@example.test", PASSWORD).await;
    let audit_rows =
        || d.db().query_row("SELECT count(*) FROM audit_log", [], |r| r.get::<_, i64>(0)).unwrap();
    let rows = audit_rows();
    assert!(real_ms() < jump_at, "logged in only after the jump: the machine is too slow for this test");
    // Ten weeks ahead for 20 s: the sweeper prunes every 15 s and sweeps
    // every 2 s, the audit upkeep looks every second.
    d.log_with("the wall clock jumped").await;
    wait_for_set_back(set_back_at, "the jump").await;

    let refresh = serde_json::json!({ "refresh_token": tokens["refresh_token"] });
    let res = d.post("/v1/auth/refresh", refresh).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    assert!(audit_rows() >= rows, "audit rows deleted by the jumped clock");
    let pruned = "SELECT count(*) FROM audit_log WHERE action = 'audit_checkpoint'";
    assert_eq!(d.db().query_row(pruned, [], |r| r.get::<_, i64>(0)).unwrap(), 0);
}
