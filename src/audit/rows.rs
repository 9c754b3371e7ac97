//! Reading audit rows back: the row as the API shows it, the filters of
//! `/v1/admin/audit-logs`, and keyset reads in chain order for the checker
//! and the streamed exports.

use rusqlite::{Connection, params};
use serde::Serialize;
use serde_json::Value;

use crate::store::StoreError;

/// One stored row. `details` is kept as the stored text: the chain covers
/// those exact bytes, and the API parses it only when it shows the row.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub action: String,
    pub actor_id: Option<String>,
    pub subject_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub details: String,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

/// The API's shape of a row (API.md "Admin": audit entry).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub action: String,
    pub actor_id: Option<String>,
    pub subject_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: Value,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            id: r.id,
            at: crate::clock::rfc3339(r.at),
            action: r.action,
            actor_id: r.actor_id,
            subject_id: r.subject_id,
            ip: r.ip,
            user_agent: r.user_agent,
            request_id: r.request_id,
            details: serde_json::from_str(&r.details).unwrap_or(Value::String(r.details)),
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

/// Exact-match filters; `since` and `until` are Unix seconds, inclusive.
/// An actor or subject filter matches any of its ids (one account's
/// successive ids when an address was deleted and registered again).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub action: Option<String>,
    pub actor_id: Option<Vec<String>>,
    pub subject_id: Option<Vec<String>>,
    pub ip: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

const COLUMNS: &str =
    "id, at, action, actor_id, subject_id, ip, user_agent, request_id, details, prev_hash, hash";
const WHERE: &str = "(?1 IS NULL OR action = ?1)
    AND (?2 IS NULL OR actor_id IN (SELECT value FROM json_each(?2)))
    AND (?3 IS NULL OR subject_id IN (SELECT value FROM json_each(?3))) AND (?4 IS NULL OR ip = ?4)
    AND (?5 IS NULL OR at >= ?5) AND (?6 IS NULL OR at <= ?6)";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        id: r.get(0)?,
        at: r.get(1)?,
        action: r.get(2)?,
        actor_id: r.get(3)?,
        subject_id: r.get(4)?,
        ip: r.get(5)?,
        user_agent: r.get(6)?,
        request_id: r.get(7)?,
        details: r.get(8)?,
        prev_hash: r.get(9)?,
        hash: r.get(10)?,
    })
}

/// A list of ids as the JSON array `json_each` reads.
fn ids(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref().map(|l| serde_json::Value::from(l.clone()).to_string())
}

/// One page, newest first, and how many rows match in all.
pub fn page(c: &Connection, f: &Filter, offset: i64, limit: i64) -> Result<(Vec<AuditRow>, i64), StoreError> {
    let (actors, subjects) = (ids(&f.actor_id), ids(&f.subject_id));
    let p = params![f.action, actors, subjects, f.ip, f.since, f.until];
    let total: i64 =
        c.query_row(&format!("SELECT count(*) FROM audit_log WHERE {WHERE}"), p, |r| r.get(0))?;
    let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE {WHERE} ORDER BY id DESC LIMIT ?7 OFFSET ?8");
    let mut stmt = c.prepare_cached(&sql)?;
    let p = params![f.action, actors, subjects, f.ip, f.since, f.until, limit, offset];
    let rows = stmt.query_map(p, row)?.collect::<Result<Vec<_>, _>>()?;
    Ok((rows, total))
}

/// Up to `limit` matching rows with ids above `after`, oldest first: the
/// next step of a walk that never holds one read open for long.
pub fn after(c: &Connection, f: &Filter, after: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE id > ?7 AND {WHERE} ORDER BY id LIMIT ?8");
    let mut stmt = c.prepare_cached(&sql)?;
    let p = params![f.action, ids(&f.actor_id), ids(&f.subject_id), f.ip, f.since, f.until, after, limit];
    Ok(stmt.query_map(p, row)?.collect::<Result<Vec<_>, _>>()?)
}
