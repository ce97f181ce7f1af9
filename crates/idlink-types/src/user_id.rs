//! `UserId`: an identity's provider-side id, a string or an integer.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The provider-side id of an identity: a string (`"5f7c…"`, `"1093…"`) or an integer
/// (GitHub sends numbers). Kept exactly as sent, so it serialises back the same way.
///
/// Two ids name the same identity when their string forms are equal
/// ([`UserId::as_string`]), which is how Auth0 and idlink compare them.
///
/// ```
/// use idlink_types::UserId;
///
/// let github: UserId = serde_json::from_str("12345").unwrap();
/// assert_eq!(github, UserId::Integer(12345));
/// assert_eq!(serde_json::to_string(&github).unwrap(), "12345");
/// assert!(github.same_identity(&UserId::from("12345")));
///
/// let google = UserId::from("1093");
/// assert_eq!(serde_json::to_string(&google).unwrap(), "\"1093\"");
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserId {
    /// A string id, the common case.
    String(String),
    /// An integer id, as GitHub and a few other providers send.
    Integer(i64),
}

impl UserId {
    /// The id's string form (`123` → `"123"`), used for comparisons and in `user_id`s
    /// such as `github|123`.
    ///
    /// ```
    /// assert_eq!(idlink_types::UserId::from(7).as_string(), "7");
    /// ```
    pub fn as_string(&self) -> String {
        match self {
            Self::String(s) => s.clone(),
            Self::Integer(n) => n.to_string(),
        }
    }

    /// Whether both name the same identity (equal string forms).
    ///
    /// ```
    /// use idlink_types::UserId;
    /// assert!(UserId::from(7).same_identity(&UserId::from("7")));
    /// ```
    pub fn same_identity(&self, other: &UserId) -> bool {
        self.as_string() == other.as_string()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(s) => f.write_str(s),
            Self::Integer(n) => write!(f, "{n}"),
        }
    }
}

impl From<&str> for UserId {
    fn from(s: &str) -> Self {
        Self::String(s.to_owned())
    }
}

impl From<String> for UserId {
    fn from(s: String) -> Self {
        Self::String(s)
    }
}

impl From<i64> for UserId {
    fn from(n: i64) -> Self {
        Self::Integer(n)
    }
}

#[cfg(test)]
mod tests {
    use super::UserId;

    #[test]
    fn keeps_the_json_kind() {
        for json in ["\"abc\"", "42", "\"42\"", "-1"] {
            let id: UserId = serde_json::from_str(json).unwrap();
            assert_eq!(serde_json::to_string(&id).unwrap(), json);
        }
    }

    #[test]
    fn rejects_other_json_kinds() {
        for json in ["1.5", "true", "null", "{}", "[]"] {
            assert!(serde_json::from_str::<UserId>(json).is_err(), "{json}");
        }
    }
}
