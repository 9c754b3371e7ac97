-- A one-time token ends spent by its own use, or voided by something else
-- (a newer reset, a password change, a changed address); both set
-- `used_at`. `voided` tells them apart, so the page a person's browser
-- posts to twice (a double click) can say "this link already set your
-- password" instead of "this link does not work". Rows from before this
-- migration read as spent by use.
ALTER TABLE one_time_tokens ADD COLUMN voided INTEGER NOT NULL DEFAULT 0;
