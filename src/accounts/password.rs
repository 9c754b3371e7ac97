//! Password hashing (argon2id) on a bounded pool of threads sized to the
//! cores, never on an actix worker. A full queue is refused at once (the
//! caller answers 503 `overloaded`) instead of growing latency without end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::oneshot;

use crate::config::Argon2Params;

/// Queued hashes per core before new ones are refused.
const QUEUE_PER_CORE: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("the password hashing queue is full")]
    Overloaded,
    #[error("password hashing failed: {0}")]
    Argon2(String),
    #[error("the hashing pool has stopped")]
    Gone,
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy)]
pub struct Verified {
    pub ok: bool,
    /// The stored hash used other parameters than the config's.
    pub needs_rehash: bool,
}

type Job = Box<dyn FnOnce() + Send>;

/// Handle to the hashing pool; cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    queue: mpsc::SyncSender<Job>,
    depth: Arc<AtomicUsize>,
    pepper: Arc<Option<Vec<u8>>>,
    /// A hash of a fixed string, verified when an account does not exist so
    /// the answer takes as long as for a wrong password.
    dummy: Arc<Mutex<Option<(Argon2Params, String)>>>,
}

fn argon(params: Argon2Params, pepper: Option<&[u8]>) -> Result<Argon2<'_>, HashError> {
    let p = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    match pepper {
        Some(secret) => Argon2::new_with_secret(secret, Algorithm::Argon2id, Version::V0x13, p)
            .map_err(|e| HashError::Argon2(e.to_string())),
        None => Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p)),
    }
}

/// Hashes synchronously (pool threads and tests only).
pub fn hash_now(params: Argon2Params, pepper: Option<&[u8]>, password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| HashError::Argon2("no randomness".into()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError::Argon2(e.to_string()))?;
    let hash = argon(params, pepper)?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    Ok(hash.to_string())
}

/// Verifies synchronously; a malformed stored hash never matches.
pub fn verify_now(params: Argon2Params, pepper: Option<&[u8]>, password: &str, phc: &str) -> Verified {
    let Ok(parsed) = PasswordHash::new(phc) else { return Verified { ok: false, needs_rehash: true } };
    let ok = argon(params, pepper).is_ok_and(|a| a.verify_password(password.as_bytes(), &parsed).is_ok());
    let stored = Params::try_from(&parsed).ok();
    let needs_rehash = parsed.algorithm.as_str() != "argon2id"
        || stored.is_none_or(|s| {
            (s.m_cost(), s.t_cost(), s.p_cost()) != (params.memory_kib, params.iterations, params.parallelism)
        });
    Verified { ok, needs_rehash }
}

impl Hasher {
    /// Starts one hashing thread per core. `pepper` is the secret mixed into
    /// every hash (from `[passwords].pepper_file`), if any.
    pub fn start(pepper: Option<Vec<u8>>) -> Hasher {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (tx, rx) = mpsc::sync_channel::<Job>(cores * QUEUE_PER_CORE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..cores {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new().name(format!("latch-hash-{i}")).spawn(move || {
                loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => break,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => break,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a hashing thread");
            }
        }
        Hasher {
            queue: tx,
            depth: Arc::new(AtomicUsize::new(0)),
            pepper: Arc::new(pepper),
            dummy: Arc::new(Mutex::new(None)),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(Option<&[u8]>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = oneshot::channel();
        let depth = Arc::clone(&self.depth);
        let pepper = Arc::clone(&self.pepper);
        let job: Job = Box::new(move || {
            let out = work(pepper.as_deref());
            let now = depth.fetch_sub(1, Ordering::Relaxed) - 1;
            metrics::gauge!("latch_hash_queue_depth").set(now as f64);
            let _ = tx.send(out);
        });
        let now = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("latch_hash_queue_depth").set(now as f64);
        if let Err(e) = self.queue.try_send(job) {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            return Err(match e {
                mpsc::TrySendError::Full(_) => HashError::Overloaded,
                mpsc::TrySendError::Disconnected(_) => HashError::Gone,
            });
        }
        rx.await.map_err(|_| HashError::Gone)
    }

    pub async fn hash(&self, params: Argon2Params, password: String) -> Result<String, HashError> {
        self.run(move |pepper| hash_now(params, pepper, &password)).await?
    }

    pub async fn verify(
        &self,
        params: Argon2Params,
        password: String,
        phc: String,
    ) -> Result<Verified, HashError> {
        self.run(move |pepper| verify_now(params, pepper, &password, &phc)).await
    }

    /// Verifies `password` against the dummy hash (made on first use, and
    /// again when the parameters change) and reports failure.
    pub async fn verify_dummy(&self, params: Argon2Params, password: String) -> Result<Verified, HashError> {
        let cached = self.dummy.lock().ok().and_then(|d| d.clone()).filter(|(p, _)| *p == params);
        let phc = match cached {
            Some((_, phc)) => phc,
            None => {
                let phc = self.hash(params, "latch dummy password for timing".into()).await?;
                if let Ok(mut d) = self.dummy.lock() {
                    *d = Some((params, phc.clone()));
                }
                phc
            }
        };
        let _ = self.verify(params, password, phc).await?;
        Ok(Verified { ok: false, needs_rehash: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Argon2Params = Argon2Params { memory_kib: 64, iterations: 1, parallelism: 1 };

    #[test]
    fn hashes_verify_and_flag_old_parameters() {
        let phc = hash_now(FAST, None, "correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(verify_now(FAST, None, "correct horse battery", &phc).ok);
        assert!(!verify_now(FAST, None, "wrong", &phc).ok);
        assert!(!verify_now(FAST, None, "correct horse battery", &phc).needs_rehash);
        let stronger = Argon2Params { memory_kib: 128, ..FAST };
        let v = verify_now(stronger, None, "correct horse battery", &phc);
        assert!(v.ok && v.needs_rehash);
    }

    #[test]
    fn the_pepper_is_part_of_the_hash() {
        let phc = hash_now(FAST, Some(b"pepper-pepper"), "pw").unwrap();
        assert!(verify_now(FAST, Some(b"pepper-pepper"), "pw", &phc).ok);
        assert!(!verify_now(FAST, None, "pw", &phc).ok);
    }

    #[test]
    fn rfc9106_argon2id_test_vector() {
        // RFC 9106 §5.3: argon2id, m=32 KiB, t=3, p=4, 32-byte tag.
        let params = argon2::ParamsBuilder::new()
            .m_cost(32)
            .t_cost(3)
            .p_cost(4)
            .output_len(32)
            .data(argon2::AssociatedData::new(&[4u8; 12]).unwrap())
            .build()
            .unwrap();
        let ctx = Argon2::new_with_secret(&[3u8; 8], Algorithm::Argon2id, Version::V0x13, params).unwrap();
        let mut out = [0u8; 32];
        ctx.hash_password_into(&[1u8; 32], &[2u8; 16], &mut out).unwrap();
        assert_eq!(hex::encode(out), "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659");
    }
}
