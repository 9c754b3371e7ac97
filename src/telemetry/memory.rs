//! Handing freed memory back to the system. glibc keeps what a program
//! frees inside its heaps for reuse, and after one large block is freed it
//! raises its threshold so the next ones come from the heap too: after a
//! refresh load latchd held 42 MB of which 6.6 MB was in use, and an argon2
//! workspace (19 MiB) freed by an idle hashing thread stayed resident.
//! `malloc_trim` returns the free pages; it takes the heaps' locks briefly,
//! so it runs only when a thread goes idle and on a slow timer.

/// Returns free heap pages to the system (glibc only; elsewhere a no-op).
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heaps under their locks;
    // it takes no pointers from us.
    unsafe {
        libc::malloc_trim(0);
    }
}
