//! Password hashing (argon2id) on a bounded pool of threads sized to the
//! cores, never on an actix worker. A check that would wait longer than
//! `[passwords].max_queue_wait` for a thread (judged from the jobs ahead and
//! the mean hash time), or find the queue full, is refused at once (the
//! caller answers 503 `overloaded`) instead of growing latency without end.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use argon2_rust::params::Memory;
use argon2_rust::{Algorithm, Argon2, Params, Version, decode_phc};
use tokio::sync::oneshot;

use super::admission::Admission;
use super::dummy::{DummyHash, verify_against_dummy};
use super::policy::password_form;
use crate::config::{Argon2Params, Commit, Config, Preparing, Reloadable};
use crate::http::problem::{Kind, ToProblem};

/// Queued hashes per core before new ones are refused, however short the
/// expected wait (a bound on memory when hashes are cheap).
pub const QUEUE_PER_CORE: usize = 32;
/// With no hash for this long the pool frees its argon2 memory (19 MiB
/// per workspace at the default parameters), so an idle daemon stays small.
const IDLE_RELEASE: Duration = Duration::from_secs(2);
/// The longest a write that follows a hash waits for another to share its
/// commit (`company_due`). A commit alone costs a login about 0.3–0.5 ms of
/// CPU here; a few milliseconds on a login that took a hash of 7 ms and
/// queued behind others is not felt (a quarter of a tight `max_queue_wait`
/// caps it lower, see `Admission::company_wait`).
const COMPANY_WAIT_MOST: Duration = Duration::from_millis(4);

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("no password hashing thread would be free within max_queue_wait, or the queue is full")]
    Overloaded,
    #[error("password hashing failed: {0}")]
    Argon2(String),
    #[error("the hashing pool has stopped")]
    Gone,
}

impl ToProblem for HashError {
    fn kind(&self) -> Kind {
        match self {
            HashError::Overloaded => Kind::Overloaded,
            HashError::Argon2(_) | HashError::Gone => Kind::Internal,
        }
    }
}

/// Reads `[passwords].pepper_file` (trailing newline trimmed), if set.
pub fn read_pepper(path: Option<&Path>) -> Result<Option<Vec<u8>>, String> {
    let Some(path) = path else { return Ok(None) };
    let shown = path.display();
    let mut bytes = std::fs::read(path).map_err(|e| format!("passwords.pepper_file {shown}: {e}"))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.len() < 16 {
        return Err(format!("passwords.pepper_file {shown}: needs at least 16 bytes"));
    }
    Ok(Some(bytes))
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
    admission: Arc<Admission>,
    /// Swapped by a reload; each hash takes the pepper in force when queued.
    pepper: Arc<ArcSwapOption<Vec<u8>>>,
    /// A hash of a fixed string, verified when an account does not exist so
    /// the answer takes as long as for a wrong password.
    dummy: Arc<DummyHash>,
}

/// argon2-rust's workspaces (the memory blocks), reused across hashes
/// instead of allocating and faulting in 19 MiB each time: a hash borrows
/// one and puts it back. They are shared, not kept per thread, because the
/// pool's threads wait for work one at a time (one holds the queue, the
/// others wait for it): only the waiting one learns that the pool went
/// idle, and it must be able to free every thread's workspace. Kept per
/// thread, a second thread's 19 MiB stayed resident on an idle daemon.
static WORKSPACES: Mutex<Vec<argon2_rust::Hasher>> = Mutex::new(Vec::new());

fn spare_workspace() -> Option<argon2_rust::Hasher> {
    WORKSPACES.lock().ok()?.pop()
}

fn err(e: argon2_rust::Error) -> HashError {
    HashError::Argon2(e.to_string())
}

fn argon(params: Argon2Params) -> Result<Argon2, HashError> {
    let p = Params::builder()
        .memory(Memory::kib(u64::from(params.memory_kib)))
        .passes(params.iterations)
        .lanes(params.parallelism)
        .build()
        .map_err(err)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
}

fn with_workspace<T>(argon2: Argon2, f: impl FnOnce(&mut argon2_rust::Hasher) -> T) -> T {
    let mut hasher = match spare_workspace() {
        Some(mut spare) => {
            spare.set_argon2(argon2);
            spare
        }
        None => argon2.hasher(),
    };
    let out = f(&mut hasher);
    if let Ok(mut spares) = WORKSPACES.lock() {
        spares.push(hasher);
    }
    out
}

/// Frees every spare workspace; true when there was one.
fn free_workspaces() -> bool {
    let spares = WORKSPACES.lock().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default();
    !spares.is_empty()
}

/// Hashes synchronously into a PHC string (pool threads, tests, benches),
/// over the password's `password_form`.
pub fn hash_now(params: Argon2Params, pepper: Option<&[u8]>, password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| HashError::Argon2("no randomness".into()))?;
    let argon2 = argon(params)?;
    let form = password_form(password);
    with_workspace(argon2, |h| h.hash_encoded_with_ad(form.as_bytes(), &salt, pepper.unwrap_or(&[]), &[]))
        .map_err(err)
}

/// Verifies synchronously; a malformed stored hash never matches. The
/// comparison inside argon2-rust is constant-time.
///
/// Hashes made before passwords were normalized hold the bytes as typed:
/// when the typed text is not in `password_form` and its normal form does
/// not match, the text as typed is tried too, and a match asks for a
/// rehash (into the normal form). That second hash runs for such text
/// whether or not the account exists (the dummy hash goes through here).
///
/// A hash taken in from another system (`imported`) is checked against
/// the text as typed, without the pepper, and always asks for a rehash.
pub fn verify_now(params: Argon2Params, pepper: Option<&[u8]>, password: &str, phc: &str) -> Verified {
    if let Some(ok) = super::imported::verify(password, phc) {
        return Verified { ok, needs_rehash: true };
    }
    let Ok(stored) = decode_phc(phc) else { return Verified { ok: false, needs_rehash: true } };
    let argon2 = Argon2::new(stored.algorithm, stored.version, stored.params);
    let fits = |typed: &str| {
        with_workspace(argon2, |h| {
            h.verify_with_ad(typed.as_bytes(), &stored.salt, pepper.unwrap_or(&[]), &[], &stored.hash).is_ok()
        })
    };
    let form = password_form(password);
    let normal = fits(&form);
    let as_typed = !normal && matches!(form, Cow::Owned(_)) && fits(password);
    let ok = normal || as_typed;
    let p = stored.params;
    let needs_rehash = as_typed
        || stored.algorithm != Algorithm::Argon2id
        || stored.version != Version::V0x13
        || (p.memory_kib(), p.passes(), p.lanes())
            != (params.memory_kib, params.iterations, params.parallelism);
    Verified { ok, needs_rehash }
}

/// How much nicer than the daemon a hashing thread runs: a hash is
/// milliseconds of CPU a request can wait behind, while a refresh,
/// `/v1/auth/me` or a 503 `overloaded` is microseconds that should not.
/// Ten steps down, the scheduler runs request handling first whenever
/// both want a core and still gives the hashes every cycle nothing else
/// wants: logins at capacity kept their rate (within noise), and a login
/// flood slows logins, not every other call. Under a tight
/// `max_queue_wait` a few more logins are refused, since preempted hashes
/// take longer on average. Relative, so a daemon an operator runs at
/// `Nice=5` keeps the same order (hashes at 15).
const HASH_NICE: i32 = 10;

/// Lowers this thread's priority by `HASH_NICE` (to 19 at most; lowering
/// needs no privilege, and the systemd unit's syscall filter allows
/// `setpriority`).
fn yield_to_requests() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: errno is this thread's own; gettid, getpriority and
        // setpriority take no pointers, and the id is this thread's.
        let lowered = unsafe {
            let tid = libc::gettid() as libc::id_t;
            *libc::__errno_location() = 0;
            let now = libc::getpriority(libc::PRIO_PROCESS, tid);
            match now == -1 && *libc::__errno_location() != 0 {
                true => -1,
                false => libc::setpriority(libc::PRIO_PROCESS, tid, (now + HASH_NICE).min(19)),
            }
        };
        if lowered != 0 {
            let error = std::io::Error::last_os_error();
            tracing::warn!(%error, "could not lower a hashing thread's priority; hashes compete with requests");
        }
    }
}

/// One pool thread: runs jobs; after `IDLE_RELEASE` without work (every
/// job would have come to this thread, which holds the queue) it frees the
/// pool's workspaces.
fn pool_thread(rx: &Mutex<mpsc::Receiver<Job>>) {
    yield_to_requests();
    loop {
        let job = match rx.lock() {
            Ok(guard) => guard.recv_timeout(IDLE_RELEASE),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if free_workspaces() {
                    crate::telemetry::memory::return_free_memory();
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

impl Hasher {
    /// Starts one hashing thread per core. `pepper` is the secret mixed into
    /// every hash (from `[passwords].pepper_file`), if any; `max_wait` is
    /// `[passwords].max_queue_wait`.
    pub fn start(pepper: Option<Vec<u8>>, max_wait: Duration) -> Hasher {
        let cores = super::hash_memory::hashing_threads();
        let (tx, rx) = mpsc::sync_channel::<Job>(cores * QUEUE_PER_CORE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..cores {
            let rx = Arc::clone(&rx);
            let spawned =
                std::thread::Builder::new().name(format!("latch-hash-{i}")).spawn(move || pool_thread(&rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a hashing thread");
            }
        }
        let admission = Admission::new(cores);
        let hasher = Hasher {
            queue: tx,
            admission: Arc::new(admission),
            pepper: Arc::new(ArcSwapOption::from(pepper.map(Arc::new))),
            dummy: Arc::new(Mutex::new(None)),
        };
        hasher.set_max_wait(max_wait);
        hasher
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(Option<&[u8]>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = oneshot::channel();
        let admission = Arc::clone(&self.admission);
        let pepper = self.pepper.load_full();
        let job: Job = Box::new(move || {
            let started = Instant::now();
            let out = work(pepper.as_deref().map(Vec::as_slice));
            admission.record(started.elapsed());
            let now = admission.depth.fetch_sub(1, Ordering::Relaxed) - 1;
            metrics::gauge!("latch_hash_queue_depth").set(now as f64);
            let _ = tx.send(out);
        });
        let depth = &self.admission.depth;
        let before = depth.fetch_add(1, Ordering::Relaxed);
        if !self.admission.admits(before) {
            depth.fetch_sub(1, Ordering::Relaxed);
            return Err(HashError::Overloaded);
        }
        // Set before the job can run, so its own update comes later.
        metrics::gauge!("latch_hash_queue_depth").set((before + 1) as f64);
        if let Err(e) = self.queue.try_send(job) {
            let now = depth.fetch_sub(1, Ordering::Relaxed) - 1;
            metrics::gauge!("latch_hash_queue_depth").set(now as f64);
            return Err(match e {
                mpsc::TrySendError::Full(_) => HashError::Overloaded,
                mpsc::TrySendError::Disconnected(_) => HashError::Gone,
            });
        }
        rx.await.map_err(|_| HashError::Gone)
    }

    /// Puts a new pepper in force (a reload read a changed pepper file).
    pub fn set_pepper(&self, pepper: Option<Vec<u8>>) {
        self.pepper.store(pepper.map(Arc::new));
    }

    /// Whether a check queued now would be admitted: lets a flood be
    /// refused before the work that comes ahead of its hash (a database
    /// read for a login). The pool still decides when the job is queued.
    pub fn has_room(&self) -> Result<(), HashError> {
        let depth = self.admission.depth.load(Ordering::Relaxed);
        if self.admission.admits(depth) { Ok(()) } else { Err(HashError::Overloaded) }
    }

    /// How long the write that follows a finished job (a login's session)
    /// may wait for the write of the pool's next job, so that one commit
    /// (one fsync) serves both: about the time until the pool finishes
    /// another job, at most `COMPANY_WAIT_MOST` and a quarter of
    /// `max_queue_wait`; zero while no other job is queued or running, so a
    /// lone login commits at once.
    pub fn company_due(&self) -> Duration {
        self.admission.company_wait(COMPANY_WAIT_MOST)
    }

    /// Puts a new `[passwords].max_queue_wait` in force.
    pub fn set_max_wait(&self, max_wait: Duration) {
        let nanos = u64::try_from(max_wait.as_nanos()).unwrap_or(u64::MAX);
        self.admission.max_wait_nanos.store(nanos, Ordering::Relaxed);
    }

    pub async fn hash(&self, params: Argon2Params, password: String) -> Result<String, HashError> {
        let phc = self.run(move |pepper| hash_now(params, pepper, &password)).await??;
        metrics::counter!("latch_password_hashes_total", "op" => "hash").increment(1);
        Ok(phc)
    }

    pub async fn verify(
        &self,
        params: Argon2Params,
        password: String,
        phc: String,
    ) -> Result<Verified, HashError> {
        let verified = self.run(move |pepper| verify_now(params, pepper, &password, &phc)).await?;
        metrics::counter!("latch_password_hashes_total", "op" => "verify").increment(1);
        Ok(verified)
    }

    /// Verifies `password` against the dummy hash (made on first use, and
    /// again when the parameters change) and reports failure.
    pub async fn verify_dummy(&self, params: Argon2Params, password: String) -> Result<Verified, HashError> {
        let dummy = Arc::clone(&self.dummy);
        self.run(move |pepper| verify_against_dummy(&dummy, params, pepper, &password)).await?
    }

    /// Looks an account up and checks `password` against its hash (`phc_of`)
    /// in one job on a hashing thread; with no account, against the dummy
    /// hash with `dummy` parameters, so the answer takes as long as a wrong
    /// password. One job, not a read on the blocking pool and then a hash:
    /// each hand-over between threads wakes one, which cost a login more
    /// CPU than the read itself. The lookup runs on the hashing thread,
    /// so it must be a short read (`Store::read_now`).
    pub async fn verify_found<T, E>(
        &self,
        (params, dummy): (Argon2Params, Argon2Params),
        password: String,
        lookup: impl FnOnce() -> Result<Option<T>, E> + Send + 'static,
        phc_of: fn(&T) -> &str,
    ) -> Result<(Option<T>, Verified), E>
    where
        T: Send + 'static,
        E: From<HashError> + Send + 'static,
    {
        let dummy_hash = Arc::clone(&self.dummy);
        self.run(move |pepper| {
            let found = lookup()?;
            let Some(account) = &found else {
                return Ok((None, verify_against_dummy(&dummy_hash, dummy, pepper, &password)?));
            };
            let verified = verify_now(params, pepper, &password, phc_of(account));
            metrics::counter!("latch_password_hashes_total", "op" => "verify").increment(1);
            Ok((found, verified))
        })
        .await?
    }
}

/// A reload re-reads `[passwords].pepper_file` and takes the new
/// `max_queue_wait`.
impl Reloadable for Hasher {
    fn prepare<'a>(&'a self, next: &'a Config) -> Preparing<'a> {
        Box::pin(async move {
            let pepper = read_pepper(next.passwords.pepper_file.as_deref())?;
            super::workspaces_fit(next.passwords.argon2)
                .map_err(|e| format!("passwords.argon2.memory_kib: {e}"))?;
            let (hasher, max_wait) = (self.clone(), next.passwords.max_queue_wait.0);
            Ok(Box::new(move || {
                hasher.set_pepper(pepper);
                hasher.set_max_wait(max_wait);
            }) as Commit)
        })
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
        assert!(!verify_now(FAST, None, "x", "not a phc string").ok);
    }

    /// `é` as one code point or as `e` and a combining accent, and `ﬁ` as a
    /// ligature or two letters: one password either way.
    const COMPOSED: &str = "cr\u{e8}me br\u{fb}l\u{e9}e finale";
    const DECOMPOSED: &str = "cre\u{300}me bru\u{302}le\u{301}e \u{fb01}nale";

    #[test]
    fn a_password_is_one_password_in_any_unicode_form() {
        let phc = hash_now(FAST, None, DECOMPOSED).unwrap();
        for typed in [COMPOSED, DECOMPOSED] {
            let v = verify_now(FAST, None, typed, &phc);
            assert!(v.ok && !v.needs_rehash, "{typed:?}");
        }
        assert!(!verify_now(FAST, None, "creme brulee finale", &phc).ok, "accents still count");
    }

    /// A hash made before normalization holds the bytes as typed: the same
    /// bytes still match, and ask to be hashed again in the normal form.
    #[test]
    fn a_hash_of_the_text_as_typed_still_verifies_and_asks_for_a_rehash() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let rc_params =
            argon2::Params::new(FAST.memory_kib, FAST.iterations, FAST.parallelism, None).unwrap();
        let rc = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, rc_params);
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let legacy = rc.hash_password(DECOMPOSED.as_bytes(), &salt).unwrap().to_string();
        let v = verify_now(FAST, None, DECOMPOSED, &legacy);
        assert!(v.ok && v.needs_rehash);
        assert!(!verify_now(FAST, None, COMPOSED, &legacy).ok, "another form was never hashed");
        assert!(!verify_now(FAST, None, "cre\u{300}me", &legacy).ok);
    }

    #[test]
    fn the_pepper_is_part_of_the_hash() {
        let phc = hash_now(FAST, Some(b"pepper-pepper"), "pw").unwrap();
        assert!(verify_now(FAST, Some(b"pepper-pepper"), "pw", &phc).ok);
        assert!(!verify_now(FAST, None, "pw", &phc).ok);
    }

    #[test]
    fn rfc9106_argon2id_test_vector() {
        // RFC 9106 §5.3: argon2id, m=32 KiB, t=3, p=4, secret and associated data.
        let params = Params::builder().memory(Memory::kib(32)).passes(3).lanes(4).build().unwrap();
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut out = [0u8; 32];
        argon2.hash_into_with_ad(&[1u8; 32], &[2u8; 16], &[3u8; 8], &[4u8; 12], &mut out).unwrap();
        assert_eq!(hex::encode(out), "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659");
    }

    /// argon2-rust is young and unaudited: every hash it makes must verify
    /// with RustCrypto's argon2 and the other way round, pepper included.
    #[test]
    fn hashes_interoperate_with_rustcrypto_argon2() {
        use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
        let params = Argon2Params::default();
        let rc_params =
            argon2::Params::new(params.memory_kib, params.iterations, params.parallelism, None).unwrap();
        for pepper in [None, Some(&b"a pepper of sixteen+"[..])] {
            let rc = match pepper {
                Some(p) => argon2::Argon2::new_with_secret(
                    p,
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    rc_params.clone(),
                )
                .unwrap(),
                None => argon2::Argon2::new(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    rc_params.clone(),
                ),
            };
            let ours = hash_now(params, pepper, "correct horse battery").unwrap();
            assert!(rc.verify_password(b"correct horse battery", &PasswordHash::new(&ours).unwrap()).is_ok());
            assert!(rc.verify_password(b"wrong", &PasswordHash::new(&ours).unwrap()).is_err());
            let salt = SaltString::encode_b64(&[9u8; 16]).unwrap();
            let theirs = rc.hash_password(b"correct horse battery", &salt).unwrap().to_string();
            assert!(verify_now(params, pepper, "correct horse battery", &theirs).ok);
            assert!(!verify_now(params, pepper, "wrong", &theirs).ok);
        }
    }

    /// A login's lookup and check in one job: the account's own hash
    /// decides; no account verifies the dummy hash (made on first use) and
    /// fails, even with the dummy's own text; a failed lookup is the
    /// caller's error.
    #[tokio::test]
    async fn one_job_looks_the_account_up_and_checks_its_password() {
        let hasher = Hasher::start(None, Duration::from_secs(30));
        let phc = hash_now(FAST, None, "right").unwrap();
        let check = |typed: &str, stored: Option<&str>| {
            let stored = stored.map(str::to_string);
            hasher.verify_found(
                (FAST, FAST),
                typed.into(),
                move || Ok::<_, HashError>(stored),
                |p: &String| p.as_str(),
            )
        };
        let (found, v) = check("right", Some(&phc)).await.unwrap();
        assert!(found.is_some() && v.ok && !v.needs_rehash);
        assert!(!check("wrong", Some(&phc)).await.unwrap().1.ok);
        assert!(hasher.dummy.lock().unwrap().is_none(), "no dummy until an account is missing");
        for typed in ["right", "latch dummy password for timing"] {
            let (found, v) = check(typed, None).await.unwrap();
            assert!(found.is_none() && !v.ok, "{typed}");
        }
        assert!(hasher.dummy.lock().unwrap().as_ref().is_some_and(|(p, _)| *p == FAST));
        let failed =
            hasher.verify_found((FAST, FAST), "right".into(), || Err(HashError::Gone), |p: &String| p);
        assert!(matches!(failed.await, Err(HashError::Gone)));
    }
}
