//! Users and the bodies of the users endpoints.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{UserId, UserIdentity};

/// A user as `GET /api/v2/users/{id}` returns it.
///
/// Every field but `user_id` is optional so that responses from Auth0 (which omits unset
/// fields) and from idlink decode alike; fields this version does not know are kept in
/// [`extra`](Self::extra).
///
/// ```
/// use idlink_types::User;
/// let u: User = serde_json::from_str(
///     r#"{"user_id":"auth0|5f7c8ec7c33c6c004bbafe82","email":"a@example.com","identities":[],"last_ip":"10.0.0.1"}"#,
/// ).unwrap();
/// assert_eq!(u.email.as_deref(), Some("a@example.com"));
/// assert_eq!(u.extra["last_ip"], "10.0.0.1");
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// The user's id, `{provider}|{id}`.
    pub user_id: String,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the email is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// Username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// Whether the phone number is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_verified: Option<bool>,
    /// Full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// Nickname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    /// Picture URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// Creation time, ISO-8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Last update time, ISO-8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// The user's identities, main identity first.
    #[serde(default)]
    pub identities: Vec<UserIdentity>,
    /// Metadata the user may edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub user_metadata: Option<Map<String, Value>>,
    /// Metadata only the application may edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub app_metadata: Option<Map<String, Value>>,
    /// Whether the user is blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<bool>,
    /// Last login time, ISO-8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login: Option<String>,
    /// Number of logins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logins_count: Option<i64>,
    /// When the password was last changed, ISO-8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_password_reset: Option<String>,
    /// Every other field, verbatim.
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub extra: Map<String, Value>,
}

/// Body of `POST /api/v2/users`.
///
/// `connection` is required. For a database connection `password` is required too; for
/// a social connection idlink accepts an explicit provider-side `user_id` (string or
/// integer), so linking can be exercised without a live identity provider.
///
/// ```
/// use idlink_types::{CreateUserRequestContent, UserId};
///
/// let github = CreateUserRequestContent {
///     connection: "github".into(),
///     user_id: Some(UserId::from(583231)),
///     email: Some("octo@example.com".into()),
///     ..Default::default()
/// };
/// let json = serde_json::to_value(&github).unwrap();
/// assert_eq!(json["user_id"], 583231);
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateUserRequestContent {
    /// Name of the connection the user is created in.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128))]
    pub connection: String,
    /// Provider-side id; social connections only in idlink (Auth0: database only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 512))]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^\s\x00-\x1f\x7f-\x9f]+$")
    )]
    pub email: Option<String>,
    /// Whether the email is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// Whether to send a verification email (accepted, nothing is sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_email: Option<bool>,
    /// Password, for database connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 1024))]
    pub password: Option<String>,
    /// Username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 128))]
    pub username: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub phone_number: Option<String>,
    /// Whether the phone number is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_verified: Option<bool>,
    /// Full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 300))]
    pub name: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 150))]
    pub given_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 150))]
    pub family_name: Option<String>,
    /// Nickname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 300))]
    pub nickname: Option<String>,
    /// Picture URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub picture: Option<String>,
    /// Whether the user is blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<bool>,
    /// Metadata the user may edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub user_metadata: Option<Map<String, Value>>,
    /// Metadata only the application may edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub app_metadata: Option<Map<String, Value>>,
}

/// Body of `PATCH /api/v2/users/{id}`. Unset fields are left as they are.
///
/// Metadata is merged at the top level: a key set to `null` is removed, a nested
/// object replaces the stored one whole.
///
/// ```
/// use idlink_types::UpdateUserRequestContent;
/// use serde_json::json;
///
/// let patch = UpdateUserRequestContent {
///     user_metadata: Some(json!({"theme": "dark", "obsolete": null}).as_object().unwrap().clone()),
///     ..Default::default()
/// };
/// assert_eq!(
///     serde_json::to_string(&patch).unwrap(),
///     r#"{"user_metadata":{"theme":"dark","obsolete":null}}"#
/// );
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateUserRequestContent {
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 512))]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^\s\x00-\x1f\x7f-\x9f]+$")
    )]
    pub email: Option<String>,
    /// Whether the email is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// New password (database users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 1024))]
    pub password: Option<String>,
    /// Username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 128))]
    pub username: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub phone_number: Option<String>,
    /// Whether the phone number is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_verified: Option<bool>,
    /// Full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 300))]
    pub name: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 150))]
    pub given_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 150))]
    pub family_name: Option<String>,
    /// Nickname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 300))]
    pub nickname: Option<String>,
    /// Picture URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub picture: Option<String>,
    /// Whether the user is blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<bool>,
    /// Keys to merge into `user_metadata` (`null` removes a key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub user_metadata: Option<Map<String, Value>>,
    /// Keys to merge into `app_metadata` (`null` removes a key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub app_metadata: Option<Map<String, Value>>,
}

/// A page of `GET /api/v2/users?include_totals=true`.
///
/// ```
/// use idlink_types::UsersPage;
/// let page: UsersPage = serde_json::from_str(
///     r#"{"start":0,"limit":50,"length":0,"total":0,"users":[]}"#,
/// ).unwrap();
/// assert_eq!(page.total, 0);
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsersPage {
    /// Index of the first user of this page in the whole result.
    pub start: u64,
    /// The page size asked for.
    pub limit: u64,
    /// Number of users in this page.
    pub length: u64,
    /// Number of users matching the query.
    pub total: u64,
    /// The users of this page.
    pub users: Vec<User>,
}
