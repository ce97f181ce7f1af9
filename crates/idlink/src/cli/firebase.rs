//! Firebase Authentication's `firebase auth:export --format=json` file, both ways: its
//! users as idlink import records (`providerUserInfo` becomes linked identities) and
//! idlink's (or Auth0's) exported users as Firebase users.
//!
//! What maps (docs/cli.md says the same): `localId` ↔ the main identity's `user_id`
//! (a database identity) or the whole `user_id` (a social primary); `email`,
//! `emailVerified`, `displayName` ↔ `name`, `photoUrl` ↔ `picture`, `disabled` ↔
//! `blocked`, `createdAt`/`lastSignedInAt` (Unix milliseconds) ↔ `created_at`/
//! `last_login`, `customAttributes` (a JSON string) ↔ `app_metadata`; each social
//! identity ↔ one `providerUserInfo` entry, the database identity ↔ the `password` one.
//! Firebase's scrypt password hashes cannot be verified by idlink and are not carried;
//! nor are `user_metadata` and identities whose provider Firebase has no name for.

use serde_json::{Map, Value, json};

/// Firebase's provider ids and the Auth0 provider (and connection) name of each: one
/// table for both directions.
const PROVIDERS: &[(&str, &str)] = &[
    ("google.com", "google-oauth2"),
    ("github.com", "github"),
    ("facebook.com", "facebook"),
    ("apple.com", "apple"),
    ("twitter.com", "twitter"),
    ("microsoft.com", "windowslive"),
    ("linkedin.com", "linkedin"),
];

/// The Auth0 provider of a Firebase provider id.
pub fn auth0_provider(provider_id: &str) -> Option<&'static str> {
    PROVIDERS
        .iter()
        .find(|(firebase, _)| *firebase == provider_id)
        .map(|(_, auth0)| *auth0)
}

/// The Firebase provider id of an Auth0 provider.
pub fn firebase_provider(provider: &str) -> Option<&'static str> {
    PROVIDERS
        .iter()
        .find(|(_, auth0)| *auth0 == provider)
        .map(|(firebase, _)| *firebase)
}

/// The provider Auth0 names database identities with.
const DATABASE_PROVIDER: &str = "auth0";

const ISO_MILLIS: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

/// Unix milliseconds (Firebase's `createdAt`, a string or a number) as Auth0's timestamp.
fn iso_from_ms(ms: &Value) -> Option<String> {
    let ms: i64 = match ms {
        Value::String(s) => s.parse().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    at.format(ISO_MILLIS).ok()
}

/// Auth0's timestamp as Firebase's: Unix milliseconds, as a string.
fn ms_from_iso(iso: &Value) -> Option<Value> {
    let at = time::OffsetDateTime::parse(
        iso.as_str()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    Some((at.unix_timestamp_nanos() / 1_000_000).to_string().into())
}

/// Copies `object[from]` (when present and not null) to `out[to]`, through `map`.
fn carry(
    object: &Value,
    out: &mut Map<String, Value>,
    pairs: &[(&str, &str)],
    map: impl Fn(&Value) -> Option<Value>,
) {
    for (from, to) in pairs {
        if let Some(value) = object.get(*from).filter(|v| !v.is_null()).and_then(&map) {
            out.insert((*to).to_owned(), value);
        }
    }
}

/// One Firebase user as an idlink import record: `providerUserInfo` becomes linked
/// identities, the password provider (or no provider at all) a database identity of
/// `connection` whose `user_id` is the `localId`.
pub fn record_of(user: &Value, connection: &str) -> Result<Value, String> {
    let local_id = user["localId"]
        .as_str()
        .ok_or("a Firebase user without localId")?;
    let mut record = Map::new();
    carry(
        user,
        &mut record,
        &[
            ("email", "email"),
            ("emailVerified", "email_verified"),
            ("displayName", "name"),
            ("photoUrl", "picture"),
            ("disabled", "blocked"),
        ],
        |v| Some(v.clone()),
    );
    if let Some(created) = user.get("createdAt").and_then(iso_from_ms) {
        record.insert("created_at".into(), created.clone().into());
        record.insert("updated_at".into(), created.into());
    }
    if let Some(last) = user.get("lastSignedInAt").and_then(iso_from_ms) {
        record.insert("last_login".into(), last.into());
    }
    if let Some(claims) = user["customAttributes"].as_str() {
        let claims: Value = serde_json::from_str(claims)
            .map_err(|e| format!("customAttributes is not JSON: {e}"))?;
        if !claims.is_object() {
            return Err("customAttributes is not a JSON object".into());
        }
        record.insert("app_metadata".into(), claims);
    }
    let providers = user["providerUserInfo"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let has_password = user.get("passwordHash").is_some()
        || providers.iter().any(|p| p["providerId"] == "password");
    let database =
        json!({"provider": DATABASE_PROVIDER, "user_id": local_id, "connection": connection});
    let mut identities = Vec::new();
    if has_password {
        identities.push(database.clone());
    }
    for info in &providers {
        let Some(provider) = info["providerId"].as_str().and_then(auth0_provider) else {
            continue;
        };
        let Some(raw_id) = info["rawId"].as_str() else {
            continue;
        };
        let mut profile = Map::new();
        carry(
            info,
            &mut profile,
            &[
                ("email", "email"),
                ("displayName", "name"),
                ("photoUrl", "picture"),
            ],
            |v| Some(v.clone()),
        );
        identities.push(
            json!({"provider": provider, "user_id": raw_id, "connection": provider,
            "isSocial": true, "profileData": profile}),
        );
    }
    if identities.is_empty() {
        identities.push(database);
    }
    let main = &identities[0];
    record.insert(
        "user_id".into(),
        format!(
            "{}|{}",
            main["provider"].as_str().unwrap_or(DATABASE_PROVIDER),
            main["user_id"].as_str().unwrap_or(local_id)
        )
        .into(),
    );
    record.insert("identities".into(), Value::Array(identities));
    Ok(Value::Object(record))
}

/// One exported user (Auth0's export shape, identities included) as a Firebase user,
/// and how many of its identities Firebase cannot hold (a second database identity, or
/// a provider Firebase has no id for).
pub fn user_of(user: &Value) -> Result<(Value, usize), String> {
    let user_id = user["user_id"].as_str().ok_or("a user without user_id")?;
    let identities = user["identities"].as_array().cloned().unwrap_or_default();
    let main = identities.first();
    let local_id = match main {
        Some(main) if main["provider"] == DATABASE_PROVIDER => {
            main["user_id"].as_str().unwrap_or(user_id)
        }
        _ => user_id,
    };
    let mut out = Map::new();
    out.insert("localId".into(), local_id.into());
    carry(
        user,
        &mut out,
        &[
            ("email", "email"),
            ("email_verified", "emailVerified"),
            ("name", "displayName"),
            ("picture", "photoUrl"),
            ("blocked", "disabled"),
        ],
        |v| Some(v.clone()),
    );
    carry(
        user,
        &mut out,
        &[
            ("created_at", "createdAt"),
            ("last_login", "lastSignedInAt"),
        ],
        ms_from_iso,
    );
    if let Some(claims) = user["app_metadata"]
        .as_object()
        .filter(|claims| !claims.is_empty())
    {
        out.insert(
            "customAttributes".into(),
            Value::Object(claims.clone()).to_string().into(),
        );
    }
    let mut providers = Vec::new();
    let mut left_out = 0;
    let mut database_seen = false;
    for identity in &identities {
        let provider = identity["provider"].as_str().unwrap_or_default();
        let raw_id = identity["user_id"].as_str().unwrap_or_default();
        if provider == DATABASE_PROVIDER {
            // Firebase has one password per user: the main database identity's.
            if database_seen || local_id != raw_id {
                left_out += 1;
                continue;
            }
            database_seen = true;
            let mut info = Map::new();
            info.insert("providerId".into(), "password".into());
            let login = user["email"].as_str().unwrap_or(raw_id);
            info.insert("rawId".into(), login.into());
            info.insert("federatedId".into(), login.into());
            carry(user, &mut info, &[("email", "email")], |v| Some(v.clone()));
            providers.push(Value::Object(info));
            continue;
        }
        let Some(provider_id) = firebase_provider(provider) else {
            left_out += 1;
            continue;
        };
        let mut info = Map::new();
        info.insert("providerId".into(), provider_id.into());
        info.insert("rawId".into(), raw_id.into());
        info.insert("federatedId".into(), raw_id.into());
        carry(
            &identity["profileData"],
            &mut info,
            &[
                ("email", "email"),
                ("name", "displayName"),
                ("picture", "photoUrl"),
            ],
            |v| Some(v.clone()),
        );
        providers.push(Value::Object(info));
    }
    out.insert("providerUserInfo".into(), Value::Array(providers));
    Ok((Value::Object(out), left_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_info_becomes_linked_identities() {
        let user = json!({"localId": "fb1", "email": "a@example.com", "emailVerified": true,
            "passwordHash": "x", "createdAt": "1700000000000",
            "customAttributes": "{\"plan\":\"pro\"}",
            "providerUserInfo": [{"providerId": "google.com", "rawId": "109", "email": "a@gmail.com",
                "displayName": "Ada"}, {"providerId": "password", "rawId": "a@example.com"}]});
        let record = record_of(&user, "Username-Password-Authentication").unwrap();
        assert_eq!(record["user_id"], "auth0|fb1");
        assert_eq!(record["identities"][1]["provider"], "google-oauth2");
        assert_eq!(record["identities"][1]["profileData"]["name"], "Ada");
        assert_eq!(record["created_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(record["app_metadata"], json!({"plan": "pro"}));
        let social_only = json!({"localId": "fb2", "providerUserInfo": [{"providerId": "github.com", "rawId": "7"}]});
        assert_eq!(
            record_of(&social_only, "db").unwrap()["user_id"],
            "github|7"
        );
        let bad_claims = json!({"localId": "fb3", "customAttributes": "[1]"});
        assert!(record_of(&bad_claims, "db").is_err());
    }

    #[test]
    fn an_exported_user_becomes_a_firebase_user_and_back() {
        let exported = json!({"user_id": "auth0|fb1", "email": "a@example.com",
            "email_verified": true, "name": "Ada", "blocked": false,
            "created_at": "2023-11-14T22:13:20.000Z", "last_login": "2023-11-15T00:00:00.500Z",
            "app_metadata": {"plan": "pro"}, "user_metadata": {"theme": "dark"},
            "identities": [
                {"provider": "auth0", "user_id": "fb1", "connection": "db", "isSocial": false},
                {"provider": "google-oauth2", "user_id": "109", "connection": "google-oauth2",
                 "isSocial": true, "profileData": {"email": "a@gmail.com", "name": "Ada L"}},
                {"provider": "oidc", "user_id": "x", "connection": "corp", "isSocial": false}]});
        let (firebase, left_out) = user_of(&exported).unwrap();
        assert_eq!(left_out, 1, "the oidc identity has no Firebase provider id");
        assert_eq!(firebase["localId"], "fb1");
        assert_eq!(firebase["createdAt"], "1700000000000");
        assert_eq!(firebase["lastSignedInAt"], "1700006400500");
        assert_eq!(firebase["displayName"], "Ada");
        assert_eq!(firebase["customAttributes"], "{\"plan\":\"pro\"}");
        assert_eq!(firebase["providerUserInfo"][0]["providerId"], "password");
        assert_eq!(firebase["providerUserInfo"][1]["providerId"], "google.com");
        assert_eq!(firebase["providerUserInfo"][1]["displayName"], "Ada L");

        let back = record_of(&firebase, "db").unwrap();
        assert_eq!(back["user_id"], "auth0|fb1");
        assert_eq!(back["identities"].as_array().unwrap().len(), 2);
        assert_eq!(back["identities"][1]["user_id"], "109");
        assert_eq!(back["created_at"], exported["created_at"]);
        assert_eq!(back["last_login"], exported["last_login"]);
        assert_eq!(back["app_metadata"], exported["app_metadata"]);
    }

    #[test]
    fn a_social_primary_keeps_its_whole_user_id_as_local_id() {
        let exported = json!({"user_id": "github|7", "identities": [
            {"provider": "github", "user_id": "7", "connection": "github", "isSocial": true}]});
        let (firebase, left_out) = user_of(&exported).unwrap();
        assert_eq!(
            (firebase["localId"].as_str(), left_out),
            (Some("github|7"), 0)
        );
        assert_eq!(record_of(&firebase, "db").unwrap()["user_id"], "github|7");
    }
}
