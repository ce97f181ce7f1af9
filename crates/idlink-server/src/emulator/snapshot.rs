//! The seed / snapshot format, version 1: the whole tenant as one JSON document.
//!
//! One format for both directions: `--seed FILE` and `PUT /idlink/v1/snapshot` read it,
//! `GET /idlink/v1/snapshot` and `--export-on-exit` write it. Everything is validated
//! before anything is written, and every error names its JSON path
//! (`users[3].identities[1].connection: unknown connection "x"`). Exports are sorted
//! (connections by name, clients by id, users by id, identities in their order), so
//! export → import → export is byte-identical.
//!
//! The emulator's own admin client is not part of a snapshot: it is how the emulator
//! is driven (printed at start, pinnable with `IDLINK_ADMIN_CLIENT_ID`/`_SECRET`), and
//! a replacement keeps it.

use std::collections::{BTreeSet, HashMap, HashSet};

use idlink_types::{GRANT_CLIENT_CREDENTIALS, GRANT_PASSWORD, GRANT_PASSWORD_REALM, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth::secrets;
use crate::domain::model::{
    Connection, DATABASE_STRATEGY, Identity, LinkState, Profile, UserRecord,
};
use crate::store::{ClientRecord, Credential, SigningKey, StoredUser, TenantRows};

/// The only format version so far.
pub const FORMAT_VERSION: u32 = 1;

/// Most users a snapshot may hold (a bound on what one request can make the server do).
pub const MAX_USERS: usize = 200_000;
/// Most identities one user may hold.
pub const MAX_IDENTITIES_PER_USER: usize = 100;

fn version_one() -> u32 {
    FORMAT_VERSION
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A whole tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    #[serde(default = "version_one")]
    pub version: u32,
    #[serde(default)]
    pub connections: Vec<SnapConnection>,
    #[serde(default)]
    pub clients: Vec<SnapClient>,
    #[serde(default)]
    pub users: Vec<SnapUser>,
    /// Only when asked for (`?include_keys=true`); when given on import they replace
    /// every signing key (and a seed with a key starts without generating one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_keys: Option<Vec<SnapKey>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapConnection {
    /// `con_` + 16 alphanumerics; generated when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// `auth0` for a database connection, else the provider (`google-oauth2`, …).
    pub strategy: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapClient {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The secret in plain text (hashed on import, never exported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The secret as stored (argon2id PHC string): what exports carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_hash: Option<String>,
    #[serde(default)]
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapUser {
    /// Defaults to the main identity's `{provider}|{user_id}`, which it must equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub email_verified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub phone_verified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// Other root attributes (e.g. `locale`), kept through link and unlink.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub other_attributes: Map<String, Value>,
    /// The named attributes idlink made up (shown, but left out of `profileData`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub invented_attributes: BTreeSet<String>,
    /// Absent (never set) and `{}` differ, as on Auth0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub app_metadata: Map<String, Value>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub blocked: bool,
    /// Whether `blocked` was ever set (from then on it is shown, `false` included).
    #[serde(default, skip_serializing_if = "is_false")]
    pub blocked_ever_set: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub logins_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_password_reset: Option<String>,
    /// ISO-8601; the import time when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Main identity first; more than one: the user is created already linked.
    pub identities: Vec<SnapIdentity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapIdentity {
    /// The connection's name.
    pub connection: String,
    /// Defaults to the connection's strategy, which it must equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The provider-side id (string or integer), without the `provider|` prefix.
    pub user_id: UserId,
    /// A linked identity's profile (what its user's root attributes were); never on the
    /// main identity, whose profile is the user's.
    #[serde(
        default,
        rename = "profileData",
        skip_serializing_if = "Option::is_none"
    )]
    pub profile_data: Option<Map<String, Value>>,
    /// Database connections: a password in plain text (hashed on import).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Database connections: the password as stored (argon2id PHC string or bcrypt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Database connections: Auth0's bulk-import form of a foreign hash; bcrypt only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_password_hash: Option<CustomPasswordHash>,
    /// A linked identity's hidden state (its user was blocked when linked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_state: Option<LinkState>,
}

/// `{"algorithm": "bcrypt", "hash": {"value": "$2b$10$…"}}`, as Auth0's user imports
/// take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomPasswordHash {
    pub algorithm: String,
    pub hash: CustomHashValue,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomHashValue {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapKey {
    pub kid: String,
    /// PKCS#8 PEM of the RSA private key.
    pub private_key_pem: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; absent on the signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<i64>,
}

/// A snapshot that cannot be used: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotError {
    /// The JSON path, e.g. `users[3].identities[1].connection`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for SnapshotError {}

fn fail<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, SnapshotError> {
    Err(SnapshotError {
        path: path.into(),
        message: message.into(),
    })
}

impl Snapshot {
    /// Parses a document; type errors name their path.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(de).map_err(|err| {
            let path = err.path().to_string();
            let message = err.into_inner().to_string();
            SnapshotError {
                path: if path == "." { "$".into() } else { path },
                message,
            }
        })
    }

    /// The document: pretty JSON with a final newline, deterministic.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The snapshot of stored rows, sorted; without `admin_client` (the emulator's own)
    /// and, unless `include_keys`, without the signing keys.
    pub fn from_rows(rows: &TenantRows, admin_client: Option<&str>, include_keys: bool) -> Self {
        let mut connections: Vec<SnapConnection> = rows
            .connections
            .iter()
            .map(|c| SnapConnection {
                id: Some(c.id.clone()),
                name: c.name.clone(),
                strategy: c.strategy.clone(),
            })
            .collect();
        connections.sort_by(|a, b| a.name.cmp(&b.name));
        let mut clients: Vec<SnapClient> = rows
            .clients
            .iter()
            .filter(|c| Some(c.client_id.as_str()) != admin_client)
            .map(|c| SnapClient {
                client_id: c.client_id.clone(),
                name: Some(c.name.clone()),
                client_secret: None,
                client_secret_hash: c.secret_hash.clone(),
                grant_types: c.grant_types.clone(),
                scopes: c.scopes.clone(),
            })
            .collect();
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        let mut users: Vec<SnapUser> = rows.users.iter().map(snap_user).collect();
        users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        let signing_keys = include_keys.then(|| {
            let mut keys: Vec<SnapKey> = rows
                .signing_keys
                .iter()
                .map(|k| SnapKey {
                    kid: k.kid.clone(),
                    private_key_pem: k.private_key_pem.clone(),
                    created_at: k.created_at,
                    retired_at: k.retired_at,
                })
                .collect();
            keys.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
            keys
        });
        Self {
            version: FORMAT_VERSION,
            connections,
            clients,
            users,
            signing_keys,
        }
    }
}

fn snap_user(stored: &StoredUser) -> SnapUser {
    let user = &stored.user;
    let p = &user.profile;
    SnapUser {
        user_id: Some(user.user_id.clone()),
        email: p.email.clone(),
        email_verified: p.email_verified,
        username: p.username.clone(),
        phone_number: p.phone_number.clone(),
        phone_verified: p.phone_verified,
        name: p.name.clone(),
        given_name: p.given_name.clone(),
        family_name: p.family_name.clone(),
        nickname: p.nickname.clone(),
        picture: p.picture.clone(),
        other_attributes: p.extra.clone(),
        invented_attributes: p.invented.clone(),
        user_metadata: user.user_metadata.clone(),
        app_metadata: user.app_metadata.clone(),
        blocked: user.blocked,
        blocked_ever_set: user.blocked_ever_set,
        last_login: user.last_login.clone(),
        logins_count: user.logins_count,
        last_password_reset: user.last_password_reset.clone(),
        created_at: Some(user.created_at.clone()),
        updated_at: Some(user.updated_at.clone()),
        identities: user
            .identities
            .iter()
            .enumerate()
            .map(|(index, identity)| SnapIdentity {
                connection: identity.connection.clone(),
                provider: Some(identity.provider.clone()),
                user_id: identity.user_id.clone(),
                profile_data: identity.profile_data.clone(),
                password: None,
                password_hash: stored
                    .credentials
                    .get(index)
                    .and_then(Option::as_ref)
                    .map(|c| c.password_hash.clone()),
                custom_password_hash: None,
                link_state: (!identity.link_state.is_default())
                    .then(|| identity.link_state.clone()),
            })
            .collect(),
    }
}

/// A connection a snapshot may refer to: stored, configured, or in the snapshot itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownConnection {
    pub name: String,
    pub strategy: String,
    /// Known once stored.
    pub id: Option<String>,
}

impl From<&Connection> for KnownConnection {
    fn from(c: &Connection) -> Self {
        Self {
            name: c.name.clone(),
            strategy: c.strategy.clone(),
            id: Some(c.id.clone()),
        }
    }
}

/// What a snapshot is checked against.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Connections that exist or will (defaults, config), by name.
    pub connections: Vec<KnownConnection>,
    /// Whether the snapshot may add connections (a seed at start-up may; a running
    /// server's connections are fixed).
    pub may_add_connections: bool,
    /// The emulator's admin client, which a snapshot must not name.
    pub admin_client: Option<String>,
}

fn valid_connection_id(id: &str) -> bool {
    id.strip_prefix("con_")
        .is_some_and(|rest| rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn valid_timestamp(value: &str) -> bool {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).is_ok()
}

const KNOWN_GRANTS: [&str; 3] = [
    GRANT_CLIENT_CREDENTIALS,
    GRANT_PASSWORD,
    GRANT_PASSWORD_REALM,
];

impl Snapshot {
    /// Checks everything, writing nothing: the first problem, with its path.
    pub fn validate(&self, context: &Context) -> Result<(), SnapshotError> {
        if self.version != FORMAT_VERSION {
            return fail(
                "version",
                format!(
                    "unsupported version {} (expected {FORMAT_VERSION})",
                    self.version
                ),
            );
        }
        let connections = self.validate_connections(context)?;
        self.validate_clients(context)?;
        self.validate_keys()?;
        if self.users.len() > MAX_USERS {
            return fail("users", format!("more than {MAX_USERS} users"));
        }
        let mut user_ids: HashMap<String, usize> = HashMap::new();
        let mut identities: HashMap<(String, String), String> = HashMap::new();
        let mut logins: HashMap<(String, String), String> = HashMap::new();
        for (u, user) in self.users.iter().enumerate() {
            let at = format!("users[{u}]");
            validate_user(user, &at, &connections, &mut identities, &mut logins)?;
            let user_id =
                effective_user_id(user, |name| connections.get(name).cloned()).unwrap_or_default();
            if let Some(first) = user_ids.insert(user_id.clone(), u) {
                return fail(
                    format!("{at}.user_id"),
                    format!("user {user_id:?} is already users[{first}]"),
                );
            }
        }
        Ok(())
    }

    fn validate_connections(
        &self,
        context: &Context,
    ) -> Result<HashMap<String, String>, SnapshotError> {
        let mut by_name: HashMap<String, String> = context
            .connections
            .iter()
            .map(|c| (c.name.clone(), c.strategy.clone()))
            .collect();
        let mut seen_names = HashSet::new();
        let mut seen_ids = HashSet::new();
        for (i, connection) in self.connections.iter().enumerate() {
            let at = format!("connections[{i}]");
            if connection.name.trim().is_empty() {
                return fail(format!("{at}.name"), "must not be empty");
            }
            if connection.strategy.trim().is_empty() {
                return fail(format!("{at}.strategy"), "must not be empty");
            }
            if !seen_names.insert(connection.name.as_str()) {
                return fail(
                    format!("{at}.name"),
                    format!("connection {:?} is listed twice", connection.name),
                );
            }
            if let Some(id) = &connection.id {
                if !valid_connection_id(id) {
                    return fail(
                        format!("{at}.id"),
                        format!("{id:?} is not a connection id (con_ and 16 letters or digits)"),
                    );
                }
                if !seen_ids.insert(id.as_str()) {
                    return fail(format!("{at}.id"), format!("id {id:?} is listed twice"));
                }
            }
            match context
                .connections
                .iter()
                .find(|c| c.name == connection.name)
            {
                Some(known) if known.strategy != connection.strategy => {
                    return fail(
                        format!("{at}.strategy"),
                        format!(
                            "connection {:?} exists with strategy {:?}",
                            connection.name, known.strategy
                        ),
                    );
                }
                Some(known) => {
                    if let (Some(id), Some(known_id)) = (&connection.id, &known.id) {
                        if id != known_id {
                            return fail(
                                format!("{at}.id"),
                                format!(
                                    "connection {:?} exists with id {known_id:?}",
                                    connection.name
                                ),
                            );
                        }
                    }
                }
                None if !context.may_add_connections => {
                    return fail(
                        format!("{at}.name"),
                        format!(
                            "unknown connection {:?}: a running emulator's connections are \
                             fixed; add it to the --seed file or the config file",
                            connection.name
                        ),
                    );
                }
                None => {
                    if let Some(id) = &connection.id {
                        if context
                            .connections
                            .iter()
                            .any(|c| c.id.as_ref() == Some(id))
                        {
                            return fail(
                                format!("{at}.id"),
                                format!("id {id:?} belongs to another connection"),
                            );
                        }
                    }
                    by_name.insert(connection.name.clone(), connection.strategy.clone());
                }
            }
        }
        Ok(by_name)
    }

    fn validate_clients(&self, context: &Context) -> Result<(), SnapshotError> {
        let mut seen = HashSet::new();
        for (i, client) in self.clients.iter().enumerate() {
            let at = format!("clients[{i}]");
            if client.client_id.trim().is_empty() || client.client_id.len() > 255 {
                return fail(format!("{at}.client_id"), "must be 1 to 255 characters");
            }
            if context.admin_client.as_deref() == Some(client.client_id.as_str()) {
                return fail(
                    format!("{at}.client_id"),
                    format!(
                        "{:?} is the emulator's admin client, which a snapshot cannot change",
                        client.client_id
                    ),
                );
            }
            if !seen.insert(client.client_id.as_str()) {
                return fail(
                    format!("{at}.client_id"),
                    format!("client {:?} is listed twice", client.client_id),
                );
            }
            match (&client.client_secret, &client.client_secret_hash) {
                (Some(_), Some(_)) => {
                    return fail(
                        format!("{at}.client_secret_hash"),
                        "give client_secret or client_secret_hash, not both",
                    );
                }
                (Some(secret), None) if secret.is_empty() => {
                    return fail(format!("{at}.client_secret"), "must not be empty");
                }
                (None, Some(hash)) if !secrets::is_verifiable_hash(hash) => {
                    return fail(
                        format!("{at}.client_secret_hash"),
                        "not an argon2 PHC string idlink can verify",
                    );
                }
                _ => {}
            }
            for (g, grant) in client.grant_types.iter().enumerate() {
                if !KNOWN_GRANTS.contains(&grant.as_str()) {
                    return fail(
                        format!("{at}.grant_types[{g}]"),
                        format!(
                            "unknown grant type {grant:?} (expected one of {})",
                            KNOWN_GRANTS.join(", ")
                        ),
                    );
                }
            }
            for (s, scope) in client.scopes.iter().enumerate() {
                if scope.is_empty() || scope.contains(char::is_whitespace) {
                    return fail(format!("{at}.scopes[{s}]"), "a scope is one word");
                }
            }
        }
        Ok(())
    }

    fn validate_keys(&self) -> Result<(), SnapshotError> {
        let Some(keys) = &self.signing_keys else {
            return Ok(());
        };
        let mut seen = HashSet::new();
        for (i, key) in keys.iter().enumerate() {
            let at = format!("signing_keys[{i}]");
            if key.kid.is_empty() || !seen.insert(key.kid.as_str()) {
                return fail(format!("{at}.kid"), "must be present and unique");
            }
            if let Err(err) = crate::auth::keys::signing_key_from_pem(
                &key.kid,
                &key.private_key_pem,
                key.created_at,
                key.retired_at,
            ) {
                return fail(format!("{at}.private_key_pem"), err.to_string());
            }
        }
        match keys.iter().filter(|k| k.retired_at.is_none()).count() {
            1 => Ok(()),
            n => fail(
                "signing_keys",
                format!("exactly one key must be unretired (the signing key); {n} are"),
            ),
        }
    }

    /// The rows to write, once [`validate`](Self::validate) passed and the connections
    /// are stored (`connections`). Plain passwords and secrets are hashed here.
    pub async fn to_write(
        &self,
        connections: &[Connection],
        now: &str,
    ) -> crate::error::Result<(Vec<StoredUser>, Vec<ClientRecord>, Option<Vec<SigningKey>>)> {
        let by_name: HashMap<&str, &Connection> =
            connections.iter().map(|c| (c.name.as_str(), c)).collect();
        let mut users = Vec::with_capacity(self.users.len());
        for user in &self.users {
            users.push(stored_user(user, &by_name, now).await?);
        }
        let mut clients = Vec::with_capacity(self.clients.len());
        for client in &self.clients {
            let secret_hash = match (&client.client_secret, &client.client_secret_hash) {
                (Some(secret), _) => Some(secrets::hash(secret.clone()).await?),
                (None, hash) => hash.clone(),
            };
            clients.push(ClientRecord {
                client_id: client.client_id.clone(),
                name: client
                    .name
                    .clone()
                    .unwrap_or_else(|| client.client_id.clone()),
                secret_hash,
                grant_types: client.grant_types.clone(),
                scopes: client.scopes.clone(),
            });
        }
        let keys = match &self.signing_keys {
            Some(keys) => Some(
                keys.iter()
                    .map(|k| {
                        crate::auth::keys::signing_key_from_pem(
                            &k.kid,
                            &k.private_key_pem,
                            k.created_at,
                            k.retired_at,
                        )
                    })
                    .collect::<crate::error::Result<Vec<_>>>()?,
            ),
            None => None,
        };
        Ok((users, clients, keys))
    }
}

/// The user id a snapshot user gets: its own, else its main identity's
/// `{provider}|{user_id}`, the provider being its connection's strategy.
fn effective_user_id(
    user: &SnapUser,
    strategy_of: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    user.user_id.clone().or_else(|| {
        let main = user.identities.first()?;
        let provider = main
            .provider
            .clone()
            .or_else(|| strategy_of(&main.connection))?;
        Some(format!("{provider}|{}", main.user_id.as_string()))
    })
}

/// The login names a database identity signs in with: the root profile's for the main
/// identity, its `profileData`'s for a linked one.
fn login_names(
    user: &SnapUser,
    identity: &SnapIdentity,
    main: bool,
) -> (Option<String>, Option<String>) {
    let lower = |s: Option<&str>| s.map(str::to_lowercase);
    if main {
        (
            lower(user.email.as_deref()),
            lower(user.username.as_deref()),
        )
    } else {
        let data = identity.profile_data.as_ref();
        let field = |key: &str| data.and_then(|d| d.get(key)).and_then(Value::as_str);
        (lower(field("email")), lower(field("username")))
    }
}

fn validate_user(
    user: &SnapUser,
    at: &str,
    connections: &HashMap<String, String>,
    identities: &mut HashMap<(String, String), String>,
    logins: &mut HashMap<(String, String), String>,
) -> Result<(), SnapshotError> {
    if user.identities.is_empty() {
        return fail(
            format!("{at}.identities"),
            "a user needs at least one identity",
        );
    }
    if user.identities.len() > MAX_IDENTITIES_PER_USER {
        return fail(
            format!("{at}.identities"),
            format!("more than {MAX_IDENTITIES_PER_USER} identities"),
        );
    }
    for (field, value) in [
        ("created_at", &user.created_at),
        ("updated_at", &user.updated_at),
        ("last_login", &user.last_login),
        ("last_password_reset", &user.last_password_reset),
    ] {
        if let Some(value) = value {
            if !valid_timestamp(value) {
                return fail(
                    format!("{at}.{field}"),
                    format!("{value:?} is not an ISO-8601 date-time"),
                );
            }
        }
    }
    if user.logins_count < 0 {
        return fail(format!("{at}.logins_count"), "must not be negative");
    }
    for (i, identity) in user.identities.iter().enumerate() {
        let here = format!("{at}.identities[{i}]");
        let Some(strategy) = connections.get(&identity.connection) else {
            return fail(
                format!("{here}.connection"),
                format!("unknown connection {:?}", identity.connection),
            );
        };
        let provider = identity
            .provider
            .clone()
            .unwrap_or_else(|| strategy.clone());
        if &provider != strategy {
            return fail(
                format!("{here}.provider"),
                format!(
                    "{provider:?} is not the provider of connection {:?} ({strategy:?})",
                    identity.connection
                ),
            );
        }
        let id = identity.user_id.as_string();
        if id.is_empty() {
            return fail(format!("{here}.user_id"), "must not be empty");
        }
        if i == 0 {
            let expected = format!("{provider}|{id}");
            if let Some(user_id) = &user.user_id {
                if *user_id != expected {
                    return fail(
                        format!("{at}.user_id"),
                        format!(
                            "{user_id:?} must be its main identity's {expected:?} (provider|user_id)"
                        ),
                    );
                }
            }
            if identity.profile_data.is_some() {
                return fail(
                    format!("{here}.profileData"),
                    "the main identity has none: its profile is the user's root attributes",
                );
            }
            if identity.link_state.is_some() {
                return fail(
                    format!("{here}.link_state"),
                    "only linked identities have one",
                );
            }
        }
        if let Some(previous) = identities.insert((provider.clone(), id.clone()), here.clone()) {
            return fail(
                here,
                format!(
                    "identity {provider}|{id} is already {previous} (an identity belongs to one user)"
                ),
            );
        }
        let is_database = strategy == DATABASE_STRATEGY;
        let given = [
            identity.password.is_some(),
            identity.password_hash.is_some(),
            identity.custom_password_hash.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return fail(
                format!("{here}.password"),
                "give one of password, password_hash and custom_password_hash",
            );
        }
        if given.contains(&true) && !is_database {
            return fail(
                format!("{here}.password"),
                format!(
                    "connection {:?} is not a database connection",
                    identity.connection
                ),
            );
        }
        if let Some(password) = &identity.password {
            if password.is_empty() || password.len() > 1024 {
                return fail(format!("{here}.password"), "must be 1 to 1024 characters");
            }
        }
        if let Some(hash) = &identity.password_hash {
            if !secrets::is_verifiable_hash(hash) {
                return fail(
                    format!("{here}.password_hash"),
                    "not an argon2 PHC string or bcrypt hash idlink can verify",
                );
            }
        }
        if let Some(custom) = &identity.custom_password_hash {
            if custom.algorithm != "bcrypt" {
                return fail(
                    format!("{here}.custom_password_hash.algorithm"),
                    format!(
                        "unsupported algorithm {:?} (idlink takes bcrypt)",
                        custom.algorithm
                    ),
                );
            }
            if custom.hash.encoding.as_deref().is_some_and(|e| e != "utf8") {
                return fail(
                    format!("{here}.custom_password_hash.hash.encoding"),
                    "bcrypt hashes are utf8",
                );
            }
            match secrets::bcrypt_cost(&custom.hash.value) {
                None => {
                    return fail(
                        format!("{here}.custom_password_hash.hash.value"),
                        "not a bcrypt hash ($2a$, $2b$ or $2y$, cost, 53 characters)",
                    );
                }
                Some(cost) if cost > secrets::MAX_BCRYPT_COST => {
                    return fail(
                        format!("{here}.custom_password_hash.hash.value"),
                        format!("cost {cost} is above {}", secrets::MAX_BCRYPT_COST),
                    );
                }
                Some(_) => {}
            }
        }
        if is_database && given.contains(&true) {
            let (email, username) = login_names(user, identity, i == 0);
            for (kind, name) in [("email", email), ("username", username)] {
                let Some(name) = name else { continue };
                let key = (format!("{}:{kind}", identity.connection), name.clone());
                if let Some(previous) = logins.insert(key, here.clone()) {
                    return fail(
                        here,
                        format!(
                            "{kind} {name:?} already signs in to {:?} as {previous}",
                            identity.connection
                        ),
                    );
                }
            }
        }
    }
    Ok(())
}

async fn stored_user(
    user: &SnapUser,
    connections: &HashMap<&str, &Connection>,
    now: &str,
) -> crate::error::Result<StoredUser> {
    let missing =
        |name: &str| crate::error::Error::internal(format!("connection {name:?} is not stored"));
    let mut identities = Vec::with_capacity(user.identities.len());
    let mut credentials = Vec::with_capacity(user.identities.len());
    for (i, identity) in user.identities.iter().enumerate() {
        let connection = connections
            .get(identity.connection.as_str())
            .ok_or_else(|| missing(&identity.connection))?;
        let password_hash = match (
            &identity.password,
            &identity.password_hash,
            &identity.custom_password_hash,
        ) {
            (Some(plain), _, _) => Some(secrets::hash(plain.clone()).await?),
            (None, Some(hash), _) => Some(hash.clone()),
            (None, None, Some(custom)) => Some(custom.hash.value.clone()),
            (None, None, None) => None,
        };
        let (login_email, login_username) = login_names(user, identity, i == 0);
        credentials.push(password_hash.map(|password_hash| Credential {
            password_hash,
            login_email,
            login_username,
        }));
        identities.push(Identity {
            provider: connection.strategy.clone(),
            user_id: identity.user_id.clone(),
            connection_id: connection.id.clone(),
            connection: connection.name.clone(),
            is_social: connection.is_social(),
            profile_data: if i == 0 {
                None
            } else {
                Some(identity.profile_data.clone().unwrap_or_default())
            },
            link_state: identity.link_state.clone().unwrap_or_default(),
        });
    }
    let created_at = user.created_at.clone().unwrap_or_else(|| now.to_owned());
    Ok(StoredUser {
        user: UserRecord {
            user_id: effective_user_id(user, |name| {
                connections.get(name).map(|c| c.strategy.clone())
            })
            .unwrap_or_default(),
            profile: Profile {
                email: user.email.clone(),
                email_verified: user.email_verified,
                username: user.username.clone(),
                phone_number: user.phone_number.clone(),
                phone_verified: user.phone_verified,
                name: user.name.clone(),
                given_name: user.given_name.clone(),
                family_name: user.family_name.clone(),
                nickname: user.nickname.clone(),
                picture: user.picture.clone(),
                extra: user.other_attributes.clone(),
                invented: user.invented_attributes.clone(),
            },
            user_metadata: user.user_metadata.clone(),
            app_metadata: user.app_metadata.clone(),
            blocked: user.blocked,
            blocked_ever_set: user.blocked_ever_set || user.blocked,
            last_login: user.last_login.clone(),
            logins_count: user.logins_count,
            last_password_reset: user.last_password_reset.clone(),
            updated_at: user
                .updated_at
                .clone()
                .unwrap_or_else(|| created_at.clone()),
            created_at,
            identities,
        },
        credentials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context {
        Context {
            connections: vec![
                KnownConnection {
                    name: "Username-Password-Authentication".into(),
                    strategy: "auth0".into(),
                    id: Some("con_AAAAAAAAAAAAAAAA".into()),
                },
                KnownConnection {
                    name: "github".into(),
                    strategy: "github".into(),
                    id: Some("con_BBBBBBBBBBBBBBBB".into()),
                },
            ],
            may_add_connections: false,
            admin_client: Some("admin".into()),
        }
    }

    fn parse(json: &str) -> Snapshot {
        Snapshot::from_json(json.as_bytes()).unwrap()
    }

    fn error_of(json: &str) -> String {
        parse(json).validate(&context()).unwrap_err().to_string()
    }

    #[test]
    fn linked_users_validate() {
        let snapshot = parse(
            r#"{"users": [{"email": "a@x.io", "identities": [
                {"connection": "Username-Password-Authentication", "user_id": "a", "password": "pw"},
                {"connection": "github", "user_id": 42, "profileData": {"email": "a@gh.io"}}
            ]}]}"#,
        );
        snapshot.validate(&context()).unwrap();
        let strategy =
            |name: &str| (name == "Username-Password-Authentication").then(|| "auth0".to_owned());
        assert_eq!(
            effective_user_id(&snapshot.users[0], strategy).unwrap(),
            "auth0|a"
        );
    }

    #[test]
    fn errors_name_the_json_path() {
        assert_eq!(
            error_of(
                r#"{"users": [{"identities": [{"connection": "github", "user_id": "1"}]},
                {"identities": [{"connection": "github", "user_id": "2"}, {"connection": "x", "user_id": "3"}]}]}"#
            ),
            r#"users[1].identities[1].connection: unknown connection "x""#
        );
        assert!(
            error_of(
                r#"{"users": [{"identities": [{"connection": "github", "user_id": "1"}]},
                {"identities": [{"connection": "github", "user_id": "2"}, {"connection": "github", "user_id": 1, "profileData": {}}]}]}"#
            )
            .starts_with("users[1].identities[1]: identity github|1 is already users[0].identities[0]")
        );
        assert!(
            error_of(
                r#"{"users": [{"identities": [{"connection": "Username-Password-Authentication", "user_id": "1",
                "custom_password_hash": {"algorithm": "bcrypt", "hash": {"value": "$2b$10$nope"}}}]}]}"#
            )
            .starts_with("users[0].identities[0].custom_password_hash.hash.value: not a bcrypt hash")
        );
        assert!(
            error_of(r#"{"users": [{"identities": [{"connection": "github", "user_id": "1", "password": "x"}]}]}"#)
                .contains("is not a database connection")
        );
        assert!(
            error_of(r#"{"clients": [{"client_id": "admin"}]}"#)
                .starts_with("clients[0].client_id")
        );
        assert!(
            error_of(r#"{"connections": [{"name": "corp", "strategy": "auth0"}]}"#)
                .starts_with("connections[0].name: unknown connection \"corp\"")
        );
        let err = Snapshot::from_json(br#"{"users": [{"identities": [{"connection": 5}]}]}"#)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("users[0].identities[0].connection: invalid type"),
            "{err}"
        );
        let err = Snapshot::from_json(br#"{"usres": []}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn duplicate_logins_are_refused() {
        let err = error_of(
            r#"{"users": [
                {"email": "A@x.io", "identities": [{"connection": "Username-Password-Authentication", "user_id": "a", "password_hash": "$2b$04$abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"}]},
                {"email": "a@X.io", "identities": [{"connection": "Username-Password-Authentication", "user_id": "b", "password": "pw"}]}
            ]}"#,
        );
        assert!(err.contains(r#"email "a@x.io" already signs in"#), "{err}");
    }
}
