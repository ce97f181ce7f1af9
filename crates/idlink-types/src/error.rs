//! Error bodies: the Management API's and the OAuth endpoint's.

use serde::{Deserialize, Serialize};

/// The Management API error body:
/// `{"statusCode": 400, "error": "Bad Request", "message": "…", "errorCode": "…"}`.
///
/// `error` is the HTTP reason phrase. Match on `errorCode`, never on `message`.
///
/// ```
/// use idlink_types::ErrorBody;
/// let e: ErrorBody = serde_json::from_str(
///     r#"{"statusCode":409,"error":"Conflict","message":"Specified identity already exists.","errorCode":"identity_conflict"}"#,
/// ).unwrap();
/// assert_eq!(e.error_code.as_deref(), Some("identity_conflict"));
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The HTTP status code.
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    /// The HTTP reason phrase, e.g. `Bad Request`.
    pub error: String,
    /// A human-readable message; may change, do not match on it.
    pub message: String,
    /// A stable machine-readable code, e.g. `inexistent_user`.
    #[serde(rename = "errorCode", default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

/// The OAuth 2.0 error body of `POST /oauth/token`:
/// `{"error": "invalid_grant", "error_description": "…"}`.
///
/// ```
/// use idlink_types::OAuthErrorBody;
/// let e: OAuthErrorBody =
///     serde_json::from_str(r#"{"error":"invalid_grant","error_description":"Wrong email or password."}"#).unwrap();
/// assert_eq!(e.error, "invalid_grant");
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthErrorBody {
    /// The OAuth error code (`invalid_client`, `invalid_grant`, `access_denied`, …).
    pub error: String,
    /// A human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}
