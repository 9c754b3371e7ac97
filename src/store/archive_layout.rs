//! How the WAL archive's folder is laid out: one `gen-<start Unix ms>`
//! folder per generation, each holding its snapshot and its segments. The
//! backup feature writes and replays it; the admin status and `latchctl`
//! read how far back it reaches, so the layout lives here, below them all.

use std::path::{Path, PathBuf};

/// A generation's folder: `gen-<start, Unix ms>`.
pub const GENERATION_PREFIX: &str = "gen-";
/// The generation's snapshot: the database file right after a checkpoint.
pub const SNAPSHOT: &str = "snapshot.db.zst";

/// Written into a generation whose snapshot failed SQLite's integrity
/// check, holding the findings: it copied a damaged database, so nothing
/// replayed onto it is whole. The snapshot stays, for whoever would read
/// what they can of it; a restore reaches around the generation as around
/// one whose snapshot was never finished.
pub const DAMAGED: &str = "damaged.txt";

/// Whether a restore can start from the generation in `dir`: its snapshot
/// was finished and passed its check.
pub fn restorable(dir: &Path) -> bool {
    dir.join(SNAPSHOT).exists() && !copied_damage(dir)
}

/// Whether the generation in `dir` copied a damaged database (`DAMAGED`).
pub fn copied_damage(dir: &Path) -> bool {
    dir.join(DAMAGED).exists()
}

/// The generations under `root`, oldest first: (start Unix ms, folder);
/// none when the folder cannot be read.
pub fn generations(root: &Path) -> Vec<(i64, PathBuf)> {
    listed(root).unwrap_or_default()
}

/// When the generation in folder `dir` began (Unix ms), by its name.
pub fn generation_start(dir: &Path) -> Option<i64> {
    dir.file_name()?.to_str()?.strip_prefix(GENERATION_PREFIX)?.parse().ok()
}

fn listed(root: &Path) -> std::io::Result<Vec<(i64, PathBuf)>> {
    let mut found: Vec<(i64, PathBuf)> = std::fs::read_dir(root)?
        .flatten()
        .filter_map(|e| Some((generation_start(&e.path())?, e.path())))
        .collect();
    found.sort();
    Ok(found)
}

/// The last whole second (Unix) a `restore --to-time` can name and still
/// reach no commit made at or after `ms`: `--to-time S` counts every commit
/// within S, up to S.999.
pub fn second_before(ms: i64) -> i64 {
    (ms - 1000).div_euclid(1000)
}

/// How far a restore from the archive reaches, in the whole seconds (Unix)
/// `restore --to-time` names.
#[derive(Debug, PartialEq, Eq)]
pub struct Reach {
    /// The first second: the one the oldest generation whose snapshot was
    /// finished began in (its snapshot holds nothing later than its start,
    /// and `--to-time S` reaches every commit within S).
    pub from: i64,
    /// Seconds refused since then, each `[from, until)`: a generation whose
    /// snapshot was never finished (the daemon died while writing it, or
    /// the write failed) holds none of the commits made until the next
    /// finished one began. The newest generation is not counted: its
    /// snapshot may be the one a running daemon is writing.
    pub gaps: Vec<(i64, i64)>,
    /// The last second a restore reaches when the newest generation copied
    /// a damaged database (from the start of the stretch that runs into
    /// it, nothing is whole); None: every commit archived.
    pub until: Option<i64>,
}

/// The reach of the archive under `root`: None while it has no finished
/// snapshot (archiving off, or the first snapshot still being written);
/// an error when the folder cannot be read, which an operator must not
/// take for "no archive".
pub fn reach(root: &Path) -> std::io::Result<Option<Reach>> {
    let all = match listed(root) {
        Ok(all) => all,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let finished: Vec<bool> = all.iter().map(|(_, dir)| restorable(dir)).collect();
    let Some(first) = finished.iter().position(|f| *f) else { return Ok(None) };
    let (mut gaps, mut unfinished_since, mut until) = (Vec::new(), None, None);
    for (i, (ms, dir)) in all.iter().enumerate().skip(first + 1) {
        let newest = i + 1 == all.len();
        if newest && copied_damage(dir) {
            until = Some(second_before(unfinished_since.unwrap_or(*ms)));
            break;
        }
        if let Some(since) = unfinished_since.filter(|_| finished[i] || newest) {
            // `--to-time S` counts every commit within S: the second a
            // generation began in already reaches it.
            let (from, until) = (i64::div_euclid(since, 1000), ms.div_euclid(1000));
            if from < until {
                gaps.push((from, until));
            }
            unfinished_since = None;
        } else if !finished[i] && !newest {
            unfinished_since = unfinished_since.or(Some(*ms));
        }
    }
    Ok(Some(Reach { from: all[first].0.div_euclid(1000), gaps, until }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(root: &Path, ms: i64, snapshot: bool) {
        let dir = root.join(format!("{GENERATION_PREFIX}{ms:013}"));
        std::fs::create_dir(&dir).unwrap();
        if snapshot {
            std::fs::write(dir.join(SNAPSHOT), b"").unwrap();
        }
    }

    #[test]
    fn the_oldest_generation_with_a_snapshot_is_where_a_restore_can_start() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(reach(root.path()).unwrap(), None);
        assert_eq!(reach(&root.path().join("absent")).unwrap(), None);
        for (ms, snapshot) in [(3_000, true), (1_000, false), (2_000_001, true)] {
            generation(root.path(), ms, snapshot);
        }
        std::fs::create_dir(root.path().join("not-a-generation")).unwrap();
        let starts: Vec<i64> = generations(root.path()).into_iter().map(|(ms, _)| ms).collect();
        assert_eq!(starts, [1_000, 3_000, 2_000_001]);
        // 1,000's snapshot was never finished; 3,000 ms is second 3 exactly.
        assert_eq!(reach(root.path()).unwrap(), Some(Reach { from: 3, gaps: vec![], until: None }));
        std::fs::remove_dir_all(root.path().join(format!("{GENERATION_PREFIX}{:013}", 3_000))).unwrap();
        let from = reach(root.path()).unwrap().map(|r| r.from);
        assert_eq!(from, Some(2_000), "the second it began in: --to-time 2000 reaches 2,000.001 s");
        let not_a_folder = root.path().join("file");
        std::fs::write(&not_a_folder, b"").unwrap();
        assert!(reach(&not_a_folder).is_err());
    }

    #[test]
    fn unfinished_generations_after_the_first_finished_one_are_gaps_until_the_next_one() {
        let root = tempfile::tempdir().unwrap();
        let runs = [(10_500, true), (20_400, false), (25_000, false), (30_700, true), (40_000, true)];
        for (ms, snapshot) in runs {
            generation(root.path(), ms, snapshot);
        }
        // 20.4 s and 25 s: one gap, from the second 20.4 s is in to the one
        // the next finished generation began in.
        assert_eq!(reach(root.path()).unwrap(), Some(Reach { from: 10, gaps: vec![(20, 30)], until: None }));
        // The newest unfinished one may be a running daemon's: no gap yet,
        // but it ends one that is open.
        generation(root.path(), 50_000, false);
        assert_eq!(reach(root.path()).unwrap().unwrap().gaps, [(20, 30)]);
        // 50 s and 50.1 s share a second: `--to-time` 50 reaches 50.1 s.
        generation(root.path(), 50_100, true);
        generation(root.path(), 60_000, false);
        generation(root.path(), 70_000, false);
        assert_eq!(reach(root.path()).unwrap().unwrap().gaps, [(20, 30), (60, 70)]);
    }

    #[test]
    fn a_generation_that_copied_damage_is_reached_around_and_as_the_newest_ends_the_reach() {
        let root = tempfile::tempdir().unwrap();
        let damaged = |ms: i64| {
            generation(root.path(), ms, true);
            std::fs::write(root.path().join(format!("{GENERATION_PREFIX}{ms:013}")).join(DAMAGED), "x")
                .unwrap();
        };
        generation(root.path(), 10_500, true);
        damaged(20_400);
        let reached = reach(root.path()).unwrap().unwrap();
        assert_eq!((reached.gaps, reached.until), (vec![], Some(19)), "up to the second before it");
        // After a restore the next start's generation is whole again: the
        // damaged one is a gap like an unfinished one.
        generation(root.path(), 30_700, true);
        let reached = reach(root.path()).unwrap().unwrap();
        assert_eq!((reached.gaps, reached.until), (vec![(20, 30)], None));
        // A stretch of unfinished generations running into a damaged newest
        // ends the reach where it began.
        generation(root.path(), 40_000, false);
        damaged(50_000);
        assert_eq!(reach(root.path()).unwrap().unwrap().until, Some(39));
        assert!(!restorable(&root.path().join(format!("{GENERATION_PREFIX}{:013}", 50_000))));
    }

    #[test]
    fn a_damaged_generation_a_second_after_the_only_whole_one_leaves_that_second() {
        let root = tempfile::tempdir().unwrap();
        generation(root.path(), 10_500, true);
        generation(root.path(), 11_400, true);
        let dir = root.path().join(format!("{GENERATION_PREFIX}{:013}", 11_400));
        std::fs::write(dir.join(DAMAGED), "x").unwrap();
        // `--to-time 10` reaches 10.999 s: the whole snapshot of 10.5 s and
        // nothing of the damaged one, begun at 11.4 s. The range must not
        // read backwards (from 11 until 10).
        let reached = reach(root.path()).unwrap().unwrap();
        assert_eq!((reached.from, reached.until), (10, Some(10)));
        assert_eq!(second_before(11_400), 10);
        assert_eq!(second_before(11_000), 10, "--to-time 10 ends at 10.999 s, before 11.0 s");
        assert_eq!(second_before(10_999), 9, "--to-time 10 would reach 10.999 s itself");
        assert_eq!(second_before(500), -1, "whole seconds before 1970 stay below");
    }
}
