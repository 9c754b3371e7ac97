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
