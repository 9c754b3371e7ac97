-- latch schema, version 10: browser sessions of the pages. The cookie holds
-- a 256-bit token; the database keeps its SHA-256 and the latch session it
-- is bound to, so revoking that session (API, admin, sign out everywhere)
-- signs the browser out on its next request.
CREATE TABLE IF NOT EXISTS browser_sessions (
    token_hash BLOB PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS browser_sessions_by_session ON browser_sessions(session_id);
CREATE INDEX IF NOT EXISTS browser_sessions_by_expiry ON browser_sessions(expires_at);
