//! Access tokens whose signature was already checked, so a bearer used
//! again (an app calls latch many times with one token) costs a hash and a
//! lookup instead of an Ed25519 verification.
//!
//! Keyed by the token's SHA-256: only a token that passed the full check is
//! remembered, and no other string has its digest. What a signature check
//! proves never changes, so a hit re-checks only what can: expiry (with the
//! leeway in force), issuer and audience (a reload may change them) and,
//! for EdDSA, that the signing key is still published (a retired key's
//! tokens stop when it leaves the JWKS). A revoked key never hits: a
//! revocation rebuilds the ring, and each ring starts with an empty cache.
//! Session liveness is not cached here; the live view answers that.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use aws_lc_rs::digest::{SHA256, digest};

use super::signing::AccessClaims;
use crate::config::Config;

/// Tokens remembered before the cache starts over (about 600 bytes each).
const CAPACITY: usize = 10_000;

pub(super) type Digest = [u8; 32];

pub(super) fn digest_of(token: &str) -> Digest {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

struct Entry {
    claims: AccessClaims,
    kid: Option<String>,
}

#[derive(Default)]
pub(super) struct VerifiedTokens {
    entries: Mutex<HashMap<Digest, Entry>>,
}

impl VerifiedTokens {
    /// The claims of a token verified before, if they still hold under
    /// `cfg` at `now`; `published` says whether a key id may still verify.
    pub(super) fn get(
        &self,
        token: &Digest,
        cfg: &Config,
        now: i64,
        published: impl Fn(&str) -> bool,
    ) -> Option<AccessClaims> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(token)?;
        let c = &entry.claims;
        let leeway = i64::try_from(cfg.tokens.leeway.0.as_secs()).unwrap_or(0);
        let fresh = c.exp >= now - leeway;
        let addressed = c.iss == issuer_of(cfg) && c.aud == cfg.tokens.audience;
        let keyed = entry.kid.as_deref().is_none_or(&published);
        (fresh && addressed && keyed).then(|| c.clone())
    }

    pub(super) fn put(&self, token: Digest, claims: AccessClaims, kid: Option<String>, now: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| e.claims.exp > now);
            if entries.len() >= CAPACITY * 3 / 4 {
                entries.clear();
            }
        }
        entries.insert(token, Entry { claims, kid });
    }
}

/// `signing::issuer` without the copy.
fn issuer_of(cfg: &Config) -> &str {
    if cfg.tokens.issuer.trim().is_empty() { &cfg.public_url } else { &cfg.tokens.issuer }
}
