-- latch schema, version 8: indexes for housekeeping, so counting live
-- sessions and pruning ended ones read only the rows they are about
-- instead of the whole sessions table every 15 seconds.
CREATE INDEX IF NOT EXISTS sessions_live ON sessions(expires_at) WHERE revoked_at IS NULL;
CREATE INDEX IF NOT EXISTS sessions_revoked ON sessions(revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions(expires_at);
-- Spent and expired one-time tokens are deleted in batches.
CREATE INDEX IF NOT EXISTS one_time_tokens_by_expiry ON one_time_tokens(expires_at);
