//! # idlink-client
//!
//! An async, typed Rust client for the Auth0 Management API v2 user and identity
//! endpoints — the Rust counterpart of the official SDKs' `IIdentitiesClient` — working
//! against a real Auth0 tenant and against [idlink](https://example.invalid/idlink), the
//! self-hostable Auth0-compatible server.
//!
//! - **Link and unlink** accounts: [`IdentitiesClient::link`] (both modes) and
//!   [`IdentitiesClient::delete`]; plus the users calls linking needs
//!   ([`UsersClient`]: create, get, list, list by email, update, delete).
//! - **Logs**: [`LogsClient`] reads the tenant's log and a user's events.
//! - **Calls are values**: every method returns an [`ApiRequest`]; `.await` it for the
//!   data, or `.with_raw_response().await` for [`WithRawResponse`] (status, URL, headers).
//! - **Retries like the official SDKs**: 408, 429 and 5xx, twice by default, honouring
//!   `Retry-After` and `X-RateLimit-Reset`, with backoff and jitter ([`RetryPolicy`]);
//!   the timeout covers the whole call.
//! - **Tokens**: client credentials fetched and cached ([`ClientCredentials`]), a static
//!   token, or your own [`TokenProvider`].
//! - **One error type**, [`Error`], with a variant per documented status and the API's
//!   `errorCode`.
//!
//! ## Example
//!
//! ```no_run
//! use std::time::Duration;
//! use idlink_client::{ManagementClient, RequestOptions, UserIdentityProviderEnum as Provider,
//!                     LinkUserIdentityRequestContent, UserId, UserIdentity};
//!
//! # async fn run() -> idlink_client::Result<()> {
//! let client = ManagementClient::builder()
//!     .domain("tenant.auth0.com")                    // → https://tenant.auth0.com/api/v2
//!     // .base_url("http://127.0.0.1:8080/api/v2")   // any base URL instead of a domain
//!     .client_credentials("CLIENT_ID", "CLIENT_SECRET") // or .token("…") or .token_provider(p)
//!     .build()?;
//!
//! // Link (mode B): the Google identity 1234 becomes part of auth0|5f7c…
//! let identities: Vec<UserIdentity> = client.users().identities()
//!     .link("auth0|5f7c8ec7c33c6c004bbafe82", LinkUserIdentityRequestContent {
//!         provider: Some(Provider::GoogleOauth2),
//!         user_id: Some(UserId::from("1234")),
//!         ..Default::default()
//!     }, None)
//!     .await?;
//!
//! // Unlink, with per-call options.
//! let remaining = client.users().identities()
//!     .delete("auth0|5f7c8ec7c33c6c004bbafe82", Provider::GoogleOauth2, "1234",
//!             Some(RequestOptions::new().max_retries(5).timeout(Duration::from_secs(10))))
//!     .await?;
//!
//! // The same call with the HTTP response beside the data.
//! let r = client.users().identities()
//!     .link("auth0|5f7c8ec7c33c6c004bbafe82",
//!           LinkUserIdentityRequestContent::identity(Provider::GoogleOauth2, "1234"), None)
//!     .with_raw_response()
//!     .await?;
//! println!("{} {} {:?}", r.raw_response.status_code, r.raw_response.url,
//!          r.raw_response.headers.get("x-ratelimit-remaining"));
//! # Ok(()) }
//! ```
//!
//! ## Errors
//!
//! ```no_run
//! # async fn run(client: idlink_client::ManagementClient) {
//! use idlink_client::{Error, UserIdentityProviderEnum as Provider};
//!
//! match client.users().identities().delete("auth0|abc", Provider::Auth0, "abc", None).await {
//!     Err(Error::BadRequest(e)) if e.error_code() == Some("invalid_uri") => {
//!         // the main identity cannot be removed
//!     }
//!     Err(Error::NotFound(_)) => { /* no such user or identity */ }
//!     Err(e) => eprintln!("{:?} {:?}: {}", e.status_code(), e.error_code(), e.message()),
//!     Ok(remaining) => println!("{} left", remaining.len()),
//! }
//! # }
//! ```
//!
//! ## Cancellation
//!
//! Dropping a call's future cancels it. For parity with .NET's `CancellationToken`, a
//! [`tokio_util::sync::CancellationToken`] can be passed in [`RequestOptions`]; the call
//! then ends with [`Error::Cancelled`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod error;
mod jobs;
mod logs;
mod options;
mod request;
mod retry;
mod secret;
mod token;
mod users;

pub use client::{
    DEFAULT_TIMEOUT, ManagementClient, ManagementClientBuilder, VERSION, encode_path_segment,
};
pub use error::{ApiError, DecodeError, Error, RateLimit, Result};
pub use jobs::{
    ExportField, ExportUsersParameters, ImportUsersParameters, Job, JobError, JobSummary,
    JobsClient,
};
pub use logs::{ListLogsRequestParameters, LogsClient};
pub use options::RequestOptions;
pub use request::{ApiRequest, RawResponse, WithRawResponse, WithRawResponseRequest};
pub use retry::RetryPolicy;
pub use secret::SecretString;
pub use token::{BoxFuture, ClientCredentials, FnTokenProvider, StaticToken, TokenProvider};
pub use users::{IdentitiesClient, ListUsersRequestParameters, ListUsersResponse, UsersClient};

pub use idlink_types::{
    ClientCredentialsRequest, CreateUserRequestContent, DeleteUserIdentityResponseContentItem,
    ErrorBody, LinkUserIdentityRequestContent, LogEvent, OAuthErrorBody, TokenResponse,
    UpdateUserRequestContent, User, UserId, UserIdentity, UserIdentityProviderEnum,
    UserProfileData, UsersPage,
};

pub use http::{HeaderMap, Method};

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
pub use reqwest::Url;
pub use tokio_util::sync::CancellationToken;
