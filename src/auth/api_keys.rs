//! API keys (API.md "Conventions"): `latch_<8 base62 id>_<43 base62
//! secret><6 base62 CRC-32 of what precedes>`. The checksum lets secret
//! scanners (and latch, before any lookup) recognise a key; the id finds
//! it; only the SHA-256 of the whole key is stored, compared in constant
//! time. Every key is held in memory as well (latch is the only writer of
//! its database), so checking one costs no database read — the defense
//! gate asks too, to exempt API-key traffic from the bot rule — and
//! `last_used_at` is coalesced in memory and written in batches rather
//! than once per request.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use aws_lc_rs::constant_time;
use rusqlite::{Connection, params};
use serde::Serialize;

use crate::keys::KeyError;
use crate::store::{Store, StoreError, exec};

const PREFIX: &str = "latch_";
const ID_LEN: usize = 8;
const SECRET_LEN: usize = 43;
const CHECK_LEN: usize = 6;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Scopes a person's key holds only while its owner holds the role of the
/// same name: a key made for someone does no more than they may.
const OWNER_ROLE_SCOPES: &[&str] = &["admin"];

fn held(scope: &str, owner_roles: &[String]) -> bool {
    !OWNER_ROLE_SCOPES.contains(&scope) || owner_roles.iter().any(|r| r == scope)
}

/// The first of `scopes` an owner with `owner_roles` may not give a key.
pub fn beyond_owner<'a>(scopes: &'a [String], owner_roles: &[String]) -> Option<&'a str> {
    scopes.iter().map(String::as_str).find(|s| !held(s, owner_roles))
}

/// One key as admins see it (never the secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub owner_id: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String)]
    pub created_at: i64,
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<i64>,
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>)]
    pub revoked_at: Option<i64>,
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>)]
    pub last_used_at: Option<i64>,
    /// Beyond API.md: its owner is disabled, so it does not work until
    /// they are enabled again (as their sessions ended with the disabling).
    pub suspended: bool,
    /// Beyond API.md: scopes not in force now, as the owner does not hold
    /// the role of the same name (filled in for listings only).
    pub idle_scopes: Vec<String>,
    #[serde(skip)]
    secret_hash: Vec<u8>,
}

fn rfc3339<S: serde::Serializer>(t: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::clock::rfc3339(*t))
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&crate::clock::rfc3339(*t)),
        None => s.serialize_none(),
    }
}

impl ApiKey {
    pub fn live(&self, now: i64) -> bool {
        !self.suspended && self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

fn base62(n: usize) -> Result<String, KeyError> {
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut bytes = [0u8; 64];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyError::Random)?;
        // Rejection sampling keeps every character equally likely.
        out.extend(
            bytes
                .iter()
                .filter(|b| **b < 248)
                .map(|b| BASE62[usize::from(*b % 62)] as char)
                .take(n - out.len()),
        );
    }
    Ok(out)
}

fn checksum(body: &str) -> String {
    let mut n = u64::from(crc32fast::hash(body.as_bytes()));
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The id of a well-formed key whose checksum matches; `None` otherwise
/// (decided without any lookup).
pub fn parse(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, tail) = rest.split_once('_')?;
    let ok = id.len() == ID_LEN
        && tail.len() == SECRET_LEN + CHECK_LEN
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let body = &key[..key.len() - CHECK_LEN];
    (ok && checksum(body) == key[key.len() - CHECK_LEN..]).then_some(id)
}

fn sha256(key: &str) -> Vec<u8> {
    crate::keys::token_hash(key)
}

/// Every key, in memory, and the uses not yet written.
pub struct ApiKeys {
    store: Store,
    keys: RwLock<HashMap<String, ApiKey>>,
    used: Mutex<HashMap<String, i64>>,
}

/// A new key: what to store, and the key itself (shown once).
pub struct Minted {
    pub key: ApiKey,
    pub secret: String,
}

impl ApiKeys {
    pub async fn load(store: &Store) -> Result<ApiKeys, StoreError> {
        let all = store.read(all_keys).await?;
        let keys = all.into_iter().map(|k| (k.id.clone(), k)).collect();
        Ok(ApiKeys { store: store.clone(), keys: RwLock::new(keys), used: Mutex::default() })
    }

    /// The live key `key` is, with its use noted; `None` for anything else.
    pub fn check(&self, key: &str) -> Option<ApiKey> {
        let found = self.peek(key)?;
        if let Ok(mut used) = self.used.lock() {
            used.insert(found.id.clone(), crate::clock::now_unix());
        }
        Some(found)
    }

    /// As `check`, without noting a use (introspection looks at a key
    /// someone else holds).
    pub fn peek(&self, key: &str) -> Option<ApiKey> {
        let id = parse(key)?;
        let found = self.keys.read().ok()?.get(id).cloned()?;
        // Security: constant-time compare of the hashes, as for every secret.
        let matches = constant_time::verify_slices_are_equal(&sha256(key), &found.secret_hash).is_ok();
        (matches && found.live(crate::clock::now_unix())).then_some(found)
    }

    /// `key` with its scopes narrowed to what its owner may do now. A
    /// person's key keeps `admin` only while they hold role `admin`, read
    /// at the call (one read, and only for such a key: admin calls are
    /// rare), so a role taken away holds from the very next request.
    pub async fn narrowed(&self, mut key: ApiKey) -> Result<ApiKey, StoreError> {
        let Some(owner) = key.owner_id.clone() else { return Ok(key) };
        if !key.scopes.iter().any(|s| OWNER_ROLE_SCOPES.contains(&s.as_str())) {
            return Ok(key);
        }
        let roles = self.store.read(move |c| super::queries::roles_of(c, &owner)).await?;
        key.scopes.retain(|s| held(s, &roles));
        Ok(key)
    }

    /// Makes a key (not yet stored: `insert` does that in the caller's write).
    pub fn mint(
        name: String,
        scopes: Vec<String>,
        owner_id: Option<String>,
        expires_at: Option<i64>,
    ) -> Result<Minted, KeyError> {
        let id = base62(ID_LEN)?;
        let body = format!("{PREFIX}{id}_{}", base62(SECRET_LEN)?);
        let secret = format!("{body}{}", checksum(&body));
        let key = ApiKey {
            id,
            name,
            scopes,
            owner_id,
            created_at: crate::clock::now_unix(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
            suspended: false,
            idle_scopes: Vec::new(),
            secret_hash: sha256(&secret),
        };
        Ok(Minted { key, secret })
    }

    /// After the write that stored `key` committed: it is in force.
    pub fn remember(&self, key: ApiKey) {
        if let Ok(mut keys) = self.keys.write() {
            keys.insert(key.id.clone(), key);
        }
    }

    /// After the write that revoked `id` committed.
    pub fn forget(&self, id: &str, at: i64) {
        if let Ok(mut keys) = self.keys.write()
            && let Some(k) = keys.get_mut(id)
        {
            k.revoked_at = Some(at);
        }
    }

    /// After the write that deleted user `owner_id` committed: its keys
    /// went with it (`ON DELETE CASCADE`), and must stop working now, not
    /// at the next start.
    pub fn drop_owner(&self, owner_id: &str) {
        if let Ok(mut keys) = self.keys.write() {
            keys.retain(|_, k| k.owner_id.as_deref() != Some(owner_id));
        }
    }

    /// After the write that disabled (or enabled) user `owner_id`
    /// committed: its keys stop (or start) working with it.
    pub fn suspend_owner(&self, owner_id: &str, suspended: bool) {
        if let Ok(mut keys) = self.keys.write() {
            for k in keys.values_mut().filter(|k| k.owner_id.as_deref() == Some(owner_id)) {
                k.suspended = suspended;
            }
        }
    }

    /// Every key as `list` has it, each with the scopes its owner's roles
    /// leave idle now (a read for each person's key with such a scope).
    pub async fn list_with_idle_scopes(&self) -> Result<Vec<ApiKey>, StoreError> {
        let mut all = self.list();
        for k in &mut all {
            let held = self.narrowed(k.clone()).await?.scopes;
            k.idle_scopes = k.scopes.iter().filter(|s| !held.contains(s)).cloned().collect();
        }
        Ok(all)
    }

    fn list(&self) -> Vec<ApiKey> {
        let used = self.used.lock().map(|u| u.clone()).unwrap_or_default();
        let mut all: Vec<ApiKey> =
            self.keys.read().map(|k| k.values().cloned().collect()).unwrap_or_default();
        for k in &mut all {
            if let Some(t) = used.get(&k.id) {
                k.last_used_at = Some(*t);
            }
        }
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        all
    }

    /// Writes the uses noted since the last flush, in one job.
    pub async fn flush_uses(&self) -> Result<usize, StoreError> {
        let used: Vec<(String, i64)> = match self.used.lock() {
            Ok(mut u) => u.drain().collect(),
            Err(_) => return Ok(0),
        };
        if used.is_empty() {
            return Ok(0);
        }
        if let Ok(mut keys) = self.keys.write() {
            for (id, t) in &used {
                if let Some(k) = keys.get_mut(id) {
                    k.last_used_at = Some(*t);
                }
            }
        }
        let n = used.len();
        self.store
            .write(move |c| {
                for (id, t) in &used {
                    exec(c, "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1", params![id, t])?;
                }
                Ok(())
            })
            .await?;
        Ok(n)
    }
}

fn all_keys(c: &Connection) -> Result<Vec<ApiKey>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT k.id, k.name, k.secret_hash, k.scopes, k.owner_id, k.created_at, k.expires_at, k.revoked_at,
                k.last_used_at, u.status IS 'disabled'
         FROM api_keys k LEFT JOIN users u ON u.id = k.owner_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ApiKey {
            id: r.get(0)?,
            name: r.get(1)?,
            secret_hash: r.get(2)?,
            scopes: r.get::<_, String>(3)?.split_whitespace().map(str::to_string).collect(),
            owner_id: r.get(4)?,
            created_at: r.get(5)?,
            expires_at: r.get(6)?,
            revoked_at: r.get(7)?,
            last_used_at: r.get(8)?,
            suspended: r.get(9)?,
            idle_scopes: Vec::new(),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Stores a minted key (inside the caller's write, with its audit row).
pub fn insert(c: &Connection, k: &ApiKey) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO api_keys (id, name, secret_hash, scopes, owner_id, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![k.id, k.name, k.secret_hash, k.scopes.join(" "), k.owner_id, k.created_at, k.expires_at],
    )?;
    Ok(())
}

/// Revokes key `id`; false if there is no such unrevoked key.
pub fn revoke(c: &Connection, id: &str, now: i64) -> Result<bool, StoreError> {
    Ok(exec(c, "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL", params![id, now])?
        == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_shape_and_checksum() {
        let m = ApiKeys::mint("ci".into(), vec!["introspect".into()], None, None).unwrap();
        let key = &m.secret;
        assert!(key.starts_with("latch_") && key.len() == 6 + 8 + 1 + 43 + 6, "{key}");
        assert_eq!(parse(key), Some(m.key.id.as_str()));
        let mut tampered = key.clone().into_bytes();
        let at = 20;
        tampered[at] = if tampered[at] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            parse(&String::from_utf8(tampered).unwrap()),
            None,
            "one changed character breaks the checksum"
        );
        assert_eq!(parse("latch_short_x"), None);
        assert_ne!(m.secret, ApiKeys::mint("ci".into(), vec![], None, None).unwrap().secret);
    }
}
