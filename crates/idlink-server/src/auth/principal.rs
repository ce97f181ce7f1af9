//! The caller: a verified bearer token, extracted before any handler runs.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::tokens::AccessClaims;
use crate::domain::audit::Actor;
use crate::error::{Error, Result};
use crate::state::AppState;

/// A caller whose Management API token verified.
#[derive(Debug, Clone)]
pub struct Principal(pub Arc<AccessClaims>);

impl Principal {
    /// The token's claims.
    pub fn claims(&self) -> &AccessClaims {
        &self.0
    }

    /// Who this is, for the audit trail.
    pub fn actor(&self) -> Actor {
        Actor {
            client_id: self.0.azp.clone(),
            sub: self.0.sub.clone(),
            scope: self.0.scope.clone(),
        }
    }

    /// Requires one of `scopes`.
    pub fn require_any(&self, scopes: &'static [&'static str]) -> Result<()> {
        if scopes.iter().any(|s| self.0.has_scope(s)) {
            Ok(())
        } else {
            Err(Error::InsufficientScope(scopes))
        }
    }

    /// Authorizes acting on `user_id` with `scopes = [any_user_scope, own_scope]`: the
    /// first acts on every user, the second only on the token's own `sub`.
    pub fn authorize_on(&self, user_id: &str, scopes: &'static [&'static str; 2]) -> Result<()> {
        let [any_user, own] = *scopes;
        if self.0.has_scope(any_user) {
            Ok(())
        } else if self.0.has_scope(own) {
            if self.0.sub == user_id {
                Ok(())
            } else {
                Err(Error::UnownedResource)
            }
        } else {
            Err(Error::InsufficientScope(scopes))
        }
    }

    /// Authorizes a link that names its secondary (`{"provider", "user_id"}`) instead
    /// of proving it with a `link_with` token. Naming an account proves nothing about
    /// owning it, so only `update:users` may do it (as Auth0 documents): with just
    /// `update:current_user_identities`, a user could absorb anyone's account.
    pub fn authorize_link_by_name(&self) -> Result<()> {
        self.require_any(&["update:users"])
    }
}

impl Principal {
    /// Verifies the bearer token in `headers`.
    pub async fn from_headers(headers: &HeaderMap, state: &AppState) -> Result<Self> {
        let header = headers
            .get(AUTHORIZATION)
            .ok_or(Error::MissingAuthentication)?;
        let value = header
            .to_str()
            .map_err(|_| Error::InvalidToken("Bad HTTP authentication header format"))?;
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or(Error::InvalidToken("Bad HTTP authentication header format"))?;
        state.tokens.verify_access(token).await.map(Principal)
    }

    /// The client the token was issued to (`azp`; `sub` when a token has none), whose
    /// rate-limit bucket the request draws on.
    pub fn client(&self) -> &str {
        self.0.azp.as_deref().unwrap_or(&self.0.sub)
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        // Already verified by the rate limiter on the Management routes.
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        Self::from_headers(&parts.headers, state).await
    }
}
