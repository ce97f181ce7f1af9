//! `UserId`: an identity's provider-side id, a string or an integer.

use std::fmt;

use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, Visitor};

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
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
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

/// What a client is told when a `user_id` is neither: in its terms, not serde's
/// ("data did not match any variant of untagged enum").
const EXPECTED: &str =
    "user_id must be a string or an integer between -9223372036854775808 and 9223372036854775807";

/// Accepts a JSON string or integer; anything else fails with a message that says so
/// in the user's terms.
///
/// ```
/// use idlink_types::UserId;
///
/// let err = serde_json::from_str::<UserId>("1.5").unwrap_err();
/// assert!(err.to_string().starts_with("user_id must be a string or an integer"));
/// ```
impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UserIdVisitor)
    }
}

struct UserIdVisitor;

impl<'de> Visitor<'de> for UserIdVisitor {
    type Value = UserId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<UserId, E> {
        Ok(UserId::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<UserId, E> {
        Ok(UserId::String(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<UserId, E> {
        Ok(UserId::Integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<UserId, E> {
        i64::try_from(v)
            .map(UserId::Integer)
            .map_err(|_| de::Error::custom(EXPECTED))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<UserId, E> {
        Err(de::Error::custom(EXPECTED))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<UserId, E> {
        Err(de::Error::custom(EXPECTED))
    }

    fn visit_unit<E: de::Error>(self) -> Result<UserId, E> {
        Err(de::Error::custom(EXPECTED))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<UserId, A::Error> {
        Err(de::Error::custom(EXPECTED))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<UserId, A::Error> {
        Err(de::Error::custom(EXPECTED))
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
        for json in ["1.5", "true", "null", "{}", "[]", "9223372036854775808"] {
            let err = serde_json::from_str::<UserId>(json)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("user_id must be a string or an integer between"),
                "{json}: {err}"
            );
        }
    }
}
