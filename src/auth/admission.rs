//! Admission to the hashing pool: whether a job arriving now would wait
//! longer than `[passwords].max_queue_wait` for a thread, judged from the
//! jobs ahead of it and the mean time a job takes on this machine.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// What admission needs to know: how busy the pool is and how long a hash
/// takes here, which varies with the parameters and the machine's load.
pub(super) struct Admission {
    threads: usize,
    /// Jobs queued or running.
    pub(super) depth: AtomicUsize,
    /// Mean wall time of one job on a pool thread, in nanoseconds (moving
    /// average, 1/8 weight to the newest; 0 until the first job).
    mean_job_nanos: AtomicU64,
    /// `[passwords].max_queue_wait`, in nanoseconds.
    pub(super) max_wait_nanos: AtomicU64,
}

impl Admission {
    pub(super) fn new(threads: usize) -> Admission {
        Admission {
            threads,
            depth: AtomicUsize::new(0),
            mean_job_nanos: AtomicU64::new(0),
            max_wait_nanos: AtomicU64::new(0),
        }
    }

    pub(super) fn admits(&self, depth: usize) -> bool {
        let mean = Duration::from_nanos(self.mean_job_nanos.load(Ordering::Relaxed));
        let limit = Duration::from_nanos(self.max_wait_nanos.load(Ordering::Relaxed));
        expected_wait(depth, self.threads, mean) <= limit
    }

    /// How long the write after a finished job may wait for the next
    /// job's write, to share its commit: about the time until the pool
    /// finishes another (a mean job over the threads), at most `most` and
    /// a quarter of `max_queue_wait` (an operator who keeps a login's wait
    /// for a thread short wants this short too). Zero while no other job is
    /// queued or running, and before the first job was timed.
    pub(super) fn company_wait(&self, most: Duration) -> Duration {
        if self.depth.load(Ordering::Relaxed) == 0 {
            return Duration::ZERO;
        }
        let mean = Duration::from_nanos(self.mean_job_nanos.load(Ordering::Relaxed));
        let threads = u32::try_from(self.threads.max(1)).unwrap_or(u32::MAX);
        let quarter = Duration::from_nanos(self.max_wait_nanos.load(Ordering::Relaxed) / 4);
        (mean / threads).min(most).min(quarter)
    }

    pub(super) fn record(&self, took: Duration) {
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let old = self.mean_job_nanos.load(Ordering::Relaxed);
        let new = if old == 0 { took } else { old - old / 8 + took / 8 };
        self.mean_job_nanos.store(new, Ordering::Relaxed);
    }
}

/// How long a job arriving when `depth` jobs are queued or running waits
/// for a thread: nothing while one is free, else one mean job for every
/// `threads` jobs ahead of it.
fn expected_wait(depth: usize, threads: usize, mean_job: Duration) -> Duration {
    let ahead = (depth + 1).saturating_sub(threads);
    mean_job.mul_f64(ahead as f64 / threads.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_waits_only_behind_the_jobs_that_outnumber_the_threads() {
        let ms = Duration::from_millis;
        // Two threads, 20 ms a hash.
        assert_eq!(expected_wait(0, 2, ms(20)), Duration::ZERO);
        assert_eq!(expected_wait(1, 2, ms(20)), Duration::ZERO, "a thread is free");
        assert_eq!(expected_wait(2, 2, ms(20)), ms(10), "both busy: about half a hash");
        assert_eq!(expected_wait(5, 2, ms(20)), ms(40));
        // Before the first hash the pool knows no better than to admit.
        assert_eq!(expected_wait(50, 2, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn admission_follows_the_mean_hash_time_and_the_configured_wait() {
        let admission = Admission::new(2);
        admission.max_wait_nanos.store(30_000_000, Ordering::Relaxed);
        assert!(admission.admits(100), "no hash timed yet");
        admission.record(Duration::from_millis(20));
        assert!(admission.admits(4), "three ahead of two threads: 30 ms");
        assert!(!admission.admits(5), "four ahead: 40 ms");
        for _ in 0..64 {
            admission.record(Duration::from_millis(5));
        }
        assert!(admission.admits(12), "hashes got faster: 11 ahead wait 27.5 ms");
        admission.max_wait_nanos.store(0, Ordering::Relaxed);
        assert!(admission.admits(1) && !admission.admits(2), "0s: only while a thread is free");
    }

    #[test]
    fn a_write_waits_for_company_only_while_other_jobs_are_in_the_pool() {
        let (ms, most) = (Duration::from_millis, Duration::from_millis(4));
        let admission = Admission::new(2);
        admission.max_wait_nanos.store(1_000_000_000, Ordering::Relaxed);
        admission.depth.store(1, Ordering::Relaxed);
        assert_eq!(admission.company_wait(most), Duration::ZERO, "no job timed yet");
        admission.record(ms(6));
        assert_eq!(admission.company_wait(most), ms(3), "two threads, 6 ms a job");
        admission.record(ms(1000));
        assert_eq!(admission.company_wait(most), most, "never longer than the most");
        admission.max_wait_nanos.store(8_000_000, Ordering::Relaxed);
        assert_eq!(admission.company_wait(most), ms(2), "a quarter of a tight max_queue_wait");
        admission.depth.store(0, Ordering::Relaxed);
        assert_eq!(admission.company_wait(most), Duration::ZERO, "nothing else hashing: nothing is coming");
    }
}
