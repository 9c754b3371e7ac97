//! Handing freed memory back to the system. glibc keeps what a program
//! frees inside its heaps for reuse, and after one large block is freed it
//! raises its threshold so the next ones come from the heap too: after a
//! refresh load latchd held 42 MB of which 6.6 MB was in use, and an argon2
//! workspace (19 MiB) freed by an idle hashing thread stayed resident.
//! `malloc_trim` returns the free pages; it takes the heaps' locks briefly,
//! so it runs only when a thread goes idle or a backup or archive snapshot
//! (tens of MiB of buffers) is done, once when the daemon goes idle
//! after serving (`IdleTrim`: a second without a request), and on a slow
//! timer under steady load. `cap_heaps` keeps glibc from spreading a
//! load over more heaps than there are cores.

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

/// Caps glibc's heaps (arenas) at one per core, at least two, unless the
/// operator chose with `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES`. glibc's
/// default allows eight per core and gives each busy thread its own: after
/// a load latchd held 16 heaps with 31 MB of address space for 5.8 MB in
/// use, and their partly used pages (which `malloc_trim` cannot return)
/// kept 21 MiB resident; capped at two, 12.6 MiB. Sharing costs little:
/// each thread's small-allocation cache keeps the heaps' locks cold.
/// Must run before any other thread starts.
pub fn cap_heaps() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() || std::env::var_os("GLIBC_TUNABLES").is_some() {
            return;
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        // SAFETY: mallopt sets one glibc tunable; it takes no pointers and
        // runs while latchd still has a single thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, i32::try_from(cores).unwrap_or(i32::MAX));
        }
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
