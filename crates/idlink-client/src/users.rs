//! `/users…`: the users calls that linking needs, and the identities.

use http::Method;
use idlink_types::{
    CreateUserRequestContent, DeleteUserIdentityResponseContentItem,
    LinkUserIdentityRequestContent, UpdateUserRequestContent, User, UserId, UserIdentity,
    UserIdentityProviderEnum, UsersPage,
};
use serde::{Deserialize, Serialize};

use crate::client::{ManagementClient, encode_path_segment};
use crate::options::RequestOptions;
use crate::request::ApiRequest;

/// The users endpoints; from [`ManagementClient::users`].
///
/// Every method returns an [`ApiRequest`]: await it for the data, or call
/// `.with_raw_response()` first. The last argument overrides the client's defaults for
/// that call (`None` keeps them).
///
/// ```no_run
/// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
/// use idlink_client::CreateUserRequestContent;
///
/// let user = client.users().create(CreateUserRequestContent {
///     connection: "Username-Password-Authentication".into(),
///     email: Some("a@example.com".into()),
///     password: Some("correct horse battery staple".into()),
///     ..Default::default()
/// }, None).await?;
/// let same = client.users().get(&user.user_id, None).await?;
/// client.users().delete(&user.user_id, None).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct UsersClient<'a> {
    client: &'a ManagementClient,
}

fn user_path(id: &str) -> String {
    format!("/users/{}", encode_path_segment(id))
}

impl<'a> UsersClient<'a> {
    pub(crate) fn new(client: &'a ManagementClient) -> Self {
        Self { client }
    }

    /// The identities of users: link and unlink.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// use idlink_client::UserIdentityProviderEnum as Provider;
    /// let remaining = client.users().identities()
    ///     .delete("auth0|5f7c8ec7c33c6c004bbafe82", Provider::Github, 583231, None)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn identities(&self) -> IdentitiesClient<'a> {
        IdentitiesClient {
            client: self.client,
        }
    }

    /// `POST /users`: creates a user (201).
    ///
    /// idlink also accepts a social connection with an explicit provider-side `user_id`
    /// (Auth0 creates only database and passwordless users this way).
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// use idlink_client::{CreateUserRequestContent, UserId};
    /// let github = client.users().create(CreateUserRequestContent {
    ///     connection: "github".into(),
    ///     user_id: Some(UserId::from(583231)),
    ///     ..Default::default()
    /// }, None).await?;
    /// assert_eq!(github.user_id, "github|583231");
    /// # Ok(()) }
    /// ```
    pub fn create(
        &self,
        request: CreateUserRequestContent,
        options: Option<RequestOptions>,
    ) -> ApiRequest<User> {
        self.client
            .request(Method::POST, "/users")
            .json(&request)
            .maybe_options(options)
    }

    /// `GET /users/{id}`.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// let user = client.users().get("auth0|5f7c8ec7c33c6c004bbafe82", None).await?;
    /// println!("{:?} has {} identities", user.email, user.identities.len());
    /// # Ok(()) }
    /// ```
    pub fn get(&self, id: impl AsRef<str>, options: Option<RequestOptions>) -> ApiRequest<User> {
        self.client
            .request(Method::GET, user_path(id.as_ref()))
            .maybe_options(options)
    }

    /// `GET /users`: a page of users (`page`, `per_page`, `q`, `include_totals`).
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// use idlink_client::ListUsersRequestParameters;
    /// let page = client.users().list(ListUsersRequestParameters {
    ///     q: Some(r#"email:"a@example.com""#.into()),
    ///     include_totals: Some(true),
    ///     ..Default::default()
    /// }, None).await?;
    /// println!("{:?} in total, {} here", page.total(), page.users().len());
    /// # Ok(()) }
    /// ```
    pub fn list(
        &self,
        params: ListUsersRequestParameters,
        options: Option<RequestOptions>,
    ) -> ApiRequest<ListUsersResponse> {
        let mut request = self.client.request(Method::GET, "/users");
        if let Some(page) = params.page {
            request = request.query("page", page);
        }
        if let Some(per_page) = params.per_page {
            request = request.query("per_page", per_page);
        }
        if let Some(include_totals) = params.include_totals {
            request = request.query("include_totals", include_totals);
        }
        if let Some(q) = params.q {
            request = request.query("q", q);
        }
        if let Some(search_engine) = params.search_engine {
            request = request.query("search_engine", search_engine);
        }
        request.maybe_options(options)
    }

    /// `GET /users-by-email?email=`: every user with this email (exact match).
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// let users = client.users().list_by_email("a@example.com", None).await?;
    /// # Ok(()) }
    /// ```
    pub fn list_by_email(
        &self,
        email: impl AsRef<str>,
        options: Option<RequestOptions>,
    ) -> ApiRequest<Vec<User>> {
        self.client
            .request(Method::GET, "/users-by-email")
            .query("email", email.as_ref())
            .maybe_options(options)
    }

    /// `PATCH /users/{id}`: updates the fields set; metadata is merged at the top level.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// use idlink_client::UpdateUserRequestContent;
    /// let user = client.users().update("auth0|5f7c8ec7c33c6c004bbafe82", UpdateUserRequestContent {
    ///     name: Some("Ada".into()),
    ///     ..Default::default()
    /// }, None).await?;
    /// # Ok(()) }
    /// ```
    pub fn update(
        &self,
        id: impl AsRef<str>,
        request: UpdateUserRequestContent,
        options: Option<RequestOptions>,
    ) -> ApiRequest<User> {
        self.client
            .request(Method::PATCH, user_path(id.as_ref()))
            .json(&request)
            .maybe_options(options)
    }

    /// `DELETE /users/{id}` (204): deletes the user and every identity linked to it.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// client.users().delete("auth0|5f7c8ec7c33c6c004bbafe82", None).await?;
    /// # Ok(()) }
    /// ```
    pub fn delete(&self, id: impl AsRef<str>, options: Option<RequestOptions>) -> ApiRequest<()> {
        self.client
            .request(Method::DELETE, user_path(id.as_ref()))
            .maybe_options(options)
    }
}

/// Query parameters of [`UsersClient::list`]; unset ones are not sent.
///
/// ```
/// let params = idlink_client::ListUsersRequestParameters {
///     page: Some(0),
///     per_page: Some(50),
///     include_totals: Some(true),
///     q: Some(r#"email:"a@example.com""#.into()),
///     ..Default::default()
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListUsersRequestParameters {
    /// Page index, from 0.
    pub page: Option<u32>,
    /// Users per page (at most 100).
    pub per_page: Option<u32>,
    /// Whether to answer with a [`UsersPage`] (totals) instead of a bare list.
    pub include_totals: Option<bool>,
    /// A Lucene query, e.g. `email:"a@example.com"`.
    pub q: Option<String>,
    /// The search engine version (`v3` on Auth0).
    pub search_engine: Option<String>,
}

/// The answer of `GET /users`: a bare list, or a page with totals when
/// `include_totals=true` was asked for.
///
/// ```
/// use idlink_client::ListUsersResponse;
/// let bare: ListUsersResponse = serde_json::from_str("[]").unwrap();
/// assert_eq!(bare.total(), None);
/// let page: ListUsersResponse =
///     serde_json::from_str(r#"{"start":0,"limit":50,"length":0,"total":0,"users":[]}"#).unwrap();
/// assert_eq!(page.total(), Some(0));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ListUsersResponse {
    /// `include_totals` false or unset.
    Users(Vec<User>),
    /// `include_totals=true`.
    Page(UsersPage),
}

impl ListUsersResponse {
    /// The users of the answer.
    ///
    /// ```
    /// let r = idlink_client::ListUsersResponse::Users(vec![]);
    /// assert!(r.users().is_empty());
    /// ```
    pub fn users(&self) -> &[User] {
        match self {
            Self::Users(users) => users,
            Self::Page(page) => &page.users,
        }
    }

    /// The users, owned.
    ///
    /// ```
    /// let users = idlink_client::ListUsersResponse::Users(vec![]).into_users();
    /// assert!(users.is_empty());
    /// ```
    pub fn into_users(self) -> Vec<User> {
        match self {
            Self::Users(users) => users,
            Self::Page(page) => page.users,
        }
    }

    /// The number of users matching the query, when totals were asked for.
    ///
    /// ```
    /// assert_eq!(idlink_client::ListUsersResponse::Users(vec![]).total(), None);
    /// ```
    pub fn total(&self) -> Option<u64> {
        match self {
            Self::Users(_) => None,
            Self::Page(page) => Some(page.total),
        }
    }
}

/// The identities endpoints (the Rust counterpart of .NET's `IIdentitiesClient`); from
/// [`UsersClient::identities`].
///
/// ```no_run
/// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
/// use idlink_client::{LinkUserIdentityRequestContent, UserIdentityProviderEnum as Provider};
///
/// let primary = "auth0|5f7c8ec7c33c6c004bbafe82";
/// let identities = client.users().identities()
///     .link(primary, LinkUserIdentityRequestContent::identity(Provider::Github, 583231), None)
///     .await?;
/// let remaining = client.users().identities()
///     .delete(primary, Provider::Github, 583231, None)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct IdentitiesClient<'a> {
    client: &'a ManagementClient,
}

impl IdentitiesClient<'_> {
    /// `POST /users/{id}/identities`: links the secondary account to the primary user
    /// `id`, answering (201) with the primary's identities, primary first. Mirrors .NET's
    /// `LinkAsync(id, request, options, cancellationToken)`.
    ///
    /// - **Mode B** (server-side, scope `update:users`): `provider` and `user_id`.
    /// - **Mode A** (user-initiated, a user's token with `update:current_user_identities`
    ///   whose `sub` is `id`): `link_with` alone, the secondary account's ID token.
    ///
    /// Each call sends a fresh `Idempotency-Key` and keeps it for its retries, so a
    /// retry after a lost answer (5xx, 408, 429) gets idlink's stored answer instead of
    /// linking twice; [`RequestOptions::idempotency_key`] names the key yourself.
    /// Auth0 ignores the header.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient, secondary_id_token: String) -> idlink_client::Result<()> {
    /// use idlink_client::{LinkUserIdentityRequestContent, UserIdentityProviderEnum as Provider, UserId};
    ///
    /// // Mode B
    /// let identities = client.users().identities().link("auth0|5f7c8ec7c33c6c004bbafe82",
    ///     LinkUserIdentityRequestContent {
    ///         provider: Some(Provider::GoogleOauth2),
    ///         user_id: Some(UserId::from("1093")),
    ///         ..Default::default()
    ///     }, None).await?;
    ///
    /// // Mode A
    /// let identities = client.users().identities().link("auth0|5f7c8ec7c33c6c004bbafe82",
    ///     LinkUserIdentityRequestContent::link_with(secondary_id_token), None).await?;
    /// # Ok(()) }
    /// ```
    pub fn link(
        &self,
        id: impl AsRef<str>,
        request: LinkUserIdentityRequestContent,
        options: Option<RequestOptions>,
    ) -> ApiRequest<Vec<UserIdentity>> {
        let path = format!("{}/identities", user_path(id.as_ref()));
        self.client
            .request(Method::POST, path)
            .json(&request)
            .with_fresh_idempotency_key()
            .maybe_options(options)
    }

    /// `DELETE /users/{id}/identities/{provider}/{user_id}`: unlinks the identity
    /// `provider|user_id` from the user `id`, answering (200) with the identities that
    /// remain; the identity becomes a standalone user again. Mirrors .NET's
    /// `DeleteAsync(id, provider, userId, options, cancellationToken)`.
    ///
    /// `user_id` is the part after `provider|`, as a string or an integer. Like
    /// [`link`](Self::link), each call sends a fresh `Idempotency-Key`, reused on its
    /// retries.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// use std::time::Duration;
    /// use idlink_client::{RequestOptions, UserIdentityProviderEnum as Provider};
    ///
    /// let remaining = client.users().identities()
    ///     .delete("auth0|5f7c8ec7c33c6c004bbafe82", Provider::GoogleOauth2, "1093",
    ///             Some(RequestOptions::new().max_retries(5).timeout(Duration::from_secs(10))))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn delete(
        &self,
        id: impl AsRef<str>,
        provider: impl Into<UserIdentityProviderEnum>,
        user_id: impl Into<UserId>,
        options: Option<RequestOptions>,
    ) -> ApiRequest<Vec<DeleteUserIdentityResponseContentItem>> {
        let path = format!(
            "{}/identities/{}/{}",
            user_path(id.as_ref()),
            encode_path_segment(provider.into().as_str()),
            encode_path_segment(&user_id.into().as_string()),
        );
        self.client
            .request(Method::DELETE, path)
            .with_fresh_idempotency_key()
            .maybe_options(options)
    }
}
