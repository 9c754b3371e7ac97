//! `latchctl backup now|list|verify FILE|restore FILE`. `now` asks the
//! running daemon (an online backup needs the writer to go on); `list` and
//! `verify` read files and work with or without a daemon; `restore` is
//! offline and refuses while a daemon holds the state directory.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use super::{AdminClient, Target, offline, print, table};

use crate::backup::restore::{self, RestoreError, Source};
use crate::store::{archive_layout, backup};

#[derive(Subcommand)]
pub enum BackupCmd {
    /// Take a backup now (the daemon must run); prints the new file's path.
    Now,
    /// The backups in the backup folder, oldest first, and how far back
    /// the WAL archive can restore to.
    List,
    /// Unpack FILE into a temp file and check it (integrity, schema).
    Verify {
        /// A backup file (`.db.zst`, as `list` shows).
        file: PathBuf,
    },
    /// Replace the database with FILE, or with the database as of
    /// --to-time from the WAL archive (the daemon must be stopped).
    Restore {
        /// A backup file; with --to-time, the WAL archive folder (default:
        /// `[backup].archive_dir`).
        #[arg(required_unless_present = "to_time")]
        file: Option<PathBuf>,
        /// Restore the database as of this time (RFC 3339, e.g.
        /// 2026-12-02T10:15:00Z, a date (its 00:00 UTC), Unix seconds, or
        /// a while ago, e.g. 15m): its last commit at or before it, by the
        /// archive's times; a time this host's clock has not reached yet
        /// restores every commit the archive holds.
        #[arg(long, value_name = "T", value_parser = super::when::moment)]
        to_time: Option<i64>,
        /// Restore even though the live database has security changes
        /// (password changes, disables, revocations, blocks) made after
        /// the backup, which the restore undoes.
        #[arg(long)]
        accept_rollback: bool,
    },
}

pub fn run(client: &AdminClient, t: &Target, cmd: &BackupCmd, json: bool) -> anyhow::Result<bool> {
    match cmd {
        BackupCmd::Now => {
            let taken = client.post_and_wait("/v1/admin/backups")?;
            print(json, &taken, |t| t["path"].as_str().unwrap_or("?").to_string());
            Ok(true)
        }
        BackupCmd::List => list(t, json),
        BackupCmd::Verify { file } => verify(file, json),
        BackupCmd::Restore { file, to_time, accept_rollback } => {
            run_restore(t, file.as_deref(), *to_time, *accept_rollback, json)
        }
    }
}

fn list(t: &Target, json: bool) -> anyhow::Result<bool> {
    let listed = backup::list(&t.backup_dir)?;
    let value = serde_json::to_value(&listed)?;
    print(json, &value, |_| {
        let files = backup_files(&listed, &t.backup_dir);
        // The archive restores to any moment it covers: worth naming beside
        // the files, above all when there are none yet.
        let shown = t.archive_dir.display();
        let archive = match archive_layout::reach(&t.archive_dir) {
            Ok(Some(reach)) => {
                let gaps =
                    reach.gaps.iter().map(|(a, b)| (crate::clock::rfc3339(*a), crate::clock::rfc3339(*b)));
                let until = (reach.until.map(crate::clock::rfc3339))
                    .map(|until| format!(" until {}", super::status::until_damage(&until)));
                format!(
                    "WAL archive in {shown}: restorable to any moment since {}{}{} (restore --to-time T)",
                    crate::clock::rfc3339(reach.from),
                    until.unwrap_or_default(),
                    super::status::except_gaps(gaps)
                )
            }
            Ok(None) => format!("no WAL archive in {shown}"),
            Err(e) => format!("WAL archive in {shown}: cannot list: {e}"),
        };
        format!("{files}\n{archive}")
    });
    Ok(true)
}

fn backup_files(listed: &[backup::Listed], dir: &Path) -> String {
    if listed.is_empty() {
        return format!("no backups in {}", dir.display());
    }
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|l| {
            vec![crate::clock::rfc3339(l.written_at), l.size_bytes.to_string(), l.path.display().to_string()]
        })
        .collect();
    table(&["WRITTEN", "BYTES", "FILE"], &rows, "")
}

fn verify(file: &Path, json: bool) -> anyhow::Result<bool> {
    let found = backup::verify(file, &std::env::temp_dir())?;
    print(json, &serde_json::to_value(&found)?, |f| {
        if found.is_ok() {
            let taken = f["taken_at"].as_i64().map_or_else(|| "unknown".into(), crate::clock::rfc3339);
            format!(
                "{}: ok (schema {}, {} users, taken {taken})",
                file.display(),
                f["schema_version"],
                f["users"]
            )
        } else {
            format!("{}: DAMAGED: {}", file.display(), found.integrity.join("; "))
        }
    });
    Ok(found.is_ok())
}

fn run_restore(
    t: &Target,
    file: Option<&Path>,
    to_time: Option<i64>,
    accept_rollback: bool,
    json: bool,
) -> anyhow::Result<bool> {
    let (input, archive, to_ms);
    let source = match (to_time, file) {
        (Some(at), _) => {
            // 1 s granularity: every commit within the named second counts.
            to_ms = at.saturating_mul(1000).saturating_add(999);
            archive = file.map_or_else(|| t.archive_dir.clone(), Path::to_path_buf);
            Source::PointInTime { archive: &archive, to_ms }
        }
        (None, Some(file)) => {
            // Opened before acting as the state directory's owner: root
            // may read a backup the owner cannot.
            input = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
            Source::File { file: input, shown: file }
        }
        (None, None) => anyhow::bail!("name a backup FILE or give --to-time"),
    };
    let _lock = offline::lock_as_owner(t)?;
    let shown = file.map_or_else(|| t.archive_dir.display().to_string(), |f| f.display().to_string());
    let restored = match restore::restore(source, &t.state, &t.backup_dir, accept_rollback) {
        Err(RestoreError::Rollback(changes)) if !json => {
            for change in &changes {
                eprintln!("  would undo: {change}");
            }
            return Err(RestoreError::Rollback(changes).into());
        }
        other => other?,
    };
    print(json, &serde_json::to_value(&restored)?, |r| human_restored(&shown, r));
    Ok(true)
}

fn human_restored(from: &str, r: &Value) -> String {
    let v = &r["voided"];
    let kept = r["replaced_kept_at"]
        .as_str()
        .map_or_else(String::new, |p| format!("; replaced database kept at {p}"));
    let undone = match r["replaced_unreadable"] == true {
        // Not "0 undone": whatever it held after the backup is unknown.
        true => "the replaced database could not be read, so changes it held after the backup are not \
                 listed"
            .to_string(),
        false => {
            format!("{} later security change(s) undone", r["rolled_back"].as_array().map_or(0, Vec::len))
        }
    };
    let through = r["replayed"]["through"].as_str().map_or_else(String::new, |t| format!(" as of {t}"));
    format!(
        "restored {from}{through} ({} users) into {}{kept}\nvoided {} sessions, {} refresh tokens, {} one-time tokens, {} queued emails; {undone}",
        r["backup"]["users"],
        r["database"].as_str().unwrap_or("?"),
        v["sessions"],
        v["refresh_tokens"],
        v["one_time_tokens"],
        v["queued_emails"],
    )
}
