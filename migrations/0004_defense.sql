-- latch schema, version 4: what the defenses must remember across a restart.
-- Rate-limit buckets and failure counters live in memory and may be lost;
-- an IP block or an account-wide login lock may not (DESIGN.md §3, §6).

CREATE TABLE ip_blocks (
    id          TEXT PRIMARY KEY,                    -- UUID v7
    cidr        TEXT NOT NULL,                       -- 203.0.113.9/32, 2001:db8::/64
    reason      TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('auto', 'admin')),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER                              -- NULL: until an admin removes it
) STRICT;

-- Failed logins for one normalized email from many addresses crossed
-- [defense].account_lock.max_failures_per_hour: no address may try again
-- until locked_until. Keyed by the email whether or not an account exists.
CREATE TABLE login_locks (
    email_norm    TEXT PRIMARY KEY,
    locked_until  INTEGER NOT NULL
) STRICT;
