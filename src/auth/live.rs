//! The live view: the sessions and users that bearer tokens were recently
//! answered for, kept in memory so a signed-in call reads no database.
//!
//! It is exact, not merely fresh: the store's change feed tells it, on the
//! writer thread before a write's caller is answered, every row of
//! `sessions`, `users`, `user_roles` and `totp_credentials` a batch
//! touched. An updated or deleted session or user row is forgotten (a
//! revocation, a disable, a deletion, a profile change); any change to
//! roles or second factors forgets every user (they are rare). New rows
//! change nothing already remembered. So the request after a revocation,
//! a disable or a role change reads the database again and sees it.
//!
//! A fill races a write: a reader may take its snapshot just before a
//! commit and remember its answer after the view forgot the rows that
//! commit changed. Each fill therefore carries the view's epoch from
//! before its read; every forgetting bumps the epoch, and a fill whose
//! epoch is stale is answered but not remembered.
//!
//! Bounded: past `CAPACITY` entries the view starts over (a burst of
//! reads, never a wrong answer). Only live sessions of active users are
//! remembered; a miss always reads.
//!
//! Rows are known by rowid, which stays put while the daemon runs: latch
//! never runs a plain VACUUM on its live database (that may renumber the
//! rowids of `sessions` and `users`); `tidy` checks it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::{RowAction, RowChange, Store, StoreError, row};

/// Entries of each map before the view starts over (about 150 bytes each).
const CAPACITY: usize = 20_000;

/// The tables whose rows the view mirrors; all have rowids.
pub const WATCHED: &[&str] = &["sessions", "users", "user_roles", "totp_credentials"];

/// What latch knows about a signed-in user, as of the last write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFacts {
    pub user_id: String,
    pub email: String,
    pub name: Option<String>,
    pub email_verified: bool,
    pub created_at: i64,
    pub roles: Vec<String>,
    /// A confirmed TOTP credential.
    pub totp: bool,
}

struct SessionEntry {
    user_id: String,
    expires_at: i64,
}

#[derive(Default)]
struct Maps {
    epoch: u64,
    sessions: HashMap<String, SessionEntry>,
    session_ids: HashMap<i64, String>,
    users: HashMap<String, Arc<UserFacts>>,
    user_ids: HashMap<i64, String>,
}

/// One live session as read from the database, with its rowids.
pub struct LiveSession {
    pub facts: Arc<UserFacts>,
    session_rowid: i64,
    user_rowid: i64,
    expires_at: i64,
}

#[derive(Default)]
pub struct LiveView {
    maps: Mutex<Maps>,
}

impl LiveView {
    /// A view told of every change to the tables it mirrors.
    pub async fn watching(store: &Store) -> Result<Arc<LiveView>, StoreError> {
        let view = Arc::new(LiveView::default());
        let told = Arc::clone(&view);
        store.watch(WATCHED, Arc::new(move |changes| told.forget(changes))).await?;
        Ok(view)
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The user of session `sid` if it is live and its user active: from
    /// memory when remembered, else from one read (then remembered).
    pub async fn session(&self, store: &Store, sid: &str) -> Result<Option<Arc<UserFacts>>, StoreError> {
        let now = crate::clock::now_unix();
        if let Some(facts) = self.remembered(sid, now) {
            return Ok(Some(facts));
        }
        let epoch = self.maps().epoch;
        let id = sid.to_string();
        let found = store.read(move |c| live_session(c, &id, now)).await?;
        Ok(found.map(|live| {
            let facts = Arc::clone(&live.facts);
            self.remember(epoch, sid, live);
            facts
        }))
    }

    fn remembered(&self, sid: &str, now: i64) -> Option<Arc<UserFacts>> {
        let maps = self.maps();
        let session = maps.sessions.get(sid).filter(|s| s.expires_at > now)?;
        maps.users.get(&session.user_id).map(Arc::clone)
    }

    fn remember(&self, epoch: u64, sid: &str, live: LiveSession) {
        let mut maps = self.maps();
        if maps.epoch != epoch {
            return;
        }
        if maps.sessions.len() >= CAPACITY || maps.users.len() >= CAPACITY {
            let epoch = maps.epoch;
            *maps = Maps { epoch, ..Maps::default() };
        }
        let user_id = live.facts.user_id.clone();
        maps.session_ids.insert(live.session_rowid, sid.to_string());
        let session = SessionEntry { user_id: user_id.clone(), expires_at: live.expires_at };
        maps.sessions.insert(sid.to_string(), session);
        maps.user_ids.insert(live.user_rowid, user_id.clone());
        maps.users.insert(user_id, live.facts);
    }

    /// Told by the writer: forgets what a batch changed.
    fn forget(&self, changes: &[RowChange]) {
        let mut maps = self.maps();
        let mut forgot = false;
        for change in changes {
            match (change.table, change.action) {
                (_, RowAction::Insert) if matches!(change.table, "sessions" | "users") => {}
                ("sessions", _) => {
                    forgot = true;
                    if let Some(sid) = maps.session_ids.remove(&change.rowid) {
                        maps.sessions.remove(&sid);
                    }
                }
                ("users", _) => {
                    forgot = true;
                    if let Some(uid) = maps.user_ids.remove(&change.rowid) {
                        maps.users.remove(&uid);
                    }
                }
                _ => {
                    forgot = true;
                    maps.users.clear();
                    maps.user_ids.clear();
                }
            }
        }
        if forgot {
            maps.epoch += 1;
        }
    }

    /// How many sessions and users are remembered (tests and metrics).
    pub fn len(&self) -> (usize, usize) {
        let maps = self.maps();
        (maps.sessions.len(), maps.users.len())
    }
}

/// Reads session `sid` if live with its active user, roles and TOTP state.
pub fn live_session(c: &Connection, sid: &str, now: i64) -> Result<Option<LiveSession>, StoreError> {
    let found = row(
        c,
        "SELECT s.rowid, s.expires_at, u.rowid, u.id, u.email, u.name, u.email_verified_at IS NOT NULL, \
         u.created_at, EXISTS (SELECT 1 FROM totp_credentials t \
                               WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL) \
         FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.id = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2 AND u.status = 'active'",
        params![sid, now],
        |r| {
            let facts = UserFacts {
                user_id: r.get(3)?,
                email: r.get(4)?,
                name: r.get(5)?,
                email_verified: r.get(6)?,
                created_at: r.get(7)?,
                roles: Vec::new(),
                totp: r.get(8)?,
            };
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, facts))
        },
    )
    .optional()?;
    let Some((session_rowid, expires_at, user_rowid, mut facts)) = found else { return Ok(None) };
    facts.roles = super::queries::roles_of(c, &facts.user_id)?;
    Ok(Some(LiveSession { facts: Arc::new(facts), session_rowid, user_rowid, expires_at }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(user: &str, session_rowid: i64, user_rowid: i64) -> LiveSession {
        let facts = UserFacts {
            user_id: user.into(),
            email: format!("{user}@x"),
            name: None,
            email_verified: true,
            created_at: 0,
            roles: vec!["admin".into()],
            totp: false,
        };
        LiveSession { facts: Arc::new(facts), session_rowid, user_rowid, expires_at: i64::MAX }
    }

    fn change(table: &'static str, action: RowAction, rowid: i64) -> RowChange {
        RowChange { table, action, rowid }
    }

    #[test]
    fn changed_rows_are_forgotten_and_new_rows_change_nothing() {
        let view = LiveView::default();
        view.remember(0, "s1", live("u1", 1, 10));
        view.remember(0, "s2", live("u1", 2, 10));
        view.remember(0, "s3", live("u2", 3, 20));
        view.forget(&[change("sessions", RowAction::Insert, 4), change("users", RowAction::Insert, 30)]);
        assert_eq!(view.len(), (3, 2), "new rows change nothing");
        view.forget(&[change("sessions", RowAction::Update, 1)]);
        assert!(view.remembered("s1", 0).is_none(), "a revoked session is forgotten");
        assert!(view.remembered("s2", 0).is_some());
        view.forget(&[change("users", RowAction::Update, 10)]);
        assert!(view.remembered("s2", 0).is_none(), "a changed user is forgotten for every session");
        assert!(view.remembered("s3", 0).is_some());
        view.forget(&[change("user_roles", RowAction::Insert, 99)]);
        assert!(view.remembered("s3", 0).is_none(), "a role change forgets every user");
    }

    #[test]
    fn a_fill_read_before_a_forgetting_is_not_remembered() {
        let view = LiveView::default();
        let epoch = view.maps().epoch;
        // A write commits and is told while the fill's read is under way.
        view.forget(&[change("sessions", RowAction::Update, 1)]);
        view.remember(epoch, "s1", live("u1", 1, 10));
        assert!(view.remembered("s1", 0).is_none(), "the stale answer was dropped");
        let now = view.maps().epoch;
        view.remember(now, "s1", live("u1", 1, 10));
        assert!(view.remembered("s1", 0).is_some());
        assert!(view.remembered("s1", i64::MAX).is_none(), "an expired session is not live");
    }
}
