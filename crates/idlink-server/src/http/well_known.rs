//! `/.well-known/jwks.json` and `/.well-known/openid-configuration`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::scopes::OIDC_SCOPES;
use crate::state::AppState;
use idlink_types::{GRANT_CLIENT_CREDENTIALS, GRANT_PASSWORD, GRANT_PASSWORD_REALM};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
}

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "meta",
    responses((status = 200, description = "The tenant's public keys (RS256)", body = Object), super::openapi::ApiErrors)
)]
pub(super) async fn jwks(State(state): State<AppState>) -> Json<Value> {
    Json(state.tokens.keys().get().jwks().clone())
}

#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "meta",
    responses((status = 200, description = "OpenID Connect discovery", body = Object), super::openapi::ApiErrors)
)]
pub(super) async fn openid_configuration(State(state): State<AppState>) -> Json<Value> {
    let issuer = &state.tokens.tenant().issuer;
    let base = &state.public_url;
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "end_session_endpoint": format!("{base}/v2/logout"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "grant_types_supported": ["authorization_code", "refresh_token", GRANT_CLIENT_CREDENTIALS, GRANT_PASSWORD, GRANT_PASSWORD_REALM],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post", "web_message"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "prompt_values_supported": ["none", "login"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "none"],
        "scopes_supported": OIDC_SCOPES,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "email", "email_verified", "name", "nickname", "picture", "given_name", "family_name", "updated_at"],
    }))
}
