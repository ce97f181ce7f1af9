//! The link plan file: what `suggest-links` proposes and `apply-links` carries out.
//!
//! A plan is plain JSON so that a person can read it, edit it (drop a group, swap a
//! primary) and have it reviewed before anything changes. Each member records what the
//! suggestion was based on (email, verification), so that `apply-links` can tell when the
//! data changed since and skip rather than force.

use serde::{Deserialize, Serialize};

/// The format version `apply-links` understands.
pub const PLAN_VERSION: u32 = 1;

/// How the proposed primary of a group is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PrimaryRule {
    /// A database (username/password) account, so the user keeps signing in with the
    /// password they know; between several, the oldest.
    DatabaseFirst,
    /// The account created first.
    Oldest,
    /// The account signed in to most often; between equals, the oldest.
    MostLogins,
}

/// Which spellings of an email count as the same address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailNormalization {
    /// Ignore dots in the local part of `gmail.com`/`googlemail.com` addresses (Gmail
    /// delivers `a.da@gmail.com` to `ada@gmail.com`). Off unless asked: other providers
    /// treat dots as significant.
    pub gmail_dots: bool,
}

/// A link plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_VERSION`].
    pub version: u32,
    pub primary_rule: PrimaryRule,
    pub normalization: EmailNormalization,
    /// Groups whose every member has the verified email: `apply-links` links these.
    pub groups: Vec<LinkGroup>,
    /// Groups where some member's email is unverified: listed for a person to confirm
    /// with the user, never applied (Auth0's guidance: never link on an unverified email).
    pub needs_confirmation: Vec<UnconfirmedGroup>,
}

/// Users to link into one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkGroup {
    /// The normalized email the members share.
    pub email: String,
    /// Why these users are grouped and why this primary.
    pub reason: String,
    pub primary: Member,
    /// Linked into the primary in this order.
    pub secondaries: Vec<Member>,
}

/// Users sharing an email that is unverified on at least one of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnconfirmedGroup {
    pub email: String,
    pub reason: String,
    pub members: Vec<Member>,
}

/// One user as the plan saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The user's id, e.g. `auth0|5f7c…`.
    pub user_id: String,
    /// The provider of the user's main identity, e.g. `google-oauth2`.
    pub provider: String,
    /// The main identity's id at its provider (the part after `provider|`).
    pub identity_user_id: String,
    /// The main identity's connection name.
    pub connection: String,
    /// The email as stored (not normalized).
    pub email: String,
    pub email_verified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default)]
    pub logins_count: i64,
    /// How many identities the user has (1 unless it is itself a primary already).
    pub identities: usize,
}

impl Plan {
    /// Reads and checks a plan file.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let plan: Self = serde_json::from_str(text).map_err(|e| format!("not a link plan: {e}"))?;
        if plan.version != PLAN_VERSION {
            return Err(format!(
                "plan version {} is not supported (this idlink reads version {PLAN_VERSION})",
                plan.version
            ));
        }
        Ok(plan)
    }
}
