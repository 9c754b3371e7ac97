//! Handing freed memory back to the system. glibc keeps what a program
//! frees inside its heaps for reuse, and after one large block is freed it
//! raises its threshold so the next ones come from the heap too: after a
//! refresh load latchd held 42 MB of which 6.6 MB was in use, and an argon2
//! workspace (19 MiB) freed by an idle hashing thread stayed resident.
//! `malloc_trim` returns the free pages; it takes the heaps' locks briefly,
//! so it runs only when a thread goes idle or a backup or archive snapshot
//! (tens of MiB of buffers) is done, once when the daemon goes idle
//! after serving (`IdleTrim`: a second without a request), and on a slow
//! timer under steady load.

use std::sync::atomic::{AtomicU64, Ordering};

/// Requests answered since start; the idle check watches it stand still.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Counts one answered request.
pub fn note_request() {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
}

/// Decides, once a second, whether the daemon has just gone idle.
#[derive(Default)]
pub struct IdleTrim {
    /// The request count a second ago.
    seen: u64,
    /// The request count at the last trim.
    trimmed: u64,
}

impl IdleTrim {
    /// True once per quiet spell: no request in the last second, some since
    /// the last trim.
    pub fn due(&mut self) -> bool {
        let now = REQUESTS.load(Ordering::Relaxed);
        let quiet = now == self.seen;
        self.seen = now;
        if quiet && now != self.trimmed {
            self.trimmed = now;
            return true;
        }
        false
    }
}

/// Returns free heap pages to the system (glibc only; elsewhere a no-op).
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heaps under their locks;
    // it takes no pointers from us.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_is_due_once_after_requests_stop() {
        let mut idle = IdleTrim::default();
        idle.due();
        assert!(!idle.due(), "nothing served yet");
        note_request();
        assert!(!idle.due(), "still serving");
        assert!(idle.due(), "a quiet second after serving");
        assert!(!idle.due(), "once per quiet spell");
    }
}
