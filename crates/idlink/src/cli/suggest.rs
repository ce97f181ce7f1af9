//! The duplicate-account rule of `suggest-links`: which users share an email, which of
//! them may be linked, and which account becomes the primary. Pure: users in, plan out.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use idlink_client::User;

use super::plan::{
    EmailNormalization, LinkGroup, Member, PLAN_VERSION, Plan, PrimaryRule, UnconfirmedGroup,
};

/// `email` as the grouping compares it: trimmed and case-folded; with `gmail_dots`, the
/// dots of a Gmail local part dropped (and `googlemail.com` read as `gmail.com`).
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
    use idlink_client::UserIdentity;

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
