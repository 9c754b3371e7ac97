-- latch schema, version 7: signing-key rotation. A rotated-in key is
-- published in the JWKS at once and signs from `activates_at` on (after the
-- JWKS max-age, so every app has fetched it first); the key it replaces
-- stops signing then and leaves the JWKS once its last token has expired.
ALTER TABLE signing_keys ADD COLUMN activates_at INTEGER;
UPDATE signing_keys SET activates_at = created_at;
