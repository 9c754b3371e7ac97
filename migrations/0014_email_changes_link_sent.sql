-- Whether the change's link was mailed to its new address. A change asked
-- for an address another account holds is kept like any other (so the
-- person's own page cannot tell who else is registered), but its link went
-- nowhere: that address's holder got the "already has an account" notice.
-- Support reading `latchctl users show` needs to know which it was.
ALTER TABLE email_changes ADD COLUMN link_sent INTEGER NOT NULL DEFAULT 1;
