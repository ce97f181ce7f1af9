//! The reads both backends share, written once: the SQL (`?` placeholders), the row
//! shapes of [`super::rows`] and their assembly. A backend only runs a statement on its
//! read connection ([`Fetch`]) and ends the read ([`Read`]).
//!
//! A backend's rows reach the shapes through [`SharedRow`] (PostgreSQL's sqlx rows,
//! SQLite's `rusqlite` rows copied out of the statement); the writes run on
//! [`super::core::Tx`].

use std::future::Future;

use super::core::Param;
use super::filters::{push_log_filter, push_log_page, push_user_page, push_user_search};
use super::grants::{self, StoredSession};
use super::rows::{
    self, ClientRow, ConnectionRow, CredentialRow, IDENTITY_SELECT, IDENTITY_SELECT_ALL,
    IdentityRow, LOG_SELECT, LogRow, SharedRow, SigningKeyRow, UserRow,
};
use super::search_sql::Dialect;
use super::{ClientRecord, Login, SigningKey, TenantRows};
use crate::domain::audit::{LogEvent, LogQuery};
use crate::domain::idempotency::StoredKey;
use crate::domain::model::{Connection, IdentityKey, UserRecord};
use crate::domain::users::UserQuery;
use crate::error::Result;

/// SQL text with `?` placeholders, and their values in order.
#[derive(Debug, Clone, Default)]
pub struct Sql {
    pub text: String,
    pub params: Vec<Param>,
}

impl Sql {
    /// `text` (with `?` placeholders) bound to `params`.
    pub fn with(text: &str, params: impl IntoIterator<Item = Param>) -> Self {
        let mut sql = Self::default();
        sql.push_with(text, params);
        sql
    }

    /// Appends SQL text without placeholders.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends `text` (with `?` placeholders) and the values they take.
    pub fn push_with(&mut self, text: &str, params: impl IntoIterator<Item = Param>) -> &mut Self {
        self.text.push_str(text);
        self.params.extend(params);
        self
    }

    /// Appends one placeholder and its value.
    pub fn bind(&mut self, value: impl Into<Param>) -> &mut Self {
        self.text.push('?');
        self.params.push(value.into());
        self
    }
}

/// A connection the shared reads run their statements on.
pub trait Fetch: Send {
    /// The backend's row.
    type Row: SharedRow + Send;
    /// How the backend spells what the user search needs.
    const DIALECT: Dialect;

    /// Runs `sql` (its `?` placeholders spelt as the backend wants them); every row.
    fn fetch(&mut self, sql: Sql) -> impl Future<Output = Result<Vec<Self::Row>>> + Send;
}

/// One read of a backend: a pooled connection, or a read transaction when the read
/// needs one snapshot (see [`super::shared::Isolation`]).
pub trait Read: Fetch {
    /// Ends the read (commits its transaction, if it has one).
    fn finish(self) -> impl Future<Output = Result<()>> + Send;
}

/// The first row, if any.
async fn fetch_one<C: Fetch>(conn: &mut C, sql: Sql) -> Result<Option<C::Row>> {
    Ok(conn.fetch(sql).await?.into_iter().next())
}

/// `users` joined with its identities: one statement loads a user (one snapshot, so a
/// concurrent link cannot show a half-moved picture).
static LOAD_USER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT u.*, {IDENTITY_SELECT} FROM users u \
         LEFT JOIN identities i ON i.owner_user_id = u.user_id \
         WHERE u.user_id = ? ORDER BY i.position"
    )
});

/// The statement of [`LOAD_USER`], shared with SQLite's writer (which reads the same
/// rows with `rusqlite`).
pub fn load_user_sql() -> &'static str {
    &LOAD_USER
}

/// One user with its identities.
pub async fn user<C: Fetch>(conn: &mut C, user_id: &str) -> Result<Option<UserRecord>> {
    let rows = conn.fetch(Sql::with(&LOAD_USER, [user_id.into()])).await?;
    Ok(users_of_joined_rows(&rows)?.pop())
}

/// The users of rows of `users` joined with `identities` (`u.*` beside
/// [`IDENTITY_SELECT`], ordered by user, then position): a row without a user adds
/// nothing, and a user without identities comes back as one row of NULL identity
/// columns.
pub fn users_of_joined_rows<R: SharedRow>(rows: &[R]) -> Result<Vec<UserRecord>> {
    let mut users: Vec<(UserRow, Vec<crate::domain::model::Identity>)> = Vec::new();
    for row in rows {
        let Some(user_id) = row.opt_text("user_id")? else {
            continue;
        };
        if users.last().is_none_or(|(user, _)| user.user_id != user_id) {
            users.push((UserRow::read(row)?, Vec::new()));
        }
        if row.opt_text("owner_user_id")?.is_some() {
            let identity = IdentityRow::read(row)?.into_identity()?;
            if let Some((_, identities)) = users.last_mut() {
                identities.push(identity);
            }
        }
    }
    users
        .into_iter()
        .map(|(user, identities)| user.into_user(identities))
        .collect()
}

/// A page of users and the total matching, from one snapshot.
pub async fn list_users<C: Fetch>(
    conn: &mut C,
    query: &UserQuery,
) -> Result<(Vec<UserRecord>, u64)> {
    let mut count = Sql::with("SELECT COUNT(*) FROM users u", []);
    push_user_search(&mut count, query, C::DIALECT);
    let total = match fetch_one(conn, count).await? {
        Some(row) => row.int(0)?,
        None => 0,
    };
    let mut select = Sql::with("SELECT u.* FROM users u", []);
    push_user_search(&mut select, query, C::DIALECT);
    push_user_page(&mut select, query);
    let users = conn
        .fetch(select)
        .await?
        .iter()
        .map(UserRow::read)
        .collect::<Result<Vec<_>>>()?;
    if users.is_empty() {
        return Ok((Vec::new(), total.unsigned_abs()));
    }
    let mut ids = Sql::with(
        &format!("SELECT {IDENTITY_SELECT} FROM identities WHERE owner_user_id IN ("),
        [],
    );
    for (index, user) in users.iter().enumerate() {
        if index > 0 {
            ids.push(", ");
        }
        ids.bind(&user.user_id);
    }
    ids.push(") ORDER BY owner_user_id, position");
    let identities = conn
        .fetch(ids)
        .await?
        .iter()
        .map(IdentityRow::read)
        .collect::<Result<Vec<_>>>()?;
    Ok((rows::assemble(users, identities)?, total.unsigned_abs()))
}

/// A page of the log and the total matching.
pub async fn list_logs<C: Fetch>(conn: &mut C, query: &LogQuery) -> Result<(Vec<LogEvent>, u64)> {
    let mut count = Sql::with("SELECT COUNT(*) FROM logs", []);
    push_log_filter(&mut count, query);
    let total = match fetch_one(conn, count).await? {
        Some(row) => row.int(0)?,
        None => 0,
    };
    let mut select = Sql::with(&format!("SELECT {LOG_SELECT} FROM logs"), []);
    push_log_filter(&mut select, query);
    push_log_page(&mut select, query);
    let events = conn
        .fetch(select)
        .await?
        .iter()
        .map(|row| LogRow::read(row)?.into_event())
        .collect::<Result<_>>()?;
    Ok((events, total.unsigned_abs()))
}

/// A tenant-wide setting.
pub async fn setting<C: Fetch>(conn: &mut C, key: &str) -> Result<Option<String>> {
    let sql = Sql::with("SELECT value FROM settings WHERE key = ?", [key.into()]);
    fetch_one(conn, sql)
        .await?
        .map(|row| row.text(0))
        .transpose()
}

const SIGNING_KEYS: &str = "SELECT * FROM signing_keys ORDER BY created_at DESC, kid";

/// Every signing key, newest first.
pub async fn signing_keys<C: Fetch>(conn: &mut C) -> Result<Vec<SigningKey>> {
    let rows = conn.fetch(Sql::with(SIGNING_KEYS, [])).await?;
    rows.iter()
        .map(|row| SigningKeyRow::read(row).map(SigningKey::from))
        .collect::<Result<_>>()
}

/// Every connection, oldest first.
pub async fn connections<C: Fetch>(conn: &mut C) -> Result<Vec<Connection>> {
    let sql = Sql::with(
        "SELECT id, name, strategy FROM connections ORDER BY created_at, name",
        [],
    );
    let rows = conn.fetch(sql).await?;
    rows.iter()
        .map(|row| ConnectionRow::read(row).map(Connection::from))
        .collect::<Result<_>>()
}

const CLIENT_SELECT: &str = "SELECT client_id, name, secret_hash, grant_types, scopes FROM clients";

/// One client.
pub async fn client<C: Fetch>(conn: &mut C, client_id: &str) -> Result<Option<ClientRecord>> {
    let mut sql = Sql::with(CLIENT_SELECT, []);
    sql.push(" WHERE client_id = ").bind(client_id);
    let row = fetch_one(conn, sql).await?;
    Ok(row
        .map(|row| ClientRow::read(&row))
        .transpose()?
        .map(ClientRecord::from))
}

/// Every client's id, in the order they were added.
pub async fn client_ids<C: Fetch>(conn: &mut C) -> Result<Vec<String>> {
    let sql = Sql::with(
        "SELECT client_id FROM clients ORDER BY created_at, client_id",
        [],
    );
    let rows = conn.fetch(sql).await?;
    rows.iter().map(|row| row.text(0)).collect::<Result<_>>()
}

/// The database identity signing in as `login` (email or username, any case).
pub async fn find_login<C: Fetch>(
    conn: &mut C,
    connection_id: &str,
    login: &str,
) -> Result<Option<Login>> {
    let login = login.to_lowercase();
    let sql = Sql::with(
        "SELECT i.owner_user_id, i.password_hash, u.blocked, i.link_state FROM identities i \
         JOIN users u ON u.user_id = i.owner_user_id \
         WHERE i.connection_id = ? AND (i.login_email = ? OR i.login_username = ?) \
         AND i.password_hash IS NOT NULL LIMIT 1",
        [connection_id.into(), (&login).into(), (&login).into()],
    );
    let Some(row) = fetch_one(conn, sql).await? else {
        return Ok(None);
    };
    let columns = (
        row.text(0)?,
        row.text(1)?,
        row.boolean(2)?,
        row.opt_text(3)?,
    );
    Login::from_row(columns).map(Some)
}

/// The answer stored under an `Idempotency-Key`, unless it has expired.
pub async fn idempotency_key<C: Fetch>(
    conn: &mut C,
    scope: &str,
    key: &str,
    expired_at_or_before: i64,
) -> Result<Option<StoredKey>> {
    let sql = Sql::with(
        rows::IDEMPOTENCY_SELECT,
        [scope.into(), key.into(), expired_at_or_before.into()],
    );
    let Some(row) = fetch_one(conn, sql).await? else {
        return Ok(None);
    };
    rows::stored_key((row.text(0)?, row.int(1)?, row.text(2)?)).map(Some)
}

/// The unexpired session `hash`.
pub async fn session<C: Fetch>(
    conn: &mut C,
    hash: &str,
    now: i64,
) -> Result<Option<StoredSession>> {
    let sql = Sql::with(grants::FIND_SESSION, [hash.into(), now.into()]);
    let Some(row) = fetch_one(conn, sql).await? else {
        return Ok(None);
    };
    Ok(Some(StoredSession {
        hash: hash.to_owned(),
        user_id: row.text(0)?,
        auth_time: row.int(1)?,
        expires_at: row.int(2)?,
    }))
}

/// Who signs in with the identity `key`, and whether that sign-in is blocked.
pub async fn identity_login<C: Fetch>(
    conn: &mut C,
    key: &IdentityKey,
) -> Result<Option<(String, bool)>> {
    let sql = Sql::with(
        grants::IDENTITY_OWNER,
        [(&key.provider).into(), (&key.user_id).into()],
    );
    let Some(row) = fetch_one(conn, sql).await? else {
        return Ok(None);
    };
    let linked_blocked = rows::link_state_of(row.opt_text(2)?.as_deref())?.blocked;
    Ok(Some((row.text(0)?, row.boolean(1)? || linked_blocked)))
}

/// The whole tenant, from one snapshot (the caller's read transaction).
pub async fn tenant_rows<C: Fetch>(conn: &mut C) -> Result<TenantRows> {
    let users = conn
        .fetch(Sql::with("SELECT * FROM users", []))
        .await?
        .iter()
        .map(UserRow::read)
        .collect::<Result<Vec<_>>>()?;
    let identities = conn
        .fetch(Sql::with(
            &format!(
                "SELECT {IDENTITY_SELECT_ALL} FROM identities ORDER BY owner_user_id, position"
            ),
            [],
        ))
        .await?
        .iter()
        .map(|row| Ok((IdentityRow::read(row)?, CredentialRow::read(row)?)))
        .collect::<Result<Vec<_>>>()?;
    let clients = conn
        .fetch(Sql::with(CLIENT_SELECT, []))
        .await?
        .iter()
        .map(|row| ClientRow::read(row).map(ClientRecord::from))
        .collect::<Result<_>>()?;
    let connections = conn
        .fetch(Sql::with("SELECT id, name, strategy FROM connections", []))
        .await?
        .iter()
        .map(|row| ConnectionRow::read(row).map(Connection::from))
        .collect::<Result<_>>()?;
    Ok(TenantRows {
        users: rows::assemble_stored(users, identities)?,
        clients,
        connections,
        signing_keys: signing_keys(conn).await?,
    })
}
