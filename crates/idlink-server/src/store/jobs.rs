//! What the jobs API stores: the job, its file in chunks, its errors. Every operation
//! is one [`JobOp`] that both backends run through the shared flows of
//! `core::jobs`, so the SQL is written once.

use serde_json::Value;

use super::{Credential, Store};
use crate::domain::model::UserRecord;
use crate::error::{Error, Result};

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub job_id: String,
    /// `users_import` or `users_export`.
    pub kind: String,
    /// `uploading` (idlink: the file is still arriving), `pending`, `processing`,
    /// `completed` or `failed`.
    pub status: String,
    pub connection_id: Option<String>,
    pub external_id: Option<String>,
    /// The job's options (JSON object): `upsert`, `format`, `fields`, `limit`, …
    pub params: Value,
    pub created_at: String,
    pub records_done: i64,
    pub inserted: i64,
    pub updated: i64,
    pub failed: i64,
    /// Bytes uploaded (import) or written (export).
    pub bytes: i64,
    pub failure: Option<String>,
    pub completed_at: Option<String>,
    pub lease_owner: Option<String>,
}

/// A failed record of an import.
#[derive(Debug, Clone, PartialEq)]
pub struct JobErrorRow {
    /// Index of the record in the file, from 0.
    pub seq: i64,
    /// Line the record starts on, from 1.
    pub line: i64,
    /// The record as in the file.
    pub record: String,
    /// `[{code, message, path}]`.
    pub errors: Value,
}

/// One record of an import batch.
#[derive(Debug, Clone)]
pub enum ImportItem {
    /// Refused before reaching the database (malformed, invalid).
    Invalid(JobErrorRow),
    /// A user to write, with its identities (main first).
    User {
        seq: i64,
        line: i64,
        record: String,
        user: Box<UserRecord>,
        credential: Option<Credential>,
    },
}

/// One batch of an import: written in one transaction with the job's progress.
#[derive(Debug, Clone)]
pub struct ImportBatch {
    pub job_id: String,
    /// The runner holding the lease; the batch is refused when it no longer does.
    pub owner: String,
    /// The lease's new end (unix ms).
    pub lease_until: i64,
    /// `records_done` before this batch: refused unless the job still says so, so a
    /// batch is never applied twice.
    pub records_before: i64,
    /// `records_done` after this batch.
    pub records_after: i64,
    pub upsert: bool,
    /// An all-or-nothing import: each user inserted is remembered (`job_created`) so
    /// that [`JobOp::Undo`] can take it out again.
    pub remember_created: bool,
    pub items: Vec<ImportItem>,
    pub now: String,
}

/// An operation on the jobs tables, one transaction each.
#[derive(Debug, Clone)]
pub enum JobOp {
    Create(Box<JobRow>),
    AppendChunk {
        job_id: String,
        seq: i64,
        data: Vec<u8>,
    },
    /// The upload is complete: the job is `pending` with its options.
    Activate {
        job_id: String,
        connection_id: Option<String>,
        external_id: Option<String>,
        params: Value,
    },
    Delete {
        job_id: String,
    },
    Get {
        job_id: String,
    },
    Errors {
        job_id: String,
        limit: i64,
    },
    Chunk {
        job_id: String,
        seq: i64,
    },
    /// Claims the oldest runnable job (pending, or processing with an expired lease).
    Claim {
        owner: String,
        now_ms: i64,
        lease_until: i64,
    },
    Import(Box<ImportBatch>),
    /// Replaces an export's output (chunks from `seq` on are deleted first when
    /// `seq` is 0).
    PutOutput {
        job_id: String,
        owner: String,
        seq: i64,
        data: Vec<u8>,
        lease_until: i64,
    },
    Finish {
        job_id: String,
        owner: String,
        status: &'static str,
        failure: Option<String>,
        now: String,
    },
    /// Deletes up to `limit` of the users an all-or-nothing import created (their
    /// identities with them) and takes them off its `inserted`; answers whether it
    /// deleted any, so the runner repeats it until nothing is left.
    Undo {
        job_id: String,
        owner: String,
        lease_until: i64,
        limit: i64,
    },
    /// Gives up the lease (graceful shutdown): the job is pending again.
    Release {
        owner: String,
    },
    /// A tenant setting, created with `value` when missing; answers the stored one.
    EnsureSetting {
        key: String,
        value: String,
    },
}

/// What a [`JobOp`] answers.
#[derive(Debug, Clone)]
pub enum JobReply {
    Done,
    Changed(bool),
    Job(Option<Box<JobRow>>),
    Errors(Vec<JobErrorRow>),
    Chunk(Option<Vec<u8>>),
    Text(String),
}

fn unexpected(reply: JobReply) -> Error {
    Error::internal(format!("unexpected job store reply {reply:?}"))
}

/// Typed calls over [`Store::job_op`].
#[derive(Debug, Clone, Copy)]
pub struct Jobs<'s>(pub &'s dyn Store);

impl Jobs<'_> {
    pub async fn run(&self, op: JobOp) -> Result<JobReply> {
        self.0.job_op(&op).await
    }

    pub async fn changed(&self, op: JobOp) -> Result<bool> {
        match self.run(op).await? {
            JobReply::Changed(changed) => Ok(changed),
            other => Err(unexpected(other)),
        }
    }

    pub async fn job(&self, op: JobOp) -> Result<Option<JobRow>> {
        match self.run(op).await? {
            JobReply::Job(job) => Ok(job.map(|job| *job)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn get(&self, job_id: &str) -> Result<Option<JobRow>> {
        self.job(JobOp::Get {
            job_id: job_id.to_owned(),
        })
        .await
    }

    pub async fn errors(&self, job_id: &str, limit: i64) -> Result<Vec<JobErrorRow>> {
        match self
            .run(JobOp::Errors {
                job_id: job_id.to_owned(),
                limit,
            })
            .await?
        {
            JobReply::Errors(rows) => Ok(rows),
            other => Err(unexpected(other)),
        }
    }

    pub async fn chunk(&self, job_id: &str, seq: i64) -> Result<Option<Vec<u8>>> {
        match self
            .run(JobOp::Chunk {
                job_id: job_id.to_owned(),
                seq,
            })
            .await?
        {
            JobReply::Chunk(data) => Ok(data),
            other => Err(unexpected(other)),
        }
    }

    pub async fn ensure_setting(&self, key: &str, value: &str) -> Result<String> {
        match self
            .run(JobOp::EnsureSetting {
                key: key.to_owned(),
                value: value.to_owned(),
            })
            .await?
        {
            JobReply::Text(text) => Ok(text),
            other => Err(unexpected(other)),
        }
    }
}
