//! Where log lines go (`[log].file` or stdout), written in batches by one
//! thread. Writing each line with its own `write` cost ~10 % of latchd's
//! CPU under load at `info` (the access log is a line per request); a
//! line now waits at most `LINGER` for others to share its write.
//!
//! Warnings and errors are written at once, by the thread that logs them,
//! after whatever is pending (so order is kept): they are rare, and the
//! line saying why latchd stopped must not wait in memory. `flush` writes
//! what is pending; latchd calls it before it exits and from the panic
//! hook. A SIGKILL loses at most the last `LINGER` of `info` lines.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait for others to share its write.
const LINGER: Duration = Duration::from_millis(1);

/// Pending bytes beyond which the logging thread writes them itself: a
/// stalled output (a busy journald) then slows the callers instead of
/// growing memory without bound — as writing every line in place did.
const MAX_PENDING: usize = 1 << 20;

pub type Output = Box<dyn Write + Send>;

struct Shared {
    pending: Mutex<Vec<u8>>,
    arrived: Condvar,
    /// The output and a spare buffer the pending bytes are swapped into.
    /// Taken before `pending` by every writer, so batches leave in order.
    output: Mutex<(Output, Vec<u8>)>,
}

/// The `MakeWriter` the log subscriber formats into; cheap to clone.
#[derive(Clone)]
pub struct BatchedOutput(Arc<Shared>);

/// The output installed for this process, for `flush`.
static INSTALLED: OnceLock<BatchedOutput> = OnceLock::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while logging leaves nothing half-done worth refusing over.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BatchedOutput {
    /// Starts the thread that writes batches to `output`.
    pub fn start(output: Output) -> std::io::Result<BatchedOutput> {
        let this = BatchedOutput(Arc::new(Shared {
            pending: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            output: Mutex::new((output, Vec::new())),
        }));
        let batcher = this.clone();
        std::thread::Builder::new().name("latch-log".into()).spawn(move || batcher.run())?;
        let _ = INSTALLED.set(this.clone());
        Ok(this)
    }

    fn run(self) {
        loop {
            let mut pending = lock(&self.0.pending);
            while pending.is_empty() {
                pending = self.0.arrived.wait(pending).unwrap_or_else(PoisonError::into_inner);
            }
            drop(pending);
            std::thread::sleep(LINGER);
            self.write_pending(None);
        }
    }

    /// Writes every pending line, then `line` if given, in one `write`.
    fn write_pending(&self, line: Option<&[u8]>) {
        self.write_batch(&mut lock(&self.0.output), line);
    }

    fn write_batch(&self, out: &mut (Output, Vec<u8>), line: Option<&[u8]>) {
        let (output, batch) = out;
        std::mem::swap(batch, &mut *lock(&self.0.pending));
        if let Some(line) = line {
            batch.extend_from_slice(line);
        }
        if !batch.is_empty() {
            // Nowhere to report a failed log write to: these lines are
            // lost, and the next batch tries the output again.
            let _ = output.write_all(batch).and_then(|()| output.flush());
            batch.clear();
        }
    }

    fn queue(&self, line: &[u8]) {
        let mut pending = lock(&self.0.pending);
        let first = pending.is_empty();
        pending.extend_from_slice(line);
        let full = pending.len() > MAX_PENDING;
        drop(pending);
        if full {
            self.write_pending(None);
        } else if first {
            self.0.arrived.notify_one();
        }
    }
}

/// Writes whatever lines are pending now (before the process exits).
pub fn flush() {
    if let Some(installed) = INSTALLED.get() {
        installed.write_pending(None);
    }
}

/// Sends later lines to `output` (a log file opened anew after logrotate
/// moved the old one away); what is pending goes to the old one first.
pub fn replace(output: Output) {
    if let Some(installed) = INSTALLED.get() {
        let mut out = lock(&installed.0.output);
        installed.write_batch(&mut out, None);
        out.0 = output;
    }
}

/// As `flush`, for the panic hook: skipped when the output is busy (the
/// panic may have struck while this thread held it).
pub fn flush_after_panic() {
    if let Some(installed) = INSTALLED.get()
        && let Ok(mut out) = installed.0.output.try_lock()
    {
        installed.write_batch(&mut out, None);
    }
}

/// One event's writer: the formatter hands it the whole line at once.
pub struct LineWriter<'a> {
    to: &'a BatchedOutput,
    at_once: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        if self.at_once {
            self.to.write_pending(Some(line))
        } else {
            self.to.queue(line)
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedOutput {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter { to: self, at_once: false }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter<'a> {
        LineWriter { to: self, at_once: *meta.level() <= Level::WARN }
    }
}
