//! The link plan file: what `suggest-links` proposes and `apply-links` carries out. The
//! types live in `idlink_types::suggest`, shared with the server's admin UI.

pub use idlink_types::suggest::{EmailNormalization, LinkGroup, Member, Plan, PrimaryRule};
