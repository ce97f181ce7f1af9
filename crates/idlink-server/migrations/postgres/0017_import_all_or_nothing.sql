-- The users an all-or-nothing import created, so that a refused record undoes them all
-- (idlink's `all_or_nothing` option of POST /api/v2/jobs/users-imports). Rows go away
-- as the undo deletes their users, or with the job.
CREATE TABLE job_created (
    job_id  TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    PRIMARY KEY (job_id, user_id)
);
