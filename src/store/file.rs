//! The database file as bytes (what the WAL archive's snapshot compresses),
//! read through one descriptor that the store opens with the database and
//! keeps open for as long as the store lives.
//!
//! Why not open the file when it is needed: SQLite's locks are POSIX
//! record locks, which belong to the process, and closing *any* descriptor
//! of a file releases every lock the process holds on it, SQLite's own
//! included (SQLite defers closing its descriptors for that reason). A
//! snapshot that opened and closed `latch.db` left the daemon holding no
//! lock on its database: the next outside connection to close (an
//! operator's `sqlite3 latch.db 'SELECT …'`) then took itself for the
//! last one, checkpointed and deleted the log under the running daemon,
//! whose following commits went to the deleted file and were lost at the
//! next crash.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// The open database file; cheap to clone, closed when the last clone goes.
#[derive(Clone)]
pub struct DatabaseFile(Arc<File>);

impl DatabaseFile {
    pub(super) fn open(path: &Path) -> std::io::Result<Self> {
        File::open(path).map(|f| Self(Arc::new(f)))
    }

    /// Reads the file from its start (positioned reads: several readers
    /// never move each other).
    pub fn reader(&self) -> FileReader {
        FileReader { file: Arc::clone(&self.0), at: 0 }
    }
}

/// `Read` over the database file from its start; keeps the file open.
pub struct FileReader {
    file: Arc<File>,
    at: u64,
}

impl Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}
