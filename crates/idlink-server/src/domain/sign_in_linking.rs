//! Linking at sign-in (`[linking] at_sign_in = "prompt"`): which existing account a
//! sign-in is offered to link with, and which of the two becomes the primary. Pure
//! rules; the login pages ask, prove both sign-ins and link through the store.

use serde::Deserialize;

use super::model::UserRecord;

/// Whether a sign-in may offer to link the signed-in user with another account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AtSignIn {
    /// As Auth0: a sign-in never links anything.
    #[default]
    Off,
    /// Offer to link when the signed-in user's verified email is the verified email of
    /// exactly one other user; link only after the user signs in to that one too.
    Prompt,
}

/// The account a sign-in of `signed_in` is offered to link with, among `same_email`
/// (the users whose email matched, in any case; `signed_in` may be among them).
///
/// Offered only when `signed_in` has a verified email and exactly one *other* user has
/// the same email (compared case-insensitively) verified too, and that user is not
/// blocked (it could not sign in to prove itself). Two or more such users: nothing is
/// offered, since the page could not say which one is meant. An unverified email on
/// either side never links: anyone can claim an email they do not own.
pub fn link_candidate<'u>(
    signed_in: &UserRecord,
    same_email: &'u [UserRecord],
) -> Option<&'u UserRecord> {
    let email = verified_email(signed_in)?;
    let mut matches = same_email.iter().filter(|user| {
        user.user_id != signed_in.user_id
            && verified_email(user).is_some_and(|other| other.eq_ignore_ascii_case(email))
    });
    let only = matches.next()?;
    if matches.next().is_some() || only.blocked {
        return None;
    }
    Some(only)
}

fn verified_email(user: &UserRecord) -> Option<&str> {
    let profile = &user.profile;
    profile
        .email
        .as_deref()
        .filter(|e| profile.email_verified && !e.is_empty())
}

/// Which of two users a sign-in link keeps as the primary: the one created first (the
/// older account is the one the application's own data already points at; the new one
/// is usually the identity just created by this very sign-in). Equal creation times:
/// the smaller `user_id`, so the choice never depends on which was signed in first.
/// Returns `(primary, secondary)`.
pub fn primary_and_secondary<'u>(
    a: &'u UserRecord,
    b: &'u UserRecord,
) -> (&'u UserRecord, &'u UserRecord) {
    let key = |u: &'u UserRecord| (created(u), u.user_id.as_str());
    if key(a) <= key(b) { (a, b) } else { (b, a) }
}

/// The creation time as a comparable instant; a value that does not parse (no user
/// idlink writes has one) sorts last, so a well-dated account wins.
fn created(user: &UserRecord) -> (bool, i128) {
    match time::OffsetDateTime::parse(
        &user.created_at,
        &time::format_description::well_known::Rfc3339,
    ) {
        Ok(at) => (false, at.unix_timestamp_nanos()),
        Err(_) => (true, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::Profile;

    fn user(id: &str, email: Option<&str>, verified: bool, created_at: &str) -> UserRecord {
        UserRecord {
            user_id: id.into(),
            profile: Profile {
                email: email.map(str::to_owned),
                email_verified: verified,
                ..Profile::default()
            },
            user_metadata: None,
            app_metadata: Default::default(),
            blocked: false,
            blocked_ever_set: false,
            last_login: None,
            logins_count: 0,
            last_password_reset: None,
            created_at: created_at.into(),
            updated_at: created_at.into(),
            identities: Vec::new(),
        }
    }

    const T1: &str = "2026-01-01T00:00:00.000Z";
    const T2: &str = "2026-02-01T00:00:00.000Z";

    #[test]
    fn only_a_single_verified_match_of_a_verified_email_is_offered() {
        let me = user("google-oauth2|1", Some("Ada@Example.com"), true, T2);
        let db = user("auth0|a", Some("ada@example.com"), true, T1);
        let unverified = user("auth0|b", Some("ada@example.com"), false, T1);
        let other_email = user("auth0|c", Some("bob@example.com"), true, T1);
        let same = [me.clone(), db.clone(), unverified.clone(), other_email];
        assert_eq!(
            link_candidate(&me, &same).map(|u| u.user_id.as_str()),
            Some("auth0|a"),
            "case-insensitive, the unverified one and the signed-in user left out"
        );

        // Unverified on the signed-in side: never.
        let mut unverified_me = me.clone();
        unverified_me.profile.email_verified = false;
        assert!(link_candidate(&unverified_me, &same).is_none());
        // Only an unverified match: never.
        assert!(link_candidate(&me, &[me.clone(), unverified]).is_none());
        // Two verified matches: ambiguous, nothing offered.
        let db2 = user("auth0|d", Some("ADA@example.com"), true, T1);
        assert!(link_candidate(&me, &[db.clone(), db2]).is_none());
        // A blocked match could not prove itself.
        let mut blocked = db.clone();
        blocked.blocked = true;
        assert!(link_candidate(&me, &[blocked]).is_none());
        // No email at all.
        let anonymous = user("google-oauth2|2", None, true, T2);
        assert!(link_candidate(&anonymous, &[db]).is_none());
    }

    #[test]
    fn the_older_account_is_the_primary() {
        let old = user("google-oauth2|9", None, true, T1);
        let new = user("auth0|1", None, true, T2);
        for (a, b) in [(&old, &new), (&new, &old)] {
            let (primary, secondary) = primary_and_secondary(a, b);
            assert_eq!(primary.user_id, "google-oauth2|9");
            assert_eq!(secondary.user_id, "auth0|1");
        }
        // Same instant written two ways, then the smaller user_id.
        let x = user("auth0|x", None, true, "2026-01-01T00:00:00Z");
        let y = user("auth0|y", None, true, T1);
        assert_eq!(primary_and_secondary(&y, &x).0.user_id, "auth0|x");
        // A date that does not parse loses.
        let bad = user("auth0|0", None, true, "yesterday");
        assert_eq!(primary_and_secondary(&bad, &new).0.user_id, "auth0|1");
    }
}
