//! The tokens of a user sign-in, made in one place: the authorization-code and
//! refresh-token grants, and the emulator's `POST /idlink/v1/tokens` shortcut, all call
//! [`mint_user_tokens`], so an API-level test gets exactly what a browser sign-in gets.
//!
//! Also the small pure pieces of the flow: PKCE, which scopes a sign-in gets, and the
//! digests under which codes, refresh tokens and sessions are stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::scopes::{OIDC_SCOPES, USER_SCOPES};
use super::tokens::{Audience, IdClaims};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::StoredRefresh;

/// How long an authorization code may wait for its exchange (Auth0: 10 minutes).
pub const CODE_LIFETIME: i64 = 600;

/// What a code or refresh token stands for (stored as its `payload`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub user_id: String,
    pub client_id: String,
    /// Space-separated, as granted.
    pub scope: String,
    pub audience: Option<String>,
    pub nonce: Option<String>,
    /// Unix seconds of the sign-in.
    pub auth_time: i64,
    /// The login session's id (`sid`), when there is one.
    pub sid: Option<String>,
}

/// An authorization code's payload: the grant and what the exchange must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeGrant {
    #[serde(flatten)]
    pub grant: Grant,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    /// `S256` or `plain`.
    pub code_challenge_method: Option<String>,
}

/// What a sign-in hands the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserTokens {
    pub access_token: String,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// Seconds the access token lives.
    pub expires_in: i64,
}

/// What to mint tokens for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintRequest {
    /// The user signed in (a primary).
    pub user_id: String,
    pub client_id: String,
    /// An API identifier (a configured resource server or the Management API); `None`
    /// for an access token good only for `/userinfo`.
    pub audience: Option<String>,
    /// Requested scopes, space-separated (what is not grantable is left out).
    pub scope: String,
    pub nonce: Option<String>,
    /// Unix seconds of the sign-in (default: now).
    pub auth_time: Option<i64>,
    pub sid: Option<String>,
    /// Start a refresh-token family when `offline_access` is granted.
    pub refresh: bool,
}

/// Why no tokens were minted.
#[derive(Debug)]
pub enum MintError {
    /// The user does not exist (any more).
    UnknownUser,
    /// The user is blocked.
    Blocked,
    /// The audience names no API of the tenant.
    UnknownAudience(String),
    /// The client does not exist.
    UnknownClient,
    Internal(Error),
}

impl From<Error> for MintError {
    fn from(err: Error) -> Self {
        Self::Internal(err)
    }
}

/// The API an audience names, for scopes and lifetime.
enum Api<'a> {
    None,
    Management,
    Resource(&'a crate::apps::ResourceServer),
}

fn api<'a>(state: &'a AppState, audience: Option<&str>) -> Result<Api<'a>, MintError> {
    match audience {
        None => Ok(Api::None),
        Some(a) if state.tokens.tenant().is_api_audience(a) => Ok(Api::Management),
        Some(a) => state
            .apps
            .resource_server(a)
            .map(Api::Resource)
            .ok_or_else(|| MintError::UnknownAudience(a.to_owned())),
    }
}

/// Whether `audience` is one idlink issues tokens for (`None` is: `/userinfo`).
pub fn is_known_audience(state: &AppState, audience: Option<&str>) -> bool {
    api(state, audience).is_ok()
}

/// The scopes a sign-in gets out of `requested`: the OIDC ones, and those of the API
/// asked for (`api_scopes`); `offline_access` only when `offline` (the client may
/// refresh and the API allows it), as Auth0 leaves it out otherwise.
pub fn granted_scopes(requested: &str, api_scopes: &[&str], offline: bool) -> Vec<String> {
    let mut granted: Vec<String> = Vec::new();
    for s in requested.split_whitespace() {
        let ok = if s == "offline_access" {
            offline
        } else {
            OIDC_SCOPES.contains(&s) || api_scopes.contains(&s)
        };
        if ok && !granted.iter().any(|g| g == s) {
            granted.push(s.to_owned());
        }
    }
    granted
}

/// Checks a PKCE `code_verifier` against the challenge of `/authorize` (RFC 7636): the
/// verifier's shape, then `S256` (base64url of its SHA-256) or `plain`, compared in
/// constant time.
pub fn verify_pkce(challenge: &str, method: &str, verifier: &str) -> bool {
    use subtle::ConstantTimeEq;
    if !is_pkce_string(verifier) {
        return false;
    }
    let expected = match method {
        "S256" => URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            verifier.as_bytes(),
        )),
        "plain" => verifier.to_owned(),
        _ => return false,
    };
    expected.as_bytes().ct_eq(challenge.as_bytes()).into()
}

/// 43 to 128 characters of `[A-Za-z0-9-._~]` (a verifier, and a challenge's shape).
pub fn is_pkce_string(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A fresh secret value (code, refresh token, session id): 32 random bytes, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The digest a secret value is stored under (SHA-256, hex): a database leak gives no
/// usable code, token or session.
pub fn digest(value: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        value.as_bytes(),
    ))
}

/// OIDC `at_hash`: the left half of the access token's SHA-256, base64url.
pub fn at_hash(access_token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..16])
}

/// Mints the access token (and ID token, and a refresh token when asked and allowed) of
/// a sign-in of `request.user_id` into `request.client_id`.
pub async fn mint_user_tokens(
    state: &AppState,
    request: &MintRequest,
) -> Result<UserTokens, MintError> {
    let client = state
        .store
        .client(&request.client_id)
        .await?
        .ok_or(MintError::UnknownClient)?;
    let user = state
        .store
        .user(&request.user_id)
        .await?
        .ok_or(MintError::UnknownUser)?;
    if user.blocked {
        return Err(MintError::Blocked);
    }
    let tenant = state.tokens.tenant();
    let api = api(state, request.audience.as_deref())?;
    let (api_scopes, lifetime, api_offline): (Vec<&str>, i64, bool) = match &api {
        Api::None => (Vec::new(), tenant.access_token_lifetime, true),
        Api::Management => (USER_SCOPES.to_vec(), tenant.access_token_lifetime, false),
        Api::Resource(rs) => (
            rs.scopes.iter().map(|(v, _)| v.as_str()).collect(),
            rs.token_lifetime,
            rs.allow_offline_access,
        ),
    };
    let offline = api_offline && client.grant_types.iter().any(|g| g == "refresh_token");
    let granted = granted_scopes(&request.scope, &api_scopes, offline);
    let has = |s: &str| granted.iter().any(|g| g == s);
    let openid = has("openid");
    let aud = match (&request.audience, openid) {
        (Some(api), true) => Audience::Many(vec![api.clone(), tenant.userinfo_audience.clone()]),
        (Some(api), false) => Audience::One(api.clone()),
        (None, _) => Audience::One(tenant.userinfo_audience.clone()),
    };
    let scope = granted.join(" ");
    let access_token = state.tokens.issue_access_for(
        &user.user_id,
        aud,
        &scope,
        Some(&client.client_id),
        None,
        lifetime,
    )?;
    let auth_time = request.auth_time.unwrap_or_else(|| state.clock.unix_now());
    let id_token = if openid {
        let p = &user.profile;
        let profile = has("profile");
        let email = has("email");
        let only = |v: &Option<String>, yes: bool| v.clone().filter(|_| yes);
        Some(state.tokens.issue_id(IdClaims {
            sub: user.user_id.clone(),
            aud: client.client_id.clone(),
            email: only(&p.email, email),
            email_verified: p.email.as_ref().filter(|_| email).map(|_| p.email_verified),
            name: only(&p.name, profile),
            nickname: only(&p.nickname, profile),
            picture: only(&p.picture, profile),
            given_name: only(&p.given_name, profile),
            family_name: only(&p.family_name, profile),
            updated_at: Some(user.updated_at.clone()).filter(|_| profile),
            nonce: request.nonce.clone(),
            at_hash: Some(at_hash(&access_token)),
            auth_time: Some(auth_time),
            sid: request.sid.clone(),
            ..IdClaims::default()
        })?)
    } else {
        None
    };
    let refresh_token = if request.refresh && has("offline_access") {
        let value = random_token();
        let now = state.clock.unix_now();
        let grant = Grant {
            user_id: user.user_id.clone(),
            client_id: client.client_id.clone(),
            scope: scope.clone(),
            audience: request.audience.clone(),
            nonce: None,
            auth_time,
            sid: request.sid.clone(),
        };
        state
            .store
            .put_refresh_token(
                &StoredRefresh {
                    hash: digest(&value),
                    family_id: random_token(),
                    client_id: client.client_id.clone(),
                    user_id: user.user_id.clone(),
                    payload: serde_json::to_string(&grant).map_err(Error::internal)?,
                    expires_at: now + state.signin.refresh_token_lifetime,
                },
                now,
            )
            .await?;
        Some(value)
    } else {
        None
    };
    Ok(UserTokens {
        access_token,
        id_token,
        refresh_token,
        scope,
        expires_in: lifetime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_and_plain() {
        // RFC 7636, appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(verify_pkce(challenge, "S256", verifier));
        assert!(!verify_pkce(challenge, "S256", &verifier.replace('d', "e")));
        assert!(!verify_pkce(challenge, "plain", verifier));
        assert!(verify_pkce(verifier, "plain", verifier));
        assert!(!verify_pkce(challenge, "S512", verifier));
        // Too short, bad characters.
        assert!(!verify_pkce("abc", "plain", "abc"));
        let spaced = format!("{} ", &verifier[..43]);
        assert!(!is_pkce_string(&spaced));
    }

    #[test]
    fn scopes_granted() {
        assert_eq!(
            granted_scopes(
                "openid profile email offline_access read:items nope",
                &["read:items"],
                true
            ),
            ["openid", "profile", "email", "offline_access", "read:items"]
        );
        assert_eq!(
            granted_scopes("openid offline_access openid", &[], false),
            ["openid"]
        );
    }

    #[test]
    fn at_hash_is_half_a_digest() {
        assert_eq!(at_hash("token").len(), 22);
        assert_eq!(digest("x").len(), 64);
        assert_ne!(random_token(), random_token());
    }
}
