//! What sign-in stores: authorization codes, refresh-token families and login
//! sessions. The SQL is written once here (`?` placeholders; the PostgreSQL backend
//! numbers them) and each backend runs it in one transaction per method.

/// An authorization code, by the digest of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCode {
    pub hash: String,
    pub client_id: String,
    /// The grant (JSON), as [`crate::auth::signin`] wrote it.
    pub payload: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A refresh token, by the digest of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRefresh {
    pub hash: String,
    /// Every rotation of one sign-in shares it.
    pub family_id: String,
    pub client_id: String,
    pub user_id: String,
    pub payload: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// It was current: it is used now, its successor stored; here is what it held.
    Rotated(StoredRefresh),
    /// It had been used (or revoked) before: the whole family is revoked now.
    Reused,
    /// No such token, or it expired.
    Unknown,
}

/// A login session (the sign-in cookie), by the digest of its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub hash: String,
    /// The user signed in (a primary: a linked secondary signs its primary in).
    pub user_id: String,
    /// Unix seconds of the sign-in.
    pub auth_time: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

pub const PURGE_CODES: &str = "DELETE FROM authorization_codes WHERE expires_at < ?";
pub const INSERT_CODE: &str = "INSERT INTO authorization_codes (code_hash, client_id, payload, \
     expires_at) VALUES (?, ?, ?, ?)";
/// Single use by construction: the code is gone the moment it is read.
pub const TAKE_CODE: &str = "DELETE FROM authorization_codes WHERE code_hash = ? \
     RETURNING client_id, payload, expires_at";

pub const PURGE_REFRESH: &str = "DELETE FROM refresh_tokens WHERE expires_at < ?";
pub const INSERT_REFRESH: &str = "INSERT INTO refresh_tokens (token_hash, family_id, client_id, \
     user_id, payload, expires_at) VALUES (?, ?, ?, ?, ?, ?)";
/// Claims a current token; of two concurrent presentations only one gets the row.
pub const CLAIM_REFRESH: &str = "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ? \
     AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ? \
     RETURNING family_id, client_id, user_id, payload, expires_at";
/// `(family_id, expired)` of a token that could not be claimed.
pub const FIND_REFRESH: &str =
    "SELECT family_id, expires_at FROM refresh_tokens WHERE token_hash = ?";
pub const REVOKE_FAMILY: &str =
    "UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL";

pub const PURGE_SESSIONS: &str = "DELETE FROM sessions WHERE expires_at < ?";
pub const INSERT_SESSION: &str =
    "INSERT INTO sessions (session_hash, user_id, auth_time, expires_at) VALUES (?, ?, ?, ?)";
pub const FIND_SESSION: &str = "SELECT user_id, auth_time, expires_at FROM sessions \
     WHERE session_hash = ? AND expires_at > ?";
pub const DELETE_SESSION: &str = "DELETE FROM sessions WHERE session_hash = ?";

/// `(owner_user_id, users.blocked, identities.link_state)` of one identity.
pub const IDENTITY_OWNER: &str = "SELECT i.owner_user_id, u.blocked, i.link_state \
     FROM identities i JOIN users u ON u.user_id = i.owner_user_id \
     WHERE i.provider = ? AND i.identity_user_id = ?";
