//! The state directory: created 0700, locked for the daemon's lifetime (so a
//! second daemon or an offline `latchctl` command cannot open the same
//! database), and home of `ready.json`, which tells scripts and tests the
//! bound addresses once the daemon is ready.

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::http::BoundListener;

pub const LOCK_FILE: &str = "latchd.lock";
pub const READY_FILE: &str = "ready.json";

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("state directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("state directory {path} is in use by another latchd (lock held on {lock})")]
    Locked { path: PathBuf, lock: PathBuf },
}

/// Holds the exclusive lock until dropped.
#[derive(Debug)]
pub struct StateDirLock {
    _file: File,
}

/// Creates `dir` (0700) if missing and takes the exclusive lock on it.
pub fn lock(dir: &Path) -> Result<StateDirLock, StateDirError> {
    let io = |source| StateDirError::Io { path: dir.to_path_buf(), source };
    if !dir.exists() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
    }
    let lock_path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io)?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(StateDirError::Locked { path: dir.to_path_buf(), lock: lock_path });
    }
    Ok(StateDirLock { _file: file })
}

/// True when a daemon holds the lock on `dir` (for offline commands).
pub fn is_locked(dir: &Path) -> bool {
    let Ok(file) = File::open(dir.join(LOCK_FILE)) else { return false };
    // SAFETY: as above; a shared probe lock is released when `file` drops.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    rc != 0
}

#[derive(Serialize)]
struct Ready<'a> {
    pid: u32,
    version: &'a str,
    listeners: &'a [BoundListener],
    admin_socket: Option<&'a Path>,
}

pub fn remove_ready(dir: &Path) {
    let _ = fs::remove_file(dir.join(READY_FILE));
}

/// Writes `ready.json` atomically (temp file + rename), mode 0600.
pub fn write_ready(
    dir: &Path,
    listeners: &[BoundListener],
    admin_socket: Option<&Path>,
) -> std::io::Result<()> {
    let body = Ready { pid: std::process::id(), version: crate::telemetry::VERSION, listeners, admin_socket };
    let tmp = dir.join(".ready.json.tmp");
    let mut f = fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(&body).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, dir.join(READY_FILE))
}
