//! The state directory (API.md "Files and keys"): one method per file or
//! folder latchd keeps there, the exclusive lock that stops a second daemon
//! or an offline `latchctl` command from opening the same database,
//! `ready.json`, and `write_private` — the one way latch writes a file that
//! holds a secret or must never be seen half-written.

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "latchd.lock";
const READY_FILE: &str = "ready.json";

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("state directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("state directory {path} is in use by another latchd (lock held on {lock})")]
    Locked { path: PathBuf, lock: PathBuf },
}

/// Where every file of one latch installation lives.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StateDir {
    root: PathBuf,
    key_file: PathBuf,
}

impl StateDir {
    /// `root` with the master key at `key_file`, or at `root/keys/master.key`.
    pub fn new(root: PathBuf, key_file: Option<PathBuf>) -> StateDir {
        let key_file = key_file.unwrap_or_else(|| root.join("keys/master.key"));
        StateDir { root, key_file }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn database(&self) -> PathBuf {
        self.root.join("latch.db")
    }

    /// The master key (`[server].key_file` when set).
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// The generated self-signed certificate, used when `[tls]` is absent.
    pub fn tls_cert(&self) -> PathBuf {
        self.root.join("tls/cert.pem")
    }

    pub fn tls_key(&self) -> PathBuf {
        self.root.join("tls/key.pem")
    }

    /// Default of `[backup].dir`.
    pub fn backups(&self) -> PathBuf {
        self.root.join("backups")
    }

    /// Default of `[backup].archive_dir`.
    pub fn archive(&self) -> PathBuf {
        self.root.join("archive")
    }

    /// Outgoing mail as `.eml` files when `[smtp]` is absent.
    pub fn mail(&self) -> PathBuf {
        self.root.join("mail")
    }

    /// Default of `[admin].socket` when no config file names one.
    pub fn admin_socket(&self) -> PathBuf {
        self.root.join("admin.sock")
    }

    pub fn ready_file(&self) -> PathBuf {
        self.root.join(READY_FILE)
    }

    fn lock_file(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    /// Creates the directory (0700) if missing and takes the exclusive
    /// lock, held until the returned guard drops.
    pub fn lock(&self) -> Result<StateDirLock, StateDirError> {
        let io = |source| StateDirError::Io { path: self.root.clone(), source };
        if !self.root.exists() {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.root).map_err(io)?;
        }
        let lock_path = self.lock_file();
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
            return Err(StateDirError::Locked { path: self.root.clone(), lock: lock_path });
        }
        Ok(StateDirLock { _file: file })
    }

    /// True when a daemon holds the lock (for offline commands).
    pub fn is_locked(&self) -> bool {
        let Ok(file) = File::open(self.lock_file()) else { return false };
        // SAFETY: as in `lock`; a shared probe lock is released when `file` drops.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        rc != 0
    }

    /// Writes `ready.json` (the caller's JSON) atomically, mode 0600.
    pub fn write_ready(&self, json: &[u8]) -> std::io::Result<()> {
        write_private(&self.ready_file(), json)
    }

    pub fn remove_ready(&self) {
        let _ = fs::remove_file(self.ready_file());
    }
}

/// Holds the exclusive lock on the state directory until dropped.
#[derive(Debug)]
pub struct StateDirLock {
    _file: File,
}

/// Writes `data` to `path` with mode 0600 through a hidden temporary file
/// in the same directory, fsynced and renamed over `path`, so no reader (nor
/// a crash) ever sees half a file and no other user can read it even for a
/// moment. A missing directory is created 0700; an existing one keeps the
/// mode its owner chose (say /etc/latch for a configured key file).
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = stage(path, data)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// As `write_private`, but fails with `AlreadyExists` instead of replacing
/// an existing `path` (a master key is never overwritten).
pub fn create_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = stage(path, data)?;
    // A hard link, unlike rename, refuses an existing target.
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked
}

/// The hidden name a file is written under before it is renamed into place;
/// a leftover one is a write cut short (disk full, crash).
pub fn partial_name(path: &Path) -> PathBuf {
    let name = path.file_name().map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.partial"))
}

fn stage(path: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let tmp = partial_name(path);
    let _ = fs::remove_file(&tmp);
    let written = (|| {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn private_files_are_0600_replaced_whole_and_never_overwritten_when_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        let err = create_private(&path, b"three").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temp file left");
    }

    #[test]
    fn the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"), None);
        assert!(!state.is_locked());
        let held = state.lock().unwrap();
        assert!(state.is_locked());
        assert!(matches!(state.lock(), Err(StateDirError::Locked { .. })));
        drop(held);
        assert!(!state.is_locked());
        assert_eq!(state.key_file(), dir.path().join("state/keys/master.key"));
    }
}
