//! Identities and the link request.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{UserId, UserIdentityProviderEnum};

/// The profile an identity brought from its provider (`profileData`).
///
/// The known fields are typed; every other key is kept in [`extra`](Self::extra), so
/// nothing a provider sent is lost when the value is read and written back.
///
/// ```
/// use idlink_types::UserProfileData;
///
/// let p: UserProfileData =
///     serde_json::from_str(r#"{"email":"a@example.com","locale":"fr"}"#).unwrap();
/// assert_eq!(p.email.as_deref(), Some("a@example.com"));
/// assert_eq!(p.extra["locale"], "fr");
/// assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"email":"a@example.com","locale":"fr"}"#);
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserProfileData {
    /// Email address of this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the email address is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// Name of this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Username of this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Given name / first name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// Whether the phone number is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_verified: Option<bool>,
    /// Family name / last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// Every other key, verbatim (`nickname`, `picture`, provider-specific fields, …).
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub extra: Map<String, Value>,
}

/// One identity of a user: an item of `identities`, of the link response and of the
/// unlink response.
///
/// Note Auth0's casing: `isSocial` and `profileData`. Unknown response fields are
/// ignored, so new Auth0 fields never break decoding.
///
/// ```
/// use idlink_types::{UserId, UserIdentity};
///
/// let i: UserIdentity = serde_json::from_str(
///     r#"{"connection":"github","user_id":123,"provider":"github","isSocial":true}"#,
/// ).unwrap();
/// assert_eq!(i.user_id, UserId::Integer(123));
/// assert_eq!(i.is_social, Some(true));
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserIdentity {
    /// Name of the connection the identity belongs to.
    pub connection: String,
    /// The provider-side id (string or integer, as the provider sent it).
    pub user_id: UserId,
    /// The provider name, e.g. `google-oauth2` (a plain string on the wire).
    pub provider: String,
    /// Whether the provider is a social one.
    #[serde(rename = "isSocial", default, skip_serializing_if = "Option::is_none")]
    pub is_social: Option<bool>,
    /// The secondary account's profile, present on linked (non-main) identities.
    #[serde(
        rename = "profileData",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub profile_data: Option<UserProfileData>,
    /// IdP access token (only with scope `read:user_idp_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// IdP access token secret (only with scope `read:user_idp_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_secret: Option<String>,
    /// IdP refresh token (only with scope `read:user_idp_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl UserIdentity {
    /// The identity's provider as an enum value.
    ///
    /// ```
    /// use idlink_types::{UserId, UserIdentity, UserIdentityProviderEnum as Provider};
    /// let i = UserIdentity::new("google-oauth2", "google-oauth2", UserId::from("1"));
    /// assert_eq!(i.provider_enum(), Provider::GoogleOauth2);
    /// ```
    pub fn provider_enum(&self) -> UserIdentityProviderEnum {
        UserIdentityProviderEnum::from_wire(&self.provider)
    }

    /// An identity with only the required fields set.
    ///
    /// ```
    /// use idlink_types::{UserId, UserIdentity};
    /// let i = UserIdentity::new("Username-Password-Authentication", "auth0", UserId::from("abc"));
    /// assert_eq!(i.provider, "auth0");
    /// ```
    pub fn new(
        connection: impl Into<String>,
        provider: impl Into<String>,
        user_id: UserId,
    ) -> Self {
        Self {
            connection: connection.into(),
            user_id,
            provider: provider.into(),
            is_social: None,
            profile_data: None,
            access_token: None,
            access_token_secret: None,
            refresh_token: None,
        }
    }
}

/// An item of the unlink response (`DeleteUserIdentityResponseContent`): the identities
/// that remain on the primary user. Same shape as [`UserIdentity`].
///
/// ```
/// use idlink_types::DeleteUserIdentityResponseContentItem;
/// let remaining: Vec<DeleteUserIdentityResponseContentItem> = serde_json::from_str(
///     r#"[{"connection":"Username-Password-Authentication","user_id":"abc","provider":"auth0"}]"#,
/// ).unwrap();
/// assert_eq!(remaining[0].provider, "auth0");
/// ```
pub type DeleteUserIdentityResponseContentItem = UserIdentity;

/// Body of `POST /api/v2/users/{id}/identities`.
///
/// Either **mode A**, `link_with` alone (the secondary account's ID token), or
/// **mode B**, `provider` and `user_id` (and `connection_id` when several database
/// connections exist). Unset fields are not sent.
///
/// ```
/// use idlink_types::{LinkUserIdentityRequestContent, UserId, UserIdentityProviderEnum as Provider};
///
/// let mode_b = LinkUserIdentityRequestContent {
///     provider: Some(Provider::Github),
///     user_id: Some(UserId::from(12345)),
///     ..Default::default()
/// };
/// assert_eq!(serde_json::to_string(&mode_b).unwrap(), r#"{"provider":"github","user_id":12345}"#);
///
/// let mode_a = LinkUserIdentityRequestContent::link_with("eyJhbGciOi…");
/// assert_eq!(serde_json::to_string(&mode_a).unwrap(), r#"{"link_with":"eyJhbGciOi…"}"#);
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(min_properties = 1))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkUserIdentityRequestContent {
    /// Provider of the secondary account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<UserIdentityProviderEnum>,
    /// Database connection of the secondary account (`con_` + 16 alphanumerics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^con_[A-Za-z0-9]{16}$"))]
    pub connection_id: Option<String>,
    /// Provider-side id of the secondary account (without the `provider|` prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// The secondary account's JWT (mode A); excludes the other three fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub link_with: Option<String>,
}

impl LinkUserIdentityRequestContent {
    /// Mode B: link the identity `provider|user_id`.
    ///
    /// ```
    /// use idlink_types::{LinkUserIdentityRequestContent, UserIdentityProviderEnum as Provider};
    /// let req = LinkUserIdentityRequestContent::identity(Provider::GoogleOauth2, "1093");
    /// assert_eq!(req.user_id.unwrap().as_string(), "1093");
    /// ```
    pub fn identity(provider: UserIdentityProviderEnum, user_id: impl Into<UserId>) -> Self {
        Self {
            provider: Some(provider),
            user_id: Some(user_id.into()),
            ..Self::default()
        }
    }

    /// Mode A: link the account the given ID token was issued to.
    ///
    /// ```
    /// let req = idlink_types::LinkUserIdentityRequestContent::link_with("eyJ…");
    /// assert!(req.provider.is_none());
    /// ```
    pub fn link_with(token: impl Into<String>) -> Self {
        Self {
            link_with: Some(token.into()),
            ..Self::default()
        }
    }
}
