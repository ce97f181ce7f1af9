//! The emulator's shortcut `POST /idlink/v1/tokens` `{user_id, client_id, audience,
//! scope, nonce}`: the access and ID tokens a sign-in of that user into that client
//! would give (through [`mint_user_tokens`], the very code the authorization-code grant
//! uses), for API-level tests without a browser. Only the emulator mounts it
//! ([`router`]): plain `serve` never hands out user tokens without a sign-in.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use idlink_types::{OAuthErrorBody, TokenResponse};
use serde::Deserialize;

use crate::auth::signin::{MintError, MintRequest, mint_user_tokens};
use crate::http::extract::{RawBody, parse_payload};
use crate::state::AppState;

/// The route, for the emulator's router to merge.
pub fn router() -> Router<AppState> {
    Router::new().route("/tokens", post(issue_tokens))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensRequest {
    user_id: String,
    client_id: String,
    audience: Option<String>,
    /// Default `openid profile email`.
    scope: Option<String>,
    nonce: Option<String>,
}

fn error(status: StatusCode, error: &str, description: String) -> Response {
    (
        status,
        Json(OAuthErrorBody {
            error: error.to_owned(),
            error_description: Some(description),
        }),
    )
        .into_response()
}

/// The handler (see the module docs). Answers like `/oauth/token`: `{access_token,
/// id_token, refresh_token?, scope, expires_in, token_type}`; errors in the OAuth shape.
pub async fn issue_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let value = match parse_payload(&headers, &body) {
        Ok(value) => value,
        Err(err) => return error(StatusCode::BAD_REQUEST, "invalid_request", err.to_string()),
    };
    let request: TokensRequest = match serde_json::from_value(value) {
        Ok(request) => request,
        Err(err) => return error(StatusCode::BAD_REQUEST, "invalid_request", err.to_string()),
    };
    let minted = mint_user_tokens(
        &state,
        &MintRequest {
            user_id: request.user_id.clone(),
            client_id: request.client_id.clone(),
            audience: request.audience,
            scope: request
                .scope
                .unwrap_or_else(|| "openid profile email".to_owned()),
            nonce: request.nonce,
            auth_time: None,
            sid: None,
            refresh: true,
        },
    )
    .await;
    match minted {
        Ok(tokens) => Json(TokenResponse {
            access_token: tokens.access_token,
            token_type: "Bearer".into(),
            expires_in: tokens.expires_in.unsigned_abs(),
            scope: Some(tokens.scope),
            id_token: tokens.id_token,
            refresh_token: tokens.refresh_token,
        })
        .into_response(),
        Err(MintError::UnknownUser) => error(
            StatusCode::NOT_FOUND,
            "invalid_request",
            format!("The user does not exist: {}", request.user_id),
        ),
        Err(MintError::UnknownClient) => error(
            StatusCode::NOT_FOUND,
            "invalid_request",
            format!("Unknown client: {}", request.client_id),
        ),
        Err(MintError::Blocked) => error(
            StatusCode::FORBIDDEN,
            "unauthorized",
            "user is blocked".into(),
        ),
        Err(MintError::UnknownAudience(audience)) => error(
            StatusCode::FORBIDDEN,
            "access_denied",
            format!("Service not enabled within domain: {audience}"),
        ),
        Err(MintError::Internal(err)) => {
            tracing::error!(error = %err, "minting user tokens failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "Internal Server Error".into(),
            )
        }
    }
}
