-- Refresh tokens are found by their row id, which the token now carries
-- (src/sessions/refresh_token.rs), instead of by the hash of the token.
--
-- Why: the hash was the table's primary key, an index in which every new
-- token landed at a random place: one more 4 KiB page written per refresh
-- to the log, again by the checkpoint and again into the WAL archive. New
-- tokens now append to the table's last page. `hash` stays (the SHA-256 of
-- the token's random part, compared in constant time after the lookup).
-- Tokens issued before this migration keep working: they are marked
-- `legacy` and found by the SHA-256 of the whole token in a partial index
-- that no new token enters; `replaced_by` becomes the successor's row id.
CREATE TABLE refresh_tokens_v11 (
    id          INTEGER PRIMARY KEY,
    hash        BLOB NOT NULL,                       -- SHA-256 of the random part (legacy: of the token)
    session_id  TEXT NOT NULL,                       -- the family; no index (migration 0003)
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,                             -- spent; kept to detect reuse
    replaced_by INTEGER,                             -- the successor's id
    successor   BLOB,                                -- the successor's secret, sealed; only with refresh_reuse_grace > 0
    legacy      INTEGER NOT NULL DEFAULT 0
) STRICT;
INSERT INTO refresh_tokens_v11 (id, hash, session_id, created_at, expires_at, used_at, replaced_by, successor, legacy)
    SELECT t.rowid, t.hash, t.session_id, t.created_at, t.expires_at, t.used_at,
           (SELECT n.rowid FROM refresh_tokens n WHERE n.hash = t.replaced_by), t.successor, 1
    FROM refresh_tokens t ORDER BY t.rowid;
DROP TABLE refresh_tokens;
ALTER TABLE refresh_tokens_v11 RENAME TO refresh_tokens;
CREATE UNIQUE INDEX IF NOT EXISTS refresh_tokens_legacy ON refresh_tokens(hash) WHERE legacy = 1;
