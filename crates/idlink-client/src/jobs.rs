//! `/jobs`: Auth0's bulk import and export of users.

use std::path::Path;
use std::time::Duration;

use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::client::{ManagementClient, encode_path_segment};
use crate::error::{Error, Result};
use crate::options::RequestOptions;
use crate::request::{ApiRequest, RawResponse, decode};

/// A job, as `GET /jobs/{id}` answers it.
///
/// ```
/// let job: idlink_client::Job = serde_json::from_value(serde_json::json!({
///     "id": "job_0000000000000001", "type": "users_import", "status": "completed",
///     "created_at": "2026-01-01T00:00:00.000Z",
///     "summary": {"failed": 0, "updated": 0, "inserted": 2, "total": 2}
/// })).unwrap();
/// assert!(job.is_finished());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// `job_…`.
    pub id: String,
    /// `users_import` or `users_export`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `processing`, `completed` or `failed`.
    pub status: String,
    /// When it was created.
    #[serde(default)]
    pub created_at: Option<String>,
    /// The connection it imports into or exports from.
    #[serde(default)]
    pub connection_id: Option<String>,
    /// The caller's own id for it.
    #[serde(default)]
    pub external_id: Option<String>,
    /// An import's counts (records read so far while it runs).
    #[serde(default)]
    pub summary: Option<JobSummary>,
    /// An export's file, once completed: a short-lived URL.
    #[serde(default)]
    pub location: Option<String>,
    /// Everything else the server said (`format`, `fields`, `connection`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Job {
    /// Whether it is `completed` or `failed`.
    ///
    /// ```
    /// # let job: idlink_client::Job = serde_json::from_value(serde_json::json!(
    /// #     {"id": "job_1", "type": "users_export", "status": "pending"})).unwrap();
    /// assert!(!job.is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        self.status == "completed" || self.status == "failed"
    }
}

/// An import's counts.
///
/// ```
/// let s = idlink_client::JobSummary { failed: 1, updated: 0, inserted: 9, total: 10 };
/// assert_eq!(s.failed + s.updated + s.inserted, s.total);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    /// Records refused (see [`JobsClient::errors`]).
    pub failed: u64,
    /// Existing users updated (`upsert`).
    pub updated: u64,
    /// Users created.
    pub inserted: u64,
    /// Records read.
    pub total: u64,
}

/// One refused record of an import.
///
/// ```
/// let e: idlink_client::JobError = serde_json::from_value(serde_json::json!({
///     "user": {"email": "a@example.com"}, "line": 3,
///     "errors": [{"code": "DUPLICATED_USER", "message": "…", "path": "email"}]
/// })).unwrap();
/// assert_eq!(e.line, Some(3));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobError {
    /// The record as in the file (a string when it was not JSON).
    pub user: Value,
    /// Why: `[{code, message, path}]`.
    pub errors: Vec<Value>,
    /// The line the record starts on (idlink; Auth0 does not say).
    #[serde(default)]
    pub line: Option<u64>,
}

/// The options of [`JobsClient::import_users`].
///
/// ```
/// let params = idlink_client::ImportUsersParameters {
///     connection_id: "con_0000000000000001".into(),
///     upsert: true,
///     ..Default::default()
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportUsersParameters {
    /// `con_…` of the database connection to import into.
    pub connection_id: String,
    /// Update users that exist instead of refusing them.
    pub upsert: bool,
    /// Your own id for the job.
    pub external_id: Option<String>,
    /// Ask Auth0 to email a summary when done.
    pub send_completion_email: bool,
    /// idlink's extension: if any record is refused, the job takes out every user it
    /// created and fails, so the import lands whole or not at all (not with `upsert`).
    /// Sent only when true; a real Auth0 tenant has no such option.
    pub all_or_nothing: bool,
}

/// The body of [`JobsClient::export_users`].
///
/// ```
/// let params = idlink_client::ExportUsersParameters {
///     format: Some("json".into()),
///     fields: Some(vec![idlink_client::ExportField { name: "email".into(), export_as: None }]),
///     ..Default::default()
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportUsersParameters {
    /// Only users of this connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// `json` (NDJSON) or `csv`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// At most this many users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The attributes to write; all (with identities, on idlink) when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<ExportField>>,
}

/// One attribute of an export.
///
/// ```
/// let f = idlink_client::ExportField { name: "user_id".into(), export_as: Some("id".into()) };
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportField {
    /// The user attribute, e.g. `email` or `user_metadata.plan`.
    pub name: String,
    /// Its name in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_as: Option<String>,
}

/// The jobs endpoints; from [`ManagementClient::jobs`].
///
/// ```no_run
/// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
/// let job = client.jobs().export_users(&Default::default(), None).await?;
/// let job = client.jobs().wait(&job.id, std::time::Duration::from_secs(1)).await?;
/// let gz = client.jobs().download(job.location.as_deref().unwrap_or_default()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct JobsClient<'a> {
    client: &'a ManagementClient,
}

impl<'a> JobsClient<'a> {
    pub(crate) fn new(client: &'a ManagementClient) -> Self {
        Self { client }
    }

    /// `POST /jobs/users-imports` (scope `create:users`): uploads `file` (streamed from
    /// disk, never read whole) as the multipart `users` part. A streamed body cannot be
    /// sent twice, so this call is not retried; a 429 comes back as an error.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// let job = client.jobs().import_users("users.json", idlink_client::ImportUsersParameters {
    ///     connection_id: "con_0000000000000001".into(), ..Default::default()
    /// }).await?;
    /// println!("{} is {}", job.id, job.status);
    /// # Ok(()) }
    /// ```
    pub async fn import_users(
        &self,
        file: impl AsRef<Path>,
        params: ImportUsersParameters,
    ) -> Result<Job> {
        let path = file.as_ref();
        let opened = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::Config(format!("cannot open {}: {e}", path.display())))?;
        let length = opened.metadata().await.map(|m| m.len()).ok();
        let stream = tokio_util::io::ReaderStream::new(opened);
        let body = reqwest::Body::wrap_stream(stream);
        let name = path.file_name().map_or_else(
            || "users.json".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
        let part = match length {
            Some(length) => reqwest::multipart::Part::stream_with_length(body, length),
            None => reqwest::multipart::Part::stream(body),
        }
        .file_name(name)
        .mime_str("application/json")
        .map_err(Error::Transport)?;
        let mut form = reqwest::multipart::Form::new()
            .text("connection_id", params.connection_id)
            .text("upsert", params.upsert.to_string())
            .text(
                "send_completion_email",
                params.send_completion_email.to_string(),
            );
        if let Some(external_id) = params.external_id {
            form = form.text("external_id", external_id);
        }
        if params.all_or_nothing {
            form = form.text("all_or_nothing", "true");
        }
        let form = form.part("users", part);
        let inner = &self.client.inner;
        let token = inner.tokens.token().await?;
        let response = inner
            .http
            .post(format!(
                "{}/jobs/users-imports",
                inner.base_url.trim_end_matches('/')
            ))
            .bearer_auth(token.expose_secret())
            .multipart(form)
            .send()
            .await
            .map_err(Error::Transport)?;
        let raw = RawResponse::from_response(&response);
        let bytes = response.bytes().await.map_err(Error::Transport)?;
        if (200..300).contains(&raw.status_code) {
            decode(&bytes, raw).map(|r| r.data)
        } else {
            Err(Error::from_response(raw, &bytes))
        }
    }

    /// `GET /jobs/{id}` (scope `create:users` or `read:users`).
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// let job = client.jobs().get("job_0000000000000001", None).await?;
    /// # Ok(()) }
    /// ```
    pub fn get(&self, id: impl AsRef<str>, options: Option<RequestOptions>) -> ApiRequest<Job> {
        let path = format!("/jobs/{}", encode_path_segment(id.as_ref()));
        self.client
            .request(Method::GET, path)
            .maybe_options(options)
    }

    /// `GET /jobs/{id}/errors` (scope `create:users`): the records an import refused.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// for e in client.jobs().errors("job_0000000000000001", None).await? {
    ///     println!("line {:?}: {:?}", e.line, e.errors);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn errors(
        &self,
        id: impl AsRef<str>,
        options: Option<RequestOptions>,
    ) -> ApiRequest<Vec<JobError>> {
        let path = format!("/jobs/{}/errors", encode_path_segment(id.as_ref()));
        self.client
            .request(Method::GET, path)
            .maybe_options(options)
    }

    /// `POST /jobs/users-exports` (scope `read:users`).
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// let job = client.jobs().export_users(&idlink_client::ExportUsersParameters {
    ///     format: Some("csv".into()), ..Default::default()
    /// }, None).await?;
    /// # Ok(()) }
    /// ```
    pub fn export_users(
        &self,
        params: &ExportUsersParameters,
        options: Option<RequestOptions>,
    ) -> ApiRequest<Job> {
        self.client
            .request(Method::POST, "/jobs/users-exports")
            .json(params)
            .maybe_options(options)
    }

    /// Polls `GET /jobs/{id}` every `every` until the job is completed or failed.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// let job = client.jobs().wait("job_0000000000000001", std::time::Duration::from_secs(2)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait(&self, id: &str, every: Duration) -> Result<Job> {
        loop {
            let job = self.get(id, None).await?;
            if job.is_finished() {
                return Ok(job);
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Downloads an export's file from its `location` (gzip, as served). The link is
    /// its own credential: no token is sent.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient, location: &str) -> idlink_client::Result<()> {
    /// let gz = client.jobs().download(location).await?;
    /// # Ok(()) }
    /// ```
    pub async fn download(&self, location: &str) -> Result<Vec<u8>> {
        let response = self
            .client
            .inner
            .http
            .get(location)
            .send()
            .await
            .map_err(Error::Transport)?;
        let raw = RawResponse::from_response(&response);
        let bytes = response.bytes().await.map_err(Error::Transport)?;
        if (200..300).contains(&raw.status_code) {
            Ok(bytes.to_vec())
        } else {
            Err(Error::from_response(raw, &bytes))
        }
    }
}
