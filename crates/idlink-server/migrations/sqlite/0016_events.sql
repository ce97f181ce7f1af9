-- Link events (docs/events.md): the outbox, written in the same transaction as the
-- change it describes, and one delivery per (webhook, event). Both are durable, so
-- delivery survives restarts; any instance may deliver (a claim is a lease).
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT, -- the SSE id and the order of events
    type       TEXT NOT NULL,                     -- user.identity.linked, user.created, …
    subject    TEXT NOT NULL,                     -- the user id deliveries are ordered by
    body       TEXT NOT NULL,                     -- the CloudEvent (JSON), as sent
    created_ms INTEGER NOT NULL                   -- unix milliseconds (retention)
);

CREATE TABLE webhook_deliveries (
    webhook         TEXT NOT NULL,    -- the webhook's URL, as configured
    event_id        INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    subject         TEXT NOT NULL,    -- the event's subject (ordering per user)
    state           TEXT NOT NULL,    -- pending | delivered | dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL, -- unix milliseconds
    lease_owner     TEXT,             -- the instance sending it now
    lease_until     INTEGER,          -- unix milliseconds
    last_error      TEXT,             -- why the last attempt failed
    updated_ms      INTEGER NOT NULL,
    PRIMARY KEY (webhook, event_id)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook, state, subject, event_id);
