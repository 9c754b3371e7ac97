//! The EdDSA key ring and its rotation. Each key row has an `activates_at`:
//! a rotated-in key is published in the JWKS at once and starts signing
//! only after the JWKS max-age, when every app has fetched it; the key it
//! replaces stops signing then and stays published until the last token it
//! signed has expired (`access_ttl` + `leeway` later). A revoked key leaves
//! at once. A key's state is a function of the clock, so the ring changes
//! hands without anyone rebuilding it.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::DecodingKey;
use rusqlite::{Connection, params};
use serde::Serialize;
use serde_json::{Value, json};

use super::signing::SigningError;
use crate::keys::MasterKey;
use crate::store::{StoreError, exec};

pub(super) const SEAL_PURPOSE: &[u8] = b"signing key";
/// `Cache-Control: max-age` of the JWKS, and so the delay before a
/// rotated-in key signs.
const JWKS_MAX_AGE_SECS: u64 = 300;

/// The JWKS max-age in seconds (a test may shorten it; see `pause`).
pub fn jwks_max_age() -> u64 {
    crate::pause::duration("jwks_max_age").map_or(JWKS_MAX_AGE_SECS, |d| d.as_secs())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published; signs from `activates_at`.
    Pending,
    Signing,
    /// No longer signs; published until `leaves_jwks_at`.
    Retired {
        leaves_jwks_at: i64,
    },
    /// Its last token has expired: neither published nor accepted.
    Expired,
}

/// The states of keys listed newest activation first: the newest key that
/// has activated signs; each older one retired when its successor
/// activated and stays for `retain` seconds after that.
///
/// When none has activated by this clock, the one due first signs: the
/// clock was set back under keys made while it ran ahead (a first start
/// before NTP set it right), and with no key signing every login and
/// refresh failed until the clock caught up. It is published already, so
/// apps verify what it signs.
pub fn states(activations: &[i64], now: i64, retain: i64) -> Vec<KeyState> {
    let mut found = by_activation(activations, now, retain);
    if !found.contains(&KeyState::Signing)
        && let Some(due_first) = found.last_mut()
    {
        *due_first = KeyState::Signing;
    }
    found
}

fn by_activation(activations: &[i64], now: i64, retain: i64) -> Vec<KeyState> {
    let mut successor: Option<i64> = None;
    activations
        .iter()
        .map(|&at| {
            if at > now {
                return KeyState::Pending;
            }
            let state = match successor {
                None => KeyState::Signing,
                Some(replaced) if now < replaced + retain => {
                    KeyState::Retired { leaves_jwks_at: replaced + retain }
                }
                Some(_) => KeyState::Expired,
            };
            successor = Some(at);
            state
        })
        .collect()
}

/// One key of the ring, parsed.
pub(super) struct RingKey {
    pub kid: String,
    pub activates_at: i64,
    /// The key pair and encoded header, for the keys that sign now or will.
    pub signing: Option<(Ed25519KeyPair, String)>,
    pub jwk: Value,
    pub decoding: DecodingKey,
}

/// The non-revoked EdDSA keys, newest activation first.
pub(super) struct Ring {
    pub keys: Vec<RingKey>,
    /// How long a retired key stays: `access_ttl` + `leeway`.
    pub retain: i64,
}

impl Ring {
    fn states(&self, now: i64) -> Vec<KeyState> {
        let at: Vec<i64> = self.keys.iter().map(|k| k.activates_at).collect();
        states(&at, now, self.retain)
    }

    pub fn signing(&self, now: i64) -> Option<&RingKey> {
        let states = self.states(now);
        self.keys.iter().zip(states).find(|(_, s)| *s == KeyState::Signing).map(|(k, _)| k)
    }

    /// The keys a verifier may meet: all but the expired.
    pub fn published(&self, now: i64) -> impl Iterator<Item = &RingKey> {
        self.keys.iter().zip(self.states(now)).filter(|(_, s)| *s != KeyState::Expired).map(|(k, _)| k)
    }
}

/// A stored key row.
pub(super) struct KeyRow {
    pub kid: String,
    pub public: Vec<u8>,
    pub sealed: Vec<u8>,
    pub activates_at: i64,
}

pub(super) fn live_rows(c: &Connection) -> Result<Vec<KeyRow>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT kid, public_key, private_key, COALESCE(activates_at, created_at) AS at FROM signing_keys
         WHERE algorithm = 'EdDSA' AND revoked_at IS NULL ORDER BY at DESC, rowid DESC",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(KeyRow { kid: r.get(0)?, public: r.get(1)?, sealed: r.get(2)?, activates_at: r.get(3)? })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn jwk(kid: &str, public: &[u8]) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(public), "kid": kid, "alg": "EdDSA", "use": "sig"})
}

fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()))
}

/// A freshly generated key, sealed, not yet stored.
pub struct NewKey {
    pub kid: String,
    public: Vec<u8>,
    sealed: Vec<u8>,
    pub activates_at: i64,
}

/// Generates a key that signs from `activates_at` on. Done before the
/// write: generation and sealing need no database.
pub fn generate(master: &MasterKey, activates_at: i64) -> Result<NewKey, SigningError> {
    let pair = Ed25519KeyPair::generate().map_err(|_| SigningError::Generate)?;
    let pkcs8 = pair.to_pkcs8().map_err(|_| SigningError::Generate)?;
    let public = pair.public_key().as_ref().to_vec();
    let kid = thumbprint(&B64.encode(&public));
    let sealed = master.seal(SEAL_PURPOSE, pkcs8.as_ref())?;
    Ok(NewKey { kid, public, sealed, activates_at })
}

pub fn insert(c: &Connection, k: &NewKey) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO signing_keys (kid, algorithm, public_key, private_key, created_at, activates_at)
         VALUES (?1, 'EdDSA', ?2, ?3, ?4, ?5)",
        params![k.kid, k.public, k.sealed, crate::clock::now_unix(), k.activates_at],
    )?;
    Ok(())
}

/// Keys published but not yet signing: (kid, activates_at).
pub fn pending(c: &Connection, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = live_rows(c)?;
    let activations: Vec<i64> = rows.iter().map(|r| r.activates_at).collect();
    let found = rows.into_iter().zip(states(&activations, now, 0));
    Ok(found.filter(|(_, s)| *s == KeyState::Pending).map(|(r, _)| (r.kid, r.activates_at)).collect())
}

/// Revokes a key that never signed (one still pending).
pub fn revoke_unused(c: &Connection, kid: &str, now: i64) -> Result<(), StoreError> {
    exec(c, "UPDATE signing_keys SET revoked_at = ?1 WHERE kid = ?2", params![now, kid])?;
    Ok(())
}

/// Revokes `kid`; `None` when there is no such live key. If it was the
/// key signing now, a pending key takes over at once, or else `spare`
/// (generated to activate `now`) does, so tokens never fall back to an older key. Returns the kid that
/// signs from now on when it changed.
pub fn revoke(
    c: &Connection,
    kid: &str,
    now: i64,
    spare: &NewKey,
) -> Result<Option<Option<String>>, StoreError> {
    let rows = live_rows(c)?;
    let activations: Vec<i64> = rows.iter().map(|r| r.activates_at).collect();
    let found: Vec<(&KeyRow, KeyState)> = rows.iter().zip(states(&activations, now, 0)).collect();
    let Some(&(_, state)) = found.iter().find(|(r, _)| r.kid == kid) else { return Ok(None) };
    exec(c, "UPDATE signing_keys SET revoked_at = ?1 WHERE kid = ?2", params![now, kid])?;
    if state != KeyState::Signing {
        return Ok(Some(None));
    }
    let pending = found.iter().filter(|(_, s)| *s == KeyState::Pending).map(|(r, _)| r);
    let next_pending = pending.min_by_key(|r| r.activates_at);
    let successor = match next_pending {
        Some(p) => {
            exec(c, "UPDATE signing_keys SET activates_at = ?1 WHERE kid = ?2", params![now, p.kid])?;
            p.kid.clone()
        }
        None => {
            insert(c, spare)?;
            spare.kid.clone()
        }
    };
    Ok(Some(Some(successor)))
}

/// A key as `latchctl keys list` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    pub kid: String,
    pub algorithm: &'static str,
    /// pending, signing, retired, expired or revoked.
    pub state: &'static str,
    pub created_at: String,
    pub activates_at: String,
    pub leaves_jwks_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// Every EdDSA key ever made, newest activation first, with its state.
pub fn list(c: &Connection, now: i64, retain: i64) -> Result<Vec<KeyInfo>, StoreError> {
    let live = live_rows(c)?;
    let activations: Vec<i64> = live.iter().map(|r| r.activates_at).collect();
    let live_states: std::collections::HashMap<String, KeyState> =
        live.iter().map(|r| r.kid.clone()).zip(states(&activations, now, retain)).collect();
    let mut stmt = c.prepare(
        "SELECT kid, created_at, COALESCE(activates_at, created_at) AS at, revoked_at FROM signing_keys
         WHERE algorithm = 'EdDSA' ORDER BY at DESC, rowid DESC",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, Option<i64>>(3)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (kid, created, activates, revoked) = row?;
        let (state, leaves) = match (revoked, live_states.get(&kid)) {
            (Some(_), _) => ("revoked", None),
            (None, Some(KeyState::Pending)) => ("pending", None),
            (None, Some(KeyState::Signing)) => ("signing", None),
            (None, Some(KeyState::Retired { leaves_jwks_at })) => ("retired", Some(*leaves_jwks_at)),
            (None, Some(KeyState::Expired) | None) => ("expired", None),
        };
        out.push(KeyInfo {
            kid,
            algorithm: "EdDSA",
            state,
            created_at: crate::clock::rfc3339(created),
            activates_at: crate::clock::rfc3339(activates),
            leaves_jwks_at: leaves.map(crate::clock::rfc3339),
            revoked_at: revoked.map(crate::clock::rfc3339),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{KeyState::*, states};

    #[test]
    fn the_newest_activated_key_signs_and_the_one_before_stays_for_retain() {
        // Rotated at 1000 to activate at 1300; the old key activated at 0.
        assert_eq!(states(&[1300, 0], 1000, 905), vec![Pending, Signing]);
        // None activated yet (made while the clock ran ahead): the one due
        // first signs, the later one still waits.
        assert_eq!(states(&[2000, 1300], 1000, 905), vec![Pending, Signing]);
        assert_eq!(states(&[], 1000, 905), vec![]);
        assert_eq!(states(&[1300, 0], 1300, 905), vec![Signing, Retired { leaves_jwks_at: 2205 }]);
        assert_eq!(states(&[1300, 0], 2205, 905), vec![Signing, Expired]);
        // Three generations: the oldest retired when the middle one started
        // (1300), not when the newest did.
        assert_eq!(
            states(&[2000, 1300, 0], 2100, 905),
            vec![Signing, Retired { leaves_jwks_at: 2905 }, Retired { leaves_jwks_at: 2205 }]
        );
        assert_eq!(
            states(&[2000, 1300, 0], 2205, 905),
            vec![Signing, Retired { leaves_jwks_at: 2905 }, Expired]
        );
    }
}
