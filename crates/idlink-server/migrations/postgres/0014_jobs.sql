-- Auth0's jobs API (users-imports, users-exports): the job, its file in chunks, and
-- the errors of its records. All state is here, so any instance can serve a job's
-- status and file, and a job survives a restart (a runner claims it by lease).
CREATE TABLE jobs (
    job_id        TEXT PRIMARY KEY NOT NULL, -- job_ + 16 alphanumerics
    type          TEXT NOT NULL,             -- users_import | users_export
    status        TEXT NOT NULL,             -- uploading | pending | processing | completed | failed
    connection_id TEXT,
    external_id   TEXT,
    params        TEXT NOT NULL,             -- JSON: upsert, format, fields, limit
    created_at    TEXT NOT NULL,             -- ISO-8601, also the run order
    lease_owner   TEXT,                      -- the runner holding it while processing
    lease_until   BIGINT,                   -- unix milliseconds
    records_done  BIGINT NOT NULL DEFAULT 0, -- records consumed by committed batches
    inserted      BIGINT NOT NULL DEFAULT 0,
    updated       BIGINT NOT NULL DEFAULT 0,
    failed        BIGINT NOT NULL DEFAULT 0,
    bytes         BIGINT NOT NULL DEFAULT 0, -- uploaded (import) or written (export)
    failure       TEXT,                      -- why the job failed
    completed_at  TEXT
);
CREATE INDEX jobs_runnable ON jobs (status, created_at);

-- An import's uploaded file, or an export's gzip output, in order.
CREATE TABLE job_chunks (
    job_id TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    seq    BIGINT NOT NULL,
    data   BYTEA NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- One row per failed record of an import, with where it was in the file.
CREATE TABLE job_errors (
    job_id TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    seq    BIGINT NOT NULL, -- the record's index in the file, from 0
    line   BIGINT NOT NULL, -- line where the record starts, from 1
    record TEXT NOT NULL,    -- the record as in the file (JSON, or the raw text when malformed)
    errors TEXT NOT NULL,    -- JSON [{code, message, path}]
    PRIMARY KEY (job_id, seq)
);
