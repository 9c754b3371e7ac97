//! The physical limits the auth bench sets its figures against, measured
//! in the same run: raw argon2id, Ed25519 signs and verifications on all
//! cores, single-row SQLite commits; and raw argon2 around each round's
//! logins, the login guard's baseline.

use std::collections::BTreeMap;
use std::time::Instant;

use latch::config::Argon2Params;

use super::PASSWORD;
use super::load::{Run, on_all_cores, secs};
use super::stats;

/// Ed25519 signatures/s with a parsed key over a message the size of an
/// access token's signing input: the floor of what a refresh must pay.
fn raw_eddsa_signs() -> f64 {
    let pair = aws_lc_rs::signature::Ed25519KeyPair::generate().expect("key");
    let message = [b'x'; 440];
    on_all_cores(move || {
        std::hint::black_box(pair.sign(std::hint::black_box(&message)));
    })
}

/// Ed25519 verifications/s of such a signature on all cores.
fn raw_ed25519_verifies() -> f64 {
    use aws_lc_rs::signature::{ED25519, KeyPair, UnparsedPublicKey};
    let pair = aws_lc_rs::signature::Ed25519KeyPair::generate().expect("key");
    let message = [b'x'; 440];
    let signature = pair.sign(&message).as_ref().to_vec();
    let public = UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref().to_vec());
    on_all_cores(move || {
        let ok = public.verify(std::hint::black_box(&message), std::hint::black_box(&signature));
        assert!(ok.is_ok());
    })
}

/// Single-row commits/s on this disk: WAL, `synchronous=FULL`, one INSERT
/// per transaction, one thread (SQLite has one writer).
fn raw_sqlite_commits() -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = rusqlite::Connection::open(dir.path().join("raw.db")).expect("open");
    db.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE t (v BLOB);")
        .expect("schema");
    let mut insert = db.prepare("INSERT INTO t VALUES (randomblob(64))").expect("prepare");
    let (started, mut n) = (Instant::now(), 0u64);
    while started.elapsed() < secs() {
        insert.execute([]).expect("insert");
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// The raw limits, measured once before and once after the rounds.
#[derive(Default)]
pub struct Limits {
    pub argon2: Vec<f64>,
    pub signs: Vec<f64>,
    pub verifies: Vec<f64>,
    pub commits: Vec<f64>,
}

impl Limits {
    pub fn measure(&mut self, params: Argon2Params) {
        self.argon2.push(raw_argon2(params));
        self.signs.push(raw_eddsa_signs());
        self.verifies.push(raw_ed25519_verifies());
        self.commits.push(raw_sqlite_commits());
    }
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Raw argon2id hashes/s on all cores, measured in each round right before
/// the logins at that client count and again right after them (before
/// the registrations): the login guard's baseline. This machine's speed
/// drifts by a fifth within one run, so a ratio to the mean of two
/// far-apart measurements measured the drift as much as latch, and one
/// taken only before the logins half of it.
pub type RawBeside = BTreeMap<usize, Vec<RawAround>>;

/// Raw argon2 around one round's logins at one client count, per second.
#[derive(Clone, Copy)]
pub struct RawAround {
    pub before: f64,
    pub after: f64,
}

/// argon2id hashes/s with `params` on all cores, as latch hashes them.
pub fn raw_argon2(params: Argon2Params) -> f64 {
    on_all_cores(move || drop(latch::auth::hash_now(params, None, PASSWORD)))
}

/// The median over rounds of each round's rate against its raw argon2
/// baseline (`base` of the raw rates around it), and the range of every
/// raw rate measured at that client count.
pub fn beside_raw(
    runs: &[(Run, f64)],
    raw: Option<&Vec<RawAround>>,
    base: fn(&RawAround) -> f64,
) -> Option<(f64, f64, f64)> {
    let raw = raw.filter(|r| r.len() == runs.len())?;
    let ratios = runs.iter().zip(raw).map(|((run, _), around)| run.per_sec() / base(around)).collect();
    let all = raw.iter().flat_map(|r| [r.before, r.after]);
    let (low, high) = all.fold((f64::MAX, 0.0f64), |(l, h), r| (l.min(r), h.max(r)));
    Some((stats::median(ratios), low, high))
}

/// Logins ran between the two raw measurements: their mean.
pub fn around_logins(r: &RawAround) -> f64 {
    (r.before + r.after) / 2.0
}

/// Registrations ran right after the second one.
pub fn before_registrations(r: &RawAround) -> f64 {
    r.after
}
