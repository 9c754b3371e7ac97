-- A person's own change of address waits here until the new address
-- proves it is theirs: the link mailed there carries the token. Until then
-- the account keeps its old address (a typo must not strand it, and a
-- stolen session must not move it). Voided (`used_at` set) by a password
-- change or reset, by an administrator's address change, and by a newer
-- request. Separate from one_time_tokens: it carries the new address.
CREATE TABLE email_changes (
    hash       BLOB PRIMARY KEY,                     -- SHA-256 of the token
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    new_email  TEXT NOT NULL,                        -- as entered (trimmed)
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;
CREATE INDEX email_changes_by_user ON email_changes(user_id);
