//! The jobs API's transactions, written once for both backends over [`Tx`].
//!
//! An import batch is one transaction: it first renews the job's lease (on PostgreSQL
//! that `UPDATE` also locks the job row until commit, so a runner whose lease expired
//! cannot claim it in between), then writes each record inside a savepoint (a record
//! refused by a unique constraint rolls back alone and becomes an error row), the
//! errors, and the job's progress — only while `records_done` is still what the
//! runner read, so a batch is never applied twice.

use serde_json::{Value, json};

use super::{Cell, DELETE_USER, Failure, Outcome, Param, Tx, WRITE_USER};
use crate::domain::model::{Identity, IdentityKey, UserRecord};
use crate::error::Error;
use crate::jobs::record_error;
use crate::store::jobs::{ImportBatch, ImportItem, JobErrorRow, JobOp, JobReply, JobRow};
use crate::store::{Credential, StoredUser};

const JOB_COLUMNS: &str = "job_id, type, status, connection_id, external_id, params, created_at, \
     records_done, inserted, updated, failed, bytes, failure, completed_at, lease_owner";

const INSERT_JOB: &str = "INSERT INTO jobs (job_id, type, status, connection_id, external_id, \
     params, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)";
const SELECT_JOB: &str = "SELECT job_id, type, status, connection_id, external_id, params, \
     created_at, records_done, inserted, updated, failed, bytes, failure, completed_at, \
     lease_owner FROM jobs WHERE job_id = ?";
const INSERT_CHUNK: &str = "INSERT INTO job_chunks (job_id, seq, data) VALUES (?, ?, ?)";
const ADD_BYTES: &str = "UPDATE jobs SET bytes = bytes + ? WHERE job_id = ?";
const ACTIVATE: &str = "UPDATE jobs SET status = 'pending', connection_id = ?, external_id = ?, \
     params = ? WHERE job_id = ? AND status = 'uploading'";
const DELETE_JOB: &str = "DELETE FROM jobs WHERE job_id = ?";
const SELECT_ERRORS: &str = "SELECT seq, line, record, errors FROM job_errors WHERE job_id = ? \
     ORDER BY seq LIMIT ?";
const SELECT_CHUNK: &str = "SELECT data FROM job_chunks WHERE job_id = ? AND seq = ?";
/// One statement on both backends: the inner SELECT picks the oldest runnable job, and
/// the outer WHERE repeats the condition so that PostgreSQL's re-check of a row another
/// instance claimed meanwhile refuses it: two runners never hold one job.
const CLAIM: &str = "UPDATE jobs SET status = 'processing', lease_owner = ?, lease_until = ? \
     WHERE job_id = (SELECT job_id FROM jobs WHERE status = 'pending' \
     OR (status = 'processing' AND lease_until < ?) ORDER BY created_at, job_id LIMIT 1) \
     AND (status = 'pending' OR (status = 'processing' AND lease_until < ?)) RETURNING job_id";
const RENEW: &str = "UPDATE jobs SET lease_until = ? WHERE job_id = ? AND lease_owner = ? \
     AND status = 'processing'";
const PROGRESS: &str = "UPDATE jobs SET records_done = ?, inserted = inserted + ?, \
     updated = updated + ?, failed = failed + ? WHERE job_id = ? AND lease_owner = ? \
     AND status = 'processing' AND records_done = ?";
const INSERT_ERROR: &str =
    "INSERT INTO job_errors (job_id, seq, line, record, errors) VALUES (?, ?, ?, ?, ?)";
const DELETE_OUTPUT: &str = "DELETE FROM job_chunks WHERE job_id = ?";
const RESET_BYTES: &str = "UPDATE jobs SET bytes = 0 WHERE job_id = ?";
const FINISH: &str = "UPDATE jobs SET status = ?, failure = ?, completed_at = ?, \
     lease_owner = NULL, lease_until = NULL WHERE job_id = ? AND lease_owner = ? \
     AND status = 'processing'";
const RELEASE: &str = "UPDATE jobs SET status = 'pending', lease_owner = NULL, \
     lease_until = NULL WHERE lease_owner = ? AND status = 'processing'";
const REMEMBER_CREATED: &str = "INSERT INTO job_created (job_id, user_id) VALUES (?, ?)";
const CREATED_USERS: &str =
    "SELECT user_id FROM job_created WHERE job_id = ? ORDER BY user_id LIMIT ?";
const DELETE_IDENTITIES_OF: &str = "DELETE FROM identities WHERE owner_user_id = ?";
const FORGET_CREATED: &str = "DELETE FROM job_created WHERE job_id = ? AND user_id = ?";
const UNCOUNT_INSERTED: &str = "UPDATE jobs SET inserted = inserted - ? WHERE job_id = ?";
const ENSURE_SETTING: &str =
    "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING";
const SELECT_SETTING: &str = "SELECT value FROM settings WHERE key = ?";
const SET_PASSWORD: &str = "UPDATE identities SET password_hash = ? \
     WHERE owner_user_id = ? AND position = 0";
const USER_BY_LOGIN: &str = "SELECT owner_user_id FROM identities \
     WHERE connection_id = ? AND login_email = ? AND position = 0";

/// Runs one operation.
pub async fn run<T: Tx>(tx: &mut T, op: &JobOp) -> Outcome<JobReply, T> {
    let db = Failure::Db;
    match op {
        JobOp::Create(job) => {
            tx.execute(
                INSERT_JOB,
                vec![
                    (&job.job_id).into(),
                    (&job.kind).into(),
                    (&job.status).into(),
                    (&job.connection_id).into(),
                    (&job.external_id).into(),
                    Param::Text(Some(job.params.to_string())),
                    (&job.created_at).into(),
                ],
            )
            .await
            .map_err(db)?;
            tx.flush().await.map_err(db)?;
            Ok(JobReply::Done)
        }
        JobOp::AppendChunk { job_id, seq, data } => {
            let len = i64::try_from(data.len()).map_err(Error::internal)?;
            tx.execute(
                INSERT_CHUNK,
                vec![job_id.into(), Param::Int(*seq), Param::Bytes(data.clone())],
            )
            .await
            .map_err(db)?;
            let changed = tx
                .execute_count(ADD_BYTES, vec![Param::Int(len), job_id.into()])
                .await
                .map_err(db)?;
            Ok(JobReply::Changed(changed > 0))
        }
        JobOp::Activate {
            job_id,
            connection_id,
            external_id,
            params,
        } => {
            let changed = tx
                .execute_count(
                    ACTIVATE,
                    vec![
                        connection_id.into(),
                        external_id.into(),
                        Param::Text(Some(params.to_string())),
                        job_id.into(),
                    ],
                )
                .await
                .map_err(db)?;
            Ok(JobReply::Changed(changed > 0))
        }
        JobOp::Delete { job_id } => {
            // Chunks and errors go with it (ON DELETE CASCADE); deleted explicitly
            // too, so a backend without enforced foreign keys leaves nothing behind.
            tx.execute(DELETE_OUTPUT, vec![job_id.into()])
                .await
                .map_err(db)?;
            let changed = tx
                .execute_count(DELETE_JOB, vec![job_id.into()])
                .await
                .map_err(db)?;
            Ok(JobReply::Changed(changed > 0))
        }
        JobOp::Get { job_id } => Ok(JobReply::Job(load_job(tx, job_id).await?.map(Box::new))),
        JobOp::Errors { job_id, limit } => {
            let rows = tx
                .fetch(SELECT_ERRORS, vec![job_id.into(), Param::Int(*limit)])
                .await
                .map_err(db)?;
            let errors = rows
                .into_iter()
                .map(|row| {
                    let mut cells = Cells(row.into_iter());
                    Ok(JobErrorRow {
                        seq: cells.int()?,
                        line: cells.int()?,
                        record: cells.text()?,
                        errors: serde_json::from_str(&cells.text()?).map_err(Error::internal)?,
                    })
                })
                .collect::<Result<_, Error>>()?;
            Ok(JobReply::Errors(errors))
        }
        JobOp::Chunk { job_id, seq } => {
            let rows = tx
                .fetch(SELECT_CHUNK, vec![job_id.into(), Param::Int(*seq)])
                .await
                .map_err(db)?;
            let data = match rows.into_iter().next() {
                Some(row) => Some(Cells(row.into_iter()).bytes()?),
                None => None,
            };
            Ok(JobReply::Chunk(data))
        }
        JobOp::Claim {
            owner,
            now_ms,
            lease_until,
        } => {
            let rows = tx
                .fetch(
                    CLAIM,
                    vec![
                        owner.into(),
                        Param::Int(*lease_until),
                        Param::Int(*now_ms),
                        Param::Int(*now_ms),
                    ],
                )
                .await
                .map_err(db)?;
            let Some(row) = rows.into_iter().next() else {
                return Ok(JobReply::Job(None));
            };
            let job_id = Cells(row.into_iter()).text()?;
            Ok(JobReply::Job(load_job(tx, &job_id).await?.map(Box::new)))
        }
        JobOp::Import(batch) => import_batch(tx, batch).await,
        JobOp::PutOutput {
            job_id,
            owner,
            seq,
            data,
            lease_until,
        } => {
            if !renew(tx, job_id, owner, *lease_until).await? {
                return Err(lease_lost());
            }
            if *seq == 0 {
                // A resumed export starts its file again.
                tx.execute(DELETE_OUTPUT, vec![job_id.into()])
                    .await
                    .map_err(db)?;
                tx.execute(RESET_BYTES, vec![job_id.into()])
                    .await
                    .map_err(db)?;
            }
            let len = i64::try_from(data.len()).map_err(Error::internal)?;
            tx.execute(
                INSERT_CHUNK,
                vec![job_id.into(), Param::Int(*seq), Param::Bytes(data.clone())],
            )
            .await
            .map_err(db)?;
            tx.execute(ADD_BYTES, vec![Param::Int(len), job_id.into()])
                .await
                .map_err(db)?;
            tx.flush().await.map_err(db)?;
            Ok(JobReply::Done)
        }
        JobOp::Undo {
            job_id,
            owner,
            lease_until,
            limit,
        } => {
            if !renew(tx, job_id, owner, *lease_until).await? {
                return Err(lease_lost());
            }
            let rows = tx
                .fetch(CREATED_USERS, vec![job_id.into(), Param::Int(*limit)])
                .await
                .map_err(db)?;
            let mut deleted = 0i64;
            for row in rows {
                let user_id = Cells(row.into_iter()).text()?;
                // Identities are deleted explicitly, as by the emulator's wipe, so a
                // backend without enforced foreign keys keeps none behind.
                tx.execute(DELETE_IDENTITIES_OF, vec![(&user_id).into()])
                    .await
                    .map_err(db)?;
                tx.execute(DELETE_USER, vec![(&user_id).into()])
                    .await
                    .map_err(db)?;
                tx.execute(FORGET_CREATED, vec![job_id.into(), (&user_id).into()])
                    .await
                    .map_err(db)?;
                deleted += 1;
            }
            if deleted > 0 {
                tx.execute(UNCOUNT_INSERTED, vec![Param::Int(deleted), job_id.into()])
                    .await
                    .map_err(db)?;
            }
            tx.flush().await.map_err(db)?;
            Ok(JobReply::Changed(deleted > 0))
        }
        JobOp::Finish {
            job_id,
            owner,
            status,
            failure,
            now,
        } => {
            let changed = tx
                .execute_count(
                    FINISH,
                    vec![
                        (*status).into(),
                        failure.into(),
                        now.into(),
                        job_id.into(),
                        owner.into(),
                    ],
                )
                .await
                .map_err(db)?;
            Ok(JobReply::Changed(changed > 0))
        }
        JobOp::Release { owner } => {
            let changed = tx
                .execute_count(RELEASE, vec![owner.into()])
                .await
                .map_err(db)?;
            Ok(JobReply::Changed(changed > 0))
        }
        JobOp::EnsureSetting { key, value } => {
            tx.execute(ENSURE_SETTING, vec![key.into(), value.into()])
                .await
                .map_err(db)?;
            let rows = tx
                .fetch(SELECT_SETTING, vec![key.into()])
                .await
                .map_err(db)?;
            let row = rows
                .into_iter()
                .next()
                .ok_or_else(|| Error::internal("setting vanished"))?;
            Ok(JobReply::Text(Cells(row.into_iter()).text()?))
        }
    }
}

fn lease_lost<E>() -> Failure<E> {
    Failure::Rule(Error::internal(
        "the job's lease was lost (another runner took it over)",
    ))
}

async fn renew<T: Tx>(tx: &mut T, job_id: &str, owner: &str, until: i64) -> Outcome<bool, T> {
    let changed = tx
        .execute_count(RENEW, vec![Param::Int(until), job_id.into(), owner.into()])
        .await
        .map_err(Failure::Db)?;
    Ok(changed > 0)
}

async fn load_job<T: Tx>(tx: &mut T, job_id: &str) -> Outcome<Option<JobRow>, T> {
    debug_assert!(SELECT_JOB.contains(JOB_COLUMNS.split(',').next().unwrap_or("")));
    let rows = tx
        .fetch(SELECT_JOB, vec![job_id.into()])
        .await
        .map_err(Failure::Db)?;
    let Some(row) = rows.into_iter().next() else {
        return Ok(None);
    };
    let mut c = Cells(row.into_iter());
    Ok(Some(JobRow {
        job_id: c.text()?,
        kind: c.text()?,
        status: c.text()?,
        connection_id: c.opt_text()?,
        external_id: c.opt_text()?,
        params: serde_json::from_str(&c.text()?).map_err(Error::internal)?,
        created_at: c.text()?,
        records_done: c.int()?,
        inserted: c.int()?,
        updated: c.int()?,
        failed: c.int()?,
        bytes: c.int()?,
        failure: c.opt_text()?,
        completed_at: c.opt_text()?,
        lease_owner: c.opt_text()?,
    }))
}

/// Reads a row's cells in order.
pub(super) struct Cells(pub(super) std::vec::IntoIter<Cell>);

impl Cells {
    fn next(&mut self) -> Result<Cell, Error> {
        self.0
            .next()
            .ok_or_else(|| Error::internal("a job row has fewer columns than expected"))
    }

    pub(super) fn opt_text(&mut self) -> Result<Option<String>, Error> {
        match self.next()? {
            Cell::Null => Ok(None),
            Cell::Text(text) => Ok(Some(text)),
            other => Err(Error::internal(format!("expected text, found {other:?}"))),
        }
    }

    pub(super) fn text(&mut self) -> Result<String, Error> {
        self.opt_text()?
            .ok_or_else(|| Error::internal("expected text, found NULL"))
    }

    pub(super) fn int(&mut self) -> Result<i64, Error> {
        match self.next()? {
            Cell::Int(n) => Ok(n),
            other => Err(Error::internal(format!(
                "expected an integer, found {other:?}"
            ))),
        }
    }

    fn bytes(&mut self) -> Result<Vec<u8>, Error> {
        match self.next()? {
            Cell::Bytes(data) => Ok(data),
            other => Err(Error::internal(format!("expected bytes, found {other:?}"))),
        }
    }
}

/// How one record of a batch ended.
enum Written {
    Inserted,
    Updated,
    Refused(Value),
}

async fn import_batch<T: Tx>(tx: &mut T, batch: &ImportBatch) -> Outcome<JobReply, T> {
    let db = Failure::Db;
    if !renew(tx, &batch.job_id, &batch.owner, batch.lease_until).await? {
        return Err(lease_lost());
    }
    let (mut inserted, mut updated, mut failed) = (0i64, 0i64, 0i64);
    for item in &batch.items {
        let error = match item {
            ImportItem::Invalid(error) => error.clone(),
            ImportItem::User {
                seq,
                line,
                record,
                user,
                credential,
            } => match import_record(tx, user, credential.as_ref(), batch.upsert, &batch.now)
                .await?
            {
                Written::Inserted => {
                    if batch.remember_created {
                        tx.execute(
                            REMEMBER_CREATED,
                            vec![(&batch.job_id).into(), (&user.user_id).into()],
                        )
                        .await
                        .map_err(db)?;
                    }
                    inserted += 1;
                    continue;
                }
                Written::Updated => {
                    updated += 1;
                    continue;
                }
                Written::Refused(errors) => JobErrorRow {
                    seq: *seq,
                    line: *line,
                    record: record.clone(),
                    errors,
                },
            },
        };
        failed += 1;
        tx.execute(
            INSERT_ERROR,
            vec![
                (&batch.job_id).into(),
                Param::Int(error.seq),
                Param::Int(error.line),
                (&error.record).into(),
                Param::Text(Some(error.errors.to_string())),
            ],
        )
        .await
        .map_err(db)?;
    }
    let changed = tx
        .execute_count(
            PROGRESS,
            vec![
                Param::Int(batch.records_after),
                Param::Int(inserted),
                Param::Int(updated),
                Param::Int(failed),
                (&batch.job_id).into(),
                (&batch.owner).into(),
                Param::Int(batch.records_before),
            ],
        )
        .await
        .map_err(db)?;
    if changed == 0 {
        return Err(lease_lost());
    }
    tx.flush().await.map_err(db)?;
    Ok(JobReply::Done)
}

/// Writes one record inside its own savepoint: a unique violation (an identity or login
/// taken concurrently) rolls back that record alone.
async fn import_record<T: Tx>(
    tx: &mut T,
    user: &UserRecord,
    credential: Option<&Credential>,
    upsert: bool,
    now: &str,
) -> Outcome<Written, T> {
    let db = Failure::Db;
    tx.execute("SAVEPOINT import_record", vec![])
        .await
        .map_err(db)?;
    let outcome = write_record(tx, user, credential, upsert, now).await;
    let end = match &outcome {
        Ok(Written::Refused(_)) => "ROLLBACK TO SAVEPOINT import_record",
        Ok(_) => "RELEASE SAVEPOINT import_record",
        Err(Failure::Db(err)) if T::is_unique_violation(err) => {
            "ROLLBACK TO SAVEPOINT import_record"
        }
        Err(_) => return outcome,
    };
    tx.execute(end, vec![]).await.map_err(db)?;
    if end.starts_with("ROLLBACK") {
        tx.execute("RELEASE SAVEPOINT import_record", vec![])
            .await
            .map_err(db)?;
    }
    match outcome {
        Err(Failure::Db(_)) => Ok(Written::Refused(json!([record_error(
            "DUPLICATED_USER",
            "The user already exists (an identity, user_id or login is taken).",
            "user_id",
        )]))),
        other => other,
    }
}

/// An identity already owned by another user: reported, never moved.
async fn taken_identity<T: Tx>(
    tx: &mut T,
    identities: &[Identity],
    except_owner: Option<&str>,
) -> Outcome<Option<Value>, T> {
    for (index, identity) in identities.iter().enumerate() {
        let key = IdentityKey {
            provider: identity.provider.clone(),
            user_id: identity.user_id.as_string(),
        };
        if let Some((owner, _)) = tx.identity_owner(&key, false).await.map_err(Failure::Db)?
            && Some(owner.as_str()) != except_owner
        {
            return Ok(Some(json!([record_error(
                "IDENTITY_CONFLICT",
                &format!(
                    "The identity {} already belongs to user {owner}; it was not moved.",
                    key.to_user_id()
                ),
                &format!("identities/{index}"),
            )])));
        }
    }
    Ok(None)
}

async fn write_record<T: Tx>(
    tx: &mut T,
    user: &UserRecord,
    credential: Option<&Credential>,
    upsert: bool,
    now: &str,
) -> Outcome<Written, T> {
    let db = Failure::Db;
    let mut user_id = user.user_id.clone();
    // A database user named by email only is the same user as the one with that login.
    if let (Some(credential), Some(main)) = (credential, user.identities.first())
        && let Some(email) = &credential.login_email
    {
        let rows = tx
            .fetch(
                USER_BY_LOGIN,
                vec![(&main.connection_id).into(), email.into()],
            )
            .await
            .map_err(db)?;
        if let Some(row) = rows.into_iter().next() {
            let owner = Cells(row.into_iter()).text()?;
            if owner != user_id && !upsert {
                return Ok(Written::Refused(json!([record_error(
                    "DUPLICATED_USER",
                    "The user already exist and upsert parameter is false",
                    "email",
                )])));
            }
            user_id = owner;
        }
    }
    if T::ROW_LOCKS {
        tx.lock_user(&user_id).await.map_err(db)?;
    }
    let existing = tx.load_user(&user_id).await?;
    let Some(mut current) = existing else {
        if let Some(errors) = taken_identity(tx, &user.identities, None).await? {
            return Ok(Written::Refused(errors));
        }
        // The file's credential is its main identity's.
        let mut credentials = vec![None; user.identities.len()];
        if let Some(main) = credentials.first_mut() {
            *main = credential.cloned();
        }
        let stored = StoredUser {
            user: user.clone(),
            credentials,
        };
        super::insert_users(tx, std::slice::from_ref(&stored)).await?;
        return Ok(Written::Inserted);
    };
    if !upsert {
        return Ok(Written::Refused(json!([record_error(
            "DUPLICATED_USER",
            "The user already exist and upsert parameter is false",
            "user_id",
        )])));
    }
    // Upsert: the file's root profile and metadata replace the stored ones; identities
    // the user lacks are added after its own (when nobody else owns them).
    let new: Vec<&Identity> = user
        .identities
        .iter()
        .filter(|identity| !current.identities.iter().any(|own| own.is(&identity.key())))
        .collect();
    let owned: Vec<Identity> = new.iter().map(|i| (*i).clone()).collect();
    if let Some(errors) = taken_identity(tx, &owned, Some(&current.user_id)).await? {
        return Ok(Written::Refused(errors));
    }
    current.profile = user.profile.clone();
    current.user_metadata = user.user_metadata.clone();
    current.app_metadata = user.app_metadata.clone();
    current.blocked = user.blocked;
    current.blocked_ever_set |= user.blocked_ever_set;
    current.updated_at = now.to_owned();
    tx.execute(WRITE_USER, super::write_user_params(&current))
        .await
        .map_err(db)?;
    if let Some(credential) = credential.filter(|c| !c.password_hash.is_empty()) {
        tx.execute(
            SET_PASSWORD,
            vec![
                (&credential.password_hash).into(),
                (&current.user_id).into(),
            ],
        )
        .await
        .map_err(db)?;
    }
    super::add_identities(tx, &current.user_id, current.identities.len(), &owned).await?;
    tx.flush().await.map_err(db)?;
    Ok(Written::Updated)
}
