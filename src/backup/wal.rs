//! The parts of SQLite's WAL file format the archive reads and replays
//! (sqlite.org/fileformat2.html#walformat): a 32-byte header whose salts
//! change every time the log restarts from its beginning, then frames of a
//! 24-byte header and one page. A frame whose `commit_size` is non-zero
//! ends a transaction. Frames left over from an earlier pass through the
//! file carry the old salts, which is how the end of the live log is found.

/// Bytes of the WAL header.
pub const HEADER: u64 = 32;
/// Bytes of a frame header.
const FRAME_HEADER: usize = 24;
const MAGIC: u32 = 0x377f_0682;

fn be(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// What the WAL header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    pub page_size: usize,
    pub salts: (u32, u32),
}

/// The header, or `None` when `b` does not start with one.
pub fn header(b: &[u8]) -> Option<WalHeader> {
    if b.len() < HEADER as usize || be(b, 0) & !1 != MAGIC {
        return None;
    }
    let page_size = be(b, 8) as usize;
    Some(WalHeader { page_size, salts: (be(b, 16), be(b, 20)) })
}

/// Bytes of one frame: its header and a page.
pub fn frame_len(h: &WalHeader) -> usize {
    FRAME_HEADER + h.page_size
}

/// How many bytes at the start of `frames` (which start at a frame
/// boundary) are whole frames of the log with `h`'s salts: the rest is a
/// torn frame or left over from an earlier pass.
pub fn live_len(frames: &[u8], h: &WalHeader) -> usize {
    let size = frame_len(h);
    frames.chunks_exact(size).take_while(|f| (be(f, 8), be(f, 12)) == h.salts).count() * size
}

/// How many bytes of `frames` (which start at a frame boundary) are whole
/// frames of the log with `h`'s salts, through the last commit frame.
pub fn committed_len(frames: &[u8], h: &WalHeader) -> usize {
    let size = FRAME_HEADER + h.page_size;
    let mut end = 0;
    for (i, frame) in frames.chunks_exact(size).enumerate() {
        if (be(frame, 8), be(frame, 12)) != h.salts {
            break;
        }
        if be(frame, 4) != 0 {
            end = (i + 1) * size;
        }
    }
    end
}

/// Of the whole frames in `frames`, the last one to write each page, in
/// their order. Replaying them leaves the database as replaying them all
/// would: a page ends with its last version either way, and the run's last
/// frame (its final commit, with the database size) is always kept. Under
/// load a batch rewrites the same few pages (a table's last leaf, its
/// indexes' hot pages) again and again; a segment of 100 ms of batches
/// holds each page five to ten times over.
///
/// `runs` are batches of whole frames, one after another; the kept frames
/// are appended to `out`.
pub fn last_versions(runs: &[&[u8]], page_size: usize, out: &mut Vec<u8>) {
    let size = FRAME_HEADER + page_size;
    let all = || runs.iter().flat_map(move |run| run.chunks_exact(size));
    let mut last = std::collections::HashMap::new();
    for (i, f) in all().enumerate() {
        last.insert(be(f, 0), i);
    }
    out.reserve(last.len() * size);
    for (i, f) in all().enumerate() {
        if last.get(&be(f, 0)) == Some(&i) {
            out.extend_from_slice(f);
        }
    }
}

/// One frame: the page it writes and, for a commit frame, the database
/// size in pages after the commit.
pub struct Frame<'a> {
    pub page: u32,
    pub commit_size: u32,
    pub data: &'a [u8],
}

/// The frames of an archived run (whole frames, as `committed_len` cut them).
pub fn frames(bytes: &[u8], page_size: usize) -> impl Iterator<Item = Frame<'_>> {
    bytes.chunks_exact(FRAME_HEADER + page_size).map(|f| Frame {
        page: be(f, 0),
        commit_size: be(f, 4),
        data: &f[FRAME_HEADER..],
    })
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    #[test]
    fn a_live_wal_is_read_through_its_last_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t (x);").unwrap();
        c.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let wal = std::fs::read(dir.path().join("t.db-wal")).unwrap();
        let h = header(&wal).unwrap();
        assert_eq!(h.page_size, 4096);
        let body = &wal[HEADER as usize..];
        assert_eq!(committed_len(body, &h), body.len(), "two commits, both whole");
        let commits = frames(body, h.page_size).filter(|f| f.commit_size > 0).count();
        assert_eq!(commits, 2);
        let stale = WalHeader { salts: (h.salts.0 + 1, h.salts.1), ..h };
        assert_eq!(committed_len(body, &stale), 0, "frames of another pass do not count");
        assert_eq!(live_len(body, &h), body.len());
        assert_eq!(
            live_len(&body[..body.len() - 1], &h),
            body.len() - frame_len(&h),
            "a torn frame is not live"
        );
        assert_eq!(live_len(body, &stale), 0);
    }

    fn frame(page: u32, commit_size: u32, fill: u8) -> Vec<u8> {
        let mut f = vec![fill; FRAME_HEADER + 16];
        f[..4].copy_from_slice(&page.to_be_bytes());
        f[4..8].copy_from_slice(&commit_size.to_be_bytes());
        f
    }

    #[test]
    fn only_the_last_version_of_each_page_is_kept_and_the_final_commit_with_it() {
        let first = [frame(1, 0, 1), frame(2, 5, 2)].concat();
        let second = [frame(1, 0, 3), frame(3, 0, 4), frame(2, 6, 5)].concat();
        let mut kept = b"head".to_vec();
        last_versions(&[&first, &second], 16, &mut kept);
        assert_eq!(&kept[..4], b"head", "appended after what was there");
        let kept = &kept[4..];
        let seen: Vec<(u32, u32, u8)> =
            frames(kept, 16).map(|f| (f.page, f.commit_size, f.data[0])).collect();
        assert_eq!(seen, [(1, 0, 3), (3, 0, 4), (2, 6, 5)]);
        let mut none = Vec::new();
        last_versions(&[], 16, &mut none);
        assert!(none.is_empty());
    }
}
