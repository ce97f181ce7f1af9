//! Plain data the rules work on and the store persists.

use std::collections::BTreeSet;

use idlink_types::{UserId, UserIdentity, UserIdentityProviderEnum, UserProfileData};
use serde_json::{Map, Value};

/// Strategy of database connections (provider `auth0`).
pub const DATABASE_STRATEGY: &str = "auth0";

/// A connection: where identities come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `con_` + 16 alphanumerics.
    pub id: String,
    /// Unique name, e.g. `Username-Password-Authentication` or `google-oauth2`.
    pub name: String,
    /// The provider behind it, e.g. `auth0` or `google-oauth2`.
    pub strategy: String,
}

impl Connection {
    /// A database connection (users with passwords stored here).
    pub fn is_database(&self) -> bool {
        self.strategy == DATABASE_STRATEGY
    }

    /// Whether identities of this connection are social (`isSocial`).
    pub fn is_social(&self) -> bool {
        UserIdentityProviderEnum::from_wire(&self.strategy).is_social()
    }
}

/// What names one identity: its provider and the string form of its provider-side id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdentityKey {
    /// Provider name, e.g. `google-oauth2`.
    pub provider: String,
    /// String form of the provider-side id (`123` and `"123"` are the same identity).
    pub user_id: String,
}

impl IdentityKey {
    /// Builds a key from a link request, stripping a tolerated `provider|` prefix from
    /// `user_id` (Auth0 does so on link).
    pub fn new(provider: &str, user_id: &str) -> Self {
        let prefix = format!("{provider}|");
        let user_id = user_id.strip_prefix(&prefix).unwrap_or(user_id);
        Self {
            provider: provider.to_owned(),
            user_id: user_id.to_owned(),
        }
    }

    /// Builds a key from an unlink path, literally: Auth0 does **not** strip a
    /// `provider|` prefix there, so `auth0|abc` names no identity of provider `auth0`
    /// and the unlink is a no-op (recorded: ruby-auth0's unlink cassettes).
    pub fn literal(provider: &str, user_id: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            user_id: user_id.to_owned(),
        }
    }

    /// Splits a full user id such as `google-oauth2|123` at its first `|`.
    pub fn from_user_id(user_id: &str) -> Option<Self> {
        let (provider, id) = user_id.split_once('|')?;
        (!provider.is_empty() && !id.is_empty()).then(|| Self {
            provider: provider.to_owned(),
            user_id: id.to_owned(),
        })
    }

    /// The user id of the standalone user this identity is the main identity of.
    pub fn to_user_id(&self) -> String {
        format!("{}|{}", self.provider, self.user_id)
    }
}

/// One identity of a user.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// Provider name.
    pub provider: String,
    /// Provider-side id, string or integer as the provider sent it.
    pub user_id: UserId,
    /// Id of its connection.
    pub connection_id: String,
    /// Name of its connection.
    pub connection: String,
    /// Whether the provider is social.
    pub is_social: bool,
    /// The profile it brought when linked; `None` on a main identity.
    pub profile_data: Option<Map<String, Value>>,
    /// What its own user was when it was linked, kept for the unlink that recreates it.
    /// Never on the wire and never part of `profileData`.
    pub link_state: LinkState,
}

/// The hidden part of a linked identity: what its standalone user was when it was
/// linked, which the wire shape has no room for but an unlink must bring back. Stored as
/// JSON (`identities.link_state`, NULL when default), so it can grow without a migration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LinkState {
    /// The user was blocked: it stays unable to sign in while linked, and is blocked
    /// again when unlinked.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
    /// What an unlink with `[linking] unlink = "restore"` brings back; kept only when
    /// that setting was on at link time (see [`Standalone`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<Box<Standalone>>,
}

/// The part of a standalone user that `profileData` cannot hold, kept at link time so
/// that a restoring unlink recreates the user as it was (an idlink extension; Auth0
/// loses all of it). Root profile attributes are not here: they live on in the
/// identity's `profileData`, which is what the recreated user's profile comes from —
/// changes made to it while linked included.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Standalone {
    pub user_metadata: Option<Map<String, Value>>,
    pub app_metadata: Map<String, Value>,
    /// Values of the attributes idlink had invented (a database user's default
    /// `name`, `nickname`, `picture`), which `profileData` leaves out.
    pub invented: Map<String, Value>,
    pub blocked_ever_set: bool,
    pub last_login: Option<String>,
    pub logins_count: i64,
    pub last_password_reset: Option<String>,
    pub created_at: String,
}

impl Standalone {
    /// What `user` would lose by being linked.
    pub fn of(user: &UserRecord) -> Self {
        let mut profile = user.profile.clone();
        let invented = PROFILE_STRINGS
            .iter()
            .filter(|key| user.profile.invented.contains(**key))
            .filter_map(|key| {
                let value = profile.string_field(key)?.take()?;
                Some(((*key).to_owned(), Value::String(value)))
            })
            .collect();
        Self {
            user_metadata: user.user_metadata.clone(),
            app_metadata: user.app_metadata.clone(),
            invented,
            blocked_ever_set: user.blocked_ever_set,
            last_login: user.last_login.clone(),
            logins_count: user.logins_count,
            last_password_reset: user.last_password_reset.clone(),
            created_at: user.created_at.clone(),
        }
    }

    /// Puts back the invented attributes a profile recreated from `profileData` lacks
    /// (before defaults are filled in, so the user gets its own back, not new ones).
    pub fn restore_invented(&self, profile: &mut Profile) {
        for (key, value) in &self.invented {
            if let (Value::String(value), Some(slot)) = (value, profile.string_field(key)) {
                if slot.is_none() {
                    *slot = Some(value.clone());
                    profile.invented.insert(key.clone());
                }
            }
        }
    }

    /// Puts back into `user` (recreated from `profileData`) the rest the link took away.
    pub fn restore_into(&self, user: &mut UserRecord) {
        user.user_metadata.clone_from(&self.user_metadata);
        user.app_metadata.clone_from(&self.app_metadata);
        user.blocked_ever_set |= self.blocked_ever_set;
        user.last_login.clone_from(&self.last_login);
        user.logins_count = self.logins_count;
        user.last_password_reset
            .clone_from(&self.last_password_reset);
        user.created_at.clone_from(&self.created_at);
    }
}

impl LinkState {
    /// The state a standalone user leaves on its main identity when linked; with
    /// `keep_for_restore`, also what a restoring unlink needs.
    pub fn of(user: &UserRecord, keep_for_restore: bool) -> Self {
        Self {
            blocked: user.blocked,
            restore: keep_for_restore.then(|| Box::new(Standalone::of(user))),
        }
    }

    /// Whether there is nothing to keep (the column stays NULL).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Identity {
    /// The key naming this identity.
    pub fn key(&self) -> IdentityKey {
        IdentityKey {
            provider: self.provider.clone(),
            user_id: self.user_id.as_string(),
        }
    }

    /// Whether this identity is the one `key` names.
    pub fn is(&self, key: &IdentityKey) -> bool {
        self.provider == key.provider && self.user_id.as_string() == key.user_id
    }

    /// The wire shape.
    pub fn to_wire(&self) -> UserIdentity {
        UserIdentity {
            connection: self.connection.clone(),
            user_id: self.user_id.clone(),
            provider: self.provider.clone(),
            is_social: Some(self.is_social),
            profile_data: self.profile_data.clone().map(|map| {
                serde_json::from_value::<UserProfileData>(Value::Object(map)).unwrap_or_default()
            }),
            access_token: None,
            access_token_secret: None,
            refresh_token: None,
        }
    }
}

/// A user's root profile attributes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    pub email: Option<String>,
    pub email_verified: bool,
    pub username: Option<String>,
    pub phone_number: Option<String>,
    pub phone_verified: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub nickname: Option<String>,
    pub picture: Option<String>,
    /// Root attributes beyond the named ones (kept so link then unlink loses nothing).
    pub extra: Map<String, Value>,
    /// The named attributes idlink made up rather than the client supplied (a database
    /// user's default `name`, `nickname`, `picture`): shown on the user, left out of its
    /// `profileData`, as Auth0 does. Setting one through PATCH makes it supplied.
    pub invented: BTreeSet<String>,
}

const PROFILE_STRINGS: [&str; 8] = [
    "email",
    "username",
    "phone_number",
    "name",
    "given_name",
    "family_name",
    "nickname",
    "picture",
];

impl Profile {
    fn string_field(&mut self, key: &str) -> Option<&mut Option<String>> {
        Some(match key {
            "email" => &mut self.email,
            "username" => &mut self.username,
            "phone_number" => &mut self.phone_number,
            "name" => &mut self.name,
            "given_name" => &mut self.given_name,
            "family_name" => &mut self.family_name,
            "nickname" => &mut self.nickname,
            "picture" => &mut self.picture,
            _ => return None,
        })
    }

    /// The profile as a `profileData` object: the attributes the client *supplied*, with
    /// their current values — what a secondary user's root attributes become when it is
    /// linked, and what the primary's identity shows in link and unlink answers. Invented
    /// attributes are left out; so are metadata, `blocked` and the password, which are
    /// not profile attributes. `email_verified` comes whenever there is an email
    /// (recorded: go-auth0 and ruby-auth0 link answers).
    pub fn to_profile_data(&self) -> Map<String, Value> {
        let mut map = Map::new();
        let mut this = self.clone();
        for key in PROFILE_STRINGS {
            if self.invented.contains(key) {
                continue;
            }
            if let Some(Some(value)) = this.string_field(key).map(Option::take) {
                map.insert(key.to_owned(), Value::String(value));
            }
        }
        if self.email.is_some() || self.email_verified {
            map.insert("email_verified".into(), Value::Bool(self.email_verified));
        }
        if self.phone_number.is_some() || self.phone_verified {
            map.insert("phone_verified".into(), Value::Bool(self.phone_verified));
        }
        for (key, value) in &self.extra {
            map.entry(key.clone()).or_insert_with(|| value.clone());
        }
        map
    }

    /// The inverse of [`to_profile_data`](Self::to_profile_data): the root profile of a
    /// user recreated from an unlinked identity. Values of the wrong JSON type for a named
    /// attribute are kept in `extra` rather than dropped.
    pub fn from_profile_data(data: &Map<String, Value>) -> Self {
        let mut profile = Profile::default();
        for (key, value) in data {
            match (key.as_str(), value) {
                ("email_verified", Value::Bool(b)) => profile.email_verified = *b,
                ("phone_verified", Value::Bool(b)) => profile.phone_verified = *b,
                (_, Value::String(s)) if profile.string_field(key).is_some() => {
                    if let Some(slot) = profile.string_field(key) {
                        *slot = Some(s.clone());
                    }
                }
                _ => {
                    profile.extra.insert(key.clone(), value.clone());
                }
            }
        }
        profile
    }
}

/// A user with its identities, main identity first.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub user_id: String,
    pub profile: Profile,
    /// `None` until first set; once set it is shown, `{}` included (Auth0 answers a PATCH
    /// of `{"user_metadata": {}}` with `"user_metadata": {}`).
    pub user_metadata: Option<Map<String, Value>>,
    /// Shown only when it holds something (a PATCH of `{}` removes it from the user).
    pub app_metadata: Map<String, Value>,
    pub blocked: bool,
    /// Whether `blocked` was ever set: from then on it is shown, `false` included.
    pub blocked_ever_set: bool,
    /// `None` until the first login; then shown with `logins_count`.
    pub last_login: Option<String>,
    pub logins_count: i64,
    /// When the password was last changed through PATCH.
    pub last_password_reset: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub identities: Vec<Identity>,
}

impl UserRecord {
    /// The wire shape of `GET /api/v2/users/{id}`.
    pub fn to_wire(&self) -> idlink_types::User {
        let p = &self.profile;
        let non_empty = |m: &Map<String, Value>| (!m.is_empty()).then(|| m.clone());
        idlink_types::User {
            user_id: self.user_id.clone(),
            email: p.email.clone(),
            email_verified: p.email.as_ref().map(|_| p.email_verified),
            username: p.username.clone(),
            phone_number: p.phone_number.clone(),
            phone_verified: p.phone_number.as_ref().map(|_| p.phone_verified),
            name: p.name.clone(),
            given_name: p.given_name.clone(),
            family_name: p.family_name.clone(),
            nickname: p.nickname.clone(),
            picture: p.picture.clone(),
            created_at: Some(self.created_at.clone()),
            updated_at: Some(self.updated_at.clone()),
            identities: self.identities.iter().map(Identity::to_wire).collect(),
            user_metadata: self.user_metadata.clone(),
            app_metadata: non_empty(&self.app_metadata),
            blocked: (self.blocked || self.blocked_ever_set).then_some(self.blocked),
            last_login: self.last_login.clone(),
            logins_count: (self.logins_count > 0 || self.last_login.is_some())
                .then_some(self.logins_count),
            last_password_reset: self.last_password_reset.clone(),
            extra: p.extra.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn profile_survives_profile_data_round_trip() {
        let profile = Profile {
            email: Some("a@example.com".into()),
            email_verified: true,
            name: Some("Ada".into()),
            nickname: Some("ada".into()),
            extra: json!({"locale": "fr", "age": 36})
                .as_object()
                .unwrap()
                .clone(),
            ..Profile::default()
        };
        let data = profile.to_profile_data();
        assert_eq!(data["email"], "a@example.com");
        assert_eq!(data["email_verified"], true);
        assert_eq!(data["locale"], "fr");
        assert!(!data.contains_key("phone_verified"));
        assert_eq!(Profile::from_profile_data(&data), profile);
    }

    #[test]
    fn identity_keys_tolerate_a_provider_prefix() {
        assert_eq!(IdentityKey::new("github", "github|123").user_id, "123");
        assert_eq!(IdentityKey::new("github", "123").user_id, "123");
        assert_eq!(IdentityKey::new("github", "auth0|1").user_id, "auth0|1");
        let key = IdentityKey::from_user_id("samlp|corp|abc").unwrap();
        assert_eq!(
            (key.provider.as_str(), key.user_id.as_str()),
            ("samlp", "corp|abc")
        );
        assert!(IdentityKey::from_user_id("nobar").is_none());
    }
}
