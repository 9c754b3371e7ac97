//! The change feed: which rows each write batch touched, told to in-memory
//! views before any caller of the batch is answered.
//!
//! latch owns the only read-write connection, so SQLite's update hook on it
//! sees every row inserted, updated or deleted (foreign-key cascades
//! included) while the daemon runs. A view that mirrors rows (the live
//! sessions and users the auth layer answers bearer tokens from) registers
//! the tables it mirrors; after each batch, committed or not, the writer
//! hands it the batch's changes and only then answers the batch's callers.
//! So once a write that revokes, disables or changes something returns,
//! every view has already forgotten what it changed.
//!
//! Limits, from SQLite's documentation: WITHOUT ROWID tables and rows
//! replaced by `INSERT OR REPLACE` are not reported; a watched table must be
//! neither (`watch` refuses the first at start; latch writes the second only
//! to `meta` and `signing_keys`). Changes a rolled-back savepoint undid are
//! still reported: a view forgets a little more than it must, never less.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rusqlite::Connection;
use rusqlite::hooks::Action;

/// What happened to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowAction {
    Insert,
    Update,
    Delete,
}

/// One row of a watched table that a batch touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowChange {
    /// The table's name, as the view registered it.
    pub table: &'static str,
    pub action: RowAction,
    pub rowid: i64,
}

/// Told the changes of each batch to the tables it watches, on the writer
/// thread, after the commit and before the batch's callers are answered;
/// must be quick and must not touch the store.
pub type Listener = Arc<dyn Fn(&[RowChange]) + Send + Sync>;

struct Watch {
    tables: &'static [&'static str],
    listener: Listener,
}

/// The listeners and the changes of the batch being written.
#[derive(Default)]
pub(super) struct Feed {
    watches: RwLock<Vec<Watch>>,
    pending: Mutex<Vec<RowChange>>,
}

impl Feed {
    /// Installs the update hook on the writer's connection.
    pub(super) fn attach(self: &Arc<Self>, conn: &Connection) -> rusqlite::Result<()> {
        let feed = Arc::clone(self);
        conn.update_hook(Some(move |action: Action, _db: &str, table: &str, rowid: i64| {
            feed.record(action, table, rowid);
        }))
    }

    fn record(&self, action: Action, table: &str, rowid: i64) {
        let watches = self.watches.read().unwrap_or_else(PoisonError::into_inner);
        let Some(name) = watches.iter().flat_map(|w| w.tables.iter()).find(|t| **t == table) else {
            return;
        };
        let action = match action {
            Action::SQLITE_INSERT => RowAction::Insert,
            Action::SQLITE_DELETE => RowAction::Delete,
            _ => RowAction::Update,
        };
        let change = RowChange { table: name, action, rowid };
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).push(change);
    }

    pub(super) fn add(&self, tables: &'static [&'static str], listener: Listener) {
        self.watches.write().unwrap_or_else(PoisonError::into_inner).push(Watch { tables, listener });
    }

    /// Hands the batch's changes to the listeners watching their tables.
    pub(super) fn deliver(&self) {
        let changes = std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if changes.is_empty() {
            return;
        }
        let watches = self.watches.read().unwrap_or_else(PoisonError::into_inner);
        for watch in watches.iter() {
            let mine: Vec<RowChange> =
                changes.iter().filter(|c| watch.tables.contains(&c.table)).copied().collect();
            if !mine.is_empty() {
                (watch.listener)(&mine);
            }
        }
    }
}

/// True when `table` exists and has rowids (the update hook's reach).
pub(super) fn has_rowids(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    let sql: Option<String> = conn
        .query_row("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1", [table], |r| r.get(0))
        .ok();
    Ok(sql.is_some_and(|s| !s.to_ascii_uppercase().contains("WITHOUT ROWID")))
}
