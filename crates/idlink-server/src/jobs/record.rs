//! One record of an import file → the user to write. Auth0's bulk-import schema (email,
//! email_verified, user_id, username, given_name, family_name, name, nickname, picture,
//! blocked, user_metadata, app_metadata, password_hash, custom_password_hash) plus what
//! idlink's own export writes (created_at, updated_at, last_login, logins_count, …) and
//! the idlink extension `identities`: the user arrives already linked.

use idlink_types::UserId;
use serde_json::{Map, Value};

use super::record_error;
use crate::domain::model::{Connection, Identity, LinkState, Profile, UserRecord};
use crate::store::Credential;

/// Why a record was refused: Auth0's `[{code, message, path}]`.
pub type RecordErrors = Value;

fn refuse(code: &str, message: impl AsRef<str>, path: &str) -> RecordErrors {
    Value::Array(vec![record_error(code, message.as_ref(), path)])
}

fn string(object: &Map<String, Value>, key: &str) -> Result<Option<String>, RecordErrors> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(refuse(
            "INVALID_TYPE",
            format!("Expected type string for {key}"),
            key,
        )),
    }
}

fn boolean(object: &Map<String, Value>, key: &str) -> Result<Option<bool>, RecordErrors> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(refuse(
            "INVALID_TYPE",
            format!("Expected type boolean for {key}"),
            key,
        )),
    }
}

fn object_of(
    object: &Map<String, Value>,
    key: &str,
) -> Result<Option<Map<String, Value>>, RecordErrors> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map.clone())),
        Some(_) => Err(refuse(
            "INVALID_TYPE",
            format!("Expected type object for {key}"),
            key,
        )),
    }
}

/// Keys of the record that are not root profile attributes.
const HANDLED: &[&str] = &[
    "user_id",
    "email",
    "email_verified",
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
    "password_hash",
    "custom_password_hash",
    "identities",
    "created_at",
    "updated_at",
    "last_login",
    "logins_count",
    "last_password_reset",
    // Accepted and ignored, as Auth0 does for an import.
    "mfa_factors",
];

/// The bcrypt hash of a record, from `password_hash` or `custom_password_hash`.
fn password_hash(object: &Map<String, Value>) -> Result<Option<String>, RecordErrors> {
    let hash = if let Some(custom) = object_of(object, "custom_password_hash")? {
        match custom.get("algorithm").and_then(Value::as_str) {
            Some("bcrypt") => {}
            Some(other) => {
                return Err(refuse(
                    "UNSUPPORTED_ALGORITHM",
                    format!("The password hash algorithm {other} is not supported (bcrypt is)."),
                    "custom_password_hash/algorithm",
                ));
            }
            None => {
                return Err(refuse(
                    "OBJECT_REQUIRED",
                    "Missing required property: algorithm",
                    "custom_password_hash/algorithm",
                ));
            }
        }
        match custom
            .get("hash")
            .and_then(|h| h.get("value"))
            .and_then(Value::as_str)
        {
            Some(value) => Some(value.to_owned()),
            None => {
                return Err(refuse(
                    "OBJECT_REQUIRED",
                    "Missing required property: value",
                    "custom_password_hash/hash/value",
                ));
            }
        }
    } else {
        string(object, "password_hash")?
    };
    match hash {
        Some(hash) if bcrypt_shaped(&hash) => Ok(Some(hash)),
        Some(_) => Err(refuse(
            "INVALID_FORMAT",
            "The password hash is not a bcrypt hash ($2a$, $2b$ or $2y$).",
            "password_hash",
        )),
        None => Ok(None),
    }
}

/// `$2a$10$` + 53 characters of bcrypt's base64.
fn bcrypt_shaped(hash: &str) -> bool {
    let bytes = hash.as_bytes();
    hash.len() == 60
        && (hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$"))
        && bytes[4].is_ascii_digit()
        && bytes[5].is_ascii_digit()
        && bytes[6] == b'$'
}

fn identity_of(
    value: &Value,
    index: usize,
    connections: &[Connection],
) -> Result<Identity, RecordErrors> {
    let path = |key: &str| format!("identities/{index}/{key}");
    let Value::Object(object) = value else {
        return Err(refuse(
            "INVALID_TYPE",
            "Expected type object",
            &format!("identities/{index}"),
        ));
    };
    let connection_name = string(object, "connection")
        .map_err(|_| refuse("INVALID_TYPE", "Expected type string", &path("connection")))?
        .ok_or_else(|| {
            refuse(
                "OBJECT_REQUIRED",
                "Missing required property: connection",
                &path("connection"),
            )
        })?;
    let connection = connections
        .iter()
        .find(|c| c.name == connection_name)
        .ok_or_else(|| {
            refuse(
                "INEXISTENT_CONNECTION",
                format!("The connection {connection_name} is not configured."),
                &path("connection"),
            )
        })?;
    let provider = match object.get("provider") {
        Some(Value::String(p)) => p.clone(),
        None | Some(Value::Null) => connection.strategy.clone(),
        Some(_) => {
            return Err(refuse(
                "INVALID_TYPE",
                "Expected type string",
                &path("provider"),
            ));
        }
    };
    let user_id = match object.get("user_id") {
        Some(Value::String(s)) if !s.is_empty() => {
            let prefix = format!("{provider}|");
            UserId::String(s.strip_prefix(&prefix).unwrap_or(s).to_owned())
        }
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
            serde_json::from_value(Value::Number(n.clone())).map_err(|_| {
                refuse(
                    "INVALID_TYPE",
                    "Expected a string or integer",
                    &path("user_id"),
                )
            })?
        }
        _ => {
            return Err(refuse(
                "OBJECT_REQUIRED",
                "Missing required property: user_id (a string or integer)",
                &path("user_id"),
            ));
        }
    };
    let profile_data = match object.get("profileData") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(_) => {
            return Err(refuse(
                "INVALID_TYPE",
                "Expected type object",
                &path("profileData"),
            ));
        }
    };
    let is_social = match object.get("isSocial") {
        Some(Value::Bool(b)) => *b,
        _ => connection.is_social(),
    };
    Ok(Identity {
        provider,
        user_id,
        connection_id: connection.id.clone(),
        connection: connection.name.clone(),
        is_social,
        profile_data,
        link_state: LinkState::default(),
    })
}

/// The user a record describes. `default_connection` is the job's (users that name no
/// identity are its users); `connections` resolve the identities' connection names.
pub fn user_of(
    record: &Value,
    default_connection: &Connection,
    connections: &[Connection],
    now: &str,
) -> Result<(UserRecord, Option<Credential>), RecordErrors> {
    let Value::Object(object) = record else {
        return Err(refuse("INVALID_TYPE", "Expected type object", ""));
    };
    let mut identities = Vec::new();
    match object.get("identities") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                identities.push(identity_of(item, index, connections)?);
            }
        }
        Some(_) => return Err(refuse("INVALID_TYPE", "Expected type array", "identities")),
    }
    let given_id = string(object, "user_id")?;
    if identities.is_empty() {
        let connection = default_connection;
        let prefix = format!("{}|", connection.strategy);
        let provider_id = match &given_id {
            Some(id) if id.is_empty() => {
                return Err(refuse(
                    "INVALID_FORMAT",
                    "user_id must not be empty",
                    "user_id",
                ));
            }
            Some(id) => id.strip_prefix(&prefix).unwrap_or(id).to_owned(),
            None if connection.is_database() => crate::domain::ids::database_user_id(),
            None => {
                return Err(refuse(
                    "OBJECT_REQUIRED",
                    format!(
                        "Missing required property: user_id (users of {} need their provider-side id)",
                        connection.name
                    ),
                    "user_id",
                ));
            }
        };
        identities.push(Identity {
            provider: connection.strategy.clone(),
            user_id: UserId::String(provider_id),
            connection_id: connection.id.clone(),
            connection: connection.name.clone(),
            is_social: connection.is_social(),
            profile_data: None,
            link_state: LinkState::default(),
        });
    }
    // The main identity carries no profileData (it is the root profile).
    identities[0].profile_data = None;
    let user_id = match given_id {
        Some(id) if id.contains('|') => id,
        _ => identities[0].key().to_user_id(),
    };
    let email = string(object, "email")?;
    if let Some(email) = &email
        && (!email.contains('@') || email.len() > 512)
    {
        return Err(refuse(
            "INVALID_FORMAT",
            "Object didn't pass validation for format email",
            "email",
        ));
    }
    let mut extra = Map::new();
    for (key, value) in object {
        if !HANDLED.contains(&key.as_str()) {
            extra.insert(key.clone(), value.clone());
        }
    }
    let profile = Profile {
        email,
        email_verified: boolean(object, "email_verified")?.unwrap_or(false),
        username: string(object, "username")?,
        phone_number: string(object, "phone_number")?,
        phone_verified: boolean(object, "phone_verified")?.unwrap_or(false),
        name: string(object, "name")?,
        given_name: string(object, "given_name")?,
        family_name: string(object, "family_name")?,
        nickname: string(object, "nickname")?,
        picture: string(object, "picture")?,
        extra,
        invented: Default::default(),
    };
    let blocked = boolean(object, "blocked")?;
    let logins_count = match object.get("logins_count") {
        None | Some(Value::Null) => 0,
        Some(value) => value.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
            refuse(
                "INVALID_TYPE",
                "Expected a non-negative integer",
                "logins_count",
            )
        })?,
    };
    let hash = password_hash(object)?;
    let main = &identities[0];
    let is_database = connections
        .iter()
        .chain(std::iter::once(default_connection))
        .any(|c| c.id == main.connection_id && c.is_database());
    if hash.is_some() && !is_database {
        return Err(refuse(
            "INVALID_FORMAT",
            "A password hash needs a database connection as the main identity.",
            "password_hash",
        ));
    }
    let credential = is_database.then(|| Credential {
        password_hash: hash.unwrap_or_default(),
        login_email: profile.email.as_deref().map(str::to_lowercase),
        login_username: profile.username.as_deref().map(str::to_lowercase),
    });
    let created_at = string(object, "created_at")?.unwrap_or_else(|| now.to_owned());
    let updated_at = string(object, "updated_at")?.unwrap_or_else(|| now.to_owned());
    let user = UserRecord {
        user_id,
        profile,
        user_metadata: object_of(object, "user_metadata")?,
        app_metadata: object_of(object, "app_metadata")?.unwrap_or_default(),
        blocked: blocked.unwrap_or(false),
        blocked_ever_set: blocked.is_some(),
        last_login: string(object, "last_login")?,
        logins_count,
        last_password_reset: string(object, "last_password_reset")?,
        created_at,
        updated_at,
        identities,
    };
    Ok((user, credential))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn connections() -> Vec<Connection> {
        vec![
            Connection {
                id: "con_db00000000000001".into(),
                name: "Username-Password-Authentication".into(),
                strategy: "auth0".into(),
            },
            Connection {
                id: "con_go00000000000001".into(),
                name: "google-oauth2".into(),
                strategy: "google-oauth2".into(),
            },
        ]
    }

    #[test]
    fn an_auth0_import_record_becomes_a_database_user_with_its_bcrypt_hash() {
        let cons = connections();
        let hash = "$2b$10$abcdefghijklmnopqrstuuJ7n0iV2m6kP3Fh8m3J9qzY0v1lX9mDe";
        let record = json!({"email": "Ada@Example.com", "email_verified": true,
            "user_id": "5f7c8ec7c33c6c004bbafe82",
            "custom_password_hash": {"algorithm": "bcrypt", "hash": {"value": hash}},
            "user_metadata": {"theme": "dark"}});
        let (user, credential) =
            user_of(&record, &cons[0], &cons, "2026-01-01T00:00:00.000Z").unwrap();
        assert_eq!(user.user_id, "auth0|5f7c8ec7c33c6c004bbafe82");
        let credential = credential.unwrap();
        assert_eq!(credential.password_hash, hash);
        assert_eq!(credential.login_email.as_deref(), Some("ada@example.com"));
        assert_eq!(user.user_metadata.unwrap()["theme"], "dark");
    }

    #[test]
    fn identities_make_a_linked_user_and_bad_ones_name_their_path() {
        let cons = connections();
        let record = json!({"user_id": "auth0|abc", "email": "a@example.com",
            "identities": [
                {"provider": "auth0", "user_id": "abc", "connection": "Username-Password-Authentication"},
                {"provider": "google-oauth2", "user_id": "109", "connection": "google-oauth2",
                 "isSocial": true, "profileData": {"email": "a@gmail.com"}}]});
        let (user, _) = user_of(&record, &cons[0], &cons, "now").unwrap();
        assert_eq!(user.identities.len(), 2);
        assert_eq!(
            user.identities[1].profile_data.as_ref().unwrap()["email"],
            "a@gmail.com"
        );
        let bad = json!({"identities": [{"provider": "x", "user_id": "1", "connection": "nope"}]});
        let errors = user_of(&bad, &cons[0], &cons, "now").unwrap_err();
        assert_eq!(errors[0]["code"], "INEXISTENT_CONNECTION");
        assert_eq!(errors[0]["path"], "identities/0/connection");
        let bad = json!({"email": 5});
        assert_eq!(
            user_of(&bad, &cons[0], &cons, "now").unwrap_err()[0]["path"],
            "email"
        );
        let bad = json!({"password_hash": "plain"});
        assert_eq!(
            user_of(&bad, &cons[0], &cons, "now").unwrap_err()[0]["code"],
            "INVALID_FORMAT"
        );
    }
}
