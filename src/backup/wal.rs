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
    }
}
