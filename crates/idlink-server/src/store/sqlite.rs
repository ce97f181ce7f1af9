//! The SQLite backend: one file, WAL mode.
//!
//! Every write runs on the writer thread ([`super::sqlite_writer`]): one `rusqlite`
//! connection, group commit, each operation in its own savepoint, synchronously — so
//! writers queue in-process instead of spinning on SQLite's busy handler, and a group
//! costs one thread hand-off however many statements it runs. The write flows are the
//! shared ones of [`super::core`], driven on that thread by a trivial executor: the
//! [`RusqliteTx`] futures complete at once, since every statement is a plain blocking
//! call. Readers have a pool of read-only connections (sqlx) and, thanks to WAL, never
//! wait for the writer.

use std::str::FromStr;
use std::time::Duration;

use crate::startup::{StartError, StartKind};
use async_trait::async_trait;
use rusqlite::{OptionalExtension as _, params};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{QueryBuilder, Sqlite};

use super::core::{self, Failure, Param};
use super::filters::{push_log_filter, push_log_page, push_user_order, push_user_search};
use super::grants::{self, Rotation, StoredCode, StoredRefresh, StoredSession};
use super::rows::{
    self, ClientRow, ConnectionRow, CredentialRow, IDENTITY_SELECT, IDENTITY_SELECT_ALL,
    IdentityRow, LOG_SELECT, LogRow, SigningKeyRow, UserRow,
};
use super::search_sql::Dialect;
use super::sqlite_writer::Writer;
use super::{
    Alongside, ClientRecord, Credential, Login, SigningKey, Store, StoreOptions, TenantRows,
    TenantWrite,
};
use crate::domain::audit::{LogEvent, LogQuery};
use crate::domain::error::Error as DomainError;
use crate::domain::idempotency::StoredKey;
use crate::domain::linking::{LinkProof, LinkingPolicy, UnlinkMode};
use crate::domain::model::{Connection, Identity, IdentityKey, UserRecord};
use crate::domain::users::{UserPatch, UserQuery};
use crate::error::{Error, Result};

/// SQLite-backed [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    reader: SqlitePool,
    writer: Writer,
}

/// Whether SQLite refused a row for a unique or primary-key constraint.
fn is_unique_violation(err: &rusqlite::Error) -> bool {
    use rusqlite::ffi;
    matches!(
        err,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Maps a unique-constraint violation to `conflict`, anything else to an internal error.
fn unique_as(conflict: impl Into<Error>) -> impl FnOnce(rusqlite::Error) -> Error {
    move |err| {
        if is_unique_violation(&err) {
            conflict.into()
        } else {
            Error::internal(err)
        }
    }
}

/// A flow's failure on SQLite, where nothing is locked (so nothing moves) and a unique
/// violation means `on_unique`.
fn settle(failure: Failure<rusqlite::Error>, on_unique: impl Into<Error>) -> Error {
    match failure {
        Failure::Rule(err) => err,
        Failure::Db(err) => unique_as(on_unique)(err),
        Failure::Moved => Error::internal("a row moved under the writer's lock"),
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and applies migrations.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Self> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| {
                Error::internal(
                    StartError::config(format!("invalid database URL {url:?}: {e}"))
                        .hint("a SQLite URL is sqlite://PATH, e.g. sqlite://idlink.db or sqlite:///var/lib/idlink/idlink.db"),
                )
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let path = connect.get_filename().to_owned();
        check_database_path(&path).map_err(Error::internal)?;
        // Before SQLite creates it with the umask's mode (0644): it holds secrets.
        crate::private_files::prepare_database_file(&path).map_err(|e| {
            Error::internal(StartError::file(
                "cannot create the database file",
                &path,
                &e,
            ))
        })?;
        // Migrations on a connection of their own, closed before the writer opens.
        let migrator = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect.clone())
            .await
            .map_err(|e| {
                Error::internal(StartError::new(
                    StartKind::Data,
                    format!("cannot open the SQLite database {}: {e}", path.display()),
                ).hint("check that the file is a SQLite database idlink created, and that its directory is writable"))
            })?;
        let migrated = sqlx::migrate!("./migrations/sqlite").run(&migrator).await;
        migrator.close().await;
        migrated.map_err(|e| {
            Error::internal(StartError::new(
                StartKind::Data,
                format!("cannot migrate the SQLite database {}: {e}", path.display()),
            ).hint("a database written by a newer idlink cannot be opened by an older one: run the newer version, or restore a backup"))
        })?;

        let conn = rusqlite::Connection::open(connect.get_filename()).map_err(Error::internal)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(Error::internal)?;
        // FULL (the default): a commit is on disk before it is acknowledged, so it
        // survives power loss; NORMAL only a process crash (see `SqliteSynchronous`).
        conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
            row.get::<_, String>(0)
        })
        .map_err(Error::internal)?;
        conn.execute_batch(&format!(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = {};",
            options.sqlite_synchronous.pragma()
        ))
        .map_err(Error::internal)?;
        conn.set_prepared_statement_cache_capacity(64);
        let writer = Writer::start(conn, options.metrics.clone())?;

        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .connect_with(connect.read_only(true))
            .await?;
        Ok(Self { reader, writer })
    }
}

/// Writes a consistent copy of the SQLite database at `url` to `dest` while servers
/// may be using it: `VACUUM INTO` reads one snapshot (WAL readers never block, the
/// writer is not stopped), and the copy is compact and self-contained (no -wal file).
/// `dest` must not exist; it is created private (0600), as it holds the keys.
pub fn backup(url: &str, dest: &std::path::Path) -> std::result::Result<(), StartError> {
    let connect = SqliteConnectOptions::from_str(url)
        .map_err(|e| StartError::config(format!("invalid database URL {url:?}: {e}")))?;
    let source = connect.get_filename().to_owned();
    if !source.exists() {
        return Err(
            StartError::config(format!("there is no database at {}", source.display()))
                .hint("point --db at the sqlite://PATH the server uses"),
        );
    }
    if dest.exists() {
        return Err(StartError::new(
            StartKind::CantCreate,
            format!("{} exists already", dest.display()),
        )
        .hint("backups never overwrite: choose a new file name"));
    }
    // Created first with mode 0600, so the copy is never readable by others.
    crate::private_files::prepare_database_file(dest)
        .map_err(|e| StartError::file("cannot create the backup file", dest, &e))?;
    let conn = rusqlite::Connection::open_with_flags(
        &source,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| {
        StartError::new(
            StartKind::Data,
            format!("cannot open {}: {e}", source.display()),
        )
    })?;
    let copied = conn
        .busy_timeout(Duration::from_secs(30))
        .and_then(|()| conn.execute("VACUUM INTO ?1", [dest.to_string_lossy()]));
    if let Err(e) = copied {
        let _ = std::fs::remove_file(dest);
        return Err(StartError::new(
            StartKind::CantCreate,
            format!(
                "cannot back {} up into {}: {e}",
                source.display(),
                dest.display()
            ),
        ));
    }
    Ok(())
}

/// Refuses a database path idlink cannot use, before SQLite reports it as an opaque
/// "unable to open database file": a missing directory is created (mode 0700, like the
/// file it will hold), and a file marked read-only is refused (idlink writes it; even
/// root would, so the mark is taken as the operator's intent).
fn check_database_path(path: &std::path::Path) -> std::result::Result<(), StartError> {
    if path.as_os_str().is_empty() || path.to_string_lossy().starts_with(':') {
        return Ok(()); // in-memory
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder.create(dir).map_err(|e| {
                StartError::file("cannot create the database directory", dir, &e).hint(format!(
                    "create {} yourself (writable by idlink), or point --db at a directory that exists",
                    dir.display()
                ))
            })?;
            tracing::info!(directory = %dir.display(), "created the database directory");
        } else if !dir.is_dir() {
            return Err(StartError::new(
                StartKind::CantCreate,
                format!(
                    "{} is not a directory, so the database {} cannot be created there",
                    dir.display(),
                    path.display()
                ),
            ));
        }
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            return Err(StartError::new(
                StartKind::CantCreate,
                format!("the database path {} is a directory", path.display()),
            )
            .hint("point --db at a file, e.g. sqlite://DIR/idlink.db"));
        }
        if meta.permissions().readonly() {
            return Err(StartError::new(
                StartKind::NoPermission,
                format!("the database file {} is read-only", path.display()),
            )
            .hint(format!(
                "idlink writes its database: make it writable (chmod u+w {}), or copy it elsewhere",
                path.display()
            )));
        }
    }
    Ok(())
}

/// `users` joined with its identities: one statement loads a user.
static LOAD_USER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT u.*, {IDENTITY_SELECT} FROM users u \
         LEFT JOIN identities i ON i.owner_user_id = u.user_id \
         WHERE u.user_id = ? ORDER BY i.position"
    )
});

/// A user from its rows of `users` joined with `identities` (see [`LOAD_USER`]).
fn user_from_rows<'r>(
    mut rows: impl Iterator<Item = &'r sqlx::sqlite::SqliteRow> + Clone,
) -> Result<Option<UserRecord>> {
    use sqlx::{FromRow, Row};
    let Some(first) = rows.clone().next() else {
        return Ok(None);
    };
    let user = UserRow::from_row(first)?;
    let mut identities = Vec::new();
    for row in rows.by_ref() {
        // A user without identities comes back as one row of NULL identity columns.
        if row.try_get::<Option<String>, _>("owner_user_id")?.is_some() {
            identities.push(IdentityRow::from_row(row)?.into_identity()?);
        }
    }
    user.into_user(identities).map(Some)
}

/// [`UserRow`] from a `rusqlite` row of [`LOAD_USER`].
fn rusqlite_user_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        user_id: row.get("user_id")?,
        email: row.get("email")?,
        email_verified: row.get("email_verified")?,
        username: row.get("username")?,
        phone_number: row.get("phone_number")?,
        phone_verified: row.get("phone_verified")?,
        name: row.get("name")?,
        given_name: row.get("given_name")?,
        family_name: row.get("family_name")?,
        nickname: row.get("nickname")?,
        picture: row.get("picture")?,
        profile_extra: row.get("profile_extra")?,
        user_metadata: row.get("user_metadata")?,
        app_metadata: row.get("app_metadata")?,
        blocked: row.get("blocked")?,
        last_login: row.get("last_login")?,
        logins_count: row.get("logins_count")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        invented_attributes: row.get("invented_attributes")?,
        blocked_ever_set: row.get("blocked_ever_set")?,
        last_password_reset: row.get("last_password_reset")?,
    })
}

/// [`IdentityRow`] from a `rusqlite` row of [`LOAD_USER`]; `None` for the NULL
/// identity columns of a user without identities.
fn rusqlite_identity_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<IdentityRow>> {
    let Some(owner_user_id) = row.get::<_, Option<String>>("owner_user_id")? else {
        return Ok(None);
    };
    Ok(Some(IdentityRow {
        owner_user_id,
        provider: row.get("provider")?,
        identity_user_id: row.get("identity_user_id")?,
        user_id_is_int: row.get("user_id_is_int")?,
        connection_id: row.get("connection_id")?,
        connection_name: row.get("connection_name")?,
        is_social: row.get("is_social")?,
        profile_data: row.get("profile_data")?,
        link_state: row.get("link_state")?,
    }))
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value};
        Ok(match self {
            Param::Text(Some(text)) => ToSqlOutput::from(text.as_str()),
            Param::Text(None) => ToSqlOutput::Owned(Value::Null),
            Param::Int(n) => ToSqlOutput::from(*n),
            Param::MaybeInt(Some(n)) => ToSqlOutput::from(*n),
            Param::MaybeInt(None) => ToSqlOutput::Owned(Value::Null),
            Param::Bool(b) => ToSqlOutput::from(*b),
            Param::Bytes(data) => ToSqlOutput::from(data.as_slice()),
        })
    }
}

/// The writer connection as the shared flows of [`super::core`] see it. Every method
/// runs its statement at once (cached prepared statements, no thread hand-off), so the
/// futures complete on their first poll. Nothing is locked: `BEGIN IMMEDIATE` holds
/// the database for the whole group.
struct RusqliteTx<'c>(&'c mut rusqlite::Connection);

impl core::Tx for RusqliteTx<'_> {
    type DbError = rusqlite::Error;
    const ROW_LOCKS: bool = false;

    async fn execute(&mut self, sql: &'static str, params: Vec<Param>) -> rusqlite::Result<()> {
        self.0
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))?;
        Ok(())
    }

    async fn execute_count(
        &mut self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> rusqlite::Result<u64> {
        let changed = self
            .0
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))?;
        Ok(changed as u64)
    }

    async fn fetch(
        &mut self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> rusqlite::Result<Vec<Vec<core::Cell>>> {
        use rusqlite::types::ValueRef;
        let mut statement = self.0.prepare_cached(sql)?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(columns);
            for index in 0..columns {
                cells.push(match row.get_ref(index)? {
                    ValueRef::Null => core::Cell::Null,
                    ValueRef::Integer(n) => core::Cell::Int(n),
                    // Job tables hold no REAL columns; keep the value readable anyway.
                    ValueRef::Real(f) => core::Cell::Text(f.to_string()),
                    ValueRef::Text(text) => {
                        core::Cell::Text(String::from_utf8_lossy(text).into_owned())
                    }
                    ValueRef::Blob(data) => core::Cell::Bytes(data.to_vec()),
                });
            }
            out.push(cells);
        }
        Ok(out)
    }

    fn is_unique_violation(err: &rusqlite::Error) -> bool {
        is_unique_violation(err)
    }

    async fn flush(&mut self) -> rusqlite::Result<()> {
        Ok(())
    }

    async fn load_user(
        &mut self,
        user_id: &str,
    ) -> Result<Option<UserRecord>, Failure<rusqlite::Error>> {
        let mut statement = self.0.prepare_cached(&LOAD_USER).map_err(Failure::Db)?;
        let mut rows = statement.query([user_id]).map_err(Failure::Db)?;
        let mut user = None;
        let mut identities = Vec::new();
        while let Some(row) = rows.next().map_err(Failure::Db)? {
            if user.is_none() {
                user = Some(rusqlite_user_row(row).map_err(Failure::Db)?);
            }
            if let Some(identity) = rusqlite_identity_row(row).map_err(Failure::Db)? {
                identities.push(identity.into_identity()?);
            }
        }
        Ok(user.map(|u| u.into_user(identities)).transpose()?)
    }

    async fn lock_user(&mut self, _user_id: &str) -> rusqlite::Result<bool> {
        // Never called (no ROW_LOCKS): the writer holds the whole database.
        Ok(true)
    }

    async fn identity_owner(
        &mut self,
        key: &IdentityKey,
        _lock: bool,
    ) -> rusqlite::Result<Option<(String, i64)>> {
        self.0
            .prepare_cached(
                "SELECT owner_user_id, position FROM identities \
                 WHERE provider = ? AND identity_user_id = ?",
            )?
            .query_row(params![key.provider, key.user_id], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
    }
}

/// Runs a shared flow on the writer thread's connection. The flow's futures never
/// wait (see [`RusqliteTx`]), so polling it to completion right here never blocks on
/// anything but SQLite itself.
fn drive<T>(
    conn: &mut rusqlite::Connection,
    flow: impl AsyncFnOnce(&mut RusqliteTx<'_>) -> core::Outcome<T, RusqliteTx<'static>>,
) -> std::result::Result<T, Failure<rusqlite::Error>> {
    futures_executor::block_on(flow(&mut RusqliteTx(conn)))
}

fn insert_refresh(conn: &rusqlite::Connection, token: &StoredRefresh) -> rusqlite::Result<()> {
    conn.prepare_cached(grants::INSERT_REFRESH)?
        .execute(params![
            token.hash,
            token.family_id,
            token.client_id,
            token.user_id,
            token.payload,
            token.expires_at
        ])?;
    Ok(())
}

fn internal(err: rusqlite::Error) -> Error {
    Error::internal(err)
}

#[async_trait]
impl Store for SqliteStore {
    fn pool_usage(&self) -> crate::metrics::PoolUsage {
        crate::metrics::PoolUsage {
            open: self.reader.size(),
            idle: u32::try_from(self.reader.num_idle()).unwrap_or(u32::MAX),
            max: self.reader.options().get_max_connections(),
        }
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        let rows: Vec<SigningKeyRow> =
            sqlx::query_as("SELECT * FROM signing_keys ORDER BY created_at DESC, kid")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows.into_iter().map(SigningKey::from).collect())
    }

    async fn connections(&self) -> Result<Vec<Connection>> {
        let rows: Vec<ConnectionRow> =
            sqlx::query_as("SELECT id, name, strategy FROM connections ORDER BY created_at, name")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows.into_iter().map(Connection::from).collect())
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>> {
        let row: Option<ClientRow> = sqlx::query_as(
            "SELECT client_id, name, secret_hash, grant_types, scopes FROM clients WHERE client_id = ?",
        )
        .bind(client_id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(ClientRecord::from))
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.writer
            .run(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO settings (key, value) VALUES (?, ?) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .and_then(|mut s| s.execute(params![key, value]))
                .map_err(internal)?;
                Ok(())
            })
            .await
    }

    async fn add_signing_key(&self, key: &SigningKey) -> Result<()> {
        let key = key.clone();
        self.writer
            .run(move |conn| {
                conn.execute(
                    "UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL",
                    [key.created_at],
                )
                .map_err(internal)?;
                conn.execute(
                    "INSERT INTO signing_keys (kid, private_key_pem, public_n, public_e, created_at, retired_at) \
                     VALUES (?, ?, ?, ?, ?, NULL)",
                    params![key.kid, key.private_key_pem, key.public_n, key.public_e, key.created_at],
                )
                .map_err(internal)?;
                Ok(())
            })
            .await
    }

    async fn ensure_connection(&self, connection: &Connection) -> Result<Connection> {
        let connection = connection.clone();
        self.writer
            .run(move |conn| {
                conn.execute(
                    "INSERT INTO connections (id, name, strategy, created_at) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (name) DO NOTHING",
                    params![
                        connection.id,
                        connection.name,
                        connection.strategy,
                        crate::clock::unix_now()
                    ],
                )
                .map_err(internal)?;
                conn.query_row(
                    "SELECT id, name, strategy FROM connections WHERE name = ?",
                    [&connection.name],
                    |row| {
                        Ok(Connection {
                            id: row.get(0)?,
                            name: row.get(1)?,
                            strategy: row.get(2)?,
                        })
                    },
                )
                .map_err(internal)
            })
            .await
    }

    async fn client_ids(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT client_id FROM clients ORDER BY created_at, client_id")
                .fetch_all(&self.reader)
                .await?,
        )
    }

    async fn put_client(&self, client: &ClientRecord) -> Result<()> {
        let client = client.clone();
        self.writer
            .run(move |conn| {
                conn.execute(
                    "INSERT INTO clients (client_id, name, secret_hash, grant_types, scopes, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET name = excluded.name, \
                     secret_hash = excluded.secret_hash, grant_types = excluded.grant_types, scopes = excluded.scopes",
                    params![
                        client.client_id,
                        client.name,
                        client.secret_hash,
                        client.grant_types.join(" "),
                        client.scopes.join(" "),
                        crate::clock::unix_now()
                    ],
                )
                .map_err(internal)?;
                Ok(())
            })
            .await
    }

    async fn create_user(
        &self,
        user: &UserRecord,
        credential: Option<&Credential>,
        alongside: &Alongside,
    ) -> Result<()> {
        let (user, credential, alongside) = (user.clone(), credential.cloned(), alongside.clone());
        self.writer
            .run(move |conn| {
                drive(conn, async |tx| {
                    core::create_user(tx, &user, credential.as_ref(), &alongside).await
                })
                .map_err(|failure| settle(failure, DomainError::UserExists))
            })
            .await
    }

    async fn user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        let mut conn = self.reader.acquire().await?;
        let rows = sqlx::query(&LOAD_USER)
            .bind(user_id)
            .fetch_all(&mut *conn)
            .await?;
        user_from_rows(rows.iter())
    }

    async fn list_users(&self, query: &UserQuery) -> Result<(Vec<UserRecord>, u64)> {
        // One read transaction: the count, the page and its identities from one snapshot,
        // even while the writer commits.
        let mut conn = self.reader.begin().await?;
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM users u");
        push_user_search(&mut count, query, Dialect::Sqlite);
        let (total,): (i64,) = count.build_query_as().fetch_one(&mut *conn).await?;

        let mut select = QueryBuilder::<Sqlite>::new("SELECT u.* FROM users u");
        push_user_search(&mut select, query, Dialect::Sqlite);
        push_user_order(&mut select, query);
        select
            .push(" LIMIT ")
            .push_bind(i64::try_from(query.per_page).unwrap_or(i64::MAX))
            .push(" OFFSET ")
            .push_bind(i64::try_from(query.offset()).unwrap_or(i64::MAX));
        let users: Vec<UserRow> = select.build_query_as().fetch_all(&mut *conn).await?;
        if users.is_empty() {
            conn.commit().await?;
            return Ok((Vec::new(), total.unsigned_abs()));
        }
        let mut ids = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {IDENTITY_SELECT} FROM identities WHERE owner_user_id IN ("
        ));
        let mut separated = ids.separated(", ");
        for user in &users {
            separated.push_bind(user.user_id.clone());
        }
        ids.push(") ORDER BY owner_user_id, position");
        let identities: Vec<IdentityRow> = ids.build_query_as().fetch_all(&mut *conn).await?;
        conn.commit().await?;
        Ok((rows::assemble(users, identities)?, total.unsigned_abs()))
    }

    async fn update_user(
        &self,
        user_id: &str,
        patch: &UserPatch,
        now: &str,
        alongside: &Alongside,
    ) -> Result<UserRecord> {
        let (user_id, patch, now) = (user_id.to_owned(), patch.clone(), now.to_owned());
        let alongside = alongside.clone();
        self.writer
            .run(move |conn| {
                drive(conn, async |tx| {
                    core::update_user(tx, &user_id, &patch, &now, &alongside).await
                })
                // The credential's login email may be taken.
                .map_err(|failure| settle(failure, DomainError::UserExists))
            })
            .await
    }

    async fn delete_user(&self, user_id: &str, alongside: &Alongside) -> Result<bool> {
        let (user_id, alongside) = (user_id.to_owned(), alongside.clone());
        self.writer
            .run(move |conn| {
                drive(conn, async |tx| {
                    core::delete_user(tx, &user_id, &alongside).await
                })
                .map_err(|failure| settle(failure, Error::internal("unique violation in a delete")))
            })
            .await
    }

    async fn find_login(&self, connection_id: &str, login: &str) -> Result<Option<Login>> {
        let login = login.to_lowercase();
        let row: Option<(String, String, bool, Option<String>)> = sqlx::query_as(
            "SELECT i.owner_user_id, i.password_hash, u.blocked, i.link_state FROM identities i \
             JOIN users u ON u.user_id = i.owner_user_id \
             WHERE i.connection_id = ? AND (i.login_email = ? OR i.login_username = ?) \
             AND i.password_hash IS NOT NULL LIMIT 1",
        )
        .bind(connection_id)
        .bind(&login)
        .bind(&login)
        .fetch_optional(&self.reader)
        .await?;
        row.map(Login::from_row).transpose()
    }

    async fn record_login(&self, user_id: &str, now: &str) -> Result<()> {
        let (user_id, now) = (user_id.to_owned(), now.to_owned());
        self.writer
            .run(move |conn| {
                conn.prepare_cached(
                    "UPDATE users SET last_login = ?, logins_count = logins_count + 1 WHERE user_id = ?",
                )
                .and_then(|mut s| s.execute(params![now, user_id]))
                .map_err(internal)?;
                Ok(())
            })
            .await
    }

    async fn link(
        &self,
        primary_id: &str,
        target: &IdentityKey,
        proof: &LinkProof,
        policy: &LinkingPolicy,
        alongside: &Alongside,
    ) -> Result<Vec<Identity>> {
        let (primary_id, target) = (primary_id.to_owned(), target.clone());
        let (proof, policy, alongside) = (proof.clone(), *policy, alongside.clone());
        self.writer
            .run(move |conn| {
                drive(conn, async |tx| {
                    core::link(tx, &primary_id, &target, &proof, &policy, &alongside).await
                })
                // Link's writes only fail on a broken database.
                .map_err(|failure| settle(failure, Error::internal("unique violation in a link")))
            })
            .await
    }

    async fn unlink(
        &self,
        primary_id: &str,
        target: &IdentityKey,
        now: &str,
        mode: UnlinkMode,
        alongside: &Alongside,
    ) -> Result<Vec<Identity>> {
        let (primary_id, target) = (primary_id.to_owned(), target.clone());
        let (now, alongside) = (now.to_owned(), alongside.clone());
        self.writer
            .run(move |conn| {
                drive(conn, async |tx| {
                    core::unlink(tx, &primary_id, &target, &now, mode, &alongside).await
                })
                // Unlink recreates a user, whose id may be taken.
                .map_err(|failure| settle(failure, DomainError::UserExists))
            })
            .await
    }

    async fn idempotency_key(
        &self,
        scope: &str,
        key: &str,
        expired_at_or_before: i64,
    ) -> Result<Option<StoredKey>> {
        let row: Option<(String, i64, String)> = sqlx::query_as(super::rows::IDEMPOTENCY_SELECT)
            .bind(scope)
            .bind(key)
            .bind(expired_at_or_before)
            .fetch_optional(&self.reader)
            .await?;
        row.map(super::rows::stored_key).transpose()
    }

    async fn tenant_rows(&self) -> Result<TenantRows> {
        use sqlx::FromRow;
        // One read transaction: one consistent picture while the writer commits.
        let mut conn = self.reader.begin().await?;
        let users: Vec<UserRow> = sqlx::query_as("SELECT * FROM users")
            .fetch_all(&mut *conn)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {IDENTITY_SELECT_ALL} FROM identities ORDER BY owner_user_id, position"
        ))
        .fetch_all(&mut *conn)
        .await?;
        let identities = rows
            .iter()
            .map(|row| Ok((IdentityRow::from_row(row)?, CredentialRow::from_row(row)?)))
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
        let clients: Vec<ClientRow> =
            sqlx::query_as("SELECT client_id, name, secret_hash, grant_types, scopes FROM clients")
                .fetch_all(&mut *conn)
                .await?;
        let connections: Vec<ConnectionRow> =
            sqlx::query_as("SELECT id, name, strategy FROM connections")
                .fetch_all(&mut *conn)
                .await?;
        let keys: Vec<SigningKeyRow> =
            sqlx::query_as("SELECT * FROM signing_keys ORDER BY created_at DESC, kid")
                .fetch_all(&mut *conn)
                .await?;
        conn.commit().await?;
        Ok(TenantRows {
            users: rows::assemble_stored(users, identities)?,
            clients: clients.into_iter().map(ClientRecord::from).collect(),
            connections: connections.into_iter().map(Connection::from).collect(),
            signing_keys: keys.into_iter().map(SigningKey::from).collect(),
        })
    }

    async fn replace_tenant(&self, data: &TenantWrite, audit: &LogEvent) -> Result<()> {
        let (data, audit) = (data.clone(), audit.clone());
        let now = crate::clock::unix_now();
        self.writer
            .run(move |conn| {
                drive(conn, async |tx| {
                    core::replace_tenant(tx, &data, &audit, now).await
                })
                // The snapshot was validated: a taken id means a bug.
                .map_err(|failure| {
                    settle(
                        failure,
                        Error::internal("unique violation replacing the tenant"),
                    )
                })
            })
            .await
    }

    async fn delete_all_users(&self, audit: &LogEvent) -> Result<()> {
        let audit = audit.clone();
        self.writer
            .run(move |conn| {
                drive(conn, async |tx| core::delete_all_users(tx, &audit).await)
                    .map_err(|failure| settle(failure, Error::internal("duplicate log id")))
            })
            .await
    }

    async fn put_code(&self, code: &StoredCode, now: i64) -> Result<()> {
        let code = code.clone();
        self.writer
            .run(move |conn| {
                conn.prepare_cached(grants::PURGE_CODES)
                    .and_then(|mut s| s.execute([now]))
                    .map_err(internal)?;
                conn.prepare_cached(grants::INSERT_CODE)
                    .and_then(|mut s| {
                        s.execute(params![
                            code.hash,
                            code.client_id,
                            code.payload,
                            code.expires_at
                        ])
                    })
                    .map_err(internal)?;
                Ok(())
            })
            .await
    }

    async fn take_code(&self, hash: &str) -> Result<Option<StoredCode>> {
        let hash = hash.to_owned();
        self.writer
            .run(move |conn| {
                conn.prepare_cached(grants::TAKE_CODE)
                    .and_then(|mut s| {
                        s.query_row([&hash], |row| {
                            Ok(StoredCode {
                                hash: hash.clone(),
                                client_id: row.get(0)?,
                                payload: row.get(1)?,
                                expires_at: row.get(2)?,
                            })
                        })
                        .optional()
                    })
                    .map_err(internal)
            })
            .await
    }

    async fn put_refresh_token(&self, token: &StoredRefresh, now: i64) -> Result<()> {
        let token = token.clone();
        self.writer
            .run(move |conn| {
                conn.prepare_cached(grants::PURGE_REFRESH)
                    .and_then(|mut s| s.execute([now]))
                    .map_err(internal)?;
                insert_refresh(conn, &token).map_err(internal)
            })
            .await
    }

    async fn rotate_refresh_token(
        &self,
        hash: &str,
        next_hash: &str,
        now: i64,
    ) -> Result<Rotation> {
        let (hash, next_hash) = (hash.to_owned(), next_hash.to_owned());
        self.writer
            .run(move |conn| {
                let claimed = conn
                    .prepare_cached(grants::CLAIM_REFRESH)
                    .and_then(|mut s| {
                        s.query_row(params![now, hash, now], |row| {
                            Ok(StoredRefresh {
                                hash: hash.clone(),
                                family_id: row.get(0)?,
                                client_id: row.get(1)?,
                                user_id: row.get(2)?,
                                payload: row.get(3)?,
                                expires_at: row.get(4)?,
                            })
                        })
                        .optional()
                    })
                    .map_err(internal)?;
                if let Some(old) = claimed {
                    let next = StoredRefresh {
                        hash: next_hash,
                        ..old.clone()
                    };
                    insert_refresh(conn, &next).map_err(internal)?;
                    return Ok(Rotation::Rotated(old));
                }
                let found: Option<(String, i64)> = conn
                    .prepare_cached(grants::FIND_REFRESH)
                    .and_then(|mut s| {
                        s.query_row([&hash], |row| Ok((row.get(0)?, row.get(1)?)))
                            .optional()
                    })
                    .map_err(internal)?;
                match found {
                    Some((family, expires_at)) if expires_at > now => {
                        conn.prepare_cached(grants::REVOKE_FAMILY)
                            .and_then(|mut s| s.execute(params![now, family]))
                            .map_err(internal)?;
                        Ok(Rotation::Reused)
                    }
                    _ => Ok(Rotation::Unknown),
                }
            })
            .await
    }

    async fn put_session(&self, session: &StoredSession, now: i64) -> Result<()> {
        let session = session.clone();
        self.writer
            .run(move |conn| {
                conn.prepare_cached(grants::PURGE_SESSIONS)
                    .and_then(|mut s| s.execute([now]))
                    .map_err(internal)?;
                conn.prepare_cached(grants::INSERT_SESSION)
                    .and_then(|mut s| {
                        s.execute(params![
                            session.hash,
                            session.user_id,
                            session.auth_time,
                            session.expires_at
                        ])
                    })
                    .map_err(internal)?;
                Ok(())
            })
            .await
    }

    async fn session(&self, hash: &str, now: i64) -> Result<Option<StoredSession>> {
        let row: Option<(String, i64, i64)> = sqlx::query_as(grants::FIND_SESSION)
            .bind(hash)
            .bind(now)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(|(user_id, auth_time, expires_at)| StoredSession {
            hash: hash.to_owned(),
            user_id,
            auth_time,
            expires_at,
        }))
    }

    async fn delete_session(&self, hash: &str) -> Result<()> {
        let hash = hash.to_owned();
        self.writer
            .run(move |conn| {
                conn.prepare_cached(grants::DELETE_SESSION)
                    .and_then(|mut s| s.execute([&hash]))
                    .map_err(internal)?;
                Ok(())
            })
            .await
    }

    async fn identity_login(&self, key: &IdentityKey) -> Result<Option<(String, bool)>> {
        let row: Option<(String, bool, Option<String>)> = sqlx::query_as(grants::IDENTITY_OWNER)
            .bind(&key.provider)
            .bind(&key.user_id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|(owner, blocked, link_state)| {
            let linked_blocked = rows::link_state_of(link_state.as_deref())?.blocked;
            Ok((owner, blocked || linked_blocked))
        })
        .transpose()
    }

    async fn record_log(&self, event: &LogEvent) -> Result<()> {
        let event = event.clone();
        self.writer
            .run(move |conn| {
                drive(conn, async |tx| core::insert_log(tx, &event).await)
                    .map_err(|failure| settle(failure, Error::internal("duplicate log id")))
            })
            .await
    }

    async fn job_op(&self, op: &crate::store::jobs::JobOp) -> Result<crate::store::jobs::JobReply> {
        let op = op.clone();
        self.writer
            .run(move |conn| {
                drive(conn, async |tx| core::jobs::run(tx, &op).await).map_err(|failure| {
                    settle(failure, Error::internal("unique violation in a job"))
                })
            })
            .await
    }

    async fn event_op(
        &self,
        op: &crate::store::events::EventOp,
    ) -> Result<crate::store::events::EventReply> {
        let op = op.clone();
        self.writer
            .run(move |conn| {
                drive(conn, async |tx| core::events::run(tx, &op).await).map_err(|failure| {
                    settle(
                        failure,
                        Error::internal("unique violation in an event operation"),
                    )
                })
            })
            .await
    }

    async fn list_logs(&self, query: &LogQuery) -> Result<(Vec<LogEvent>, u64)> {
        let mut conn = self.reader.acquire().await?;
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM logs");
        push_log_filter(&mut count, query);
        let (total,): (i64,) = count.build_query_as().fetch_one(&mut *conn).await?;
        let mut select = QueryBuilder::<Sqlite>::new(format!("SELECT {LOG_SELECT} FROM logs"));
        push_log_filter(&mut select, query);
        push_log_page(&mut select, query);
        let rows: Vec<LogRow> = select.build_query_as().fetch_all(&mut *conn).await?;
        let events = rows
            .into_iter()
            .map(LogRow::into_event)
            .collect::<Result<_>>()?;
        Ok((events, total.unsigned_abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteSynchronous as Synchronous;

    async fn synchronous_of(options: &StoreOptions) -> i64 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("sync.db").display());
        let store = SqliteStore::open(&url, options).await.unwrap();
        // The writer is the connection whose commits must reach the disk.
        store
            .writer
            .run(|conn| {
                conn.query_row("PRAGMA synchronous", [], |row| row.get(0))
                    .map_err(Error::internal)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn commits_are_durable_by_default_and_normal_on_request() {
        // SQLite's codes: 1 = NORMAL, 2 = FULL.
        assert_eq!(synchronous_of(&StoreOptions::default()).await, 2);
        let normal = StoreOptions {
            sqlite_synchronous: Synchronous::Normal,
            ..StoreOptions::default()
        };
        assert_eq!(synchronous_of(&normal).await, 1);
    }
}
