-- latch schema, version 2: accounts, sessions, tokens, email outbox, audit.
-- Times are Unix seconds (INTEGER); secrets are stored hashed or sealed
-- with the master key, never in clear.

CREATE TABLE users (
    id                  TEXT PRIMARY KEY,            -- UUID v7
    email               TEXT NOT NULL,               -- as entered (trimmed)
    email_norm          TEXT NOT NULL UNIQUE,        -- lower-cased, for lookup
    name                TEXT,
    password_hash       TEXT NOT NULL,               -- argon2id PHC string
    status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    email_verified_at   INTEGER,
    locked_until        INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    last_login_at       INTEGER
) STRICT;

CREATE TABLE roles (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
) STRICT;
INSERT INTO roles (name, description, created_at) VALUES ('admin', 'Full administrative access', unixepoch());

CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role    TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role)
) STRICT;

CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,                 -- UUID v7, the JWT `sid`
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_name    TEXT,
    ip             TEXT,
    user_agent     TEXT,
    amr            TEXT NOT NULL,                    -- space-separated: "pwd" or "pwd otp"
    created_at     INTEGER NOT NULL,
    last_seen_at   INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,                 -- login + session_max_age
    revoked_at     INTEGER,
    revoked_reason TEXT
) STRICT;
CREATE INDEX sessions_by_user ON sessions(user_id);

CREATE TABLE refresh_tokens (
    hash        BLOB PRIMARY KEY,                    -- SHA-256 of the token
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,                             -- spent; kept to detect reuse
    replaced_by BLOB,
    successor   BLOB                                 -- the successor, sealed; only with refresh_reuse_grace > 0
) STRICT;
CREATE INDEX refresh_tokens_by_session ON refresh_tokens(session_id);

CREATE TABLE one_time_tokens (
    hash       BLOB PRIMARY KEY,                     -- SHA-256 of the token
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;
CREATE INDEX one_time_tokens_by_user ON one_time_tokens(user_id, purpose);

CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,                -- RFC 7638 thumbprint
    algorithm       TEXT NOT NULL,
    public_key      BLOB NOT NULL,
    private_key     BLOB NOT NULL,                   -- sealed with the master key
    created_at      INTEGER NOT NULL,
    retired_at      INTEGER,
    revoked_at      INTEGER
) STRICT;

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,                -- UUID v7
    recipient       TEXT NOT NULL,                   -- normalized address
    kind            TEXT NOT NULL,                   -- verify_email, password_reset, ...
    body            BLOB,                            -- sealed RFC 5322 message; erased once sent or dead
    status          TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
) STRICT;
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX outbox_by_recipient ON outbox(recipient, created_at);

-- Append-only. No foreign keys: rows outlive the users they mention.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    action      TEXT NOT NULL,
    actor_id    TEXT,
    subject_id  TEXT,
    ip          TEXT,
    user_agent  TEXT,
    request_id  TEXT,
    details     TEXT NOT NULL DEFAULT '{}',
    prev_hash   TEXT,
    hash        TEXT
) STRICT;
CREATE INDEX audit_by_action ON audit_log(action, at);
