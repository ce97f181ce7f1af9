//! Row shapes shared by the backends and their conversion to the domain model. Both
//! schemas use the same column names and types that decode alike (TEXT, BIGINT/INTEGER,
//! BOOLEAN/INTEGER), so one mapping serves both.
//!
//! A backend's row reaches the shapes through [`SharedRow`]: a cell by index or column
//! name as text, integer or boolean. Each shape is declared once with [`row_shape!`],
//! which also writes how it reads itself from any backend's row.

use idlink_types::UserId;
use serde_json::{Map, Value};

use crate::domain::audit::{LogEvent, Outcome};
use crate::domain::model::{Connection, Identity, LinkState, Profile, UserRecord};
use crate::error::{Error, Result};

use super::{ClientRecord, SigningKey};

/// Where a cell is in a row: its index, or its column's name.
#[derive(Debug, Clone, Copy)]
pub enum At<'a> {
    Index(usize),
    Name(&'a str),
}

impl From<usize> for At<'_> {
    fn from(index: usize) -> Self {
        Self::Index(index)
    }
}

impl<'a> From<&'a str> for At<'a> {
    fn from(name: &'a str) -> Self {
        Self::Name(name)
    }
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Index(index) => write!(f, "column {index}"),
            Self::Name(name) => write!(f, "column {name:?}"),
        }
    }
}

/// A database row as the shared reads see it: the three kinds of cell the schemas hold,
/// each possibly NULL. The row shapes and [`Column`] build on these.
pub trait SharedRow {
    fn text_cell(&self, at: At<'_>) -> Result<Option<String>>;
    fn int_cell(&self, at: At<'_>) -> Result<Option<i64>>;
    fn bool_cell(&self, at: At<'_>) -> Result<Option<bool>>;

    /// The cell at `at`, as `T`.
    fn get<'a, T: Column>(&self, at: impl Into<At<'a>>) -> Result<T>
    where
        Self: Sized,
    {
        T::read(self, at.into())
    }
    fn text<'a>(&self, at: impl Into<At<'a>>) -> Result<String>
    where
        Self: Sized,
    {
        self.get(at)
    }
    fn opt_text<'a>(&self, at: impl Into<At<'a>>) -> Result<Option<String>>
    where
        Self: Sized,
    {
        self.get(at)
    }
    fn int<'a>(&self, at: impl Into<At<'a>>) -> Result<i64>
    where
        Self: Sized,
    {
        self.get(at)
    }
    fn boolean<'a>(&self, at: impl Into<At<'a>>) -> Result<bool>
    where
        Self: Sized,
    {
        self.get(at)
    }
}

/// A type a cell reads as.
pub trait Column: Sized {
    fn read<R: SharedRow + ?Sized>(row: &R, at: At<'_>) -> Result<Self>;
}

fn not_null<T>(cell: Option<T>, at: At<'_>) -> Result<T> {
    cell.ok_or_else(|| Error::internal(format!("{at} is NULL")))
}

/// `Option<$ty>` reads the cell as it is, `$ty` refuses NULL.
macro_rules! column {
    ($($ty:ty => $cell:ident),* $(,)?) => {$(
        impl Column for Option<$ty> {
            fn read<R: SharedRow + ?Sized>(row: &R, at: At<'_>) -> Result<Self> {
                row.$cell(at)
            }
        }

        impl Column for $ty {
            fn read<R: SharedRow + ?Sized>(row: &R, at: At<'_>) -> Result<Self> {
                not_null(row.$cell(at)?, at)
            }
        }
    )*};
}

column!(String => text_cell, i64 => int_cell, bool => bool_cell);

/// Declares a row shape: the struct, and `read`, which takes each field from the column
/// of its name (or of the name after `=`) of any backend's [`SharedRow`].
macro_rules! row_shape {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident: $ty:ty $(= $column:literal)? ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl $name {
            /// The shape from `row`'s columns.
            pub fn read<R: SharedRow + ?Sized>(row: &R) -> Result<Self> {
                Ok(Self {
                    $( $field: Column::read(row, At::Name(row_shape!(@column $field $($column)?)))?, )*
                })
            }
        }
    };
    (@column $field:ident $column:literal) => { $column };
    (@column $field:ident) => { stringify!($field) };
}

row_shape! {
pub struct UserRow {
    pub user_id: String,
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
    pub profile_extra: String,
    pub user_metadata: String,
    pub app_metadata: String,
    pub blocked: bool,
    pub last_login: Option<String>,
    pub logins_count: i64,
    pub created_at: String,
    pub updated_at: String,
    /// Space-separated names of the invented root attributes.
    pub invented_attributes: String,
    pub blocked_ever_set: bool,
    pub last_password_reset: Option<String>,
}
}

/// The columns of `users`, in the order [`UserColumns`] binds them.
pub const USER_COLUMNS: &str = "user_id, email, email_lower, email_verified, username, phone_number, \
     phone_verified, name, given_name, family_name, nickname, picture, profile_extra, user_metadata, \
     app_metadata, blocked, last_login, logins_count, created_at, updated_at, invented_attributes, \
     blocked_ever_set, last_password_reset";

row_shape! {
pub struct IdentityRow {
    pub owner_user_id: String,
    pub provider: String,
    pub identity_user_id: String,
    pub user_id_is_int: bool,
    pub connection_id: String,
    pub connection_name: String,
    pub is_social: bool,
    pub profile_data: Option<String>,
    pub link_state: Option<String>,
}
}

pub const IDENTITY_SELECT: &str = "owner_user_id, provider, identity_user_id, user_id_is_int, \
     connection_id, connection_name, is_social, profile_data, link_state";

/// The `identities.link_state` column of a state: NULL when there is nothing to keep.
pub fn link_state_column(state: &LinkState) -> Option<String> {
    (!state.is_default()).then(|| serde_json::to_string(state).unwrap_or_default())
}

/// A `link_state` column's state.
pub fn link_state_of(column: Option<&str>) -> Result<LinkState> {
    column.map_or_else(
        || Ok(LinkState::default()),
        |text| serde_json::from_str(text).map_err(Error::internal),
    )
}

row_shape! {
pub struct ConnectionRow {
    pub id: String,
    pub name: String,
    pub strategy: String,
}
}

row_shape! {
pub struct ClientRow {
    pub client_id: String,
    pub name: String,
    pub secret_hash: Option<String>,
    pub grant_types: String,
    pub scopes: String,
}
}

row_shape! {
pub struct SigningKeyRow {
    pub kid: String,
    pub private_key_pem: String,
    pub public_n: String,
    pub public_e: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}
}

fn json_object(text: &str) -> Result<Map<String, Value>> {
    serde_json::from_str(text).map_err(Error::internal)
}

pub fn json_text(map: &Map<String, Value>) -> String {
    Value::Object(map.clone()).to_string()
}

/// `user_metadata` as stored: JSON `null` until it is first set.
pub fn user_metadata_text(metadata: Option<&Map<String, Value>>) -> String {
    metadata.map_or_else(|| Value::Null.to_string(), json_text)
}

/// `user_metadata` is stored as JSON `null` until it is first set.
fn optional_json_object(text: &str) -> Result<Option<Map<String, Value>>> {
    serde_json::from_str(text).map_err(Error::internal)
}

impl IdentityRow {
    pub fn into_identity(self) -> Result<Identity> {
        let user_id = if self.user_id_is_int {
            UserId::Integer(self.identity_user_id.parse().map_err(Error::internal)?)
        } else {
            UserId::String(self.identity_user_id)
        };
        Ok(Identity {
            provider: self.provider,
            user_id,
            connection_id: self.connection_id,
            connection: self.connection_name,
            is_social: self.is_social,
            profile_data: self.profile_data.as_deref().map(json_object).transpose()?,
            link_state: link_state_of(self.link_state.as_deref())?,
        })
    }
}

impl UserRow {
    pub fn into_user(self, identities: Vec<Identity>) -> Result<UserRecord> {
        Ok(UserRecord {
            user_id: self.user_id,
            profile: Profile {
                email: self.email,
                email_verified: self.email_verified,
                username: self.username,
                phone_number: self.phone_number,
                phone_verified: self.phone_verified,
                name: self.name,
                given_name: self.given_name,
                family_name: self.family_name,
                nickname: self.nickname,
                picture: self.picture,
                extra: json_object(&self.profile_extra)?,
                invented: self
                    .invented_attributes
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
            },
            user_metadata: optional_json_object(&self.user_metadata)?,
            app_metadata: json_object(&self.app_metadata)?,
            blocked: self.blocked,
            blocked_ever_set: self.blocked_ever_set,
            last_login: self.last_login,
            logins_count: self.logins_count,
            last_password_reset: self.last_password_reset,
            created_at: self.created_at,
            updated_at: self.updated_at,
            identities,
        })
    }
}

/// Groups identity rows (ordered by owner, then position) under their users.
pub fn assemble(users: Vec<UserRow>, identities: Vec<IdentityRow>) -> Result<Vec<UserRecord>> {
    let mut by_owner: std::collections::HashMap<String, Vec<Identity>> = Default::default();
    for row in identities {
        by_owner
            .entry(row.owner_user_id.clone())
            .or_default()
            .push(row.into_identity()?);
    }
    users
        .into_iter()
        .map(|row| {
            let identities = by_owner.remove(&row.user_id).unwrap_or_default();
            row.into_user(identities)
        })
        .collect()
}

row_shape! {
/// The credential columns of an identity row (read beside [`IdentityRow`]).
pub struct CredentialRow {
    pub password_hash: Option<String>,
    pub login_email: Option<String>,
    pub login_username: Option<String>,
}
}

/// Every identity column, credentials included, for [`assemble_stored`].
pub const IDENTITY_SELECT_ALL: &str = "owner_user_id, provider, identity_user_id, user_id_is_int, \
     connection_id, connection_name, is_social, profile_data, link_state, password_hash, \
     login_email, login_username";

/// Groups identity rows with their credentials (ordered by owner, then position) under
/// their users.
pub fn assemble_stored(
    users: Vec<UserRow>,
    identities: Vec<(IdentityRow, CredentialRow)>,
) -> Result<Vec<super::StoredUser>> {
    let mut by_owner: std::collections::HashMap<String, Vec<_>> = Default::default();
    for (row, credential) in identities {
        let credential = credential
            .password_hash
            .map(|password_hash| super::Credential {
                password_hash,
                login_email: credential.login_email,
                login_username: credential.login_username,
            });
        by_owner
            .entry(row.owner_user_id.clone())
            .or_default()
            .push((row.into_identity()?, credential));
    }
    users
        .into_iter()
        .map(|row| {
            let (identities, credentials) = by_owner
                .remove(&row.user_id)
                .unwrap_or_default()
                .into_iter()
                .unzip();
            Ok(super::StoredUser {
                user: row.into_user(identities)?,
                credentials,
            })
        })
        .collect()
}

impl From<ConnectionRow> for Connection {
    fn from(row: ConnectionRow) -> Self {
        Connection {
            id: row.id,
            name: row.name,
            strategy: row.strategy,
        }
    }
}

impl From<ClientRow> for ClientRecord {
    fn from(row: ClientRow) -> Self {
        let words = |s: &str| s.split_whitespace().map(str::to_owned).collect();
        ClientRecord {
            client_id: row.client_id,
            name: row.name,
            secret_hash: row.secret_hash,
            grant_types: words(&row.grant_types),
            scopes: words(&row.scopes),
        }
    }
}

impl From<SigningKeyRow> for SigningKey {
    fn from(row: SigningKeyRow) -> Self {
        SigningKey {
            kid: row.kid,
            private_key_pem: row.private_key_pem,
            public_n: row.public_n,
            public_e: row.public_e,
            created_at: row.created_at,
            retired_at: row.retired_at,
        }
    }
}

/// A user's column values, ready to bind in [`USER_COLUMNS`] order.
pub struct UserColumns {
    pub email_lower: Option<String>,
    pub profile_extra: String,
    pub user_metadata: String,
    pub app_metadata: String,
    pub invented_attributes: String,
}

impl UserColumns {
    pub fn of(user: &UserRecord) -> Self {
        UserColumns {
            email_lower: user.profile.email.as_deref().map(str::to_lowercase),
            profile_extra: json_text(&user.profile.extra),
            user_metadata: user_metadata_text(user.user_metadata.as_ref()),
            app_metadata: json_text(&user.app_metadata),
            invented_attributes: user
                .profile
                .invented
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

row_shape! {
pub struct LogRow {
    pub log_id: String,
    pub date: String,
    pub kind: String = "type",
    pub description: String,
    pub client_id: Option<String>,
    pub user_id: Option<String>,
    pub secondary_user_id: Option<String>,
    pub details: String,
}
}

pub const LOG_SELECT: &str =
    "log_id, date, type, description, client_id, user_id, secondary_user_id, details";

impl LogRow {
    pub fn into_event(self) -> Result<LogEvent> {
        Ok(LogEvent {
            log_id: self.log_id,
            date: self.date,
            outcome: Outcome::from_code(&self.kind),
            description: self.description,
            client_id: self.client_id,
            user_id: self.user_id,
            secondary_user_id: self.secondary_user_id,
            details: serde_json::from_str(&self.details).map_err(Error::internal)?,
        })
    }
}

/// A stored `Idempotency-Key` that has not expired: `(fingerprint, status, body)`
/// (binds: principal, key, the expiry instant).
pub const IDEMPOTENCY_SELECT: &str = "SELECT fingerprint, status, body FROM idempotency_keys \
     WHERE principal = ? AND idem_key = ? AND created_at > ?";

/// A row of [`IDEMPOTENCY_SELECT`].
pub fn stored_key(
    (fingerprint, status, body): (String, i64, String),
) -> crate::error::Result<crate::domain::idempotency::StoredKey> {
    use crate::domain::idempotency::{StoredAnswer, StoredKey};
    let status = u16::try_from(status).map_err(crate::error::Error::internal)?;
    Ok(StoredKey {
        fingerprint,
        answer: StoredAnswer { status, body },
    })
}
