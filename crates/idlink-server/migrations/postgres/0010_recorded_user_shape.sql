-- What Auth0's answers show about a user beyond its attributes (issue 10, recorded traffic):
-- which root attributes idlink invented (left out of profileData), whether `blocked` was
-- ever set (shown from then on, false included), and when the password was last changed.
ALTER TABLE users ADD COLUMN invented_attributes TEXT NOT NULL DEFAULT ''; -- space-separated names
ALTER TABLE users ADD COLUMN blocked_ever_set BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN last_password_reset TEXT;
UPDATE users SET blocked_ever_set = TRUE WHERE blocked;
-- user_metadata is JSON null until first set; an emptied one is '{}' and shown as {}.
-- Existing empty ones were never distinguishable from unset: treat them as unset.
UPDATE users SET user_metadata = 'null' WHERE user_metadata = '{}';
