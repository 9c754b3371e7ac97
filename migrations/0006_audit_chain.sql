-- latch schema, version 6: the audit log becomes an HMAC chain (its
-- prev_hash and hash columns were there from version 2, empty). Rows written
-- before this version have no hashes: latchd links them, oldest first, once
-- at its next start, up to the id noted here.
INSERT INTO meta (key, value)
SELECT 'audit_unsealed_through', CAST(max(id) AS TEXT) FROM audit_log
WHERE hash IS NULL HAVING count(*) > 0;
