//! Rules for the users endpoints: creating, patching and searching users.

use idlink_types::{CreateUserRequestContent, UserId};
use serde_json::{Map, Value};

use super::error::{Error, Result};
use super::model::{Connection, Identity, LinkState, Profile, UserRecord};
use super::{ids, invented, search};

/// The largest page `GET /api/v2/users` serves.
pub const MAX_PER_PAGE: u64 = 100;
/// The page size when none is asked for.
pub const DEFAULT_PER_PAGE: u64 = 50;

/// The longest value (in characters) each string field of a user may hold, following
/// Auth0's published limits where there are some (`name`, `nickname` 300; `given_name`,
/// `family_name` 150; `username` 128) and idlink's own elsewhere.
pub const FIELD_LIMITS: &[(&str, usize)] = &[
    ("email", 512),
    ("username", 128),
    ("phone_number", 64),
    ("name", 300),
    ("given_name", 150),
    ("family_name", 150),
    ("nickname", 300),
    ("picture", 2048),
    ("user_id", 255),
    ("connection", 128),
    ("client_id", 128),
    ("password", 1024),
];

/// The length limit of `field`, if it has one.
pub fn field_limit(field: &str) -> Option<usize> {
    FIELD_LIMITS
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, max)| *max)
}

/// Rejects string values longer than their [`FIELD_LIMITS`], in Auth0's words.
fn check_lengths(object: &Map<String, Value>) -> Result<()> {
    for (key, value) in object {
        if let (Value::String(s), Some(max)) = (value, field_limit(key)) {
            let len = s.chars().count();
            if len > max {
                return Err(Error::InvalidBody(format!(
                    "Payload validation error: 'String is too long ({len} chars), maximum {max}' on property {key}."
                )));
            }
        }
    }
    Ok(())
}

/// A provider-side id may hold any Unicode but no control characters (which have no
/// place in an id and would corrupt logs and the `provider|id` form).
fn check_user_id(id: &str) -> Result<()> {
    if id.chars().any(char::is_control) {
        return Err(Error::InvalidBody(
            "Payload validation error: 'user_id must not contain control characters'.".into(),
        ));
    }
    Ok(())
}

/// A validated `GET /api/v2/users` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQuery {
    pub filter: search::Query,
    pub sort: Option<search::Sort>,
    pub page: u64,
    pub per_page: u64,
}

impl UserQuery {
    /// All users with this email (`GET /api/v2/users-by-email`).
    pub fn by_email(email: &str) -> Self {
        Self {
            filter: search::Query::Term {
                field: search::Field::Root(search::RootField::Email),
                matcher: search::Matcher::Equals(search::Value::Text(email.to_owned())),
            },
            sort: None,
            page: 0,
            per_page: MAX_PER_PAGE * 10,
        }
    }

    /// Rows to skip.
    pub fn offset(&self) -> u64 {
        self.page.saturating_mul(self.per_page)
    }
}

/// Splits a Lucene-style query into its `field:"value"` / `field:value` terms, which
/// must be joined by `AND` (the log search's syntax; user search is [`search`]).
pub fn parse_terms(q: &str) -> Result<Vec<(String, String)>> {
    let invalid = |why: &str| Error::InvalidQuery(format!("Query validation error: {why}"));
    let mut terms = Vec::new();
    let mut rest = q.trim();
    while !rest.is_empty() {
        let (field, after) = rest
            .split_once(':')
            .ok_or_else(|| invalid(&format!("expected field:value in '{rest}'")))?;
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| invalid("unterminated quoted value"))?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if value.is_empty() {
            return Err(invalid("empty value"));
        }
        terms.push((field.trim().to_owned(), value.to_owned()));
        rest = after.trim_start();
        if !rest.is_empty() {
            rest = rest
                .strip_prefix("AND ")
                .ok_or_else(|| invalid("terms must be joined with AND"))?
                .trim_start();
        }
    }
    Ok(terms)
}

/// A validated `PATCH /api/v2/users/{id}`. For string fields the outer `Option` says
/// whether the field was sent, the inner one whether it is set or cleared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserPatch {
    pub email: Option<Option<String>>,
    pub username: Option<Option<String>>,
    pub phone_number: Option<Option<String>>,
    pub name: Option<Option<String>>,
    pub given_name: Option<Option<String>>,
    pub family_name: Option<Option<String>>,
    pub nickname: Option<Option<String>>,
    pub picture: Option<Option<String>>,
    pub email_verified: Option<bool>,
    pub phone_verified: Option<bool>,
    pub blocked: Option<bool>,
    pub user_metadata: Option<Map<String, Value>>,
    pub app_metadata: Option<Map<String, Value>>,
    /// Already hashed (hashing is slow and stays out of the transaction).
    pub password_hash: Option<String>,
}

const PATCH_FIELDS: &[&str] = &[
    "email",
    "username",
    "phone_number",
    "name",
    "given_name",
    "family_name",
    "nickname",
    "picture",
    "email_verified",
    "phone_verified",
    "blocked",
    "user_metadata",
    "app_metadata",
    "password",
    "verify_email",
    "verify_phone_number",
    "connection",
    "client_id",
];

impl UserPatch {
    /// Validates a PATCH body. Returns the patch and the new password in clear, if any,
    /// for the caller to hash.
    pub fn from_body(body: &Value) -> Result<(Self, Option<String>)> {
        let object = expect_object(body)?;
        reject_unknown(object, PATCH_FIELDS)?;
        check_lengths(object)?;
        let mut patch = UserPatch::default();
        for (key, value) in object {
            match key.as_str() {
                "email" => patch.email = Some(optional_email(value, key)?),
                "username" => patch.username = Some(optional_string(value, key)?),
                "phone_number" => patch.phone_number = Some(optional_string(value, key)?),
                "name" => patch.name = Some(optional_string(value, key)?),
                "given_name" => patch.given_name = Some(optional_string(value, key)?),
                "family_name" => patch.family_name = Some(optional_string(value, key)?),
                "nickname" => patch.nickname = Some(optional_string(value, key)?),
                "picture" => patch.picture = Some(optional_string(value, key)?),
                "email_verified" => patch.email_verified = Some(boolean(value, key)?),
                "phone_verified" => patch.phone_verified = Some(boolean(value, key)?),
                "blocked" => patch.blocked = Some(boolean(value, key)?),
                "user_metadata" => patch.user_metadata = Some(metadata(value, key)?),
                "app_metadata" => patch.app_metadata = Some(metadata(value, key)?),
                // Accepted for SDK compatibility; idlink sends no mail or SMS.
                "verify_email" | "verify_phone_number" => {
                    boolean(value, key)?;
                }
                "connection" | "client_id" => {
                    optional_string(value, key)?;
                }
                _ => {}
            }
        }
        let password = match object.get("password") {
            None => None,
            Some(Value::String(p)) if !p.is_empty() => Some(p.clone()),
            Some(_) => return Err(type_error("password", "string")),
        };
        Ok((patch, password))
    }

    /// Applies the patch to a user (the store calls this on the locked row).
    pub fn apply(&self, user: &mut UserRecord, now: &str) {
        let p = &mut user.profile;
        let fields = [
            ("email", &self.email, &mut p.email),
            ("username", &self.username, &mut p.username),
            ("phone_number", &self.phone_number, &mut p.phone_number),
            ("name", &self.name, &mut p.name),
            ("given_name", &self.given_name, &mut p.given_name),
            ("family_name", &self.family_name, &mut p.family_name),
            ("nickname", &self.nickname, &mut p.nickname),
            ("picture", &self.picture, &mut p.picture),
        ];
        let mut supplied = Vec::new();
        for (name, change, slot) in fields {
            if let Some(value) = change {
                slot.clone_from(value);
                supplied.push(name);
            }
        }
        // An attribute the client sets is its own from now on, even one idlink invented.
        for name in supplied {
            p.invented.remove(name);
        }
        if let Some(v) = self.email_verified {
            p.email_verified = v;
        }
        if let Some(v) = self.phone_verified {
            p.phone_verified = v;
        }
        if let Some(v) = self.blocked {
            user.blocked = v;
            user.blocked_ever_set = true;
        }
        if let Some(changes) = &self.user_metadata {
            merge_metadata(user.user_metadata.get_or_insert_with(Map::new), changes);
        }
        if let Some(changes) = &self.app_metadata {
            merge_metadata(&mut user.app_metadata, changes);
        }
        if self.password_hash.is_some() {
            user.last_password_reset = Some(now.to_owned());
        }
        user.updated_at = now.to_owned();
    }
}

/// Top-level merge: each key replaces the stored one whole; `null` removes it; an empty
/// object empties the metadata (recorded: terraform-provider-auth0's `TestAccUser`).
pub fn merge_metadata(stored: &mut Map<String, Value>, changes: &Map<String, Value>) {
    if changes.is_empty() {
        stored.clear();
    }
    for (key, value) in changes {
        if value.is_null() {
            stored.remove(key);
        } else {
            stored.insert(key.clone(), value.clone());
        }
    }
}

const CREATE_FIELDS: &[&str] = &[
    "connection",
    "user_id",
    "email",
    "email_verified",
    "verify_email",
    "password",
    "username",
    "phone_number",
    "phone_verified",
    "name",
    "given_name",
    "family_name",
    "nickname",
    "picture",
    "blocked",
    "user_metadata",
    "app_metadata",
];

/// A validated `POST /api/v2/users`: the user to store and, for a database
/// connection, the password in clear (for the caller to hash).
#[derive(Debug)]
pub struct NewUser {
    pub user: UserRecord,
    pub password: Option<String>,
}

/// Reads the connection name out of a create body (needed before the rest is checked).
pub fn create_connection_name(body: &Value) -> Result<String> {
    let object = expect_object(body)?;
    reject_unknown(object, CREATE_FIELDS)?;
    check_lengths(object)?;
    match object.get("connection") {
        Some(Value::String(name)) if !name.is_empty() => Ok(name.clone()),
        Some(Value::String(_)) | None => Err(Error::InvalidBody(
            "Payload validation error: 'Missing required property: connection'.".into(),
        )),
        Some(_) => Err(type_error("connection", "string")),
    }
}

/// Validates a create body against its connection.
pub fn new_user(body: &Value, connection: &Connection, now: &str) -> Result<NewUser> {
    let req: CreateUserRequestContent = super::payload::decode(body)?;
    for (key, value) in [
        ("user_metadata", &req.user_metadata),
        ("app_metadata", &req.app_metadata),
    ] {
        if value
            .as_ref()
            .is_some_and(|m| m.values().any(Value::is_null))
        {
            return Err(Error::InvalidBody(format!(
                "Payload validation error: '{key}' values must not be null."
            )));
        }
    }
    if let Some(email) = &req.email {
        check_email(email, "email")?;
    }
    if let Some(UserId::String(id)) = &req.user_id {
        check_user_id(id)?;
    }
    let (provider_id, password) = if connection.is_database() {
        let password = match req.password.as_deref() {
            Some(p) if !p.is_empty() => p.to_owned(),
            _ => {
                return Err(Error::InvalidBody(
                    "Payload validation error: 'Missing required property: password'.".into(),
                ));
            }
        };
        if req.email.is_none() {
            return Err(Error::InvalidBody(
                "Payload validation error: 'Missing required property: email'.".into(),
            ));
        }
        let id = match &req.user_id {
            Some(UserId::String(s)) if !s.is_empty() => UserId::String(s.clone()),
            Some(_) => return Err(type_error("user_id", "non-empty string")),
            None => UserId::String(ids::database_user_id()),
        };
        (id, Some(password))
    } else {
        if req.password.is_some() {
            return Err(Error::InvalidBody(format!(
                "Payload validation error: 'password' is only allowed for database connections, not '{}'.",
                connection.name
            )));
        }
        let id = match &req.user_id {
            Some(UserId::String(s)) if s.is_empty() => {
                return Err(type_error("user_id", "non-empty string"));
            }
            Some(UserId::String(s)) => {
                let prefix = format!("{}|", connection.strategy);
                UserId::String(s.strip_prefix(&prefix).unwrap_or(s).to_owned())
            }
            Some(id) => id.clone(),
            None => {
                return Err(Error::InvalidBody(format!(
                    "Payload validation error: 'Missing required property: user_id' (users of the {} connection need their provider-side id).",
                    connection.name
                )));
            }
        };
        (id, None)
    };

    let identity = Identity {
        provider: connection.strategy.clone(),
        user_id: provider_id,
        connection_id: connection.id.clone(),
        connection: connection.name.clone(),
        is_social: connection.is_social(),
        profile_data: None,
        link_state: LinkState::default(),
    };
    let mut user = UserRecord {
        user_id: identity.key().to_user_id(),
        profile: Profile {
            email: req.email,
            email_verified: req.email_verified.unwrap_or(false),
            username: req.username,
            phone_number: req.phone_number,
            phone_verified: req.phone_verified.unwrap_or(false),
            name: req.name,
            given_name: req.given_name,
            family_name: req.family_name,
            nickname: req.nickname,
            picture: req.picture,
            extra: Map::new(),
            invented: Default::default(),
        },
        user_metadata: req.user_metadata,
        app_metadata: req.app_metadata.unwrap_or_default(),
        blocked: req.blocked.unwrap_or(false),
        blocked_ever_set: req.blocked.is_some(),
        last_login: None,
        logins_count: 0,
        last_password_reset: None,
        created_at: now.to_owned(),
        updated_at: now.to_owned(),
        identities: vec![identity],
    };
    if connection.is_database() {
        invented::fill_database_defaults(&mut user.profile);
    }
    Ok(NewUser { user, password })
}

fn expect_object(body: &Value) -> Result<&Map<String, Value>> {
    body.as_object().ok_or_else(|| {
        Error::InvalidBody(format!(
            "Payload validation error: 'Expected type object but found type {}'.",
            json_type(body)
        ))
    })
}

/// Rejects properties outside `allowed`, in Auth0's words.
pub fn reject_unknown(object: &Map<String, Value>, allowed: &[&str]) -> Result<()> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(Error::InvalidBody(format!(
            "Payload validation error: 'Additional properties not allowed: {key}'."
        ))),
        None => Ok(()),
    }
}

/// The JSON type name Auth0 uses in validation messages.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A wrong-type validation error for `property`.
pub fn type_error(property: &str, expected: &str) -> Error {
    Error::InvalidBody(format!(
        "Payload validation error: 'Expected type {expected}' on property {property}."
    ))
}

fn optional_string(value: &Value, key: &str) -> Result<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(type_error(key, "string")),
    }
}

fn optional_email(value: &Value, key: &str) -> Result<Option<String>> {
    let email = optional_string(value, key)?;
    if let Some(email) = &email {
        check_email(email, key)?;
    }
    Ok(email)
}

fn check_email(email: &str, key: &str) -> Result<()> {
    let valid = email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidBody(format!(
            "Payload validation error: 'Object didn't pass validation for format email: {email}' on property {key}."
        )))
    }
}

fn boolean(value: &Value, key: &str) -> Result<bool> {
    value.as_bool().ok_or_else(|| type_error(key, "boolean"))
}

fn metadata(value: &Value, key: &str) -> Result<Map<String, Value>> {
    value
        .as_object()
        .cloned()
        .ok_or_else(|| type_error(key, "object"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_merge_is_top_level() {
        let mut stored = json!({"a": 1, "nested": {"x": 1, "y": 2}, "gone": true})
            .as_object()
            .unwrap()
            .clone();
        let changes = json!({"nested": {"x": 9}, "gone": null, "b": 2});
        merge_metadata(&mut stored, changes.as_object().unwrap());
        assert_eq!(
            Value::Object(stored),
            json!({"a": 1, "nested": {"x": 9}, "b": 2})
        );
    }

    #[test]
    fn string_lengths_are_limited() {
        let long = |n: usize| "é".repeat(n);
        assert!(UserPatch::from_body(&json!({"name": long(300)})).is_ok());
        assert!(UserPatch::from_body(&json!({"name": long(301)})).is_err());
        assert!(UserPatch::from_body(&json!({"given_name": long(151)})).is_err());
        let email = format!("{}@example.com", "a".repeat(501));
        assert!(UserPatch::from_body(&json!({ "email": email })).is_err());
        assert!(
            create_connection_name(&json!({"connection": "x", "username": long(129)})).is_err()
        );
    }

    #[test]
    fn control_characters_are_refused_in_emails_and_ids() {
        for bad in [
            "a\u{0}b@example.com",
            "a@exa\nmple.com",
            "a\u{7f}@x.y",
            "a\u{85}@x.y",
        ] {
            assert!(
                UserPatch::from_body(&json!({ "email": bad })).is_err(),
                "{bad:?}"
            );
        }
        assert!(check_user_id("gh\u{1b}[31m").is_err());
        assert!(check_user_id("🦀 עברית e\u{301}").is_ok());
    }

    #[test]
    fn patch_validation() {
        assert!(UserPatch::from_body(&json!({"nope": 1})).is_err());
        assert!(UserPatch::from_body(&json!({"blocked": "yes"})).is_err());
        assert!(UserPatch::from_body(&json!({"email": "not-an-email"})).is_err());
        let (patch, password) =
            UserPatch::from_body(&json!({"name": null, "password": "s3cret!"})).unwrap();
        assert_eq!(patch.name, Some(None));
        assert_eq!(password.as_deref(), Some("s3cret!"));
    }
}
