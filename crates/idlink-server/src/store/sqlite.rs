//! The SQLite backend: one file, WAL mode.
//!
//! All writes go through a pool of exactly one connection, so writers queue in-process
//! (cheap, fair) instead of spinning on SQLite's busy handler; each write transaction
//! starts `IMMEDIATE`, taking the write lock before it reads. Readers have their own pool
//! and, thanks to WAL, never wait for the writer.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};
use tokio::sync::{mpsc, oneshot};

use super::core::{self, Failure, Param, Tx as _};
use super::filters::{push_log_filter, push_log_page, push_user_search};
use super::rows::{
    self, ClientRow, ConnectionRow, IDENTITY_SELECT, IdentityRow, LOG_SELECT, LogRow,
    SigningKeyRow, UserColumns, UserRow, bind_user,
};
use super::{ClientRecord, Credential, Login, SigningKey, Store, StoreOptions};
use crate::domain::audit::{LogEvent, LogQuery};
use crate::domain::error::Error as DomainError;
use crate::domain::model::{Connection, Identity, IdentityKey, UserRecord};
use crate::domain::users::{UserPatch, UserQuery};
use crate::error::{Error, Result};

/// SQLite-backed [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    /// Link and unlink go through the writer's group commit.
    jobs: mpsc::Sender<WriteJob>,
}

/// Maps a unique-constraint violation to `conflict`, anything else to an internal error.
fn unique_as(conflict: impl Into<Error>) -> impl FnOnce(sqlx::Error) -> Error {
    move |err| match err.as_database_error() {
        Some(db) if db.is_unique_violation() => conflict.into(),
        _ => Error::from(err),
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and applies migrations.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Self> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL (the default): a commit is on disk before it is acknowledged, so it
            // survives power loss; NORMAL only a process crash (see `SqliteSynchronous`).
            .synchronous(match options.sqlite_synchronous {
                super::SqliteSynchronous::Full => SqliteSynchronous::Full,
                super::SqliteSynchronous::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(connect.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(Error::internal)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .connect_with(connect.read_only(true))
            .await?;
        let (jobs, queue) = mpsc::channel(1024);
        tokio::spawn(group_commit_loop(writer.clone(), queue));
        Ok(Self {
            reader,
            writer,
            jobs,
        })
    }

    /// Queues a link or unlink for the group commit and waits for its outcome.
    async fn group_commit(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<Vec<Identity>>>) -> WriteJob,
    ) -> Result<Vec<Identity>> {
        let stopped = || Error::internal("the SQLite writer has stopped");
        let (reply, outcome) = oneshot::channel();
        self.jobs.send(job(reply)).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    /// Starts a write transaction, cancel-safely. A request dropped while its `BEGIN`
    /// is under way (client gone, deadline passed, waiting on another process's write
    /// lock) would otherwise leave the single writer connection inside a transaction
    /// that nothing ends: every later write would fail. So `BEGIN` runs in a task of its
    /// own that always finishes; when the caller is gone by then, the transaction is
    /// dropped there, which rolls it back.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Sqlite>> {
        let writer = self.writer.clone();
        tokio::spawn(async move { writer.begin_with("BEGIN IMMEDIATE").await })
            .await
            .map_err(Error::internal)?
            .map_err(Error::from)
    }
}

/// `users` joined with its identities: one statement, so loading a user is one round
/// trip to the connection's worker thread instead of two.
static LOAD_USER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT u.*, {IDENTITY_SELECT} FROM users u \
         LEFT JOIN identities i ON i.owner_user_id = u.user_id \
         WHERE u.user_id = ? ORDER BY i.position"
    )
});

async fn load_user(conn: &mut SqliteConnection, user_id: &str) -> Result<Option<UserRecord>> {
    let rows = sqlx::query(&LOAD_USER)
        .bind(user_id)
        .fetch_all(&mut *conn)
        .await?;
    user_from_rows(rows.iter())
}

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

/// The primary (rows with `part` 0) and the standalone user whose main identity is the
/// link target (`part` 1), in one round trip: two statements, one query.
static LOAD_LINK_PAIR: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    // `identities` is joined twice in the second statement: name its columns.
    let identity_select = IDENTITY_SELECT
        .split(',')
        .map(|c| format!("i.{0} AS {0}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT 0 AS part, u.*, {identity_select} FROM users u \
         LEFT JOIN identities i ON i.owner_user_id = u.user_id \
         WHERE u.user_id = ? ORDER BY i.position; \
         SELECT 1 AS part, u.*, {identity_select} FROM identities t \
         JOIN users u ON u.user_id = t.owner_user_id \
         LEFT JOIN identities i ON i.owner_user_id = u.user_id \
         WHERE t.provider = ? AND t.identity_user_id = ? AND t.position = 0 \
         ORDER BY i.position"
    )
});

async fn insert_user(conn: &mut SqliteConnection, user: &UserRecord) -> Result<()> {
    let cols = UserColumns::of(user);
    bind_user(sqlx::query(core::INSERT_USER.as_str()), user, &cols)
        .execute(&mut *conn)
        .await
        .map_err(unique_as(DomainError::UserExists))?;
    Ok(())
}

/// A SQLite write transaction, for the shared flows of [`super::core`]. sqlx runs the
/// connection on a thread of its own, so every query is a round trip to it: writes are
/// held back and sent together, in one multi-statement query, with the next read or at
/// [`core::Tx::flush`]. A flow therefore costs one round trip for its reads and one for
/// its writes. Nothing is locked: `BEGIN IMMEDIATE` holds the database.
struct SqliteTx<'c> {
    conn: &'c mut SqliteConnection,
    /// Statements held back, each followed by `; `.
    pending: String,
    params: Vec<Param>,
    /// Sent with the flow's last writes (`RELEASE op` inside a group).
    on_flush: &'static str,
    /// Whether anything reached the connection (so a savepoint may be open).
    sent: bool,
}

impl<'c> SqliteTx<'c> {
    /// A transaction already begun by the caller.
    fn new(conn: &'c mut SqliteConnection) -> Self {
        Self {
            conn,
            pending: String::new(),
            params: Vec::new(),
            on_flush: "",
            sent: false,
        }
    }

    /// One operation of a group, in its own savepoint (opened with its first query,
    /// released with its last writes).
    fn in_savepoint(conn: &'c mut SqliteConnection) -> Self {
        Self {
            pending: "SAVEPOINT op; ".to_owned(),
            on_flush: "RELEASE op",
            ..Self::new(conn)
        }
    }

    /// The held-back statements followed by `sql`, and all their parameters.
    fn take_with(&mut self, sql: &str, params: impl IntoIterator<Item = Param>) -> SqliteBatch {
        self.sent = true;
        let mut batch = std::mem::take(&mut self.pending);
        batch.push_str(sql);
        let mut all = std::mem::take(&mut self.params);
        all.extend(params);
        SqliteBatch {
            sql: batch,
            params: all,
        }
    }
}

/// Statements and their parameters, ready to send as one query.
struct SqliteBatch {
    sql: String,
    params: Vec<Param>,
}

impl SqliteBatch {
    fn query(&self) -> SqliteQuery<'_> {
        let mut query = sqlx::query(&self.sql);
        for param in &self.params {
            query = match param {
                Param::Text(text) => query.bind(text.as_deref()),
                Param::Int(n) => query.bind(*n),
                Param::Bool(b) => query.bind(*b),
            };
        }
        query
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

impl core::Tx for SqliteTx<'_> {
    type DbError = sqlx::Error;
    const ROW_LOCKS: bool = false;

    async fn execute(&mut self, sql: &'static str, params: Vec<Param>) -> Result<(), sqlx::Error> {
        self.pending.push_str(sql);
        self.pending.push_str("; ");
        self.params.extend(params);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), sqlx::Error> {
        let on_flush = std::mem::take(&mut self.on_flush);
        if self.pending.is_empty() && on_flush.is_empty() {
            return Ok(());
        }
        let batch = self.take_with(on_flush, []);
        batch.query().execute(&mut *self.conn).await?;
        Ok(())
    }

    async fn load_user(
        &mut self,
        user_id: &str,
    ) -> Result<Option<UserRecord>, Failure<sqlx::Error>> {
        let batch = self.take_with(&LOAD_USER, [user_id.into()]);
        let rows = batch
            .query()
            .fetch_all(&mut *self.conn)
            .await
            .map_err(Failure::Db)?;
        Ok(user_from_rows(rows.iter())?)
    }

    async fn load_link_parties(
        &mut self,
        primary_id: &str,
        target: &IdentityKey,
    ) -> Result<core::LinkParties, Failure<sqlx::Error>> {
        let params = [
            primary_id.into(),
            (&target.provider).into(),
            (&target.user_id).into(),
        ];
        let batch = self.take_with(&LOAD_LINK_PAIR, params);
        let rows = batch
            .query()
            .fetch_all(&mut *self.conn)
            .await
            .map_err(Failure::Db)?;
        let part = |n: i64| {
            rows.iter()
                .filter(move |row| sqlx::Row::try_get::<i64, _>(*row, "part").ok() == Some(n))
        };
        Ok((user_from_rows(part(0))?, user_from_rows(part(1))?))
    }

    async fn lock_user(&mut self, _user_id: &str) -> Result<bool, sqlx::Error> {
        // Never called (no ROW_LOCKS): the writer holds the whole database.
        Ok(true)
    }

    async fn identity_owner(
        &mut self,
        key: &IdentityKey,
        _lock: bool,
    ) -> Result<Option<(String, i64)>, sqlx::Error> {
        let batch = self.take_with(
            "SELECT owner_user_id, position FROM identities WHERE provider = ? AND identity_user_id = ?",
            [(&key.provider).into(), (&key.user_id).into()],
        );
        let row = batch.query().fetch_optional(&mut *self.conn).await?;
        row.map(|row| Ok((sqlx::Row::try_get(&row, 0)?, sqlx::Row::try_get(&row, 1)?)))
            .transpose()
    }
}

/// A link or unlink queued for the writer's group commit.
enum WriteJob {
    Link {
        primary_id: String,
        target: IdentityKey,
        connection_id: Option<String>,
        audit: LogEvent,
        reply: oneshot::Sender<Result<Vec<Identity>>>,
    },
    Unlink {
        primary_id: String,
        target: IdentityKey,
        now: String,
        audit: LogEvent,
        reply: oneshot::Sender<Result<Vec<Identity>>>,
    },
}

/// Most link/unlink operations committed together.
const GROUP_COMMIT_MAX: usize = 64;

impl WriteJob {
    /// Runs the shared flow inside the group's transaction, in its own savepoint.
    async fn run(&self, tx: &mut SqliteTx<'_>) -> core::Outcome<Vec<Identity>, SqliteTx<'static>> {
        match self {
            Self::Link {
                primary_id,
                target,
                connection_id,
                audit,
                ..
            } => core::link(tx, primary_id, target, connection_id.as_deref(), audit).await,
            Self::Unlink {
                primary_id,
                target,
                now,
                audit,
                ..
            } => core::unlink(tx, primary_id, target, now, audit).await,
        }
    }

    /// What a database failure means for this operation: unlink recreates a user,
    /// whose id may be taken; link's writes only fail on a broken database.
    fn db_error(&self, err: sqlx::Error) -> Error {
        match self {
            Self::Unlink { .. } => unique_as(DomainError::UserExists)(err),
            Self::Link { .. } => Error::from(err),
        }
    }

    /// Whether the caller has stopped waiting for the outcome.
    fn abandoned(&self) -> bool {
        let (Self::Link { reply, .. } | Self::Unlink { reply, .. }) = self;
        reply.is_closed()
    }

    fn reply(self, outcome: Result<Vec<Identity>>) {
        let (Self::Link { reply, .. } | Self::Unlink { reply, .. }) = self;
        let _ = reply.send(outcome);
    }
}

/// The writer's group commit: takes the link/unlink operations queued meanwhile (up to
/// [`GROUP_COMMIT_MAX`]), runs them one after another in one transaction, each in its
/// own savepoint, and answers every one only after the shared `COMMIT` — so durability
/// is per operation as before, while `BEGIN`, `COMMIT` and the WAL write are paid once
/// per group. Owning the transaction here also makes it cancel-safe: a caller that goes
/// away does not abandon it; an operation whose caller has gone before it started is
/// skipped.
async fn group_commit_loop(writer: SqlitePool, mut jobs: mpsc::Receiver<WriteJob>) {
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_COMMIT_MAX {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(&writer, group).await;
    }
}

async fn commit_group(writer: &SqlitePool, group: Vec<WriteJob>) {
    let mut tx = match writer.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(err) => {
            let message = err.to_string();
            for job in group {
                job.reply(Err(Error::internal(message.clone())));
            }
            return;
        }
    };
    let mut done = Vec::with_capacity(group.len());
    for job in group {
        // A request abandoned while it waited (deadline, client gone) changes nothing.
        if job.abandoned() {
            continue;
        }
        let mut op = SqliteTx::in_savepoint(&mut tx);
        let outcome = job.run(&mut op).await;
        let opened = op.sent;
        let outcome = match outcome {
            Ok(identities) => Ok(identities),
            Err(failure) => {
                let err = match failure {
                    Failure::Rule(err) => err,
                    Failure::Db(err) => job.db_error(err),
                    Failure::Moved => Error::internal("an identity moved under the writer lock"),
                };
                // Undo whatever part of the operation ran; the group's others stay.
                if opened {
                    if let Err(undo) = sqlx::query("ROLLBACK TO op; RELEASE op")
                        .execute(&mut *tx)
                        .await
                    {
                        // The transaction is in an unknown state: give the whole group
                        // up (dropping the transaction rolls it back).
                        drop(tx);
                        let message = undo.to_string();
                        job.reply(Err(err));
                        for (job, _) in done {
                            WriteJob::reply(job, Err(Error::internal(message.clone())));
                        }
                        return;
                    }
                }
                Err(err)
            }
        };
        done.push((job, outcome));
    }
    let committed = tx.commit().await.map_err(|e| e.to_string());
    for (job, outcome) in done {
        let result = match (outcome, &committed) {
            (Err(err), _) => Err(err),
            (Ok(identities), Ok(())) => Ok(identities),
            (Ok(_), Err(message)) => Err(Error::internal(message.clone())),
        };
        job.reply(result);
    }
}

#[async_trait]
impl Store for SqliteStore {
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

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        let rows: Vec<SigningKeyRow> =
            sqlx::query_as("SELECT * FROM signing_keys ORDER BY created_at DESC, kid")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows.into_iter().map(SigningKey::from).collect())
    }

    async fn add_signing_key(&self, key: &SigningKey) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL")
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, private_key_pem, public_n, public_e, created_at, retired_at) \
             VALUES (?, ?, ?, ?, ?, NULL)",
        )
        .bind(&key.kid)
        .bind(&key.private_key_pem)
        .bind(&key.public_n)
        .bind(&key.public_e)
        .bind(key.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn connections(&self) -> Result<Vec<Connection>> {
        let rows: Vec<ConnectionRow> =
            sqlx::query_as("SELECT id, name, strategy FROM connections ORDER BY created_at, name")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows.into_iter().map(Connection::from).collect())
    }

    async fn ensure_connection(&self, connection: &Connection) -> Result<Connection> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO connections (id, name, strategy, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&connection.id)
        .bind(&connection.name)
        .bind(&connection.strategy)
        .bind(crate::clock::unix_now())
        .execute(&mut *tx)
        .await?;
        let row: ConnectionRow =
            sqlx::query_as("SELECT id, name, strategy FROM connections WHERE name = ?")
                .bind(&connection.name)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(row.into())
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

    async fn put_client(&self, client: &ClientRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO clients (client_id, name, secret_hash, grant_types, scopes, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET name = excluded.name, \
             secret_hash = excluded.secret_hash, grant_types = excluded.grant_types, scopes = excluded.scopes",
        )
        .bind(&client.client_id)
        .bind(&client.name)
        .bind(&client.secret_hash)
        .bind(client.grant_types.join(" "))
        .bind(client.scopes.join(" "))
        .bind(crate::clock::unix_now())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn create_user(&self, user: &UserRecord, credential: Option<&Credential>) -> Result<()> {
        let identity = user
            .identities
            .first()
            .ok_or_else(|| Error::internal("a new user needs its main identity"))?;
        let mut tx = self.begin_write().await?;
        insert_user(&mut tx, user).await?;
        sqlx::query(
            "INSERT INTO identities (provider, identity_user_id, user_id_is_int, owner_user_id, position, \
             connection_id, connection_name, is_social, profile_data, password_hash, login_email, login_username) \
             VALUES (?, ?, ?, ?, 0, ?, ?, ?, NULL, ?, ?, ?)",
        )
        .bind(&identity.provider)
        .bind(identity.user_id.as_string())
        .bind(matches!(identity.user_id, idlink_types::UserId::Integer(_)))
        .bind(&user.user_id)
        .bind(&identity.connection_id)
        .bind(&identity.connection)
        .bind(identity.is_social)
        .bind(credential.map(|c| &c.password_hash))
        .bind(credential.and_then(|c| c.login_email.as_ref()))
        .bind(credential.and_then(|c| c.login_username.as_ref()))
        .execute(&mut *tx)
        .await
        .map_err(unique_as(DomainError::UserExists))?;
        tx.commit().await?;
        Ok(())
    }

    async fn user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        let mut conn = self.reader.acquire().await?;
        load_user(&mut conn, user_id).await
    }

    async fn list_users(&self, query: &UserQuery) -> Result<(Vec<UserRecord>, u64)> {
        let mut conn = self.reader.acquire().await?;
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM users u");
        push_user_search(&mut count, query);
        let (total,): (i64,) = count.build_query_as().fetch_one(&mut *conn).await?;

        let mut select = QueryBuilder::<Sqlite>::new("SELECT u.* FROM users u");
        push_user_search(&mut select, query);
        select
            .push(" ORDER BY u.created_at, u.user_id LIMIT ")
            .push_bind(i64::try_from(query.per_page).unwrap_or(i64::MAX))
            .push(" OFFSET ")
            .push_bind(i64::try_from(query.offset()).unwrap_or(i64::MAX));
        let users: Vec<UserRow> = select.build_query_as().fetch_all(&mut *conn).await?;
        if users.is_empty() {
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
        Ok((rows::assemble(users, identities)?, total.unsigned_abs()))
    }

    async fn update_user(&self, user_id: &str, patch: &UserPatch, now: &str) -> Result<UserRecord> {
        let mut tx = self.begin_write().await?;
        let user = core::update_user(&mut SqliteTx::new(&mut tx), user_id, patch, now)
            .await
            .map_err(|failure| match failure {
                Failure::Rule(err) => err,
                // The credential's login email may be taken.
                Failure::Db(err) => unique_as(DomainError::UserExists)(err),
                Failure::Moved => Error::internal("a row moved under the writer lock"),
            })?;
        tx.commit().await?;
        Ok(user)
    }

    async fn delete_user(&self, user_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM users WHERE user_id = ?")
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn find_login(&self, connection_id: &str, login: &str) -> Result<Option<Login>> {
        let login = login.to_lowercase();
        let row: Option<(String, String, bool)> = sqlx::query_as(
            "SELECT i.owner_user_id, i.password_hash, u.blocked FROM identities i \
             JOIN users u ON u.user_id = i.owner_user_id \
             WHERE i.connection_id = ? AND (i.login_email = ? OR i.login_username = ?) \
             AND i.password_hash IS NOT NULL LIMIT 1",
        )
        .bind(connection_id)
        .bind(&login)
        .bind(&login)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|(owner_user_id, password_hash, blocked)| Login {
            owner_user_id,
            password_hash,
            blocked,
        }))
    }

    async fn record_login(&self, user_id: &str, now: &str) -> Result<()> {
        sqlx::query(
            "UPDATE users SET last_login = ?, logins_count = logins_count + 1 WHERE user_id = ?",
        )
        .bind(now)
        .bind(user_id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn link(
        &self,
        primary_id: &str,
        target: &IdentityKey,
        connection_id: Option<&str>,
        audit: &LogEvent,
    ) -> Result<Vec<Identity>> {
        self.group_commit(|reply| WriteJob::Link {
            primary_id: primary_id.to_owned(),
            target: target.clone(),
            connection_id: connection_id.map(str::to_owned),
            audit: audit.clone(),
            reply,
        })
        .await
    }

    async fn unlink(
        &self,
        primary_id: &str,
        target: &IdentityKey,
        now: &str,
        audit: &LogEvent,
    ) -> Result<Vec<Identity>> {
        self.group_commit(|reply| WriteJob::Unlink {
            primary_id: primary_id.to_owned(),
            target: target.clone(),
            now: now.to_owned(),
            audit: audit.clone(),
            reply,
        })
        .await
    }

    async fn record_log(&self, event: &LogEvent) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let mut op = SqliteTx::new(&mut tx);
        core::insert_log(&mut op, event)
            .await
            .map_err(|_| Error::internal("writing the log failed"))?;
        op.flush().await?;
        tx.commit().await?;
        Ok(())
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
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.writer)
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
