//! How the WAL archive's folder is laid out: one `gen-<start Unix ms>`
//! folder per generation, each holding its snapshot and its segments. The
//! backup feature writes and replays it; the admin status and `latchctl`
//! read how far back it reaches, so the layout lives here, below them all.

use std::path::{Path, PathBuf};

/// A generation's folder: `gen-<start, Unix ms>`.
pub const GENERATION_PREFIX: &str = "gen-";
/// The generation's snapshot: the database file right after a checkpoint.
pub const SNAPSHOT: &str = "snapshot.db.zst";

/// The generations under `root`, oldest first: (start Unix ms, folder);
/// none when the folder cannot be read.
pub fn generations(root: &Path) -> Vec<(i64, PathBuf)> {
    listed(root).unwrap_or_default()
}

fn listed(root: &Path) -> std::io::Result<Vec<(i64, PathBuf)>> {
    let mut found: Vec<(i64, PathBuf)> = std::fs::read_dir(root)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ms = name.strip_prefix(GENERATION_PREFIX)?.parse().ok()?;
            Some((ms, e.path()))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// The first whole second (Unix) a restore from the archive under `root`
/// can reach: the start of its oldest generation whose snapshot was
/// finished, rounded up so that `restore --to-time` at it works. None while
/// there is none (archiving off, or the first snapshot still being
/// written); an error when the folder cannot be read, which an operator
/// must not take for "no archive".
pub fn restorable_from(root: &Path) -> std::io::Result<Option<i64>> {
    let all = match listed(root) {
        Ok(all) => all,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let first = all.into_iter().find(|(_, dir)| dir.join(SNAPSHOT).exists());
    Ok(first.map(|(ms, _)| (ms + 999).div_euclid(1000)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_generation_with_a_snapshot_is_where_a_restore_can_start() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(restorable_from(root.path()).unwrap(), None);
        assert_eq!(restorable_from(&root.path().join("absent")).unwrap(), None);
        for (ms, snapshot) in [(3_000, true), (1_000, false), (2_000_001, true)] {
            let dir = root.path().join(format!("{GENERATION_PREFIX}{ms:013}"));
            std::fs::create_dir(&dir).unwrap();
            if snapshot {
                std::fs::write(dir.join(SNAPSHOT), b"").unwrap();
            }
        }
        std::fs::create_dir(root.path().join("not-a-generation")).unwrap();
        let starts: Vec<i64> = generations(root.path()).into_iter().map(|(ms, _)| ms).collect();
        assert_eq!(starts, [1_000, 3_000, 2_000_001]);
        // 1,000's snapshot was never finished; 3,000 ms is second 3 exactly.
        assert_eq!(restorable_from(root.path()).unwrap(), Some(3));
        std::fs::remove_dir_all(root.path().join(format!("{GENERATION_PREFIX}{:013}", 3_000))).unwrap();
        assert_eq!(restorable_from(root.path()).unwrap(), Some(2_001), "rounded up to a whole second");
        let not_a_folder = root.path().join("file");
        std::fs::write(&not_a_folder, b"").unwrap();
        assert!(restorable_from(&not_a_folder).is_err());
    }
}
