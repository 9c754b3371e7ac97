//! A full disk as an operator would meet it: the state directory on a
//! small filesystem (a size-limited tmpfs, so it needs root), filled up
//! while latchd runs. Writes answer 503 `unavailable` with a log line that
//! says why, reads go on, nothing is corrupted, and writes work again by
//! themselves once there is room.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::admin_api::ctl;
use crate::flows::{PASSWORD, login};
use crate::harness::{Latchd, assert_problem, base_config, write_config};

/// A tmpfs of `size` at `at`, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
        SmallDisk(at.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros to `path` until the filesystem is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
}

async fn create_role(d: &Latchd, admin: &str, name: &str) -> reqwest::Response {
    d.post_auth("/v1/admin/roles", admin, json!({ "name": name })).await
}

#[tokio::test]
async fn a_full_disk_answers_503_keeps_reads_and_recovers_by_itself_as_root() {
    assert!(nix::unistd::Uid::effective().is_root(), "needs root to mount a small filesystem");
    let dir = tempfile::tempdir().unwrap();
    let _disk = SmallDisk::mount(&dir.path().join("state"), "8m");
    write_config(dir.path(), &base_config("\n[accounts]\nregistration = \"closed\"\n"));
    let d = Latchd::start_in(dir).await;
    let args = ["users", "add", "root@example.test", "--role", "admin", "--password-stdin", "--verified"];
    assert!(ctl(&d, &args, PASSWORD).status.success());
    let admin = login(&d, "root@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    assert_eq!(create_role(&d, &admin, "before").await.status(), 201);

    let filler = d.state_dir().join("filler");
    fill(&filler);
    let mut refused = None;
    for i in 0..400 {
        let res = create_role(&d, &admin, &format!("full{i}")).await;
        if res.status() != 201 {
            refused = Some(res);
            break;
        }
    }
    let res = refused.expect("some write fails once the disk is full");
    assert_problem(res, 503, "unavailable").await;
    assert!(d.log().contains("disk is full"), "the log says why:\n{}", d.log());
    let res = d.get_auth("/v1/admin/roles", &admin).await;
    assert_eq!(res.status(), 200, "reads go on");

    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = create_role(&d, &admin, "after").await;
        if res.status() == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "writes resume within seconds of space returning");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ok: String = d.db().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let roles: i64 = d
        .db()
        .query_row("SELECT count(*) FROM roles WHERE name IN ('before', 'after')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(roles, 2, "what was stored before the disk filled is still there");
}

/// A full archive disk: every try of a failing snapshot reads the whole
/// database, so the tries come ever further apart (the first after
/// `archive_retry`, 400 ms here, then 800 ms, 1.6 s, …, at most 5 min)
/// rather than at a fixed pace for as long as the disk stays full; the
/// reload an operator sends once there is room tries again at once.
#[tokio::test]
async fn a_full_archive_disk_is_tried_ever_less_often_and_at_once_after_a_reload_as_root() {
    assert!(nix::unistd::Uid::effective().is_root(), "needs root to mount a small filesystem");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive-disk");
    let _disk = SmallDisk::mount(&archive, "4m");
    let backup =
        format!("\n[backup]\ninterval = \"1s\"\narchive_dir = {:?}\n", archive.display().to_string());
    write_config(dir.path(), &base_config(&backup));
    let d = Latchd::start_in_with_env(dir, &[("LATCH_TEST_PAUSE", "archive_retry:400")]).await;
    let snapshots = || {
        let folders = std::fs::read_dir(&archive).unwrap().flatten();
        folders.filter(|g| g.path().join("snapshot.db.zst").exists()).count()
    };
    let failures = || d.log().matches("the snapshot failed").count();
    let until = |what: &str, within: Duration, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + within;
        while !done() {
            assert!(Instant::now() < deadline, "still not {what} after {within:?}:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    until("a first snapshot", Duration::from_secs(10), &|| snapshots() >= 1);

    fill(&archive.join("filler"));
    until("a failed snapshot", Duration::from_secs(10), &|| failures() >= 1);
    let first = Instant::now();
    until("five failed snapshots", Duration::from_secs(20), &|| failures() >= 5);
    // At a fixed 400 ms the fifth would come about 1.6 s after the first.
    assert!(first.elapsed() >= Duration::from_secs(3), "tries did not back off: {:?}", first.elapsed());
    assert!(d.log().contains("retry_in_s"), "{}", d.log());

    // The next try is 6.4 s off; room and a reload bring it now.
    let before = snapshots();
    std::fs::remove_file(archive.join("filler")).unwrap();
    d.signal(libc::SIGHUP);
    until("a snapshot soon after the reload", Duration::from_secs(4), &|| snapshots() > before);
}
