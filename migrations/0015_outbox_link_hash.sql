-- The SHA-256 of the link token a message carries (a confirmation, reset
-- or invitation link), as one_time_tokens and email_changes store it. A
-- message that waited out an SMTP outage longer than its link lives (a
-- reset link lasts 30 minutes), or whose link was used or replaced
-- meanwhile, is not sent: a person would open a dead link. NULL for the
-- notices, which carry no link.
ALTER TABLE outbox ADD COLUMN link_hash BLOB;
