-- Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): the first answer of a
-- keyed write, stored in the write's own transaction, so a repeat replays it instead of
-- acting again. Keys are scoped per caller (principal), never shared between clients.
-- See docs/idempotency.md.
CREATE TABLE idempotency_keys (
    principal   TEXT NOT NULL,   -- the token's client (azp) and subject
    idem_key    TEXT NOT NULL,   -- the header's value, at most 255 visible characters
    fingerprint TEXT NOT NULL,   -- SHA-256 (hex) of method, path, principal and body
    status      INTEGER NOT NULL, -- the first call's HTTP status (0 only inside its transaction)
    body        TEXT NOT NULL,   -- the first call's body, byte for byte ('' when none)
    created_at  INTEGER NOT NULL, -- unix seconds; expired after the tenant's TTL
    PRIMARY KEY (principal, idem_key)
);
-- The purge of expired keys.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
