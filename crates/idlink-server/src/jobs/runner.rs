//! The background runner of one instance: claims one job at a time (a lease in the
//! database, so one instance runs a job), runs it, and lets the lease expire only if it
//! dies. An import resumes after its last committed batch; an export starts its file
//! again.

use std::io::Write as _;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Map, Value, json};

use super::split::{Piece, Splitter};
use super::{BATCH_RECORDS, CHUNK_BYTES, MAX_RECORD_BYTES, now_ms, record, record_error};
use crate::domain::search;
use crate::domain::users::UserQuery;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::jobs::{ImportBatch, ImportItem, JobErrorRow, JobOp, JobRow, Jobs};

/// The running runner; stops (and hands its job back) when dropped.
#[derive(Debug)]
pub struct Runner {
    task: tokio::task::JoinHandle<()>,
    state: AppState,
}

impl Runner {
    /// Starts the runner of `state`'s instance.
    pub fn spawn(state: &AppState) -> Self {
        let runner_state = state.clone();
        Self {
            task: tokio::spawn(async move { run(runner_state).await }),
            state: state.clone(),
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.task.abort();
        // A graceful stop hands the job back at once rather than after the lease: what
        // was committed stays, the rest is run by the next runner.
        let state = self.state.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let owner = state.jobs.instance.clone();
                let _ = Jobs(state.store.as_ref())
                    .run(JobOp::Release { owner })
                    .await;
            });
        }
    }
}

async fn run(state: AppState) {
    loop {
        let lease = state.jobs.settings.lease;
        let claimed = Jobs(state.store.as_ref())
            .job(JobOp::Claim {
                owner: state.jobs.instance.clone(),
                now_ms: now_ms(),
                lease_until: now_ms() + lease_ms(&state),
            })
            .await;
        match claimed {
            Ok(Some(job)) => {
                let job_id = job.job_id.clone();
                tracing::info!(job_id, kind = job.kind, "running job");
                let outcome = match job.kind.as_str() {
                    "users_import" => import(&state, &job).await,
                    "users_export" => export(&state, &job).await,
                    other => Err(Error::internal(format!("unknown job type {other}"))),
                };
                let (status, failure) = match outcome {
                    Ok(None) => ("completed", None),
                    Ok(Some(reason)) => ("failed", Some(reason)),
                    Err(Error::Internal(err)) if err.to_string().contains("lease was lost") => {
                        tracing::warn!(job_id, "job taken over by another runner");
                        continue;
                    }
                    Err(err) => {
                        tracing::warn!(job_id, error = %err, "job failed");
                        ("failed", Some(err.to_string()))
                    }
                };
                let finished = Jobs(state.store.as_ref())
                    .run(JobOp::Finish {
                        job_id: job_id.clone(),
                        owner: state.jobs.instance.clone(),
                        status,
                        failure,
                        now: state.clock.now_iso(),
                    })
                    .await;
                if let Err(err) = finished {
                    tracing::warn!(job_id, error = %err, "cannot record the job's end");
                }
            }
            Ok(None) => {
                let _ = tokio::time::timeout(state.jobs.settings.poll, state.jobs.wake.notified())
                    .await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot claim a job");
                tokio::time::sleep(lease.min(state.jobs.settings.poll * 5)).await;
            }
        }
    }
}

fn lease_ms(state: &AppState) -> i64 {
    i64::try_from(state.jobs.settings.lease.as_millis()).unwrap_or(i64::MAX)
}

/// The record as it appears in the file, for the error report.
fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim_end().to_owned()
}

fn item_of(
    state: &AppState,
    piece: Piece,
    seq: i64,
    connection: &crate::domain::model::Connection,
    now: &str,
) -> ImportItem {
    let invalid = |line: u64, record: String, errors: Value| {
        ImportItem::Invalid(JobErrorRow {
            seq,
            line: i64::try_from(line).unwrap_or(i64::MAX),
            record,
            errors,
        })
    };
    match piece {
        Piece::Bad {
            line,
            text,
            message,
        } => invalid(
            line,
            text_of(&text),
            json!([record_error("INVALID_FORMAT", &message, "")]),
        ),
        Piece::Record { line, text } => {
            let value: Value = match serde_json::from_slice(&text) {
                Ok(value) => value,
                Err(err) => {
                    return invalid(
                        line,
                        text_of(&text),
                        json!([record_error(
                            "INVALID_FORMAT",
                            &format!("The record is not valid JSON: {err}"),
                            ""
                        )]),
                    );
                }
            };
            match record::user_of(&value, connection, &state.connections, now) {
                Ok((user, credential)) => ImportItem::User {
                    seq,
                    line: i64::try_from(line).unwrap_or(i64::MAX),
                    record: value.to_string(),
                    user: Box::new(user),
                    credential,
                },
                Err(errors) => invalid(line, value.to_string(), errors),
            }
        }
    }
}

/// How a job that ran to its end ended: `None` completed, `Some(reason)` failed
/// without an error of the runner's own (an all-or-nothing import that was undone).
type Ending = Option<String>;

/// Users taken out per transaction when an all-or-nothing import is undone.
const UNDO_BATCH: i64 = 500;

async fn import(state: &AppState, job: &JobRow) -> Result<Ending> {
    let jobs = Jobs(state.store.as_ref());
    let connection = job
        .connection_id
        .as_deref()
        .and_then(|id| state.connection_by_id(id))
        .ok_or(Error::InexistentConnection)?
        .clone();
    let upsert = job.params["upsert"].as_bool().unwrap_or(false);
    let all_or_nothing = job.params["all_or_nothing"].as_bool().unwrap_or(false);
    let mut splitter = Splitter::new(MAX_RECORD_BYTES);
    let mut pieces = Vec::new();
    let mut items = Vec::with_capacity(BATCH_RECORDS);
    // Records before `done` were committed by an earlier run: skipped, never applied twice.
    let mut done = job.records_done;
    let mut seen: i64 = 0;
    let mut chunk_seq = 0;
    let mut finished = false;
    while !finished {
        match jobs.chunk(&job.job_id, chunk_seq).await? {
            Some(chunk) => {
                splitter.feed(&chunk, &mut pieces);
                chunk_seq += 1;
            }
            None => {
                splitter.finish(&mut pieces);
                finished = true;
            }
        }
        let now = state.clock.now_iso();
        for piece in pieces.drain(..) {
            let seq = seen;
            seen += 1;
            if seq < done {
                continue;
            }
            items.push(item_of(state, piece, seq, &connection, &now));
            if items.len() >= BATCH_RECORDS {
                commit(
                    state,
                    job,
                    (upsert, all_or_nothing),
                    &mut items,
                    &mut done,
                    seen,
                )
                .await?;
            }
        }
    }
    if !items.is_empty() || done < seen {
        commit(
            state,
            job,
            (upsert, all_or_nothing),
            &mut items,
            &mut done,
            seen,
        )
        .await?;
    }
    if all_or_nothing {
        return undo_if_refused(state, job).await;
    }
    Ok(None)
}

/// An all-or-nothing import with a refused record takes out every user it created
/// (in batches, each renewing the lease: a runner that dies midway leaves the job to
/// another, which finds every record done and carries on undoing) and fails.
async fn undo_if_refused(state: &AppState, job: &JobRow) -> Result<Ending> {
    let jobs = Jobs(state.store.as_ref());
    let failed = jobs.get(&job.job_id).await?.map_or(0, |row| row.failed);
    if failed == 0 {
        return Ok(None);
    }
    while jobs
        .changed(JobOp::Undo {
            job_id: job.job_id.clone(),
            owner: state.jobs.instance.clone(),
            lease_until: now_ms() + lease_ms(state),
            limit: UNDO_BATCH,
        })
        .await?
    {}
    Ok(Some(format!(
        "all_or_nothing: {failed} record(s) refused (see the job's errors), so no user was imported"
    )))
}

async fn commit(
    state: &AppState,
    job: &JobRow,
    (upsert, remember_created): (bool, bool),
    items: &mut Vec<ImportItem>,
    done: &mut i64,
    seen: i64,
) -> Result<()> {
    let batch = ImportBatch {
        job_id: job.job_id.clone(),
        owner: state.jobs.instance.clone(),
        lease_until: now_ms() + lease_ms(state),
        records_before: *done,
        records_after: seen,
        upsert,
        remember_created,
        items: std::mem::take(items),
        now: state.clock.now_iso(),
    };
    Jobs(state.store.as_ref())
        .run(JobOp::Import(Box::new(batch)))
        .await?;
    *done = seen;
    Ok(())
}

/// The fields of an export: `[{name, export_as}]`.
fn export_fields(params: &Value) -> Option<Vec<(String, String)>> {
    let fields = params.get("fields")?.as_array()?;
    Some(
        fields
            .iter()
            .filter_map(|field| {
                let name = field.get("name")?.as_str()?.to_owned();
                let export_as = field
                    .get("export_as")
                    .and_then(Value::as_str)
                    .map_or_else(|| name.clone(), str::to_owned);
                Some((name, export_as))
            })
            .collect(),
    )
}

/// The fields a CSV export has when none are asked for.
const DEFAULT_CSV_FIELDS: &[&str] = &[
    "user_id",
    "email",
    "email_verified",
    "username",
    "name",
    "given_name",
    "family_name",
    "nickname",
    "picture",
    "created_at",
    "updated_at",
    "last_login",
    "logins_count",
    "blocked",
];

/// `name` of a user's wire shape: a root key, or a dotted path into objects
/// (`user_metadata.plan`).
fn lookup<'v>(user: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    if let Some(value) = user.get(name) {
        return Some(value);
    }
    let mut parts = name.split('.');
    let mut value = user.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

fn csv_cell(value: Option<&Value>) -> String {
    let text = match value {
        None | Some(Value::Null) => return String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

async fn export(state: &AppState, job: &JobRow) -> Result<Ending> {
    let csv = job.params["format"].as_str() == Some("csv");
    let fields = export_fields(&job.params).filter(|f| !f.is_empty());
    let limit = job.params["limit"].as_u64();
    let filter = match job
        .connection_id
        .as_deref()
        .and_then(|id| state.connection_by_id(id))
    {
        Some(connection) => search::parse(&format!(
            "identities.connection:\"{}\"",
            connection.name.replace('"', "\\\"")
        ))?,
        None => search::parse("")?,
    };
    let csv_fields: Vec<(String, String)> = fields.clone().unwrap_or_else(|| {
        DEFAULT_CSV_FIELDS
            .iter()
            .map(|f| ((*f).to_owned(), (*f).to_owned()))
            .collect()
    });
    let mut gz = GzEncoder::new(Vec::with_capacity(CHUNK_BYTES * 2), Compression::fast());
    let write = |gz: &mut GzEncoder<Vec<u8>>, text: &str| {
        gz.write_all(text.as_bytes()).map_err(Error::internal)
    };
    if csv {
        let header: Vec<String> = csv_fields
            .iter()
            .map(|(_, as_)| csv_cell(Some(&Value::String(as_.clone()))))
            .collect();
        write(&mut gz, &format!("{}\n", header.join(",")))?;
    }
    let mut seq = 0;
    let mut written: u64 = 0;
    let per_page = 1000;
    let mut page = 0;
    'pages: loop {
        let query = UserQuery {
            filter: filter.clone(),
            sort: None,
            page,
            per_page,
        };
        let (users, _) = state.store.list_users(&query).await?;
        let last = (users.len() as u64) < per_page;
        for user in users {
            if limit.is_some_and(|limit| written >= limit) {
                break 'pages;
            }
            let Value::Object(wire) =
                serde_json::to_value(user.to_wire()).map_err(Error::internal)?
            else {
                continue;
            };
            let line = if csv {
                let cells: Vec<String> = csv_fields
                    .iter()
                    .map(|(name, _)| csv_cell(lookup(&wire, name)))
                    .collect();
                cells.join(",")
            } else if let Some(fields) = &fields {
                let mut out = Map::new();
                for (name, export_as) in fields {
                    if let Some(value) = lookup(&wire, name) {
                        out.insert(export_as.clone(), value.clone());
                    }
                }
                Value::Object(out).to_string()
            } else {
                Value::Object(wire).to_string()
            };
            write(&mut gz, &line)?;
            write(&mut gz, "\n")?;
            written += 1;
            if gz.get_ref().len() >= CHUNK_BYTES {
                let data = std::mem::take(gz.get_mut());
                put(state, job, seq, data).await?;
                seq += 1;
            }
        }
        if last {
            break;
        }
        page += 1;
    }
    let data = gz.finish().map_err(Error::internal)?;
    put(state, job, seq, data).await?;
    Ok(None)
}

async fn put(state: &AppState, job: &JobRow, seq: i64, data: Vec<u8>) -> Result<()> {
    Jobs(state.store.as_ref())
        .run(JobOp::PutOutput {
            job_id: job.job_id.clone(),
            owner: state.jobs.instance.clone(),
            seq,
            data,
            lease_until: now_ms() + lease_ms(state),
        })
        .await?;
    Ok(())
}
