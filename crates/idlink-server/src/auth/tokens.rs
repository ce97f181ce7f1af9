//! Issuing and verifying JWTs: Management API access tokens, ID tokens, and the
//! `link_with` token of a user-initiated link.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::KeyRing;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::store::Store;

/// `iss` of idlink's internal tokens (never the tenant's issuer, so no such token can
/// pass for an access, ID or `link_with` token).
const INTERNAL_ISSUER: &str = "urn:idlink:internal";

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 5;

/// Who the tenant is, as tokens say it.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// `iss` of every token, `{public_url}/`.
    pub issuer: String,
    /// The Management API audience, `https://{host}/api/v2/`.
    pub api_audience: String,
    /// Its `http://` form, accepted too.
    pub api_audience_http: String,
    /// The audience added for OIDC (`{issuer}userinfo`).
    pub userinfo_audience: String,
    /// Seconds.
    pub access_token_lifetime: i64,
    /// Seconds.
    pub id_token_lifetime: i64,
}

impl Tenant {
    /// Whether `audience` names the Management API.
    pub fn is_api_audience(&self, audience: &str) -> bool {
        audience == self.api_audience || audience == self.api_audience_http
    }
}

/// `aud`: one audience or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` is, or contains, `value`.
    pub fn contains(&self, value: &str) -> bool {
        match self {
            Self::One(a) => a == value,
            Self::Many(all) => all.iter().any(|a| a == value),
        }
    }
}

/// Claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    #[serde(default)]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gty: Option<String>,
}

impl AccessClaims {
    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }
}

/// Claims of an ID token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// The `nonce` of the `/authorize` request, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Left half of SHA-256 of the access token issued with it, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// Unix seconds of the sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The login session's id (OIDC `sid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// The claims a `link_with` token must carry; each is checked with its own message.
#[derive(Debug, Deserialize)]
struct LinkWithClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
}

/// Most verified access tokens kept; the cache is emptied when it is full.
const VERIFIED_CACHE_CAPACITY: usize = 16_384;

/// Issues and verifies the tenant's tokens.
#[derive(Debug, Clone)]
pub struct Tokens {
    tenant: Arc<Tenant>,
    keys: KeyRing,
    store: Arc<dyn Store>,
    /// SHA-256 of a token → its claims, so a busy client pays the RSA verification once
    /// per token rather than once per request. Entries are re-checked for expiry.
    verified: Arc<Mutex<HashMap<[u8; 32], Arc<AccessClaims>>>>,
    /// The server's clock: `iat`, `exp` and the expiry checks follow it (the emulator
    /// shifts it; jsonwebtoken's own checks read the system time, so they are off).
    clock: Clock,
}

/// `exp` and `nbf` of a token whose signature has been verified.
#[derive(Debug, Deserialize)]
struct Times {
    exp: Option<i64>,
    nbf: Option<i64>,
}

/// Checks `exp` and `nbf` against `now` with [`LEEWAY_SECS`], as jsonwebtoken would.
fn check_times(token: &str, now: i64) -> std::result::Result<(), &'static str> {
    let payload = token.split('.').nth(1).unwrap_or_default();
    let times: Times = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or("Invalid token.")?;
    let leeway = LEEWAY_SECS as i64;
    match times.exp {
        None => return Err("Invalid token."),
        Some(exp) if exp < now - leeway => {
            return Err("Expired token received for JSON Web Token validation.");
        }
        Some(_) => {}
    }
    if times.nbf.is_some_and(|nbf| nbf > now + leeway) {
        return Err("Token not yet valid.");
    }
    Ok(())
}

fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The `alg` a JWT's header claims, read without trusting anything else in it.
fn header_alg(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("alg")?.as_str().map(str::to_owned)
}

impl Tokens {
    /// Tokens of `tenant`, signed and verified with `keys`.
    pub fn new(tenant: Tenant, keys: KeyRing, store: Arc<dyn Store>) -> Self {
        Self {
            tenant: Arc::new(tenant),
            keys,
            store,
            verified: Arc::default(),
            clock: Clock::default(),
        }
    }

    /// The same tokens, timed by `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock tokens are timed by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The tenant.
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// The key ring.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    fn sign<T: Serialize>(&self, claims: &T) -> Result<String> {
        let keys = self.keys.get();
        let (kid, key) = keys.signing();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, key).map_err(Error::internal)
    }

    /// Issues an access token.
    pub fn issue_access(
        &self,
        sub: &str,
        aud: Audience,
        scope: &str,
        azp: &str,
        gty: &str,
    ) -> Result<String> {
        self.issue_access_for(
            sub,
            aud,
            scope,
            Some(azp),
            Some(gty),
            self.tenant.access_token_lifetime,
        )
    }

    /// Issues an access token living `lifetime` seconds (an API's own lifetime).
    /// `gty` is left out for interactive sign-ins, as Auth0 does.
    pub fn issue_access_for(
        &self,
        sub: &str,
        aud: Audience,
        scope: &str,
        azp: Option<&str>,
        gty: Option<&str>,
        lifetime: i64,
    ) -> Result<String> {
        let now = self.clock.unix_now();
        self.sign(&AccessClaims {
            iss: self.tenant.issuer.clone(),
            sub: sub.to_owned(),
            aud,
            iat: now,
            exp: now + lifetime,
            azp: azp.map(str::to_owned),
            scope: scope.to_owned(),
            gty: gty.map(str::to_owned),
        })
    }

    /// Issues an ID token (`iss`, `iat` and `exp` are filled in here).
    pub fn issue_id(&self, claims: IdClaims) -> Result<String> {
        let now = self.clock.unix_now();
        self.sign(&IdClaims {
            iss: self.tenant.issuer.clone(),
            iat: now,
            exp: now + self.tenant.id_token_lifetime,
            ..claims
        })
    }

    /// Signs an idlink-internal token (a login transaction): not an access or ID
    /// token, so its `iss` is not the tenant's and its `aud` is `purpose`.
    pub fn sign_internal<T: Serialize>(
        &self,
        purpose: &str,
        lifetime: i64,
        body: &T,
    ) -> Result<String> {
        let now = self.clock.unix_now();
        let mut claims = serde_json::to_value(body).map_err(Error::internal)?;
        claims["iss"] = serde_json::json!(INTERNAL_ISSUER);
        claims["aud"] = serde_json::json!(purpose);
        claims["exp"] = serde_json::json!(now + lifetime);
        self.sign(&claims)
    }

    /// Verifies a token of [`sign_internal`](Self::sign_internal) for `purpose`.
    pub async fn verify_internal<T: serde::de::DeserializeOwned>(
        &self,
        purpose: &str,
        token: &str,
    ) -> Option<T> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::RS256 {
            return None;
        }
        let key = self
            .keys
            .verifying(self.store.as_ref(), &header.kid?)
            .await
            .ok()??;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = 0;
        validation.set_issuer(&[INTERNAL_ISSUER]);
        validation.set_audience(&[purpose]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        jsonwebtoken::decode::<T>(token, &key, &validation)
            .ok()
            .map(|d| d.claims)
    }

    /// Verifies a user's access token for `/userinfo`: as [`verify_access`](Self::verify_access),
    /// but its `aud` must name `audience`.
    pub async fn verify_for_audience(&self, token: &str, audience: &str) -> Result<AccessClaims> {
        let invalid = || Error::InvalidToken("Invalid token.");
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid());
        }
        let kid = header.kid.ok_or_else(invalid)?;
        let key = self
            .keys
            .verifying(self.store.as_ref(), &kid)
            .await?
            .ok_or_else(invalid)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.tenant.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map(|d| d.claims)
            .map_err(|_| invalid())
    }

    /// Verifies a Management API bearer token: RS256 only, a known `kid`, a valid
    /// signature, this tenant's `iss`, the API `aud`, and `exp`/`nbf` within leeway.
    pub async fn verify_access(&self, token: &str) -> Result<Arc<AccessClaims>> {
        let fingerprint = digest(token);
        let now = self.clock.unix_now();
        let cached = self.verified_cache().get(&fingerprint).cloned();
        if let Some(claims) = cached {
            let leeway = LEEWAY_SECS as i64;
            if claims.exp + leeway > now {
                return Ok(claims);
            }
            return Err(Error::InvalidToken(
                "Expired token received for JSON Web Token validation.",
            ));
        }

        let invalid = Error::InvalidToken("Invalid token.");
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Error::InvalidToken("Invalid token."))?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid);
        }
        let kid = header.kid.ok_or(Error::InvalidToken("Invalid token."))?;
        let key = self
            .keys
            .verifying(self.store.as_ref(), &kid)
            .await?
            .ok_or(invalid)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY_SECS;
        // Times are checked against the server's clock below.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_issuer(&[&self.tenant.issuer]);
        validation.set_audience(&[&self.tenant.api_audience, &self.tenant.api_audience_http]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation).map_err(|e| {
            Error::InvalidToken(match e.kind() {
                ErrorKind::ExpiredSignature => {
                    "Expired token received for JSON Web Token validation."
                }
                ErrorKind::InvalidSignature => {
                    "Invalid signature received for JSON Web Token validation."
                }
                ErrorKind::InvalidAudience => "Bad audience.",
                ErrorKind::InvalidIssuer => "Bad issuer.",
                ErrorKind::ImmatureSignature => "Token not yet valid.",
                _ => "Invalid token.",
            })
        })?;
        check_times(token, now).map_err(Error::InvalidToken)?;
        let claims = Arc::new(data.claims);
        let mut cache = self.verified_cache();
        if cache.len() >= VERIFIED_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(fingerprint, claims.clone());
        Ok(claims)
    }

    fn verified_cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<AccessClaims>>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Verifies the `link_with` token of a user-initiated link against the calling
    /// token, with the contract's checks in its order; returns the secondary's `sub`.
    pub async fn verify_link_with(&self, token: &str, caller: &AccessClaims) -> Result<String> {
        let invalid = || Error::InvalidLinkWith("Invalid token (link_with).");
        match header_alg(token) {
            None => return Err(invalid()),
            Some(alg) if alg != "RS256" => {
                return Err(Error::InvalidLinkWith(
                    "JWT (link_with) must have an alg of RS256.",
                ));
            }
            Some(_) => {}
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        let kid = header.kid.ok_or_else(invalid)?;
        let key = self
            .keys
            .verifying(self.store.as_ref(), &kid)
            .await?
            .ok_or_else(invalid)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        let claims = jsonwebtoken::decode::<LinkWithClaims>(token, &key, &validation)
            .map_err(|_| invalid())?
            .claims;
        check_times(token, self.clock.unix_now()).map_err(|_| invalid())?;
        if claims.iss.as_deref() != Some(caller.iss.as_str()) {
            return Err(Error::InvalidLinkWith(
                "JWT (link_with) must have the same issuer as the calling user.",
            ));
        }
        let aud_matches = match (&claims.aud, &caller.azp) {
            (Some(aud), Some(azp)) => aud.contains(azp),
            _ => false,
        };
        if !aud_matches {
            return Err(Error::InvalidLinkWith(
                "JWT (link_with) must have an aud claim that matches that of the calling token's azp.",
            ));
        }
        match claims.sub {
            Some(sub) if !sub.is_empty() => Ok(sub),
            _ => Err(Error::InvalidLinkWith(
                "JWT (link_with) must contains sub claim.",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_alg_reads_unsigned_headers() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(
            header_alg(&format!("{header}.e30.")).as_deref(),
            Some("none")
        );
        assert_eq!(header_alg("garbage"), None);
    }

    #[test]
    fn times_follow_the_given_clock() {
        let token = |claims: &str| format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims));
        assert_eq!(check_times(&token(r#"{"exp":100}"#), 90), Ok(()));
        assert_eq!(check_times(&token(r#"{"exp":100}"#), 105), Ok(()));
        assert!(
            check_times(&token(r#"{"exp":100}"#), 106)
                .unwrap_err()
                .starts_with("Expired")
        );
        assert_eq!(
            check_times(&token(r#"{"sub":"x"}"#), 0),
            Err("Invalid token.")
        );
        assert_eq!(
            check_times(&token(r#"{"exp":100,"nbf":50}"#), 40),
            Err("Token not yet valid.")
        );
    }

    #[test]
    fn audiences() {
        assert!(Audience::One("a".into()).contains("a"));
        assert!(Audience::Many(vec!["a".into(), "b".into()]).contains("b"));
        assert!(!Audience::Many(vec![]).contains("a"));
    }
}
