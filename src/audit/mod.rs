//! The audit log: one row per state change, written inside the same write
//! transaction as the change itself, so a change is never without its row.
//! Rows name actor and subject by id and carry the client address and
//! request id; they never carry secrets. Every row is a link of an HMAC
//! chain (`chain.rs`); `upkeep.rs` applies `[audit].retention` and checks
//! the chain periodically.

use rusqlite::{Connection, params};
use serde_json::Value;

use crate::http::ClientInfo;
use crate::store::{StoreError, exec};

mod chain;
mod rows;
mod upkeep;

pub use chain::{Break, CHECKPOINT_ACTION, ChainKey, Walk, email_tag, install_key, seal_legacy};
pub use rows::{AuditEntry, AuditRow, Filter};
pub use upkeep::spawn as spawn_upkeep;

/// The actions whose rows record an account's deletion (with the
/// account's `email_tag` in `details`).
pub const DELETIONS: [&str; 2] = ["account_deleted", "user_deleted"];

/// Reads for the admin listing and exports.
pub mod read {
    pub use super::rows::{after, page};
}

/// One audit row to write.
pub struct Entry<'a> {
    pub action: &'a str,
    pub actor_id: Option<&'a str>,
    pub subject_id: Option<&'a str>,
    pub client: Option<&'a ClientInfo>,
    pub details: Value,
}

impl<'a> Entry<'a> {
    /// An action a user did to their own account.
    pub fn by_user(action: &'a str, user_id: &'a str, client: &'a ClientInfo) -> Self {
        Entry {
            action,
            actor_id: Some(user_id),
            subject_id: Some(user_id),
            client: Some(client),
            details: Value::Null,
        }
    }

    /// An action an admin (or an admin-socket peer, or an API key) did.
    pub fn by_admin(action: &'a str, actor: &'a str, client: &'a ClientInfo) -> Self {
        Entry { action, actor_id: Some(actor), subject_id: None, client: Some(client), details: Value::Null }
    }

    pub fn with(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Writes `e` as the next link of the chain. Runs inside the caller's write
/// transaction, so the row commits or rolls back with its change.
pub fn record(c: &Connection, e: &Entry<'_>) -> Result<(), StoreError> {
    let key = chain::key()?;
    let row = AuditRow {
        id: 0,
        at: crate::clock::now_unix(),
        action: e.action.to_string(),
        actor_id: e.actor_id.map(str::to_string),
        subject_id: e.subject_id.map(str::to_string),
        ip: e.client.map(|c| c.ip.clone()),
        user_agent: e.client.and_then(|c| c.user_agent.clone()),
        request_id: e.client.map(|c| c.request_id.clone()),
        details: if e.details.is_null() { "{}".to_string() } else { e.details.to_string() },
        prev_hash: None,
        hash: None,
    };
    let prev = chain::tail(c)?;
    let hash = key.link(&prev, &row);
    exec(
        c,
        "INSERT INTO audit_log (at, action, actor_id, subject_id, ip, user_agent, request_id, details,
                                prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            row.at,
            row.action,
            row.actor_id,
            row.subject_id,
            row.ip,
            row.user_agent,
            row.request_id,
            row.details,
            prev,
            hash,
        ],
    )?;
    Ok(())
}
