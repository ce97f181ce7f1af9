//! The root attributes Auth0 makes up for a database user created without them:
//! `name` = the email, `nickname` = the email's local part, `picture` = a gravatar URL.
//! They are the user's attributes but not supplied ones, so they are marked
//! [`Profile::invented`] and stay out of `profileData`.
//!
//! The forms are read off recorded Auth0 traffic (go-auth0 `TestUserManager_Create`,
//! ruby-auth0 `create_test_user`, terraform-provider-auth0 `TestAccUser`); the unit tests
//! check every recorded example.

use md5::{Digest, Md5};

use super::model::Profile;

/// Fills `name`, `nickname` and `picture` from the email where the client sent none,
/// and marks each one filled as invented. Without an email nothing is invented.
pub fn fill_database_defaults(profile: &mut Profile) {
    let Some(email) = profile.email.clone() else {
        return;
    };
    let local_part = email.split('@').next().unwrap_or_default().to_owned();
    let defaults = [
        ("name", &mut profile.name, email.clone()),
        ("nickname", &mut profile.nickname, local_part),
        ("picture", &mut profile.picture, gravatar_url(&email)),
    ];
    for (key, slot, value) in defaults {
        if slot.is_none() {
            *slot = Some(value);
            profile.invented.insert(key.to_owned());
        }
    }
}

/// The picture Auth0 gives a user with this email: the gravatar of the lowercased,
/// trimmed email (md5, as gravatar defines it), falling back to Auth0's avatar of the
/// email's first two characters.
pub fn gravatar_url(email: &str) -> String {
    let normalized = email.trim().to_lowercase();
    let hash = hex::encode(Md5::digest(normalized.as_bytes()));
    format!(
        "https://s.gravatar.com/avatar/{hash}?s=480&r=pg&d=https%3A%2F%2Fcdn.auth0.com%2Favatars%2F{}.png",
        avatar_initials(&normalized)
    )
}

/// The two characters naming Auth0's fallback avatar: the first two of the email's
/// local part (every recorded example: `ch`, `ru`, `te`). Only ASCII letters and digits
/// are used, so the URL needs no further escaping; a local part with fewer than two of
/// them is padded with `x` (idlink's choice: no recording shows the case).
fn avatar_initials(normalized_email: &str) -> String {
    let local_part = normalized_email.split('@').next().unwrap_or_default();
    let mut initials: String = local_part
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(2)
        .collect();
    while initials.len() < 2 {
        initials.push('x');
    }
    initials
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every picture Auth0 invented in the recordings, with the email it was made from.
    const RECORDED: &[(&str, &str)] = &[
        (
            "chuck@example.com",
            "https://s.gravatar.com/avatar/0b79e7da7bc7877560620cf8f2cc93ae?s=480&r=pg&d=https%3A%2F%2Fcdn.auth0.com%2Favatars%2Fch.png",
        ),
        (
            "rubytest-rubytest-username@auth0.com",
            "https://s.gravatar.com/avatar/263c0ef145e811d26761c71d2199488f?s=480&r=pg&d=https%3A%2F%2Fcdn.auth0.com%2Favatars%2Fru.png",
        ),
        (
            "rubytest-rubytest-username-secondary@auth0.com",
            "https://s.gravatar.com/avatar/f440e8f1f41f8383dd31a8c611b47eb6?s=480&r=pg&d=https%3A%2F%2Fcdn.auth0.com%2Favatars%2Fru.png",
        ),
        (
            "rubytest-210908-rubytest-210908-username@auth0.com",
            "https://s.gravatar.com/avatar/28607929c5bdf4954ee65d055fea6e69?s=480&r=pg&d=https%3A%2F%2Fcdn.auth0.com%2Favatars%2Fru.png",
        ),
        (
            "rubytest-210908-rubytest-210908-username-secondary@auth0.com",
            "https://s.gravatar.com/avatar/c2a0e9c069b78548d21aefff897d2897?s=480&r=pg&d=https%3A%2F%2Fcdn.auth0.com%2Favatars%2Fru.png",
        ),
        (
            "testaccuser@acceptance.test.com",
            "https://s.gravatar.com/avatar/324ad113b0ef6dabbb2c2c4cf8a8d108?s=480&r=pg&d=https%3A%2F%2Fcdn.auth0.com%2Favatars%2Fte.png",
        ),
    ];

    #[test]
    fn every_recorded_picture_is_reproduced() {
        for (email, picture) in RECORDED {
            assert_eq!(gravatar_url(email), *picture, "{email}");
        }
    }

    #[test]
    fn the_hash_is_of_the_lowercased_trimmed_email() {
        assert_eq!(
            gravatar_url(" Chuck@Example.COM "),
            gravatar_url("chuck@example.com")
        );
        assert!(gravatar_url("a@b.c").ends_with("%2Fax.png"));
        assert!(gravatar_url("é.q+1@b.c").ends_with("%2Fq1.png"));
    }

    #[test]
    fn only_missing_attributes_are_invented() {
        let mut profile = Profile {
            email: Some("chuck@example.com".into()),
            nickname: Some("Chucky".into()),
            ..Profile::default()
        };
        fill_database_defaults(&mut profile);
        assert_eq!(profile.name.as_deref(), Some("chuck@example.com"));
        assert_eq!(profile.nickname.as_deref(), Some("Chucky"));
        assert_eq!(profile.picture.as_deref(), Some(RECORDED[0].1));
        let invented: Vec<_> = profile.invented.iter().map(String::as_str).collect();
        assert_eq!(invented, ["name", "picture"]);
        assert!(!profile.to_profile_data().contains_key("name"));
        assert_eq!(profile.to_profile_data()["nickname"], "Chucky");

        let mut no_email = Profile::default();
        fill_database_defaults(&mut no_email);
        assert_eq!(no_email, Profile::default());
    }
}
