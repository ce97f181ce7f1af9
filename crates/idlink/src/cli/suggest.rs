//! The duplicate-account rule of `suggest-links`: shared with the server's admin UI, it
//! lives in `idlink_types::suggest`.

pub use idlink_types::suggest::{normalize_email, suggest};
