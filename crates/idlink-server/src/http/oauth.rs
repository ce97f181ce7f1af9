//! `POST /oauth/token`: client credentials, the password grants, and sign-in's
//! authorization code (PKCE) and refresh token (rotation) grants. Errors use the
//! OAuth shape `{"error", "error_description"}`, not the Management API's.

use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, PRAGMA};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use idlink_types::{
    GRANT_CLIENT_CREDENTIALS, GRANT_PASSWORD, GRANT_PASSWORD_REALM, OAuthErrorBody, TokenResponse,
};
use serde_json::{Map, Value};

use super::extract::{RawBody, parse_payload};
use crate::auth::scopes::{OIDC_SCOPES, USER_SCOPES};
use crate::auth::secrets;
use crate::auth::signin::{
    self, CodeGrant, Grant, MintError, MintRequest, UserTokens, mint_user_tokens,
};
use crate::auth::tokens::{Audience, IdClaims};
use crate::error::Error;
use crate::ratelimit::{self, Decision, SourceIp};
use crate::state::AppState;
use crate::store::ClientRecord;
use crate::store::Rotation;

pub fn router() -> Router<AppState> {
    Router::new().route("/oauth/token", post(token))
}

/// An OAuth error response.
#[derive(Debug)]
pub(super) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// The bucket that refused, for a 429.
    rate_limit: Option<Decision>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            rate_limit: None,
        }
    }

    /// 429 in the OAuth shape, with `Retry-After` and the bucket's headers.
    fn too_many_requests(decision: Decision) -> Self {
        Self {
            rate_limit: Some(decision),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "Too many requests. Check the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset headers.",
            )
        }
    }

    /// Refuses when `decision` does.
    fn check(decision: Decision) -> OAuthResult<()> {
        if decision.allowed {
            Ok(())
        } else {
            Err(Self::too_many_requests(decision))
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn unauthorized_client() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "access_denied", "Unauthorized")
    }
}

impl From<Error> for OAuthError {
    fn from(err: Error) -> Self {
        match err {
            Error::PayloadTooLarge(_) | Error::InvalidBody(_) | Error::UnsupportedMediaType => {
                Self::invalid_request(err.to_string())
            }
            other => {
                tracing::error!(error = %other, "token endpoint failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "Internal Server Error",
                )
            }
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = OAuthErrorBody {
            error: self.error.to_owned(),
            error_description: Some(self.description),
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(decision) = &self.rate_limit {
            let headers = response.headers_mut();
            headers.insert("retry-after", HeaderValue::from(decision.retry_after));
            ratelimit::put_headers(headers, decision);
        }
        response
    }
}

type OAuthResult<T> = Result<T, OAuthError>;

/// The request parameters, from a JSON or form body.
struct Params(Map<String, Value>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    fn required(&self, key: &str) -> OAuthResult<&str> {
        self.get(key).ok_or_else(|| {
            OAuthError::invalid_request(format!("Missing required parameter: {key}"))
        })
    }
}

/// `client_secret_basic` credentials, when sent.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    if decoded.contains('\0') || id.contains("%00") || secret.contains("%00") {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .ok()
    };
    Some((decode(id)?, decode(secret)?))
}

/// Authenticates the client. A client with a secret must present it; a public client
/// (no secret) may only use the password grants.
async fn authenticate_client(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
) -> OAuthResult<ClientRecord> {
    authenticate(state, params, headers, false).await
}

/// Authenticates the client of a user grant (authorization code, refresh token): an
/// application whose `token_endpoint_auth_method` is `none` (SPA, native) needs no
/// secret — PKCE or the refresh token is its proof.
async fn authenticate_public(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
) -> OAuthResult<ClientRecord> {
    authenticate(state, params, headers, true).await
}

async fn authenticate(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
    allow_public: bool,
) -> OAuthResult<ClientRecord> {
    let (client_id, secret) = match basic_credentials(headers) {
        Some((id, secret)) => (id, Some(secret)),
        None => (
            params.required("client_id")?.to_owned(),
            params.get("client_secret").map(str::to_owned),
        ),
    };
    OAuthError::check(state.token_limiter.check_client(&client_id))?;
    let client = state.store.client(&client_id).await?;
    match (client, secret) {
        (Some(client), Some(secret)) => {
            let hash = client.secret_hash.clone();
            let ok = match &hash {
                Some(hash) => {
                    state
                        .client_secrets
                        .verify(&client.client_id, &secret, hash)
                        .await?
                }
                None => false,
            };
            if ok {
                Ok(client)
            } else {
                Err(OAuthError::unauthorized_client())
            }
        }
        (Some(client), None) if client.secret_hash.is_none() => Ok(client),
        (Some(client), None) if allow_public && state.apps.app(&client.client_id).is_public() => {
            Ok(client)
        }
        (Some(_), None) => Err(OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "access_denied",
            "Client authentication is required",
        )),
        (None, secret) => {
            // Same work as a wrong secret, so unknown client ids are not revealed by timing.
            if let Some(secret) = secret {
                secrets::verify(secret, None).await?;
            }
            Err(OAuthError::unauthorized_client())
        }
    }
}

fn require_grant(client: &ClientRecord, grant: &str) -> OAuthResult<()> {
    if client.grant_types.iter().any(|g| g == grant) {
        Ok(())
    } else {
        Err(OAuthError::new(
            StatusCode::FORBIDDEN,
            "unauthorized_client",
            format!("Grant type '{grant}' not allowed for the client."),
        ))
    }
}

fn token_response(body: TokenResponse) -> Response {
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[utoipa::path(
    post,
    path = "/oauth/token",
    tag = "oauth",
    request_body(content(
        (super::openapi::TokenRequest = "application/json"),
        (super::openapi::TokenRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "A token", body = TokenResponse),
        super::openapi::OAuthErrors,
    ),
    security((), ("client_secret_basic" = []))
)]
pub(super) async fn token(
    State(state): State<AppState>,
    SourceIp(source): SourceIp,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let mut grant_type = "unsupported";
    let mut client_id = None;
    let outcome = token_checked(
        &state,
        source,
        &headers,
        &body,
        &mut grant_type,
        &mut client_id,
    )
    .await;
    state
        .metrics
        .record_grant(grant_type, outcome.as_ref().err().map(|e| e.error));
    let mut response = match outcome {
        Ok(response) => response,
        Err(err) => {
            let code = err.error;
            let mut response = err.into_response();
            response
                .extensions_mut()
                .insert(crate::http::observe::ErrorCode(code));
            response
        }
    };
    if let Some(client_id) = client_id {
        response
            .extensions_mut()
            .insert(crate::http::observe::ClientId(client_id));
    }
    response
}

/// The grant types idlink serves, as metric labels (anything else counts as
/// `unsupported`, so clients cannot grow the label set).
fn known_grant(grant: &str) -> Option<&'static str> {
    [
        GRANT_CLIENT_CREDENTIALS,
        GRANT_PASSWORD,
        GRANT_PASSWORD_REALM,
        GRANT_AUTHORIZATION_CODE,
        GRANT_REFRESH_TOKEN,
    ]
    .into_iter()
    .find(|known| *known == grant)
}

async fn token_checked(
    state: &AppState,
    source: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    body: &[u8],
    grant_type: &mut &'static str,
    client_id: &mut Option<String>,
) -> OAuthResult<Response> {
    // Before anything costs argon2 work.
    OAuthError::check(state.token_limiter.check_address(source))?;
    let params = match parse_payload(headers, body)? {
        Value::Object(map) => Params(map),
        Value::Null => Params(Map::new()),
        _ => return Err(OAuthError::invalid_request("Expected an object")),
    };
    // The client named, for the log line (bounded: ids are short; a long one is cut).
    *client_id = params
        .get("client_id")
        .map(|id| id.chars().take(64).collect());
    let grant = params.required("grant_type")?.to_owned();
    *grant_type = known_grant(&grant).unwrap_or("unsupported");
    match grant.as_str() {
        GRANT_CLIENT_CREDENTIALS => client_credentials(state, &params, headers).await,
        GRANT_PASSWORD | GRANT_PASSWORD_REALM => password(state, &params, headers, &grant).await,
        GRANT_AUTHORIZATION_CODE => authorization_code(state, &params, headers).await,
        GRANT_REFRESH_TOKEN => refresh_token(state, &params, headers).await,
        other => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("Unsupported grant type: {other}"),
        )),
    }
}

const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
const GRANT_REFRESH_TOKEN: &str = "refresh_token";

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::new(StatusCode::FORBIDDEN, "invalid_grant", description)
}

impl From<MintError> for OAuthError {
    fn from(err: MintError) -> Self {
        match err {
            MintError::UnknownUser => invalid_grant("The user does not exist."),
            MintError::Blocked => {
                OAuthError::new(StatusCode::UNAUTHORIZED, "unauthorized", "user is blocked")
            }
            MintError::UnknownAudience(audience) => service_not_enabled(&audience),
            MintError::UnknownClient => OAuthError::unauthorized_client(),
            MintError::Internal(err) => err.into(),
        }
    }
}

fn user_tokens_response(tokens: UserTokens) -> Response {
    token_response(TokenResponse {
        access_token: tokens.access_token,
        token_type: "Bearer".into(),
        expires_in: tokens.expires_in.unsigned_abs(),
        scope: Some(tokens.scope),
        id_token: tokens.id_token,
        refresh_token: tokens.refresh_token,
    })
}

/// Exchanges an authorization code of `/authorize`: single use (the code is gone from
/// the store once presented, whatever follows), unexpired, issued to this client for
/// this redirect URI, and proven with the PKCE verifier when it had a challenge.
async fn authorization_code(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
) -> OAuthResult<Response> {
    let client = authenticate_public(state, params, headers).await?;
    require_grant(&client, GRANT_AUTHORIZATION_CODE)?;
    let code = params.required("code")?;
    let invalid_code = || invalid_grant("Invalid authorization code");
    let stored = state
        .store
        .take_code(&signin::digest(code))
        .await?
        .ok_or_else(invalid_code)?;
    if stored.client_id != client.client_id || stored.expires_at <= state.clock.unix_now() {
        return Err(invalid_code());
    }
    let grant: CodeGrant = serde_json::from_str(&stored.payload).map_err(Error::internal)?;
    if params.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return Err(invalid_grant(
            "The redirect_uri MUST match the registered callback URL for this application.",
        ));
    }
    if let Some(challenge) = &grant.code_challenge {
        let method = grant.code_challenge_method.as_deref().unwrap_or("plain");
        let verified = params
            .get("code_verifier")
            .is_some_and(|v| signin::verify_pkce(challenge, method, v));
        if !verified {
            return Err(invalid_grant("Failed to verify code verifier"));
        }
    }
    let g = grant.grant;
    let tokens = mint_user_tokens(
        state,
        &MintRequest {
            user_id: g.user_id,
            client_id: client.client_id,
            audience: g.audience,
            scope: g.scope,
            nonce: g.nonce,
            auth_time: Some(g.auth_time),
            sid: g.sid,
            refresh: true,
        },
    )
    .await?;
    Ok(user_tokens_response(tokens))
}

/// Rotates a refresh token: the presented one is used up and a new one returned; a
/// token presented again after its rotation revokes its whole family (reuse detection),
/// so a stolen token stops working for the thief and the victim alike.
async fn refresh_token(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
) -> OAuthResult<Response> {
    let client = authenticate_public(state, params, headers).await?;
    require_grant(&client, GRANT_REFRESH_TOKEN)?;
    let presented = params.required("refresh_token")?;
    let invalid = || invalid_grant("Unknown or invalid refresh token.");
    let next = signin::random_token();
    let rotation = state
        .store
        .rotate_refresh_token(
            &signin::digest(presented),
            &signin::digest(&next),
            state.clock.unix_now(),
        )
        .await?;
    let old = match rotation {
        Rotation::Rotated(old) if old.client_id == client.client_id => old,
        Rotation::Rotated(_) | Rotation::Reused | Rotation::Unknown => return Err(invalid()),
    };
    let grant: Grant = serde_json::from_str(&old.payload).map_err(Error::internal)?;
    let mut tokens = mint_user_tokens(
        state,
        &MintRequest {
            user_id: grant.user_id,
            client_id: client.client_id,
            audience: grant.audience,
            scope: grant.scope,
            nonce: None,
            auth_time: Some(grant.auth_time),
            sid: grant.sid,
            refresh: false,
        },
    )
    .await?;
    tokens.refresh_token = Some(next);
    Ok(user_tokens_response(tokens))
}

fn service_not_enabled(audience: &str) -> OAuthError {
    OAuthError::new(
        StatusCode::FORBIDDEN,
        "access_denied",
        format!("Service not enabled within domain: {audience}"),
    )
}

async fn client_credentials(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
) -> OAuthResult<Response> {
    let client = authenticate_client(state, params, headers).await?;
    if client.secret_hash.is_none() {
        return Err(OAuthError::unauthorized_client());
    }
    require_grant(&client, GRANT_CLIENT_CREDENTIALS)?;
    let tenant = state.tokens.tenant();
    let audience = params.get("audience").ok_or_else(|| {
        OAuthError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            "No audience parameter was provided, and no default audience has been configured",
        )
    })?;
    // The Management API's scopes are the client's own; an API of the config file's
    // are what its client grant allows.
    let (allowed, lifetime): (Vec<String>, i64) = if tenant.is_api_audience(audience) {
        (client.scopes.clone(), tenant.access_token_lifetime)
    } else if let Some(rs) = state.apps.resource_server(audience) {
        let grant = state.apps.grant(&client.client_id, audience).ok_or_else(|| {
            OAuthError::new(
                StatusCode::FORBIDDEN,
                "access_denied",
                format!(
                    "Client is not authorized to access \"{audience}\". You need to create a \"client-grant\" associated to this API. See: https://auth0.com/docs/api/v2#!/Client_Grants/post_client_grants"
                ),
            )
        })?;
        (grant.scope.clone(), rs.token_lifetime)
    } else {
        return Err(service_not_enabled(audience));
    };
    let scope = match params.get("scope") {
        None => allowed.join(" "),
        Some(requested) => {
            let missing: Vec<&str> = requested
                .split_whitespace()
                .filter(|s| !allowed.iter().any(|g| g == s))
                .collect();
            if !missing.is_empty() {
                return Err(OAuthError::new(
                    StatusCode::FORBIDDEN,
                    "access_denied",
                    format!("Client has not been granted scopes: {}", missing.join(", ")),
                ));
            }
            requested.split_whitespace().collect::<Vec<_>>().join(" ")
        }
    };
    let access_token = state.tokens.issue_access_for(
        &format!("{}@clients", client.client_id),
        Audience::One(audience.to_owned()),
        &scope,
        Some(&client.client_id),
        Some("client-credentials"),
        lifetime,
    )?;
    Ok(token_response(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: lifetime.unsigned_abs(),
        scope: Some(scope),
        id_token: None,
        refresh_token: None,
    }))
}

async fn password(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
    grant: &str,
) -> OAuthResult<Response> {
    let client = authenticate_client(state, params, headers).await?;
    require_grant(&client, grant)?;
    let username = params.required("username")?;
    let password = params.required("password")?;
    let connection = if grant == GRANT_PASSWORD_REALM {
        let realm = params.required("realm")?;
        state
            .connection_by_name(realm)
            .filter(|c| c.is_database())
            .ok_or_else(|| OAuthError::invalid_request(format!("Unknown realm: {realm}")))?
    } else {
        state
            .connection_by_name(crate::config::DEFAULT_DATABASE_CONNECTION)
            .ok_or_else(|| OAuthError::invalid_request("No default connection is configured"))?
    };
    let tenant = state.tokens.tenant();
    let audience = params.get("audience");
    if let Some(audience) = audience.filter(|a| !tenant.is_api_audience(a)) {
        return Err(service_not_enabled(audience));
    }

    let login = state.store.find_login(&connection.id, username).await?;
    let verified = secrets::verify(
        password.to_owned(),
        login.as_ref().map(|l| l.password_hash.clone()),
    )
    .await?;
    let login = match login {
        Some(login) if verified => login,
        _ => {
            return Err(OAuthError::new(
                StatusCode::FORBIDDEN,
                "invalid_grant",
                "Wrong email or password.",
            ));
        }
    };
    if login.blocked {
        return Err(OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "user is blocked",
        ));
    }

    let requested: Vec<&str> = params
        .get("scope")
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let granted: Vec<&str> = requested
        .iter()
        .copied()
        .filter(|s| OIDC_SCOPES.contains(s) || (audience.is_some() && USER_SCOPES.contains(s)))
        .collect();
    let openid = granted.contains(&"openid");
    let aud = match (audience, openid) {
        (Some(api), true) => Audience::Many(vec![api.to_owned(), tenant.userinfo_audience.clone()]),
        (Some(api), false) => Audience::One(api.to_owned()),
        (None, _) => Audience::One(tenant.userinfo_audience.clone()),
    };
    let scope = granted.join(" ");
    let access_token = state.tokens.issue_access(
        &login.owner_user_id,
        aud,
        &scope,
        &client.client_id,
        "password",
    )?;
    let user = state.store.user(&login.owner_user_id).await?;
    let id_token = match (&user, openid) {
        (Some(user), true) => {
            let p = &user.profile;
            let profile = granted.contains(&"profile");
            let email = granted.contains(&"email");
            Some(state.tokens.issue_id(IdClaims {
                sub: user.user_id.clone(),
                aud: client.client_id.clone(),
                email: p.email.clone().filter(|_| email),
                email_verified: p.email.as_ref().filter(|_| email).map(|_| p.email_verified),
                name: p.name.clone().filter(|_| profile),
                nickname: p.nickname.clone().filter(|_| profile),
                picture: p.picture.clone().filter(|_| profile),
                ..IdClaims::default()
            })?)
        }
        _ => None,
    };
    state
        .store
        .record_login(&login.owner_user_id, &state.clock.now_iso())
        .await?;
    Ok(token_response(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: tenant.access_token_lifetime.unsigned_abs(),
        scope: Some(scope),
        id_token,
        refresh_token: None,
    }))
}
