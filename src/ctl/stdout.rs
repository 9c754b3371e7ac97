//! What latchctl prints on standard output. A reader that stops reading
//! (`latchctl audit export | head`) is not an error: the rest is dropped
//! and latchctl finishes what it was doing, as `cat` would stop quietly
//! (`println!` panicked with a backtrace, and an export said "talking to
//! latchd: Broken pipe"). Any other failure to write (a full disk under a
//! redirection) is told on stderr once and makes the exit status 1.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed for another reason than a reader
/// that has gone.
static FAILED: AtomicBool = AtomicBool::new(false);

/// `println!` for latchctl (see the module doc).
macro_rules! say {
    ($($arg:tt)*) => { $crate::ctl::stdout::line(format_args!($($arg)*)) };
}
pub(super) use say;

pub(super) fn line(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    let written = writeln!(out, "{args}").and_then(|()| out.flush());
    if let Err(e) = written {
        failed(&e);
    }
}

/// Whether every write so far reached stdout or a reader that had gone.
pub(super) fn all_written() -> bool {
    !FAILED.load(Ordering::Relaxed)
}

fn failed(e: &io::Error) {
    if e.kind() != io::ErrorKind::BrokenPipe && !FAILED.swap(true, Ordering::Relaxed) {
        eprintln!("latchctl: cannot write to standard output: {e}");
    }
}

/// Standard output as a writer for a streamed answer. A write that fails
/// fails the download too; `failure` then tells a failure of this side
/// (its reader gone, a full disk) from one of the daemon's.
pub(super) struct Stream {
    inner: io::BufWriter<io::StdoutLock<'static>>,
    failed: Option<io::Error>,
}

/// Why writing a streamed answer to stdout stopped.
pub(super) enum Failure {
    /// Its reader stopped reading: not an error.
    ReaderGone,
    Write(io::Error),
}

impl Stream {
    pub(super) fn new() -> Self {
        Stream { inner: io::BufWriter::new(io::stdout().lock()), failed: None }
    }

    /// Whether (and how) writing to stdout failed.
    pub(super) fn failure(&mut self) -> Option<Failure> {
        let e = self.failed.take()?;
        Some(if e.kind() == io::ErrorKind::BrokenPipe { Failure::ReaderGone } else { Failure::Write(e) })
    }

    fn note<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        result.map_err(|e| {
            let told = io::Error::new(e.kind(), e.to_string());
            self.failed.get_or_insert(e);
            told
        })
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf);
        self.note(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        let flushed = self.inner.flush();
        self.note(flushed)
    }
}
