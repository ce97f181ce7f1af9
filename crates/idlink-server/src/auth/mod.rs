//! Authentication and authorization: keys, tokens, secrets, scopes, the caller.

pub mod keys;
pub mod principal;
pub mod scopes;
pub mod secrets;
pub mod signin;
pub mod tokens;

pub use principal::Principal;
