//! SQL for the admin feature.

use rusqlite::Connection;

use crate::store::StoreError;

/// The highest applied migration.
pub fn schema_version(c: &Connection) -> Result<i64, StoreError> {
    Ok(c.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?)
}
