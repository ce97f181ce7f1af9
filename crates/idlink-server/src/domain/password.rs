//! Auth0's password strength policy of database connections (`options.passwordPolicy`
//! and `options.password_complexity_options.min_length`), as a pure rule.
//!
//! The levels are Auth0's, from "Password Strength in Auth0 Database Connections" and
//! the `auth0-password-policies` presets (extracted from `password-sheriff`):
//!
//! | level | length | characters |
//! | --- | --- | --- |
//! | `none` | ≥ 1 | any |
//! | `low` | ≥ 6 | any |
//! | `fair` | ≥ 8 | a lower-case letter, an upper-case letter and a digit |
//! | `good` | ≥ 8 | 3 of the 4 kinds: lower-case, upper-case, digit, special |
//! | `excellent` | ≥ 10 | as `good`, and no character more than twice in a row |
//!
//! `min_length` (1–72) replaces the level's length, as Auth0's setting of the same name
//! does ("independent of the policy strength requirements").

use serde::{Deserialize, Serialize};

/// A password policy level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordPolicy {
    None,
    Low,
    Fair,
    /// What Auth0 gives a new tenant's database connection.
    #[default]
    Good,
    Excellent,
}

/// Shortest and longest `min_length` Auth0 accepts.
pub const MIN_LENGTH_RANGE: std::ops::RangeInclusive<u32> = 1..=72;

/// Auth0's special characters (`password-sheriff`'s `specialCharacters`): the ASCII
/// punctuation and the space.
const SPECIAL: &str = " !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

impl PasswordPolicy {
    /// The wire name (`good`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Low => "low",
            Self::Fair => "fair",
            Self::Good => "good",
            Self::Excellent => "excellent",
        }
    }

    /// The level's own minimum length.
    pub fn default_min_length(self) -> u32 {
        match self {
            Self::None => 1,
            Self::Low => 6,
            Self::Fair | Self::Good => 8,
            Self::Excellent => 10,
        }
    }
}

/// A database connection's password rule: a level and an optional `min_length`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PasswordRule {
    pub policy: PasswordPolicy,
    pub min_length: Option<u32>,
}

impl PasswordRule {
    /// What a password needs, in words (for the sign-up page).
    pub fn requirements(&self) -> String {
        let min = self
            .min_length
            .unwrap_or_else(|| self.policy.default_min_length());
        let length = format!(
            "at least {min} character{}",
            if min == 1 { "" } else { "s" }
        );
        const KINDS: &str = "lower-case letters, upper-case letters, numbers, special characters";
        match self.policy {
            PasswordPolicy::None | PasswordPolicy::Low => length,
            PasswordPolicy::Fair => {
                format!("{length} with a lower-case letter, an upper-case letter and a number")
            }
            PasswordPolicy::Good => format!("{length} with 3 of these 4: {KINDS}"),
            PasswordPolicy::Excellent => format!(
                "{length} with 3 of these 4: {KINDS}; and no character more than twice in a row"
            ),
        }
    }

    /// Whether `password` is strong enough. Lengths count characters.
    pub fn accepts(&self, password: &str) -> bool {
        let min = self
            .min_length
            .unwrap_or_else(|| self.policy.default_min_length());
        let length = password.chars().count();
        if length < usize::try_from(min).unwrap_or(usize::MAX) || length == 0 {
            return false;
        }
        let lower = password.chars().any(|c| c.is_ascii_lowercase());
        let upper = password.chars().any(|c| c.is_ascii_uppercase());
        let digit = password.chars().any(|c| c.is_ascii_digit());
        let special = password.chars().any(|c| SPECIAL.contains(c));
        let kinds = [lower, upper, digit, special]
            .iter()
            .filter(|k| **k)
            .count();
        match self.policy {
            PasswordPolicy::None | PasswordPolicy::Low => true,
            PasswordPolicy::Fair => lower && upper && digit,
            PasswordPolicy::Good => kinds >= 3,
            PasswordPolicy::Excellent => kinds >= 3 && !three_in_a_row(password),
        }
    }
}

/// Whether some character appears three or more times in a row.
fn three_in_a_row(password: &str) -> bool {
    let chars: Vec<char> = password.chars().collect();
    chars.windows(3).any(|w| w[0] == w[1] && w[1] == w[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_accepts_and_refuses_as_auth0_documents() {
        use PasswordPolicy::*;
        let table: &[(PasswordPolicy, Option<u32>, &str, bool)] = &[
            (None, Option::None, "", false),
            (None, Option::None, "a", true),
            (Low, Option::None, "abcde", false),
            (Low, Option::None, "abcdef", true),
            (Low, Option::None, "hunter2", true),
            (Fair, Option::None, "Abcdef1", false),
            (Fair, Option::None, "abcdefg1", false),
            (Fair, Option::None, "Abcdefgh", false),
            (Fair, Option::None, "Abcdefg1", true),
            (Fair, Option::None, "ABCDEFG1!", false),
            (Good, Option::None, "hunter2", false),
            (Good, Option::None, "hunter22", false),
            (Good, Option::None, "Hunter22", true),
            (Good, Option::None, "hunter2!", true),
            (Good, Option::None, "HUNTER2!", true),
            (Good, Option::None, "hunter 2", true),
            (Good, Option::None, "Abcdefgh", false),
            (Good, Option::None, "Abc1!", false),
            (Good, Option::None, "ÄBCDEFGH1é", false),
            (Excellent, Option::None, "Hunter22!", false),
            (Excellent, Option::None, "Hunter22!x", true),
            (Excellent, Option::None, "Hunter222!x", false),
            (Excellent, Option::None, "Huntter22!x", true),
            (Excellent, Option::None, "hunterrr22", false),
            (Excellent, Option::None, "huntersss", false),
            (Good, Some(12), "Hunter22!", false),
            (Good, Some(12), "Hunter22!abc", true),
            (Good, Some(4), "Ab1!", true),
            (Good, Some(4), "abcd", false),
            (None, Some(3), "ab", false),
            (None, Some(3), "abc", true),
        ];
        for &(policy, min_length, password, expected) in table {
            let rule = PasswordRule { policy, min_length };
            assert_eq!(
                rule.accepts(password),
                expected,
                "{policy:?} min_length {min_length:?} on {password:?}"
            );
        }
    }

    #[test]
    fn the_default_is_good_and_names_are_auth0s() {
        assert_eq!(PasswordPolicy::default(), PasswordPolicy::Good);
        for (name, policy) in [
            ("none", PasswordPolicy::None),
            ("low", PasswordPolicy::Low),
            ("fair", PasswordPolicy::Fair),
            ("good", PasswordPolicy::Good),
            ("excellent", PasswordPolicy::Excellent),
        ] {
            assert_eq!(policy.as_str(), name);
            let parsed: PasswordPolicy = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(parsed, policy);
        }
    }
}
