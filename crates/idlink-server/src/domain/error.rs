//! Why a rule refuses a request. Plain data: no HTTP status, no database error. The
//! crate's [`crate::error::Error`] wraps it and gives each variant its Auth0 status,
//! `errorCode` and message, in one place.

/// [`Result`](std::result::Result) with the domain's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A rule's refusal. The messages are Auth0's, word for word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Linking a user's main identity into itself.
    #[error("Main identity and the new one are the same.")]
    SameIdentity,
    /// The identity to link is not the main identity of another standalone user (or
    /// not of the named connection).
    #[error("Provided secondary account not found.")]
    SecondaryNotFound,
    /// A `link_with` token of a blocked user: it could not sign in, so its ID token does
    /// not prove the account.
    #[error("JWT (link_with) belongs to a blocked user.")]
    BlockedSecondary,
    /// The user acted on does not exist.
    #[error("The user does not exist.")]
    UserNotFound,
    /// The connection asked for does not exist.
    #[error("The connection does not exist.")]
    ConnectionNotFound,
    /// The identity to unlink is not on the user.
    #[error("The identity does not exist on this user.")]
    IdentityNotFound,
    /// The identity to link is already linked to the user.
    #[error("Specified identity already exists.")]
    IdentityConflict,
    /// Unlinking a user's main identity.
    #[error("Main identity cannot be removed.")]
    MainIdentityRemoval,
    /// The user id, identity or login name is taken.
    #[error("The user already exists.")]
    UserExists,
    /// A new password is weaker than its connection's `passwordPolicy` allows.
    #[error("PasswordStrengthError: Password is too weak")]
    PasswordTooWeak,
    /// A body breaks a rule (the message says which, in Auth0's words).
    #[error("{0}")]
    InvalidBody(String),
    /// A query string breaks a rule.
    #[error("{0}")]
    InvalidQuery(String),
    /// Stored data breaks an invariant the rules rely on (a user without its main
    /// identity): a bug or a hand-edited database, answered as an internal error.
    #[error("inconsistent data: {0}")]
    Inconsistent(String),
}
