//! The dummy hash, and which argon2 parameters it uses. An unknown email is
//! answered after verifying a dummy hash, so it takes as long as a wrong
//! password for a real account — but a real account is verified with the
//! parameters *its* hash was made with. After `[passwords].argon2` changes,
//! most accounts keep their old parameters until their next login, so the
//! dummy follows the parameters most stored hashes use, not the config's.
//!
//! Residual risk (stated in the closing note too): accounts whose hash uses
//! other parameters than the majority answer a wrong password in a
//! different time than an unknown email, until their next successful login
//! rehashes them. Right after a parameter change that is the few accounts
//! already upgraded; later, the few not yet upgraded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::password::{HashError, Verified, hash_now, verify_now};
use crate::config::Argon2Params;
use crate::store::Store;

/// How often the stored hashes' parameters are recounted (a scan of the
/// users table on a reader, off the request path).
pub const RECOUNT_EVERY: Duration = Duration::from_secs(300);

/// The parameters the dummy hash should use; cheap to ask for.
#[derive(Default)]
pub struct DummyParams {
    counted: Mutex<Option<Argon2Params>>,
}

impl DummyParams {
    /// The most common parameters among stored hashes at the last count,
    /// or `configured` when there are none.
    pub fn get(&self, configured: Argon2Params) -> Argon2Params {
        self.counted.lock().ok().and_then(|c| *c).unwrap_or(configured)
    }

    /// Counts the stored hashes' parameters again (at start, then every
    /// `RECOUNT_EVERY`, never on the request path, so no login waits for it).
    pub async fn recount(&self, store: &Store) {
        let counted = store
            .read(|c| {
                let mut counts = Counts::default();
                super::queries::each_password_hash(c, |phc| counts.add(phc))?;
                Ok(counts)
            })
            .await;
        let counts = match counted {
            Ok(counts) => counts,
            Err(e) => return tracing::warn!(error = %e, "counting stored hash parameters failed"),
        };
        let most = counts.most_common();
        let previous = self.counted.lock().ok().and_then(|mut c| std::mem::replace(&mut *c, most));
        if let Some(p) = most.filter(|p| previous != Some(*p)) {
            tracing::info!(
                memory_kib = p.memory_kib,
                iterations = p.iterations,
                parallelism = p.parallelism,
                stored_hashes = counts.total,
                "dummy hash follows the parameters most stored hashes use"
            );
        }
    }
}

/// How many stored hashes use which parameters.
#[derive(Default)]
struct Counts {
    by_params: HashMap<(u32, u32, u32), usize>,
    total: usize,
}

impl Counts {
    fn add(&mut self, phc: &str) {
        self.total += 1;
        if let Some(p) = params_of(phc) {
            *self.by_params.entry((p.memory_kib, p.iterations, p.parallelism)).or_default() += 1;
        }
    }

    /// The most frequent parameters (ties: the larger ones).
    fn most_common(&self) -> Option<Argon2Params> {
        let ((m, t, p), _) = self.by_params.iter().max_by_key(|(key, n)| (**n, **key))?;
        Some(Argon2Params { memory_kib: *m, iterations: *t, parallelism: *p })
    }
}

/// `m=…,t=…,p=…` of an argon2id PHC string.
fn params_of(phc: &str) -> Option<Argon2Params> {
    let segment = phc.strip_prefix("$argon2id$")?.split('$').find(|s| s.starts_with("m="))?;
    let mut p = Argon2Params { memory_kib: 0, iterations: 0, parallelism: 0 };
    for kv in segment.split(',') {
        match kv.split_once('=')? {
            ("m", v) => p.memory_kib = v.parse().ok()?,
            ("t", v) => p.iterations = v.parse().ok()?,
            ("p", v) => p.parallelism = v.parse().ok()?,
            _ => return None,
        }
    }
    (p.memory_kib > 0 && p.iterations > 0 && p.parallelism > 0).then_some(p)
}

/// The dummy hash made on first use, and again when the parameters change.
pub(super) type DummyHash = Mutex<Option<(Argon2Params, String)>>;

/// On a hashing thread: verifies `password` against the dummy hash (making
/// it first if it is missing or has other parameters) and reports failure.
pub(super) fn verify_against_dummy(
    dummy: &DummyHash,
    params: Argon2Params,
    pepper: Option<&[u8]>,
    password: &str,
) -> Result<Verified, HashError> {
    let cached = dummy.lock().ok().and_then(|d| d.clone()).filter(|(p, _)| *p == params);
    let phc = match cached {
        Some((_, phc)) => phc,
        None => {
            let phc = hash_now(params, pepper, "latch dummy password for timing")?;
            metrics::counter!("latch_password_hashes_total", "op" => "hash").increment(1);
            if let Ok(mut d) = dummy.lock() {
                *d = Some((params, phc.clone()));
            }
            phc
        }
    };
    let _ = verify_now(params, pepper, password, &phc);
    metrics::counter!("latch_password_hashes_total", "op" => "verify").increment(1);
    Ok(Verified { ok: false, needs_rehash: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_majority_of_stored_parameters_wins() {
        let old = "$argon2id$v=19$m=8192,t=1,p=1$c2FsdA$aGFzaA";
        let new = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
        let mut counts = Counts::default();
        for phc in [old, new, old, "garbage"] {
            counts.add(phc);
        }
        assert_eq!(
            counts.most_common(),
            Some(Argon2Params { memory_kib: 8192, iterations: 1, parallelism: 1 })
        );
        assert_eq!(counts.total, 4);
        assert_eq!(Counts::default().most_common(), None);
    }
}
