//! Point-in-time restore from the WAL archive: pick the newest generation
//! that started at or before the target time, unpack its snapshot, and
//! write the pages of every archived segment whose commit time is at or
//! before the target onto it, in order — the same thing SQLite's own
//! checkpoint does with a log. Segments end on commits, so the result is
//! the database exactly as of its last commit at or before the target. A
//! target past the start of a generation whose snapshot was never finished
//! is refused: the archive holds none of that generation's commits. A
//! target this host's clock has not reached yet means every commit.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::segment;
use super::wal;
use crate::store::archive_layout::{SNAPSHOT, copied_damage, generations, reach, restorable, second_before};
use crate::store::backup::{self as copies, BackupError};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no WAL archive generation in {root} starts at or before {to}; {reach}")]
    NoGeneration { root: String, to: String, reach: String },
    #[error(
        "the WAL archive cannot restore {to}: generation {generation} began at {began} and its snapshot \
         was never finished (the daemon stopped, or the write failed), so the archive holds none of the \
         commits made from then until a later generation began; {way_back}"
    )]
    Unfinished { to: String, generation: String, began: String, way_back: String },
    #[error(
        "the WAL archive cannot restore {to}: generation {generation} began at {began} on a damaged \
         database (its snapshot failed SQLite's integrity check), so nothing from then until a later \
         generation began is restored whole; {way_back}"
    )]
    CopiedDamage { to: String, generation: String, began: String, way_back: String },
    #[error("{0}: not a whole latch WAL archive segment (damaged or cut short)")]
    NotASegment(String),
    #[error("{generation}: segment {missing} is missing; the archive ends before the time asked for")]
    Gap { generation: String, missing: u64 },
    #[error(transparent)]
    Copy(#[from] BackupError),
}

/// What a rebuild replayed.
#[derive(Debug, serde::Serialize)]
pub struct Rebuilt {
    pub generation: PathBuf,
    pub segments: u64,
    /// The last commit replayed (RFC 3339 with milliseconds).
    pub through: String,
}

struct Segment {
    seq: u64,
    commit_ms: i64,
    path: PathBuf,
}

/// The newest time the archive under `root` holds: its newest generation's
/// start or that generation's last commit, whichever is later; 0 for none.
pub(super) fn newest_stamp(root: &Path) -> i64 {
    let Some((started, dir)) = generations(root).pop() else { return 0 };
    segments(&dir).iter().map(|s| s.commit_ms).fold(started, i64::max)
}

fn segments(dir: &Path) -> Vec<Segment> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<Segment> = entries
        .flatten()
        .filter_map(|e| {
            let (seq, commit_ms) = segment::parse_name(&e.file_name().to_string_lossy())?;
            Some(Segment { seq, commit_ms, path: e.path() })
        })
        .collect();
    found.sort_by_key(|s| s.seq);
    found
}

/// Writes into `dest` the database as of its last commit at or before
/// `to_ms` (Unix milliseconds), from the archive under `root`.
pub fn rebuild(root: &Path, to_ms: i64, dest: &Path) -> Result<Rebuilt, ReplayError> {
    // A time this host's clock has not reached yet asks for every commit
    // there is: the archive's times can be ahead of it (another host's
    // clock, for a standby; this one's before it was set back, see
    // `archive.rs`), and those commits were made before now all the same.
    let upto = if to_ms >= crate::clock::now_unix_ms() { i64::MAX } else { to_ms };
    // A generation whose snapshot was never finished (the daemon died while
    // writing it, or the write failed) or copied a damaged database cannot
    // be replayed; the one before it can, up to that one's start.
    let all = generations(root);
    let usable = |(ms, dir): &&(i64, PathBuf)| *ms <= upto && restorable(dir);
    let Some((start, generation)) = all.iter().rfind(usable).cloned() else {
        let to = crate::clock::rfc3339(to_ms.div_euclid(1000));
        // Where it does reach, so the operator's next try is not a guess.
        let reach = match reach(root) {
            Ok(Some(reach)) => format!("it reaches back to {}", crate::clock::rfc3339(reach.from)),
            Ok(None) => "it holds no finished snapshot".to_string(),
            Err(e) => format!("it cannot be listed: {e}"),
        };
        return Err(ReplayError::NoGeneration { root: root.display().to_string(), to, reach });
    };
    // Any generation begun after that one and by the target is unfinished
    // or copied damage: replaying the one before would end at its last
    // commit, silently short of the moment asked for.
    if let Some((began, unusable)) = all.iter().find(|(ms, _)| *ms > start && *ms <= upto) {
        let (to, generation) =
            (crate::clock::rfc3339(to_ms.div_euclid(1000)), unusable.display().to_string());
        let (began, way_back) = (rfc3339_ms(*began), way_back(*began));
        return Err(match copied_damage(unusable) {
            true => ReplayError::CopiedDamage { to, generation, began, way_back },
            false => ReplayError::Unfinished { to, generation, began, way_back },
        });
    }
    let snapshot = generation.join(SNAPSHOT);
    let input = File::open(&snapshot).map_err(|source| io(&snapshot, source))?;
    copies::decompress(input, &snapshot, dest)?;
    let db = OpenOptions::new().read(true).write(true).open(dest).map_err(|source| io(dest, source))?;
    let (mut applied, mut through, mut size) = (0, start, None);
    for seg in segments(&generation).into_iter().take_while(|s| s.commit_ms <= upto) {
        if seg.seq != applied {
            let generation = generation.display().to_string();
            return Err(ReplayError::Gap { generation, missing: applied });
        }
        size = apply(&db, &seg.path)?.or(size);
        (applied, through) = (applied + 1, seg.commit_ms);
    }
    if let Some((pages, page_size)) = size {
        db.set_len(u64::from(pages) * page_size as u64).map_err(|source| io(dest, source))?;
    }
    db.sync_all().map_err(|source| io(dest, source))?;
    Ok(Rebuilt { generation, segments: applied, through: rfc3339_ms(through) })
}

/// Writes one segment's pages into `db`; returns the database size (pages,
/// page size) after its last commit.
fn apply(db: &File, path: &Path) -> Result<Option<(u32, usize)>, ReplayError> {
    let read = segment::read(path).map_err(|source| io(path, source))?;
    let (page_size, frames) = read.ok_or_else(|| ReplayError::NotASegment(path.display().to_string()))?;
    let mut size = None;
    for frame in wal::frames(&frames, page_size) {
        let at = u64::from(frame.page.saturating_sub(1)) * page_size as u64;
        db.write_all_at(frame.data, at).map_err(|source| io(path, source))?;
        if frame.commit_size > 0 {
            size = Some((frame.commit_size, page_size));
        }
    }
    Ok(size)
}

fn io(path: &Path, source: std::io::Error) -> ReplayError {
    ReplayError::Copy(BackupError::Io { path: path.display().to_string(), source })
}

/// The way back past a generation begun at `began_ms` that no restore can
/// start from or replay through, as every refusal words it.
pub(super) fn way_back(began_ms: i64) -> String {
    let before = crate::clock::rfc3339(second_before(began_ms));
    format!("the latest moment before it that the archive restores is --to-time {before}")
}

fn rfc3339_ms(ms: i64) -> String {
    let base = crate::clock::rfc3339(ms.div_euclid(1000));
    let millis = ms.rem_euclid(1000);
    base.strip_suffix('Z').map_or(base.clone(), |b| format!("{b}.{millis:03}Z"))
}
