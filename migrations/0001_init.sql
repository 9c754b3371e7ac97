-- latch schema, version 1: daemon-wide settings.
-- `meta` holds small key/value facts about this database, such as the check
-- value that ties it to its master key.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
