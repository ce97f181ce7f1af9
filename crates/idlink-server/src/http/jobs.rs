//! `/api/v2/jobs`: Auth0's import and export jobs, and the download of an export's file.
//!
//! An import's file is streamed from the multipart body into chunk rows (never held
//! whole), under a job in state `uploading` that turns `pending` once the upload is
//! complete and valid; a failed or abandoned upload leaves nothing behind. The runner
//! ([`crate::jobs::runner`]) does the rest in the background.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::extract::{ApiPath, ApiQuery, RawBody, parse_payload};
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::jobs::{CHUNK_BYTES, LINK_LIFETIME};
use crate::state::AppState;
use crate::store::Store;
use crate::store::jobs::{JobOp, JobRow, Jobs};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/jobs/users-imports",
            // The file is limited by `max_import_bytes`, counted while it streams.
            post(create_import).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/jobs/users-exports", post(create_export))
        .route("/jobs/{id}", get(read))
        .route("/jobs/{id}/errors", get(errors))
}

/// The export files, outside `/api/v2`: their signed link is the credential.
pub fn files_router() -> Router<AppState> {
    Router::new().route("/jobs-files/{id}/{file}", get(download))
}

/// Removes a job whose upload did not complete (error, or the client went away and the
/// handler was dropped), chunks included.
struct UploadGuard {
    store: std::sync::Arc<dyn Store>,
    job_id: Option<String>,
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if let Some(job_id) = self.job_id.take() {
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(err) = Jobs(store.as_ref()).run(JobOp::Delete { job_id }).await {
                    tracing::warn!(error = %err, "cannot remove an abandoned upload");
                }
            });
        }
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidBody(message.into())
}

fn multipart_error(err: axum::extract::multipart::MultipartError) -> Error {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::PayloadTooLarge(0)
    } else {
        invalid(format!("Invalid multipart payload: {}", err.body_text()))
    }
}

fn boolean_field(name: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(invalid(format!(
            "Payload validation error: 'Expected type boolean but found type string' on property {name}."
        ))),
    }
}

fn is_connection_id(id: &str) -> bool {
    id.len() == 20 && id.starts_with("con_") && id[4..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The job's answer, as Auth0 shows it.
async fn job_body(state: &AppState, job: &JobRow) -> Result<Value> {
    let mut body = Map::new();
    let status = match job.status.as_str() {
        "uploading" => "pending",
        other => other,
    };
    body.insert("status".into(), status.into());
    body.insert("type".into(), job.kind.clone().into());
    body.insert("created_at".into(), job.created_at.clone().into());
    body.insert("id".into(), job.job_id.clone().into());
    if let Some(id) = &job.connection_id {
        body.insert("connection_id".into(), id.clone().into());
        if let Some(connection) = state.connection_by_id(id) {
            body.insert("connection".into(), connection.name.clone().into());
        }
    }
    if let Some(external_id) = &job.external_id {
        body.insert("external_id".into(), external_id.clone().into());
    }
    if job.kind == "users_import" {
        if status != "pending" {
            body.insert(
                "summary".into(),
                json!({"failed": job.failed, "updated": job.updated,
                       "inserted": job.inserted, "total": job.records_done}),
            );
        }
    } else {
        for key in ["format", "limit", "fields"] {
            if let Some(value) = job.params.get(key).filter(|v| !v.is_null()) {
                body.insert(key.into(), value.clone());
            }
        }
        if status == "completed" {
            let expires = crate::clock::unix_now()
                + i64::try_from(LINK_LIFETIME.as_secs()).unwrap_or(i64::MAX);
            let signature = state
                .jobs
                .sign(state.store.as_ref(), &job.job_id, expires)
                .await?;
            let ext = if job.params["format"].as_str() == Some("csv") {
                "csv"
            } else {
                "json"
            };
            body.insert(
                "location".into(),
                format!(
                    "{}/jobs-files/{}/users.{ext}.gz?expires={expires}&signature={signature}",
                    state.public_url, job.job_id
                )
                .into(),
            );
        }
    }
    if status == "failed" {
        // idlink: why, so an operator need not read the server's log.
        if let Some(failure) = &job.failure {
            body.insert("failure".into(), failure.clone().into());
        }
    }
    if let Some(completed_at) = &job.completed_at {
        body.insert("completed_at".into(), completed_at.clone().into());
    }
    Ok(Value::Object(body))
}

#[utoipa::path(
    post,
    path = "/api/v2/jobs/users-imports",
    tag = "jobs",
    request_body(content = ImportForm, content_type = "multipart/form-data", description = "`users`: the file (Auth0's JSON array, or NDJSON; records may carry idlink's `identities`); `connection_id`; `upsert`; `external_id`; `send_completion_email`; idlink's `all_or_nothing` (a refused record undoes the whole import; not with `upsert`)"),
    responses((status = 201, description = "The import job, pending"), super::openapi::ApiErrors),
    security(("bearer" = ["create:users"]))
)]
pub(super) async fn create_import(
    State(state): State<AppState>,
    principal: Principal,
    request: Request,
) -> Result<(StatusCode, Json<Value>)> {
    principal.require_any(&["create:users"])?;
    let max = state.jobs.settings.max_upload_bytes;
    let mut multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|_| invalid("Payload validation error: expected a multipart/form-data body."))?;
    let jobs = Jobs(state.store.as_ref());
    let mut guard = UploadGuard {
        store: state.store.clone(),
        job_id: None,
    };
    let job_id = crate::domain::ids::job_id();
    let created_at = state.clock.now_iso();
    let (mut connection_id, mut external_id) = (None, None);
    let (mut upsert, mut send_completion_email, mut all_or_nothing) = (false, false, false);
    let mut got_file = false;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or("").to_owned();
        if name == "users" {
            if got_file {
                return Err(invalid(
                    "Payload validation error: more than one users file.",
                ));
            }
            got_file = true;
            jobs.run(JobOp::Create(Box::new(JobRow {
                job_id: job_id.clone(),
                kind: "users_import".into(),
                status: "uploading".into(),
                connection_id: None,
                external_id: None,
                params: json!({}),
                created_at: created_at.clone(),
                records_done: 0,
                inserted: 0,
                updated: 0,
                failed: 0,
                bytes: 0,
                failure: None,
                completed_at: None,
                lease_owner: None,
            })))
            .await?;
            guard.job_id = Some(job_id.clone());
            let mut buffer = Vec::with_capacity(CHUNK_BYTES);
            let (mut total, mut seq) = (0u64, 0i64);
            while let Some(bytes) = field.chunk().await.map_err(multipart_error)? {
                total += bytes.len() as u64;
                if total > max {
                    return Err(Error::PayloadTooLarge(
                        usize::try_from(max).unwrap_or(usize::MAX),
                    ));
                }
                buffer.extend_from_slice(&bytes);
                if buffer.len() >= CHUNK_BYTES {
                    let data = std::mem::replace(&mut buffer, Vec::with_capacity(CHUNK_BYTES));
                    jobs.run(JobOp::AppendChunk {
                        job_id: job_id.clone(),
                        seq,
                        data,
                    })
                    .await?;
                    seq += 1;
                }
            }
            if !buffer.is_empty() {
                jobs.run(JobOp::AppendChunk {
                    job_id: job_id.clone(),
                    seq,
                    data: buffer,
                })
                .await?;
            }
            continue;
        }
        // The other parts are short text fields.
        let mut text = Vec::new();
        while let Some(bytes) = field.chunk().await.map_err(multipart_error)? {
            text.extend_from_slice(&bytes);
            if text.len() > 4096 {
                return Err(invalid(format!(
                    "Payload validation error: {name} is too long."
                )));
            }
        }
        let text = String::from_utf8(text)
            .map_err(|_| invalid(format!("Payload validation error: {name} is not UTF-8.")))?;
        match name.as_str() {
            "connection_id" => connection_id = Some(text.trim().to_owned()),
            "external_id" => external_id = Some(text),
            "upsert" => upsert = boolean_field("upsert", &text)?,
            // idlink's extension: a refused record undoes the whole import.
            "all_or_nothing" => all_or_nothing = boolean_field("all_or_nothing", &text)?,
            "send_completion_email" => {
                send_completion_email = boolean_field("send_completion_email", &text)?;
            }
            _ => {}
        }
    }
    if !got_file {
        return Err(invalid(
            "Payload validation error: 'Missing required property: users'.",
        ));
    }
    let connection_id = connection_id.ok_or_else(|| {
        invalid("Payload validation error: 'Missing required property: connection_id'.")
    })?;
    if !is_connection_id(&connection_id) {
        return Err(invalid(format!(
            "Payload validation error: 'String does not match pattern ^con_[A-Za-z0-9]{{16}}$: {connection_id}' on property connection_id."
        )));
    }
    // Unknown connection: the job fails here, before anything is written.
    let connection = state
        .connection_by_id(&connection_id)
        .ok_or(Error::InexistentConnection)?
        .clone();
    if all_or_nothing && upsert {
        // An update cannot be taken back by deleting what the job created.
        return Err(invalid(
            "Payload validation error: all_or_nothing cannot be combined with upsert.",
        ));
    }
    let mut params = json!({"upsert": upsert, "send_completion_email": send_completion_email});
    if all_or_nothing {
        params["all_or_nothing"] = true.into();
    }
    jobs.run(JobOp::Activate {
        job_id: job_id.clone(),
        connection_id: Some(connection.id.clone()),
        external_id: external_id.clone(),
        params,
    })
    .await?;
    guard.job_id = None;
    state.jobs.wake.notify_one();
    let mut body = json!({"status": "pending", "type": "users_import", "created_at": created_at,
        "id": job_id, "connection_id": connection.id, "connection": connection.name});
    if let Some(external_id) = external_id {
        body["external_id"] = external_id.into();
    }
    Ok((StatusCode::CREATED, Json(body)))
}

#[utoipa::path(
    post,
    path = "/api/v2/jobs/users-exports",
    tag = "jobs",
    request_body(content = ExportRequest, content_type = "application/json"),
    responses((status = 201, description = "The export job, pending"), super::openapi::ApiErrors),
    security(("bearer" = ["read:users"]))
)]
pub(super) async fn create_export(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Value>)> {
    principal.require_any(&["read:users"])?;
    let body = if body.is_empty() {
        json!({})
    } else {
        parse_payload(&headers, &body)?
    };
    let object = body
        .as_object()
        .ok_or_else(|| invalid("Payload validation error: 'Expected type object'."))?;
    crate::domain::users::reject_unknown(object, &["connection_id", "format", "limit", "fields"])?;
    let connection_id = match object.get("connection_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if is_connection_id(id) => Some(
            state
                .connection_by_id(id)
                .ok_or(Error::InexistentConnection)?
                .id
                .clone(),
        ),
        Some(_) => {
            return Err(invalid(
                "Payload validation error: 'String does not match pattern ^con_[A-Za-z0-9]{16}$' on property connection_id.",
            ));
        }
    };
    let format = match object.get("format") {
        None | Some(Value::Null) => "json",
        Some(Value::String(f)) if f == "json" || f == "csv" => f.as_str(),
        Some(_) => {
            return Err(invalid(
                "Payload validation error: 'No enum match for: format' (json or csv).",
            ));
        }
    };
    let limit = match object.get("limit") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => Value::Number(n.clone()),
        Some(_) => {
            return Err(invalid(
                "Payload validation error: 'limit' must be a positive integer.",
            ));
        }
    };
    let fields = match object.get("fields") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Array(items)) => {
            let mut fields = Vec::new();
            for item in items {
                let name = item.get("name").and_then(Value::as_str).ok_or_else(|| {
                    invalid(
                        "Payload validation error: 'Missing required property: name' in fields.",
                    )
                })?;
                let mut field = json!({"name": name});
                if let Some(export_as) = item.get("export_as").and_then(Value::as_str) {
                    field["export_as"] = export_as.into();
                }
                fields.push(field);
            }
            Value::Array(fields)
        }
        Some(_) => {
            return Err(invalid(
                "Payload validation error: 'fields' must be an array.",
            ));
        }
    };
    let job = JobRow {
        job_id: crate::domain::ids::job_id(),
        kind: "users_export".into(),
        status: "pending".into(),
        connection_id,
        external_id: None,
        params: json!({"format": format, "limit": limit, "fields": fields}),
        created_at: state.clock.now_iso(),
        records_done: 0,
        inserted: 0,
        updated: 0,
        failed: 0,
        bytes: 0,
        failure: None,
        completed_at: None,
        lease_owner: None,
    };
    Jobs(state.store.as_ref())
        .run(JobOp::Create(Box::new(job.clone())))
        .await?;
    state.jobs.wake.notify_one();
    Ok((StatusCode::CREATED, Json(job_body(&state, &job).await?)))
}

async fn visible_job(state: &AppState, id: &str) -> Result<JobRow> {
    Jobs(state.store.as_ref())
        .get(id)
        .await?
        .filter(|job| job.status != "uploading")
        .ok_or(Error::JobNotFound)
}

#[utoipa::path(
    get,
    path = "/api/v2/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id, `job_…`")),
    responses((status = 200, description = "The job"), super::openapi::ApiErrors),
    security(("bearer" = ["create:users"]), ("bearer" = ["read:users"]))
)]
pub(super) async fn read(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>> {
    principal.require_any(&["create:users", "read:users"])?;
    let job = visible_job(&state, &id).await?;
    Ok(Json(job_body(&state, &job).await?))
}

/// Most error records one answer lists.
const MAX_ERRORS: i64 = 10_000;

#[utoipa::path(
    get,
    path = "/api/v2/jobs/{id}/errors",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id, `job_…`")),
    responses((status = 200, description = "The records that failed, with their errors and line"), super::openapi::ApiErrors),
    security(("bearer" = ["create:users"]))
)]
pub(super) async fn errors(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>> {
    principal.require_any(&["create:users", "read:users"])?;
    let job = visible_job(&state, &id).await?;
    let rows = Jobs(state.store.as_ref())
        .errors(&job.job_id, MAX_ERRORS)
        .await?;
    let items = rows
        .into_iter()
        .map(|row| {
            // The record as in the file. `user` stays an object, as the SDKs expect;
            // a record that is not a JSON object comes as its text in `record` (idlink).
            match serde_json::from_str::<Value>(&row.record) {
                Ok(user @ Value::Object(_)) => {
                    json!({"user": user, "errors": row.errors, "line": row.line})
                }
                _ => json!({"user": {}, "errors": row.errors, "line": row.line,
                            "record": row.record}),
            }
        })
        .collect();
    Ok(Json(Value::Array(items)))
}

/// The multipart body of an import (for the OpenAPI document).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct ImportForm {
    /// The users file.
    #[schema(format = Binary)]
    users: String,
    /// `con_…` of the connection users without `identities` join.
    connection_id: String,
    upsert: Option<bool>,
    external_id: Option<String>,
    send_completion_email: Option<bool>,
    /// idlink: a refused record undoes the whole import (not with `upsert`).
    all_or_nothing: Option<bool>,
}

/// The body of an export request (for the OpenAPI document).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct ExportRequest {
    connection_id: Option<String>,
    /// `json` (NDJSON, the default) or `csv`.
    format: Option<String>,
    limit: Option<u64>,
    /// `[{name, export_as}]`; every attribute (identities included) when absent.
    fields: Option<Vec<serde_json::Value>>,
}

#[utoipa::path(
    get,
    path = "/jobs-files/{id}/{file}",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "The export job's id"),
        ("file" = String, Path, description = "The file name, e.g. `users.json.gz`"),
        ("expires" = i64, Query, description = "Unix seconds the link is valid until"),
        ("signature" = String, Query, description = "The link's signature"),
    ),
    responses(
        (status = 200, description = "The export file, gzip", content_type = "application/gzip"),
        (status = 403, description = "Invalid or expired link", body = idlink_types::ErrorBody),
        (status = 404, description = "No such completed export", body = idlink_types::ErrorBody),
    )
)]
pub(super) async fn download(
    State(state): State<AppState>,
    ApiPath((id, file)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Response> {
    let expires = params
        .get("expires")
        .and_then(|e| e.parse::<i64>().ok())
        .ok_or(Error::InvalidDownloadLink)?;
    let signature = params.get("signature").ok_or(Error::InvalidDownloadLink)?;
    state
        .jobs
        .verify(state.store.as_ref(), &id, expires, signature)
        .await?;
    let job = Jobs(state.store.as_ref())
        .get(&id)
        .await?
        .filter(|job| job.kind == "users_export" && job.status == "completed")
        .ok_or(Error::JobNotFound)?;
    let store = state.store.clone();
    let job_id = job.job_id.clone();
    // One chunk in memory at a time, read as the client takes them.
    let stream = futures_util::stream::unfold(Some(0i64), move |seq| {
        let (store, job_id) = (store.clone(), job_id.clone());
        async move {
            let seq = seq?;
            match Jobs(store.as_ref()).chunk(&job_id, seq).await {
                Ok(Some(data)) => Some((Ok::<_, std::io::Error>(data), Some(seq + 1))),
                Ok(None) => None,
                Err(err) => Some((Err(std::io::Error::other(err.to_string())), None)),
            }
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/gzip"),
    );
    if let Ok(length) = HeaderValue::from_str(&job.bytes.to_string()) {
        headers.insert(header::CONTENT_LENGTH, length);
    }
    let file = if file
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        file
    } else {
        "users.json.gz".to_owned()
    };
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}
