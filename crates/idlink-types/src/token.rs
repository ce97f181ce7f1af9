//! `POST /oauth/token`: requests and the token response.

use serde::{Deserialize, Serialize};

/// The `client_credentials` grant's grant type.
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
/// The resource-owner password grant's grant type.
pub const GRANT_PASSWORD: &str = "password";
/// Auth0's password grant with a `realm` (the database connection to sign in to).
pub const GRANT_PASSWORD_REALM: &str = "http://auth0.com/oauth/grant-type/password-realm";

/// Body of a successful `POST /oauth/token`.
///
/// ```
/// use idlink_types::TokenResponse;
/// let t: TokenResponse = serde_json::from_str(
///     r#"{"access_token":"eyJ…","token_type":"Bearer","expires_in":86400,"scope":"read:users"}"#,
/// ).unwrap();
/// assert_eq!(t.expires_in, 86400);
/// assert!(t.id_token.is_none());
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The access token (a JWT).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime of the access token, in seconds.
    pub expires_in: u64,
    /// The scopes granted, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// An ID token, when the password grants were asked for scope `openid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// A refresh token, when `offline_access` was granted (authorization code and
    /// refresh token grants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// A `client_credentials` token request, as the Auth0 SDKs send it.
///
/// ```
/// use idlink_types::ClientCredentialsRequest;
/// let r = ClientCredentialsRequest::new("id", "secret", "https://tenant.auth0.com/api/v2/");
/// let json = serde_json::to_value(&r).unwrap();
/// assert_eq!(json["grant_type"], "client_credentials");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCredentialsRequest {
    /// Always `client_credentials`.
    pub grant_type: String,
    /// The client's id.
    pub client_id: String,
    /// The client's secret.
    pub client_secret: String,
    /// The API the token is for, e.g. `https://{domain}/api/v2/`.
    pub audience: String,
    /// Scopes to ask for (space-separated); all the client's scopes when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl ClientCredentialsRequest {
    /// A request for every scope the client holds on `audience`.
    ///
    /// ```
    /// let r = idlink_types::ClientCredentialsRequest::new("id", "s", "https://t/api/v2/");
    /// assert!(r.scope.is_none());
    /// ```
    pub fn new(
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        Self {
            grant_type: GRANT_CLIENT_CREDENTIALS.to_owned(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            audience: audience.into(),
            scope: None,
        }
    }
}
