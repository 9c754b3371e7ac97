-- latch schema, version 5: API keys for apps and scripts.
-- A key reads latch_<id>_<secret><checksum>; only its SHA-256 is stored.
-- The id (8 base62 characters) is public: it names the key in lists and
-- logs and finds its row; the secret (43 base62 characters, 256 bits) is
-- shown once, when the key is made.

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    secret_hash   BLOB NOT NULL,                     -- SHA-256 of the whole key
    scopes        TEXT NOT NULL,                     -- space-separated
    owner_id      TEXT REFERENCES users(id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,                           -- NULL: never
    revoked_at    INTEGER,
    last_used_at  INTEGER                            -- kept to the minute, written in batches
) STRICT;
