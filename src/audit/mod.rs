//! The audit log: one row per state change, written inside the same write
//! transaction as the change itself, so a change is never without its row.
//! Rows name actor and subject by id and carry the client address and
//! request id; they never carry secrets.

use rusqlite::{Connection, params};
use serde_json::Value;

use crate::http::ClientInfo;
use crate::store::{StoreError, exec};

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

    pub fn with(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

pub fn record(c: &Connection, e: &Entry<'_>) -> Result<(), StoreError> {
    let details = if e.details.is_null() { "{}".to_string() } else { e.details.to_string() };
    exec(
        c,
        "INSERT INTO audit_log (at, action, actor_id, subject_id, ip, user_agent, request_id, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            crate::clock::now_unix(),
            e.action,
            e.actor_id,
            e.subject_id,
            e.client.map(|c| c.ip.as_str()),
            e.client.and_then(|c| c.user_agent.as_deref()),
            e.client.map(|c| c.request_id.as_str()),
            details,
        ],
    )?;
    Ok(())
}
