//! Suggested links: which users share an email, which of them may be linked, and which
//! account becomes the primary; and the link plan that carries the suggestion (what
//! `idlink suggest-links` writes and `apply-links` reads, and what the server's admin UI
//! shows). Pure: users in, plan out. One rule, used by the CLI and the server alike.
//!
//! A plan is plain JSON so that a person can read it, edit it (drop a group, swap a
//! primary) and have it reviewed before anything changes. Each member records what the
//! suggestion was based on (email, verification), so that `apply-links` can tell when the
//! data changed since and skip rather than force.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::User;

/// The format version `apply-links` understands.
pub const PLAN_VERSION: u32 = 1;

/// How the proposed primary of a group is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
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

/// `email` as the grouping compares it: trimmed and case-folded; with `gmail_dots`, the
/// dots of a Gmail local part dropped (and `googlemail.com` read as `gmail.com`).
///
/// ```
/// use idlink_types::suggest::{EmailNormalization, normalize_email};
///
/// let plain = EmailNormalization::default();
/// assert_eq!(normalize_email(" A.Da@Gmail.com ", plain), "a.da@gmail.com");
/// let gmail = EmailNormalization { gmail_dots: true };
/// assert_eq!(normalize_email("a.da@googlemail.com", gmail), "ada@gmail.com");
/// ```
pub fn normalize_email(email: &str, normalization: EmailNormalization) -> String {
    let folded = email.trim().to_lowercase();
    if !normalization.gmail_dots {
        return folded;
    }
    match folded.rsplit_once('@') {
        Some((local, "gmail.com" | "googlemail.com")) => {
            format!("{}@gmail.com", local.replace('.', ""))
        }
        _ => folded,
    }
}

/// The plan for `users`: every normalized email held by two or more users becomes a
/// group; groups are ordered by email, members by user id, so the same users always give
/// the same plan.
///
/// ```
/// use idlink_types::User;
/// use idlink_types::suggest::{EmailNormalization, PrimaryRule, suggest};
///
/// let user = |id: &str, provider: &str| -> User {
///     serde_json::from_value(serde_json::json!({
///         "user_id": id, "email": "Ada@Example.com", "email_verified": true,
///         "identities": [{"provider": provider, "user_id": id.split('|').nth(1).unwrap(),
///                         "connection": provider, "isSocial": provider != "auth0"}]
///     }))
///     .unwrap()
/// };
/// let users = [user("google-oauth2|g1", "google-oauth2"), user("auth0|a1", "auth0")];
/// let plan = suggest(&users, PrimaryRule::DatabaseFirst, EmailNormalization::default());
/// assert_eq!(plan.groups.len(), 1);
/// assert_eq!(plan.groups[0].primary.user_id, "auth0|a1");
/// assert_eq!(plan.groups[0].secondaries[0].user_id, "google-oauth2|g1");
/// ```
pub fn suggest(users: &[User], rule: PrimaryRule, normalization: EmailNormalization) -> Plan {
    let mut by_email: BTreeMap<String, Vec<Member>> = BTreeMap::new();
    for user in users {
        if let Some(member) = member(user) {
            by_email
                .entry(normalize_email(&member.email, normalization))
                .or_default()
                .push(member);
        }
    }
    let mut plan = Plan {
        version: PLAN_VERSION,
        primary_rule: rule,
        normalization,
        groups: Vec::new(),
        needs_confirmation: Vec::new(),
    };
    for (email, mut members) in by_email {
        if members.len() < 2 {
            continue;
        }
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        let unverified = members.iter().filter(|m| !m.email_verified).count();
        if unverified > 0 {
            plan.needs_confirmation.push(UnconfirmedGroup {
                reason: format!(
                    "{} users share the email {email}, unverified on {unverified} of them: \
                     ask the user to sign in to each account before linking",
                    members.len()
                ),
                email,
                members,
            });
            continue;
        }
        members.sort_by(|a, b| primary_order(rule, a, b));
        let primary = members.remove(0);
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        plan.groups.push(LinkGroup {
            reason: format!(
                "{} users share the verified email {email}; primary {}: {}",
                members.len() + 1,
                primary.user_id,
                why_primary(rule, &primary)
            ),
            email,
            primary,
            secondaries: members,
        });
    }
    plan
}

/// `user` as a plan member; `None` for a user without an email or identities.
fn member(user: &User) -> Option<Member> {
    let email = user.email.as_deref().filter(|e| !e.trim().is_empty())?;
    let main = user.identities.first()?;
    Some(Member {
        user_id: user.user_id.clone(),
        provider: main.provider.clone(),
        identity_user_id: main.user_id.as_string(),
        connection: main.connection.clone(),
        email: email.to_owned(),
        email_verified: user.email_verified == Some(true),
        created_at: user.created_at.clone(),
        logins_count: user.logins_count.unwrap_or(0),
        identities: user.identities.len(),
    })
}

/// A database account: its main identity is Auth0's own (`auth0`) provider.
fn is_database(member: &Member) -> bool {
    member.provider == "auth0"
}

/// Oldest first; an unknown creation date sorts last; then by user id (total order).
fn by_age(a: &Member, b: &Member) -> Ordering {
    match (&a.created_at, &b.created_at) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
    .then_with(|| a.user_id.cmp(&b.user_id))
}

/// The best primary candidate first.
fn primary_order(rule: PrimaryRule, a: &Member, b: &Member) -> Ordering {
    match rule {
        PrimaryRule::DatabaseFirst => is_database(b)
            .cmp(&is_database(a))
            .then_with(|| by_age(a, b)),
        PrimaryRule::Oldest => by_age(a, b),
        PrimaryRule::MostLogins => b
            .logins_count
            .cmp(&a.logins_count)
            .then_with(|| by_age(a, b)),
    }
}

fn why_primary(rule: PrimaryRule, primary: &Member) -> String {
    let created = primary.created_at.as_deref().unwrap_or("an unknown date");
    match rule {
        PrimaryRule::DatabaseFirst if is_database(primary) => {
            format!("the database account ({})", primary.connection)
        }
        PrimaryRule::DatabaseFirst => {
            format!("no database account; the oldest, created {created}")
        }
        PrimaryRule::Oldest => format!("the oldest, created {created}"),
        PrimaryRule::MostLogins => format!("the most logins ({})", primary.logins_count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserIdentity;

    fn user(id: &str, email: &str, verified: bool, created: &str, logins: i64) -> User {
        let (provider, sub) = id.split_once('|').unwrap();
        let connection = if provider == "auth0" {
            "Username-Password-Authentication"
        } else {
            provider
        };
        let mut user: User = serde_json::from_value(serde_json::json!({
            "user_id": id, "email": email, "email_verified": verified,
            "created_at": created, "logins_count": logins,
        }))
        .unwrap();
        user.identities = vec![UserIdentity::new(connection, provider, sub.into())];
        user
    }

    const NONE: EmailNormalization = EmailNormalization { gmail_dots: false };

    #[test]
    fn normalization_trims_and_folds_case_and_gmail_dots_only_when_asked() {
        assert_eq!(
            normalize_email("  Ada@Example.COM ", NONE),
            "ada@example.com"
        );
        assert_eq!(normalize_email("a.da@gmail.com", NONE), "a.da@gmail.com");
        let dots = EmailNormalization { gmail_dots: true };
        assert_eq!(
            normalize_email("A.da@GoogleMail.com", dots),
            "ada@gmail.com"
        );
        assert_eq!(
            normalize_email("a.da@example.com", dots),
            "a.da@example.com"
        );
    }

    #[test]
    fn groups_only_shared_emails_and_sets_unverified_apart() {
        let users = [
            user("google-oauth2|1", "ADA@example.com", true, "2024-02-01", 3),
            user("auth0|a", "ada@example.com", true, "2024-03-01", 1),
            user("auth0|alone", "solo@example.com", true, "2024-01-01", 0),
            user("github|9", "bob@example.com", false, "2024-01-01", 0),
            user("auth0|b", "bob@example.com", true, "2024-01-02", 0),
        ];
        let plan = suggest(&users, PrimaryRule::DatabaseFirst, NONE);
        assert_eq!(plan.groups.len(), 1);
        let group = &plan.groups[0];
        assert_eq!(group.email, "ada@example.com");
        assert_eq!(group.primary.user_id, "auth0|a");
        assert_eq!(group.secondaries[0].user_id, "google-oauth2|1");
        assert_eq!(plan.needs_confirmation.len(), 1);
        assert_eq!(plan.needs_confirmation[0].email, "bob@example.com");
        assert_eq!(plan.needs_confirmation[0].members.len(), 2);
    }

    #[test]
    fn each_primary_rule_picks_its_account() {
        let users = [
            user("google-oauth2|old", "x@example.com", true, "2023-01-01", 2),
            user("auth0|db", "x@example.com", true, "2024-01-01", 1),
            user("github|busy", "x@example.com", true, "2025-01-01", 40),
        ];
        let primary = |rule| {
            suggest(&users, rule, NONE).groups[0]
                .primary
                .user_id
                .clone()
        };
        assert_eq!(primary(PrimaryRule::DatabaseFirst), "auth0|db");
        assert_eq!(primary(PrimaryRule::Oldest), "google-oauth2|old");
        assert_eq!(primary(PrimaryRule::MostLogins), "github|busy");
        let plan = suggest(&users, PrimaryRule::Oldest, NONE);
        let secondaries: Vec<_> = plan.groups[0]
            .secondaries
            .iter()
            .map(|m| &m.user_id)
            .collect();
        assert_eq!(secondaries, ["auth0|db", "github|busy"]);
    }

    #[test]
    fn the_same_users_in_any_order_give_the_same_plan() {
        let mut users = vec![
            user("auth0|1", "a@example.com", true, "2024-01-01", 0),
            user("auth0|2", "a@example.com", true, "2024-01-01", 0),
            user("auth0|3", "b@example.com", false, "2024-01-01", 0),
            user("github|3", "b@example.com", true, "2024-01-01", 0),
        ];
        let first = suggest(&users, PrimaryRule::Oldest, NONE);
        users.reverse();
        assert_eq!(suggest(&users, PrimaryRule::Oldest, NONE), first);
        assert_eq!(
            first.groups[0].primary.user_id, "auth0|1",
            "equal dates: by user id"
        );
    }
}
