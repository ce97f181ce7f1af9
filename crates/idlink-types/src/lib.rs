//! Wire types of the Auth0 Management API v2 user-identity endpoints.
//!
//! Shared by the idlink server and the `idlink-client` SDK so both agree on the JSON by
//! construction. Serde only, no I/O. Responses decode leniently (unknown fields are
//! ignored or kept), so the same types read answers from idlink and from Auth0.
//!
//! ```
//! use idlink_types::{UserIdentity, UserId};
//!
//! let identities: Vec<UserIdentity> = serde_json::from_str(r#"[
//!   {"connection":"Username-Password-Authentication","user_id":"5f7c8ec7c33c6c004bbafe82","provider":"auth0","isSocial":false},
//!   {"connection":"github","user_id":583231,"provider":"github","isSocial":true,
//!    "profileData":{"email":"octo@example.com","email_verified":true}}
//! ]"#).unwrap();
//! assert_eq!(identities[1].user_id, UserId::Integer(583231));
//! ```

mod error;
mod identity;
mod log;
mod provider;
pub mod suggest;
mod token;
mod user;
mod user_id;

pub use error::{ErrorBody, OAuthErrorBody};
pub use identity::{
    DeleteUserIdentityResponseContentItem, LinkUserIdentityRequestContent, UserIdentity,
    UserProfileData,
};
pub use log::LogEvent;
pub use provider::UserIdentityProviderEnum;
pub use token::{
    ClientCredentialsRequest, GRANT_CLIENT_CREDENTIALS, GRANT_PASSWORD, GRANT_PASSWORD_REALM,
    TokenResponse,
};
pub use user::{CreateUserRequestContent, UpdateUserRequestContent, User, UsersPage};
pub use user_id::UserId;
