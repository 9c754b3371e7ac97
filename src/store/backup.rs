//! Backups of the live database: one read snapshot copied with SQLite's
//! online backup API while the writer goes on (WAL readers never block it),
//! checked with `PRAGMA integrity_check`, compressed with zstd, written to a
//! hidden temp name, fsynced and renamed — so the backups folder only ever
//! holds whole, verified copies. Used before every migration and by the
//! scheduled, on-demand and restore paths. The master key is a file apart
//! from the database, so no backup ever holds it.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::state_dir::partial_name;

/// Every backup file ends so; `backup list` shows these.
pub const SUFFIX: &str = ".db.zst";
/// Scheduled and on-demand backups; only these are pruned by `keep`.
pub const SCHEDULED_PREFIX: &str = "latch-";
/// zstd's default level: ~5× smaller for this schema at ~300 MB/s.
const LEVEL: i32 = 3;
/// The `meta` row a backup carries: when it was taken (Unix seconds).
const TAKEN_AT_KEY: &str = "backup_taken_at";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: the copy did not complete ({step})")]
    Incomplete { path: String, step: String },
    /// A copy holds the live file's pages as they are: the live database
    /// itself is damaged, and every backup from now on would be too.
    #[error(
        "{live} is damaged: this backup's copy of it fails SQLite's integrity check ({findings}); the \
         backups before it are kept: stop latchd and restore (`latchctl backup list`, `latchctl backup \
         restore`)"
    )]
    LiveDamaged { live: String, findings: String },
    #[error("{path}: not a latch backup (latch writes zstd-compressed SQLite files: *.db.zst)")]
    NotABackup { path: String },
    #[error("{path}: damaged, it does not decompress: {source}")]
    Damaged { path: String, source: std::io::Error },
}

fn sqlite_err(path: &Path) -> impl Fn(rusqlite::Error) -> BackupError + '_ {
    move |source| BackupError::Sqlite { path: path.display().to_string(), source }
}

/// An error in the fresh copy of `live` at `raw`: SQLite finding the copy
/// damaged finds the live file damaged, whose pages it holds as they are.
fn in_copy_of<'a>(live: &'a str, raw: &'a Path) -> impl Fn(rusqlite::Error) -> BackupError + 'a {
    move |source| match super::is_damage(&source) {
        true => BackupError::LiveDamaged { live: live.to_string(), findings: source.to_string() },
        false => sqlite_err(raw)(source),
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.display().to_string(), source }
}

/// A backup file written by `take`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Taken {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub taken_at: i64,
}

/// What `inspect` finds in a (decompressed) database.
#[derive(Debug, serde::Serialize)]
pub struct Inspected {
    /// `["ok"]` when SQLite's integrity check passes, else its findings.
    pub integrity: Vec<String>,
    pub schema_version: i64,
    pub users: i64,
    /// When the backup was taken (Unix seconds), if it says.
    pub taken_at: Option<i64>,
}

impl Inspected {
    pub fn is_ok(&self) -> bool {
        self.integrity == ["ok"]
    }
}

/// Takes a verified, compressed backup of the database behind `src` (its
/// read snapshot at the start of the copy) into `dir`, named `prefix`
/// plus the time.
pub fn take(src: &Connection, dir: &Path, prefix: &str) -> Result<Taken, BackupError> {
    make_private_dir(dir)?;
    let now = OffsetDateTime::now_utc();
    let dest = dir.join(format!("{prefix}{}{SUFFIX}", stamp(now)));
    let raw = dest.with_file_name(format!(".{}.raw", file_name(&dest)));
    let live = src.path().map_or_else(|| "the database".to_string(), str::to_string);
    let taken = (|| {
        copy_raw(src, &raw)?;
        let in_copy = in_copy_of(&live, &raw);
        let conn = Connection::open(&raw).map_err(&in_copy)?;
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            (TAKEN_AT_KEY, now.unix_timestamp().to_string()),
        )
        .map_err(&in_copy)?;
        let checked = integrity(&conn).map_err(&in_copy)?;
        if checked.findings != ["ok"] {
            return Err(BackupError::LiveDamaged {
                live: live.clone(),
                findings: checked.findings.join("; "),
            });
        }
        drop(conn);
        let size_bytes = compress(&raw, &dest)?;
        Ok(Taken { path: dest.clone(), size_bytes, taken_at: now.unix_timestamp() })
    })();
    let _ = fs::remove_file(&raw);
    taken
}

/// Decompresses `file` into a private temp file next to `scratch` and
/// checks it: integrity, schema version, users, when it was taken.
pub fn verify(file: &Path, scratch: &Path) -> Result<Inspected, BackupError> {
    make_private_dir(scratch)?;
    let tmp =
        tempfile::Builder::new().prefix(".latch-verify-").tempfile_in(scratch).map_err(io_err(scratch))?;
    decompress(File::open(file).map_err(io_err(file))?, file, tmp.path())?;
    inspect(tmp.path())
}

/// Integrity, schema version, user count and backup time of the database
/// at `path`, opened read-only.
pub fn inspect(path: &Path) -> Result<Inspected, BackupError> {
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite_err(path))?;
    let integrity = integrity(&conn).map_err(sqlite_err(path))?.findings;
    if integrity != ["ok"] {
        return Ok(Inspected { integrity, schema_version: 0, users: 0, taken_at: None });
    }
    let one = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0));
    let schema_version = one("SELECT max(version) FROM schema_migrations").map_err(sqlite_err(path))?;
    let users = one("SELECT count(*) FROM users").unwrap_or(Some(0));
    let taken_at = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [TAKEN_AT_KEY], |r| r.get::<_, String>(0))
        .ok()
        .and_then(|v| v.parse().ok());
    Ok(Inspected {
        integrity,
        schema_version: schema_version.unwrap_or(0),
        users: users.unwrap_or(0),
        taken_at,
    })
}

/// What SQLite's own check of every page and index found.
pub struct Integrity {
    /// `["ok"]` when the file is whole, else the findings.
    pub findings: Vec<String>,
    /// False when damage (the file's header, the schema's page) kept the
    /// check from running; `findings` then holds what SQLite met instead.
    pub ran: bool,
}

/// Runs `PRAGMA integrity_check`. Damage met before the check can run is
/// its finding, not a failure: every caller is asking whether the file is
/// whole, and that is the answer.
pub fn integrity(conn: &Connection) -> rusqlite::Result<Integrity> {
    let check = || -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare("PRAGMA integrity_check")?;
        stmt.query_map([], |r| r.get(0))?.collect()
    };
    match check() {
        Ok(findings) => Ok(Integrity { findings, ran: true }),
        Err(e) if super::is_damage(&e) => Ok(Integrity { findings: vec![e.to_string()], ran: false }),
        Err(e) => Err(e),
    }
}

/// One entry of `backup list`.
#[derive(Debug, serde::Serialize)]
pub struct Listed {
    pub path: PathBuf,
    pub size_bytes: u64,
    /// The file's modification time (Unix seconds): when it was written.
    pub written_at: i64,
}

/// The backups in `dir`, oldest first; an absent folder holds none.
pub fn list(dir: &Path) -> Result<Vec<Listed>, BackupError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(SUFFIX) {
            continue;
        }
        let meta = entry.metadata().map_err(io_err(&entry.path()))?;
        let written_at = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        found.push(Listed { path: entry.path(), size_bytes: meta.len(), written_at });
    }
    // Names carry the time to the millisecond, so they sort as they were taken.
    found.sort_by(|a, b| (a.written_at, &a.path).cmp(&(b.written_at, &b.path)));
    Ok(found)
}

/// Deletes the oldest scheduled backups beyond the newest `keep`, the one
/// just `taken` counted first; the pre-migration ones are left for the
/// operator. Returns how many went.
///
/// "Oldest" is by the files' times, which follow the clock: after the
/// clock is set back (it ran ahead, NTP put it right) the file just taken
/// is older than those written meanwhile, and a keep of 1 deleted it.
pub fn prune(dir: &Path, keep: usize, taken: &Path) -> Result<usize, BackupError> {
    let taken = file_name(taken);
    let scheduled: Vec<Listed> = list(dir)?
        .into_iter()
        .filter(|l| file_name(&l.path).starts_with(SCHEDULED_PREFIX) && file_name(&l.path) != taken)
        .collect();
    let excess = scheduled.len().saturating_sub(keep.saturating_sub(1));
    for old in &scheduled[..excess] {
        fs::remove_file(&old.path).map_err(io_err(&old.path))?;
    }
    Ok(excess)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// `20261202T013000.123Z`: sorts as time does and is safe in any file name.
fn stamp(t: OffsetDateTime) -> String {
    let format = format_description!("[year][month][day]T[hour][minute][second].[subsecond digits:3]Z");
    t.format(&format).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

pub fn make_private_dir(dir: &Path) -> Result<(), BackupError> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err(dir))
}

fn create_private(path: &Path) -> Result<File, BackupError> {
    let _ = fs::remove_file(path);
    fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io_err(path))
}

/// One backup step over every page: one read snapshot, so the copy is
/// consistent even while the writer commits.
fn copy_raw(src: &Connection, dest: &Path) -> Result<(), BackupError> {
    drop(create_private(dest)?);
    let mut to = Connection::open(dest).map_err(sqlite_err(dest))?;
    let step = Backup::new(src, &mut to).map_err(sqlite_err(dest))?.step(-1).map_err(sqlite_err(dest))?;
    if step != StepResult::Done {
        return Err(BackupError::Incomplete { path: dest.display().to_string(), step: format!("{step:?}") });
    }
    Ok(())
}

/// Compresses the file `raw` into `dest` (see `write_zstd`); returns the
/// compressed size. Never the live database: `compress_from` its
/// `Store::file()` (store/file.rs says why).
pub fn compress(raw: &Path, dest: &Path) -> Result<u64, BackupError> {
    let input = File::open(raw).map_err(io_err(raw))?;
    compress_from(input, dest)
}

/// Compresses what `source` reads into `dest`; returns the compressed size.
pub fn compress_from(source: impl std::io::Read, dest: &Path) -> Result<u64, BackupError> {
    write_zstd(BufReader::new(source), dest, LEVEL)
}

/// Writes `data` as it is into `dest` (see `write_atomically`): WAL
/// archive segments, which carry their own checksum. Their pages are
/// mostly index leaves full of random token hashes, which zstd's fastest
/// level shrank by 8 % for a twentieth of the daemon's CPU under load.
pub fn write_bytes(data: &[u8], dest: &Path) -> Result<u64, BackupError> {
    write_atomically(dest, |tmp, mut file| {
        file.write_all(data).map_err(io_err(tmp))?;
        Ok(file)
    })
}

/// Unpacks the zstd stream `input` (opened from `shown`) into `dest`
/// (0600, fsynced).
pub fn decompress(input: File, shown: &Path, dest: &Path) -> Result<(), BackupError> {
    let mut input = BufReader::new(input);
    // A file that does not start as zstd does (its magic number) was never
    // a backup: say so rather than pass on the decoder's own words.
    let head = input.fill_buf().map_err(io_err(shown))?;
    if !head.starts_with(&ZSTD_MAGIC) {
        return Err(BackupError::NotABackup { path: shown.display().to_string() });
    }
    let mut out = create_private(dest)?;
    zstd::stream::copy_decode(input, &mut out)
        .map_err(|source| BackupError::Damaged { path: shown.display().to_string(), source })?;
    out.sync_all().map_err(io_err(dest))
}

/// The four bytes every zstd frame starts with (RFC 8878 §3.1.1).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Writes `source` zstd-compressed into `dest` (see `write_atomically`).
fn write_zstd(mut source: impl std::io::Read, dest: &Path, level: i32) -> Result<u64, BackupError> {
    write_atomically(dest, |tmp, file| {
        let mut encoder = zstd::stream::Encoder::new(BufWriter::new(file), level).map_err(io_err(tmp))?;
        // A checksum per frame: a flipped bit fails `verify` even where
        // SQLite's page checks would not notice it.
        encoder.include_checksum(true).map_err(io_err(tmp))?;
        std::io::copy(&mut source, &mut encoder).map_err(io_err(tmp))?;
        let mut out = encoder.finish().map_err(io_err(tmp))?;
        out.flush().map_err(io_err(tmp))?;
        out.into_inner().map_err(|e| io_err(tmp)(e.into_error()))
    })
}

/// Writes `dest` through a hidden temp file that `fill` writes: synced,
/// 0600, renamed, and the folder fsynced so the rename itself is durable.
/// Returns the size written.
fn write_atomically(
    dest: &Path,
    fill: impl FnOnce(&Path, File) -> Result<File, BackupError>,
) -> Result<u64, BackupError> {
    let tmp = partial_name(dest);
    let written = (|| {
        let file = fill(&tmp, create_private(&tmp)?)?;
        // fdatasync: the data and the size, what reading it back needs;
        // the name is made durable by the folder's fsync after the rename.
        file.sync_data().map_err(io_err(&tmp))?;
        let size = file.metadata().map_err(io_err(&tmp))?.len();
        fs::rename(&tmp, dest).map_err(io_err(dest))?;
        if let Some(dir) = dest.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
        }
        Ok(size)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn live(dir: &Path) -> Connection {
        let writer = Connection::open(dir.join("live.db")).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE schema_migrations (version INTEGER); INSERT INTO schema_migrations VALUES (7);
                 CREATE TABLE users (x INTEGER);",
            )
            .unwrap();
        writer.execute("INSERT INTO users VALUES (1)", []).unwrap();
        writer
    }

    #[test]
    fn a_backup_is_one_snapshot_compressed_private_and_verifiable() {
        let dir = tempfile::tempdir().unwrap();
        let writer = live(dir.path());
        let reader = Connection::open(dir.path().join("live.db")).unwrap();
        reader.execute_batch("BEGIN; SELECT count(*) FROM users;").unwrap();
        // A write after the reader's snapshot began is not in its copy.
        writer.execute("INSERT INTO users VALUES (2)", []).unwrap();
        let backups = dir.path().join("backups");
        let taken = take(&reader, &backups, SCHEDULED_PREFIX).unwrap();
        assert!(file_name(&taken.path).starts_with("latch-") && file_name(&taken.path).ends_with(SUFFIX));
        assert_eq!(fs::metadata(&taken.path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(&backups).unwrap().count(), 1, "no temp file is left behind");
        let found = verify(&taken.path, dir.path()).unwrap();
        assert!(found.is_ok());
        assert_eq!((found.users, found.schema_version, found.taken_at), (1, 7, Some(taken.taken_at)));
        let raw = fs::read(dir.path().join("live.db")).unwrap();
        assert!(taken.size_bytes < raw.len() as u64 / 2, "compressed: {} of {}", taken.size_bytes, raw.len());
    }

    #[test]
    fn pruning_keeps_the_newest_scheduled_and_every_other_backup() {
        let dir = tempfile::tempdir().unwrap();
        let conn = live(dir.path());
        let backups = dir.path().join("backups");
        take(&conn, &backups, "pre-migrate-v1-").unwrap();
        let taken: Vec<Taken> = (0..4).map(|_| take(&conn, &backups, SCHEDULED_PREFIX).unwrap()).collect();
        assert_eq!(prune(&backups, 2, &taken[3].path).unwrap(), 2);
        let left: Vec<PathBuf> = list(&backups).unwrap().into_iter().map(|l| l.path).collect();
        assert_eq!(left.len(), 3);
        assert!(left.contains(&taken[2].path) && left.contains(&taken[3].path));
        assert!(left.iter().any(|p| file_name(p).starts_with("pre-migrate-v1-")));
    }

    #[test]
    fn the_backup_just_taken_stays_though_the_clock_was_set_back() {
        let dir = tempfile::tempdir().unwrap();
        let conn = live(dir.path());
        let backups = dir.path().join("backups");
        // Two written while the clock ran two hours ahead.
        let ahead = std::time::SystemTime::now() + std::time::Duration::from_secs(7200);
        for _ in 0..2 {
            let written = take(&conn, &backups, SCHEDULED_PREFIX).unwrap();
            File::options().write(true).open(&written.path).unwrap().set_modified(ahead).unwrap();
        }
        let now = take(&conn, &backups, SCHEDULED_PREFIX).unwrap();
        assert_eq!(prune(&backups, 1, &now.path).unwrap(), 2);
        let left: Vec<PathBuf> = list(&backups).unwrap().into_iter().map(|l| l.path).collect();
        assert_eq!(left, [now.path]);
    }

    #[test]
    fn a_damaged_file_fails_verification() {
        let dir = tempfile::tempdir().unwrap();
        let conn = live(dir.path());
        let taken = take(&conn, &dir.path().join("b"), SCHEDULED_PREFIX).unwrap();
        let mut bytes = fs::read(&taken.path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        fs::write(&taken.path, &bytes).unwrap();
        assert!(!verify(&taken.path, dir.path()).map(|i| i.is_ok()).unwrap_or(false));
    }
}
