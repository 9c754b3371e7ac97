//! The browser's session: a `__Host-latch` cookie (Secure, HttpOnly,
//! SameSite=Strict) holding a random token whose SHA-256 the database maps
//! to a latch session. Each page request looks it up joined with that
//! session and its user, so a session revoked anywhere (API, admin, sign
//! out everywhere) or a disabled user is signed out at the next request.

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieAge};
use rusqlite::{OptionalExtension, params};

use crate::auth::UserSession;
use crate::http::{ApiError, Kind, Problem};
use crate::keys::{random_token, token_hash};
use crate::store::{Store, StoreError, exec};

const COOKIE: &str = "__Host-latch";

fn cookie(value: String, max_age: i64) -> Cookie<'static> {
    Cookie::build(COOKIE, value)
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(CookieAge::seconds(max_age))
        .finish()
}

/// Binds a new browser cookie to latch session `session_id` (until that
/// session's own end); the cookie to set, or none when the session is
/// already gone (its account deleted since the sign-in).
pub async fn start(store: &Store, session_id: String) -> Result<Option<Cookie<'static>>, ApiError> {
    let token = random_token().map_err(|_| ApiError::from(Problem::new(Kind::Internal)))?;
    let hash = token_hash(&token);
    crate::pause::at("browser_start").await;
    let expires = store
        .write(move |c| {
            let now = crate::clock::now_unix();
            let ends: Option<i64> = c
                .query_row("SELECT expires_at FROM sessions WHERE id = ?1", params![session_id], |r| r.get(0))
                .optional()?;
            let Some(ends) = ends else { return Ok(None) };
            exec(
                c,
                "INSERT INTO browser_sessions (token_hash, session_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![hash, session_id, now, ends],
            )?;
            // Sessions ended long ago take their browser rows with them
            // (foreign key); expired rows of live sessions go here.
            exec(c, "DELETE FROM browser_sessions WHERE expires_at <= ?1", params![now])?;
            Ok(Some(ends - now))
        })
        .await?;
    Ok(expires.map(|age| cookie(token, age)))
}

/// The signed-in user of this request, if its cookie names a live session
/// of an active user.
pub async fn current(store: &Store, req: &HttpRequest) -> Result<Option<UserSession>, StoreError> {
    let Some(c) = req.cookie(COOKIE) else { return Ok(None) };
    let hash = token_hash(c.value());
    store
        .read(move |c| {
            let now = crate::clock::now_unix();
            let found: Option<(String, String)> = c
                .query_row(
                    "SELECT session_id, s.amr FROM browser_sessions b JOIN sessions s ON s.id = b.session_id \
                     WHERE b.token_hash = ?1 AND b.expires_at > ?2",
                    params![hash, now],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((session_id, amr)) = found else { return Ok(None) };
            // The same liveness rule as a bearer token's: live session, active user.
            let Some(live) = crate::auth::live::live_session(c, &session_id, now)? else { return Ok(None) };
            let amr = amr.split(' ').map(str::to_string).collect();
            let user_id = live.facts.user_id.clone();
            Ok(Some(UserSession { user_id, session_id, amr, facts: live.facts }))
        })
        .await
}

/// The cookie that removes the browser's session cookie.
pub fn ended() -> Cookie<'static> {
    cookie(String::new(), 0)
}
