//! `/logs` and `/users/{id}/logs`: the tenant's log events.

use http::Method;
use idlink_types::LogEvent;

use crate::client::{ManagementClient, encode_path_segment};
use crate::options::RequestOptions;
use crate::request::ApiRequest;

/// The log endpoints; from [`ManagementClient::logs`].
///
/// ```no_run
/// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
/// use idlink_client::ListLogsRequestParameters;
///
/// let recent = client.logs().list(ListLogsRequestParameters::default(), None).await?;
/// let about_one = client.logs()
///     .list_for_user("auth0|5f7c8ec7c33c6c004bbafe82", ListLogsRequestParameters::default(), None)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LogsClient<'a> {
    client: &'a ManagementClient,
}

impl<'a> LogsClient<'a> {
    pub(crate) fn new(client: &'a ManagementClient) -> Self {
        Self { client }
    }

    /// `GET /logs` (scope `read:logs`): a page of the tenant's log, newest first unless
    /// `sort` says otherwise.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// use idlink_client::ListLogsRequestParameters;
    /// let failures = client.logs().list(ListLogsRequestParameters {
    ///     q: Some("type:fapi".into()),
    ///     per_page: Some(100),
    ///     ..Default::default()
    /// }, None).await?;
    /// for event in failures {
    ///     println!("{:?} {:?}", event.date, event.description);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn list(
        &self,
        params: ListLogsRequestParameters,
        options: Option<RequestOptions>,
    ) -> ApiRequest<Vec<LogEvent>> {
        params
            .apply(self.client.request(Method::GET, "/logs"))
            .maybe_options(options)
    }

    /// `GET /users/{id}/logs` (scope `read:logs_users`): a page of the events about the
    /// user `id`. `q` is not part of this endpoint and is not sent.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// use idlink_client::ListLogsRequestParameters;
    /// let events = client.logs().list_for_user("auth0|5f7c8ec7c33c6c004bbafe82",
    ///     ListLogsRequestParameters { sort: Some("date:1".into()), ..Default::default() },
    ///     None).await?;
    /// # Ok(()) }
    /// ```
    pub fn list_for_user(
        &self,
        id: impl AsRef<str>,
        params: ListLogsRequestParameters,
        options: Option<RequestOptions>,
    ) -> ApiRequest<Vec<LogEvent>> {
        let path = format!("/users/{}/logs", encode_path_segment(id.as_ref()));
        ListLogsRequestParameters { q: None, ..params }
            .apply(self.client.request(Method::GET, path))
            .maybe_options(options)
    }
}

/// Query parameters of [`LogsClient::list`] and [`LogsClient::list_for_user`]; unset
/// ones are not sent.
///
/// ```
/// let params = idlink_client::ListLogsRequestParameters {
///     page: Some(0),
///     per_page: Some(50),
///     q: Some(r#"user_id:"auth0|5f7c8ec7c33c6c004bbafe82""#.into()),
///     sort: Some("date:-1".into()),
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListLogsRequestParameters {
    /// Page index, from 0.
    pub page: Option<u32>,
    /// Events per page (at most 100).
    pub per_page: Option<u32>,
    /// A Lucene query, e.g. `type:fapi` (only for [`LogsClient::list`]).
    pub q: Option<String>,
    /// `date:-1` (newest first, the default) or `date:1`.
    pub sort: Option<String>,
}

impl ListLogsRequestParameters {
    fn apply<T>(self, mut request: ApiRequest<T>) -> ApiRequest<T> {
        if let Some(page) = self.page {
            request = request.query("page", page);
        }
        if let Some(per_page) = self.per_page {
            request = request.query("per_page", per_page);
        }
        if let Some(q) = self.q {
            request = request.query("q", q);
        }
        if let Some(sort) = self.sort {
            request = request.query("sort", sort);
        }
        request
    }
}
