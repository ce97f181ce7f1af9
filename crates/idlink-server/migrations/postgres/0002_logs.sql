-- The audit trail: every link, unlink and failed attempt. Successful operations are
-- written in the same transaction as the change they record.
CREATE TABLE logs (
    seq               BIGSERIAL PRIMARY KEY,
    log_id            TEXT NOT NULL UNIQUE,
    date              TEXT NOT NULL,
    type              TEXT NOT NULL, -- sapi | fapi
    description       TEXT NOT NULL,
    client_id         TEXT,
    user_id           TEXT,
    secondary_user_id TEXT,
    details           TEXT NOT NULL  -- JSON
);
CREATE INDEX logs_user ON logs (user_id, seq);
CREATE INDEX logs_secondary_user ON logs (secondary_user_id, seq);
