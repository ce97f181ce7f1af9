//! The Management API scopes idlink knows.

/// Every Management API scope an idlink endpoint checks; the bootstrap admin client
/// holds them all.
pub const MANAGEMENT_SCOPES: &[&str] = &[
    "read:users",
    "create:users",
    "update:users",
    "delete:users",
    "read:users_app_metadata",
    "update:users_app_metadata",
    "create:users_app_metadata",
    "delete:users_app_metadata",
    "read:user_idp_tokens",
    "read:logs",
    "read:logs_users",
    "read:connections",
    "read:resource_servers",
];

/// Scopes a user's own access token for the Management API may carry.
pub const USER_SCOPES: &[&str] = &[
    "read:current_user",
    "update:current_user_identities",
    "create:current_user_metadata",
    "update:current_user_metadata",
    "delete:current_user_metadata",
];

/// OpenID Connect scopes.
pub const OIDC_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// Link and unlink: any user, or the caller's own account.
pub const IDENTITIES: &[&str] = &["update:users", "update:current_user_identities"];
