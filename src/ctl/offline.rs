//! Offline commands: they open the state directory's files directly, refuse
//! while a daemon holds it, and when run as root act as the directory's
//! owner so latchd can still open every file they create.

use std::os::unix::fs::MetadataExt;

use anyhow::{Context, bail};
use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};

use super::Target;
use super::stdout::say;
use crate::store::offline;

fn refuse_if_running(t: &Target) -> anyhow::Result<()> {
    if t.state.is_locked() {
        let dir = t.state.root().display();
        bail!("latchd is running on {dir}; stop it first (this is an offline command)");
    }
    Ok(())
}

/// As root, switch to the owner of the state directory.
fn act_as_owner(t: &Target) -> anyhow::Result<()> {
    if !Uid::effective().is_root() {
        return Ok(());
    }
    let dir = t.state.root();
    let meta = std::fs::metadata(dir).with_context(|| format!("{}", dir.display()))?;
    if meta.uid() == 0 {
        return Ok(());
    }
    let gid = Gid::from_raw(meta.gid());
    setgroups(&[gid]).context("dropping supplementary groups")?;
    setgid(gid).context("switching group")?;
    setuid(Uid::from_raw(meta.uid())).context("switching user")?;
    Ok(())
}

fn database(t: &Target) -> anyhow::Result<std::path::PathBuf> {
    let db = t.state.database();
    if !db.exists() {
        bail!("no database at {}", db.display());
    }
    Ok(db)
}

/// The database opened read-only (a running latchd is no obstacle), as
/// the state directory's owner when run as root.
pub fn open_read_only(t: &Target) -> anyhow::Result<rusqlite::Connection> {
    act_as_owner(t)?;
    let db = database(t)?;
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    rusqlite::Connection::open_with_flags(&db, flags).with_context(|| format!("opening {}", db.display()))
}

pub fn db_check(t: &Target, json: bool) -> anyhow::Result<bool> {
    refuse_if_running(t)?;
    act_as_owner(t)?;
    let report = offline::check(&database(t)?)?;
    if json {
        say!("{}", serde_json::to_string(&report)?);
    } else {
        say!("integrity     {}", report.integrity.join("; "));
        if let (Some(violations), Some(schema)) = (report.foreign_key_violations, report.schema_version) {
            say!("foreign keys  {violations} violation(s)");
            say!("schema        {schema} (this latchctl knows {})", report.known_version);
        } else {
            say!("(SQLite could check nothing else)");
        }
        if let Some(e) = &report.migration_error {
            say!("migrations    {e}");
        }
        if report.integrity != ["ok"] {
            say!("damaged: {}", crate::store::way_out(t.wal_archive.then_some(t.archive_dir.as_path())));
        }
    }
    Ok(report.is_healthy())
}

/// For a command that changes the state directory: refuses while a daemon
/// runs, acts as the directory's owner, and holds the lock so no daemon
/// starts meanwhile.
pub fn lock_as_owner(t: &Target) -> anyhow::Result<crate::state_dir::StateDirLock> {
    refuse_if_running(t)?;
    act_as_owner(t)?;
    Ok(t.state.lock()?)
}

pub fn db_migrate(t: &Target, json: bool) -> anyhow::Result<bool> {
    let _lock = lock_as_owner(t)?;
    let applied = offline::migrate(&database(t)?, &t.backup_dir)?;
    if json {
        say!("{}", serde_json::json!({ "applied": applied }));
    } else {
        say!("{applied} migration(s) applied");
    }
    Ok(true)
}

pub fn export_master(t: &Target) -> anyhow::Result<bool> {
    let key_file = t.state.key_file();
    let text = std::fs::read_to_string(key_file).with_context(|| format!("{}", key_file.display()))?;
    say!("{}", text.trim());
    Ok(true)
}
