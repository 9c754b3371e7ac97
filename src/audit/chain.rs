//! The tamper-evident chain. Each row's `hash` is HMAC-SHA-256, under a key
//! derived from the master key, of the previous row's `hash` followed by the
//! row's canonical form; the first row follows `""`. Someone who can write
//! the database but does not hold the master key cannot edit, insert,
//! delete or reorder a row without breaking the chain from that row on.
//!
//! The link is computed on the writer inside the row's own transaction
//! (see `record`): one writer, so two rows never follow the same one.
//! Retention deletes from the oldest end and appends a checkpoint row whose
//! `details.continues_from` is the `prev_hash` the oldest remaining row must
//! carry, so a shortened head is told apart from a cut one.

use std::sync::OnceLock;

use aws_lc_rs::hmac;
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{self, AuditRow, Filter};
use crate::keys::MasterKey;
use crate::store::{StoreError, exec};

pub const CHECKPOINT_ACTION: &str = "audit_checkpoint";
/// `meta` key a migration sets when it finds rows written before the chain
/// existed: they are linked once, at the next start.
const UNSEALED_KEY: &str = "audit_unsealed_through";

/// The chain's HMAC key, derived from the master key.
pub struct ChainKey(hmac::Key);

impl ChainKey {
    pub fn new(master: &MasterKey) -> Self {
        ChainKey(master.hmac_key(b"audit chain v1"))
    }

    /// The `hash` of a row whose predecessor's hash is `prev`.
    pub fn link(&self, prev: &str, row: &AuditRow) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(prev.as_bytes());
        ctx.update(&canonical(row));
        hex::encode(ctx.sign().as_ref())
    }
}

/// Every field but `id` (renumbering is harmless; order is in the links)
/// and the hashes, as a JSON array: unambiguous and stable.
fn canonical(r: &AuditRow) -> Vec<u8> {
    let fields =
        (r.at, &r.action, &r.actor_id, &r.subject_id, &r.ip, &r.user_agent, &r.request_id, &r.details);
    serde_json::to_vec(&fields).unwrap_or_default()
}

static KEY: OnceLock<ChainKey> = OnceLock::new();
static EMAIL_TAG_KEY: OnceLock<hmac::Key> = OnceLock::new();

/// Sets the process's chain key (and the email tags' key); latchd does
/// this once the master key is loaded and before anything writes an audit
/// row.
pub fn install_key(master: &MasterKey) {
    let _ = KEY.set(ChainKey::new(master));
    let _ = EMAIL_TAG_KEY.set(master.hmac_key(b"audit email tag v1"));
}

/// A keyed tag of an account's (normalized) email address, kept in the
/// audit row of the account's deletion: an admin who knows the address
/// still finds a deleted account's rows, while the row holds no address
/// anyone could read or guess without the master key.
pub fn email_tag(email: &str) -> Result<String, StoreError> {
    let key = EMAIL_TAG_KEY.get().ok_or_else(|| StoreError::Refused(Box::new(NoKey)))?;
    Ok(hex::encode(hmac::sign(key, email.as_bytes()).as_ref()))
}

#[derive(Debug, thiserror::Error)]
#[error("the audit chain key is not loaded; refusing to write an unlinked audit row")]
struct NoKey;

pub(super) fn key() -> Result<&'static ChainKey, StoreError> {
    KEY.get().ok_or_else(|| StoreError::Refused(Box::new(NoKey)))
}

/// The `hash` of the newest row: what the next row follows.
pub(super) fn tail(c: &Connection) -> Result<String, StoreError> {
    let mut stmt = c.prepare_cached("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")?;
    Ok(stmt.query_row([], |r| r.get::<_, Option<String>>(0)).optional()?.flatten().unwrap_or_default())
}

/// Links the rows a migration found without hashes, oldest first, and
/// forgets that they were there. Returns how many it linked.
pub fn seal_legacy(c: &Connection, key: &ChainKey) -> Result<usize, StoreError> {
    let through: Option<String> =
        c.query_row("SELECT value FROM meta WHERE key = ?1", [UNSEALED_KEY], |r| r.get(0)).optional()?;
    let Some(through) = through.and_then(|t| t.parse::<i64>().ok()) else { return Ok(0) };
    let mut prev = String::new();
    let mut after = 0;
    let mut sealed = 0;
    loop {
        let batch = rows::after(c, &Filter::default(), after, 1_000)?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        for row in batch.iter().filter(|r| r.id <= through) {
            let hash = key.link(&prev, row);
            exec(
                c,
                "UPDATE audit_log SET prev_hash = ?1, hash = ?2 WHERE id = ?3",
                params![prev, hash, row.id],
            )?;
            prev = hash;
            sealed += 1;
        }
        if after >= through {
            break;
        }
    }
    exec(c, "DELETE FROM meta WHERE key = ?1", [UNSEALED_KEY])?;
    Ok(sealed)
}

/// Where a walk found the chain broken.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Break {
    pub id: i64,
    pub reason: &'static str,
}

/// A walk over the chain, oldest row first, a bounded step at a time so
/// the daemon never holds one read transaction open for the whole table.
#[derive(Debug)]
pub struct Walk {
    expected_prev: String,
    after_id: i64,
    pub checked: u64,
}

impl Walk {
    /// Starts where the newest checkpoint says the chain now begins.
    pub fn begin(c: &Connection) -> Result<Walk, StoreError> {
        let details: Option<String> = c
            .query_row(
                "SELECT details FROM audit_log WHERE action = ?1 ORDER BY id DESC LIMIT 1",
                [CHECKPOINT_ACTION],
                |r| r.get(0),
            )
            .optional()?;
        let anchor = details
            .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
            .and_then(|d| d["continues_from"].as_str().map(str::to_string))
            .unwrap_or_default();
        Ok(Walk { expected_prev: anchor, after_id: 0, checked: 0 })
    }

    /// Checks up to `limit` more rows: `Ok(None)` when there are more to
    /// check, `Ok(Some(Ok(())))` at the end of an intact chain.
    pub fn step(
        &mut self,
        c: &Connection,
        key: &ChainKey,
        limit: i64,
    ) -> Result<Option<Result<(), Break>>, StoreError> {
        let batch = rows::after(c, &Filter::default(), self.after_id, limit)?;
        for row in &batch {
            if row.prev_hash.as_deref().unwrap_or("") != self.expected_prev {
                return Ok(Some(Err(Break {
                    id: row.id,
                    reason: "prev_hash does not match the row before",
                })));
            }
            let hash = key.link(&self.expected_prev, row);
            if row.hash.as_deref() != Some(hash.as_str()) {
                return Ok(Some(Err(Break { id: row.id, reason: "hash does not match the row's contents" })));
            }
            self.expected_prev = hash;
            self.after_id = row.id;
            self.checked += 1;
        }
        Ok(if (batch.len() as i64) < limit { Some(Ok(())) } else { None })
    }

    /// Walks to the end on one connection (the offline `latchctl audit
    /// verify`).
    pub fn run(c: &Connection, key: &ChainKey) -> Result<(u64, Result<(), Break>), StoreError> {
        let mut walk = Walk::begin(c)?;
        loop {
            if let Some(verdict) = walk.step(c, key, 5_000)? {
                return Ok((walk.checked, verdict));
            }
        }
    }
}
