-- latch schema, version 9: the second factor. A TOTP secret is sealed
-- under the master key (AES-256-GCM, purpose as associated data); it counts
-- only once confirmed. `last_step` is the newest 30-second step accepted, so
-- no code works twice. Recovery codes are stored as HMAC-SHA-256 under the
-- master key, never in the clear. An `mfa_token` is the short-lived proof
-- that the password was right, stored as SHA-256 like every other token.
CREATE TABLE IF NOT EXISTS totp_credentials (
    user_id       TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    secret_sealed BLOB NOT NULL,
    confirmed_at  INTEGER,                 -- NULL while the enrolment is pending
    last_step     INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_mac   BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, code_mac)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS mfa_tokens (
    token_hash      BLOB PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    password_digest BLOB NOT NULL,         -- SHA-256 of the password hash checked in step one
    device_name     TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS mfa_tokens_by_user ON mfa_tokens(user_id);
CREATE INDEX IF NOT EXISTS mfa_tokens_by_expiry ON mfa_tokens(expires_at);
