//! The idlink server: an Auth0-compatible Management API for users and identity
//! linking, with the token endpoint and keys that linking needs.
//!
//! The request path reads top to bottom: [`http`] (route, extract, authorize with
//! [`auth`]) → [`domain`] (the rules, pure) → [`store`] (one transaction) → the response,
//! with every failure an [`error::Error`] mapped to Auth0's error body in one place.

pub mod apps;
pub mod auth;
pub mod bootstrap;
pub mod clock;
pub mod config;
pub mod connections;
pub mod domain;
pub mod emulator;
pub mod error;
pub mod events;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod private_files;
pub mod ratelimit;
pub mod server;
pub mod startup;
pub mod state;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

pub use config::Config;
pub use server::Server;
