//! The one error type of the Management API, and the one place it becomes Auth0's
//! error body `{"statusCode","error","message","errorCode"}`.

use std::borrow::Cow;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use idlink_types::ErrorBody;

use crate::domain;

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a Management API request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Missing authentication")]
    MissingAuthentication,
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("Insufficient scope; expected any of: {}.", .0.join(", "))]
    InsufficientScope(&'static [&'static str]),
    #[error("User to be acted on does not match subject in bearer token.")]
    UnownedResource,
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    InvalidUri(String),
    #[error("{0}")]
    InvalidQuery(String),
    /// An idlink extension header with a value it cannot take.
    #[error("{0}")]
    InvalidHeader(String),
    #[error("The provider/connection is not configured.")]
    InexistentConnection,
    /// The `Idempotency-Key` was used before with another request (method, path, body).
    #[error("The Idempotency-Key was already used with a different request.")]
    IdempotencyKeyReused,
    /// A call with this `Idempotency-Key` took the key first (its answer is stored
    /// once it commits): the HTTP layer replays that answer instead.
    #[error("A request with this Idempotency-Key is already being processed.")]
    IdempotencyKeyInUse,
    #[error("{0}")]
    InvalidLinkWith(&'static str),
    /// A rule of [`crate::domain`] refused the request.
    #[error(transparent)]
    Domain(#[from] domain::Error),
    #[error(
        "Too many requests. Check the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset headers."
    )]
    TooManyRequests,
    #[error("The resource server does not exist.")]
    ResourceServerNotFound,
    #[error("Not Found")]
    RouteNotFound,
    #[error("The job does not exist.")]
    JobNotFound,
    /// An events route while link events are off (`docs/events.md`).
    #[error(
        "Link events are off: configure [[webhooks]] or [events] enabled = true (see docs/events.md)."
    )]
    EventsDisabled,
    /// A job file's download link is expired or was not issued by this tenant.
    #[error("The download link is invalid or has expired.")]
    InvalidDownloadLink,
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    #[error("Payload content length greater than maximum allowed: {0}")]
    PayloadTooLarge(usize),
    #[error("Unsupported Media Type")]
    UnsupportedMediaType,
    #[error("URI longer than the maximum allowed: {0} bytes")]
    UriTooLong(usize),
    #[error("Request headers larger than the maximum allowed: {0} bytes")]
    HeadersTooLarge(usize),
    /// The request ran past its deadline and was abandoned (its transaction, if any,
    /// rolled back when the handler was dropped).
    #[error("The request took too long and was abandoned.")]
    RequestTimeout,
    /// Something broke inside; logged, and the client sees a generic message.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// An internal failure from anything that is an error.
    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(err.into())
    }

    /// HTTP status and Auth0 `errorCode`.
    pub fn status_and_code(&self) -> (StatusCode, Option<&'static str>) {
        use Error::*;
        match self {
            MissingAuthentication | InvalidToken(_) => {
                (StatusCode::UNAUTHORIZED, Some("invalid_token"))
            }
            InsufficientScope(_) => (StatusCode::FORBIDDEN, Some("insufficient_scope")),
            UnownedResource => (StatusCode::FORBIDDEN, Some("unowned_resource")),
            InvalidBody(_)
            | Domain(domain::Error::InvalidBody(_) | domain::Error::SameIdentity) => {
                (StatusCode::BAD_REQUEST, Some("invalid_body"))
            }
            // Auth0 answers without an errorCode (see docs/auth0-compatibility.md).
            Domain(domain::Error::PasswordTooWeak) => (StatusCode::BAD_REQUEST, None),
            InvalidUri(_) | Domain(domain::Error::MainIdentityRemoval) => {
                (StatusCode::BAD_REQUEST, Some("invalid_uri"))
            }
            InvalidQuery(_) | Domain(domain::Error::InvalidQuery(_)) => {
                (StatusCode::BAD_REQUEST, Some("invalid_query_string"))
            }
            InvalidHeader(_) => (StatusCode::BAD_REQUEST, Some("invalid_headers")),
            InexistentConnection => (StatusCode::BAD_REQUEST, Some("inexistent_connection")),
            IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("idempotency_key_reused"),
            ),
            IdempotencyKeyInUse => (StatusCode::CONFLICT, Some("idempotency_key_in_use")),
            InvalidLinkWith(_) | Domain(domain::Error::BlockedSecondary) => {
                (StatusCode::BAD_REQUEST, Some("invalid_link_with"))
            }
            Domain(domain::Error::SecondaryNotFound) => {
                (StatusCode::BAD_REQUEST, Some("inexistent_user"))
            }
            Domain(domain::Error::UserNotFound) => (StatusCode::NOT_FOUND, Some("inexistent_user")),
            Domain(domain::Error::ConnectionNotFound) => {
                (StatusCode::NOT_FOUND, Some("inexistent_connection"))
            }
            Domain(domain::Error::IdentityNotFound) => {
                (StatusCode::NOT_FOUND, Some("inexistent_identity"))
            }
            Domain(domain::Error::IdentityConflict) => {
                (StatusCode::CONFLICT, Some("identity_conflict"))
            }
            Domain(domain::Error::UserExists) => (StatusCode::CONFLICT, Some("auth0_idp_error")),
            Domain(domain::Error::Inconsistent(_)) => (StatusCode::INTERNAL_SERVER_ERROR, None),
            TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, Some("too_many_requests")),
            ResourceServerNotFound => (StatusCode::NOT_FOUND, Some("inexistent_resource_server")),
            RouteNotFound => (StatusCode::NOT_FOUND, None),
            JobNotFound => (StatusCode::NOT_FOUND, Some("inexistent_job")),
            EventsDisabled => (StatusCode::NOT_FOUND, Some("events_disabled")),
            InvalidDownloadLink => (StatusCode::FORBIDDEN, Some("invalid_signature")),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, None),
            PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, None),
            UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, None),
            UriTooLong(_) => (StatusCode::URI_TOO_LONG, None),
            HeadersTooLarge(_) => (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, None),
            RequestTimeout => (StatusCode::SERVICE_UNAVAILABLE, Some("request_timeout")),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
        }
    }

    /// The message clients see (internal details never leave the server).
    pub fn public_message(&self) -> Cow<'_, str> {
        match self {
            Self::Internal(_) | Self::Domain(domain::Error::Inconsistent(_)) => {
                Cow::Borrowed("Internal Server Error")
            }
            other => Cow::Owned(other.to_string()),
        }
    }

    /// The Auth0 error body.
    pub fn body(&self) -> ErrorBody {
        let (status, code) = self.status_and_code();
        ErrorBody {
            status_code: status.as_u16(),
            error: status.canonical_reason().unwrap_or("Error").to_owned(),
            message: self.public_message().into_owned(),
            error_code: code.map(str::to_owned),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        Self::internal(err)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(err) => tracing::error!(error = %err, "internal error"),
            Self::Domain(err @ domain::Error::Inconsistent(_)) => {
                tracing::error!(error = %err, "internal error");
            }
            _ => {}
        }
        let (status, code) = self.status_and_code();
        let mut response = (status, Json(self.body())).into_response();
        if let Some(code) = code {
            response
                .extensions_mut()
                .insert(crate::http::observe::ErrorCode(code));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_the_contract() {
        let body = Error::from(domain::Error::IdentityConflict).body();
        assert_eq!(body.status_code, 409);
        assert_eq!(body.error, "Conflict");
        assert_eq!(body.error_code.as_deref(), Some("identity_conflict"));

        let body =
            Error::InsufficientScope(&["update:users", "update:current_user_identities"]).body();
        assert_eq!(
            body.message,
            "Insufficient scope; expected any of: update:users, update:current_user_identities."
        );

        let body = Error::internal("disk on fire").body();
        assert_eq!(body.status_code, 500);
        assert_eq!(body.message, "Internal Server Error");

        let body = Error::from(domain::Error::Inconsistent("user x has no identity".into())).body();
        assert_eq!(body.status_code, 500);
        assert_eq!(body.message, "Internal Server Error");
        assert_eq!(body.error_code, None);
    }
}
