//! The scenarios.

use std::fmt;
use std::str::FromStr;

/// What the workers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Each worker links its secondary into its primary, then unlinks it (mode B, a
    /// pre-fetched Management token); each request is one op.
    LinkUnlink,
    /// Client-credentials grants.
    Token,
    /// GET a user (with a linked identity) by id.
    Read,
}

impl Scenario {
    pub const ALL: [Scenario; 3] = [Scenario::LinkUnlink, Scenario::Token, Scenario::Read];

    pub fn name(self) -> &'static str {
        match self {
            Self::LinkUnlink => "link-unlink",
            Self::Token => "token",
            Self::Read => "read",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| format!("unknown scenario {s:?}: expected link-unlink, token or read"))
    }
}

/// A tag unique to this process and moment, so users created by one run never collide
/// with another's on a reused database.
pub fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", nanos & 0xffff_ffff_ffff, std::process::id())
}
