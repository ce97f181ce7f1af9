-- The hidden state of a linked identity (JSON, NULL when there is nothing to keep):
-- what its own user was when it was linked (e.g. blocked), restored by unlink. Never on
-- the wire, never part of profile_data.
ALTER TABLE identities ADD COLUMN link_state TEXT;
