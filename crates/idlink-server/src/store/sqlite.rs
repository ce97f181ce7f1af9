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

use super::filters::{push_log_filter, push_log_page, push_user_order, push_user_search};
use super::rows::{
    self, ClientRow, ConnectionRow, IDENTITY_SELECT, IdentityRow, LOG_SELECT, LogRow,
    SigningKeyRow, USER_COLUMNS, UserColumns, UserRow, bind_user,
};
use super::search_sql::Dialect;
use super::{ClientRecord, Credential, Login, SigningKey, Store, StoreOptions};
use crate::domain::audit::{LogEvent, LogQuery};
use crate::domain::linking::{self, LinkProof};
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
fn unique_as(conflict: Error) -> impl FnOnce(sqlx::Error) -> Error {
    move |err| match err.as_database_error() {
        Some(db) if db.is_unique_violation() => conflict,
        _ => Error::from(err),
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and applies migrations.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Self> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a commit survives a process crash (kill -9); only an
            // OS crash or power loss may lose the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // Before SQLite creates it with the umask's mode (0644): it holds secrets.
        crate::private_files::prepare_database_file(connect.get_filename())
            .map_err(Error::internal)?;
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

static INSERT_USER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO users ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
});

async fn insert_user(conn: &mut SqliteConnection, user: &UserRecord) -> Result<()> {
    let cols = UserColumns::of(user);
    bind_user(sqlx::query(&INSERT_USER), user, &cols)
        .execute(&mut *conn)
        .await
        .map_err(unique_as(Error::UserExists))?;
    Ok(())
}

async fn write_user(conn: &mut SqliteConnection, user: &UserRecord) -> Result<()> {
    let cols = UserColumns::of(user);
    let p = &user.profile;
    sqlx::query(
        "UPDATE users SET email = ?, email_lower = ?, email_verified = ?, username = ?, \
         phone_number = ?, phone_verified = ?, name = ?, given_name = ?, family_name = ?, \
         nickname = ?, picture = ?, profile_extra = ?, user_metadata = ?, app_metadata = ?, \
         blocked = ?, updated_at = ?, invented_attributes = ?, blocked_ever_set = ?, \
         last_password_reset = ? WHERE user_id = ?",
    )
    .bind(&p.email)
    .bind(&cols.email_lower)
    .bind(p.email_verified)
    .bind(&p.username)
    .bind(&p.phone_number)
    .bind(p.phone_verified)
    .bind(&p.name)
    .bind(&p.given_name)
    .bind(&p.family_name)
    .bind(&p.nickname)
    .bind(&p.picture)
    .bind(&cols.profile_extra)
    .bind(&cols.user_metadata)
    .bind(&cols.app_metadata)
    .bind(user.blocked)
    .bind(&user.updated_at)
    .bind(&cols.invented_attributes)
    .bind(user.blocked_ever_set)
    .bind(&user.last_password_reset)
    .bind(&user.user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

const INSERT_LOG: &str = "INSERT INTO logs (log_id, date, type, description, client_id, user_id, secondary_user_id, details) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds the parameters of [`INSERT_LOG`].
fn bind_log<'q>(query: SqliteQuery<'q>, event: &'q LogEvent) -> SqliteQuery<'q> {
    query
        .bind(&event.log_id)
        .bind(&event.date)
        .bind(event.outcome.code())
        .bind(&event.description)
        .bind(&event.client_id)
        .bind(&event.user_id)
        .bind(&event.secondary_user_id)
        .bind(event.details.to_string())
}

async fn insert_log(conn: &mut SqliteConnection, event: &LogEvent) -> Result<()> {
    bind_log(sqlx::query(INSERT_LOG), event)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A link or unlink queued for the writer's group commit.
enum WriteJob {
    Link {
        primary_id: String,
        target: IdentityKey,
        proof: LinkProof,
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

/// A failed write batch: its statements up to the failing one ran, inside the
/// operation's savepoint.
struct Written(sqlx::Error);

/// How one operation of a group ended.
enum JobOutcome {
    /// Planned and written (or refused by the rules before writing anything).
    Done(Result<Vec<Identity>>),
    /// Its write failed part-way and was rolled back to its savepoint.
    RolledBack(Error),
}

impl WriteJob {
    /// Reads, applies the linking rules and writes, inside the group's transaction.
    async fn run(
        &self,
        conn: &mut SqliteConnection,
    ) -> std::result::Result<Vec<Identity>, JobError> {
        match self {
            Self::Link {
                primary_id,
                target,
                proof,
                audit,
                ..
            } => link_in(conn, primary_id, target, proof, audit).await,
            Self::Unlink {
                primary_id,
                target,
                now,
                audit,
                ..
            } => unlink_in(conn, primary_id, target, now, audit).await,
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

/// Why an operation of a group failed.
enum JobError {
    /// Nothing was written (not found, refused by the rules, a failed read).
    Refused(Error),
    /// The write batch failed part-way.
    Written(sqlx::Error),
}

impl From<Error> for JobError {
    fn from(err: Error) -> Self {
        Self::Refused(err)
    }
}

impl From<sqlx::Error> for JobError {
    fn from(err: sqlx::Error) -> Self {
        Self::Refused(Error::from(err))
    }
}

impl From<Written> for JobError {
    fn from(Written(err): Written) -> Self {
        Self::Written(err)
    }
}

/// Links `target`'s standalone user into `primary_id`: one read, one write (in a
/// savepoint), on the group's connection.
async fn link_in(
    conn: &mut SqliteConnection,
    primary_id: &str,
    target: &IdentityKey,
    proof: &LinkProof,
    audit: &LogEvent,
) -> std::result::Result<Vec<Identity>, JobError> {
    let rows = sqlx::query(&LOAD_LINK_PAIR)
        .bind(primary_id)
        .bind(&target.provider)
        .bind(&target.user_id)
        .fetch_all(&mut *conn)
        .await?;
    let part = |n: i64| {
        rows.iter()
            .filter(move |row| sqlx::Row::try_get::<i64, _>(*row, "part").ok() == Some(n))
    };
    let primary = user_from_rows(part(0))?.ok_or(Error::UserNotFound)?;
    let secondary = user_from_rows(part(1))?.filter(|owner| owner.user_id != primary.user_id);
    let plan = linking::plan_link(&primary, target, proof, secondary.as_ref())?;

    let mut sql = String::from("SAVEPOINT op; ");
    for _ in &plan.moved {
        sql.push_str(
            "UPDATE identities SET owner_user_id = ?, position = ?, profile_data = ?, \
                 link_state = ? WHERE provider = ? AND identity_user_id = ?; ",
        );
    }
    sql.push_str(
        "DELETE FROM users WHERE user_id = ?; \
             UPDATE users SET updated_at = ? WHERE user_id = ?; ",
    );
    sql.push_str(INSERT_LOG);
    sql.push_str("; RELEASE op");
    let mut write = sqlx::query(&sql);
    for (offset, identity) in plan.moved.iter().enumerate() {
        let position = i64::try_from(plan.first_position + offset).map_err(Error::internal)?;
        write = write
            .bind(&primary.user_id)
            .bind(position)
            .bind(identity.profile_data.as_ref().map(rows::json_text))
            .bind(rows::link_state_column(&identity.link_state))
            .bind(&identity.provider)
            .bind(identity.user_id.as_string());
    }
    write = write
        .bind(&plan.secondary_user_id)
        .bind(crate::clock::now_iso())
        .bind(&primary.user_id);
    bind_log(write, audit)
        .execute(&mut *conn)
        .await
        .map_err(Written)?;
    Ok(plan.identities)
}

/// Unlinks `target` from `primary_id`: one read, one write (in a savepoint).
async fn unlink_in(
    conn: &mut SqliteConnection,
    primary_id: &str,
    target: &IdentityKey,
    now: &str,
    audit: &LogEvent,
) -> std::result::Result<Vec<Identity>, JobError> {
    let primary = load_user(&mut *conn, primary_id)
        .await?
        .ok_or(Error::UserNotFound)?;
    let plan = linking::plan_unlink(&primary, target, now)?;
    // One round trip for every write (see `link`).
    let sql = format!(
        "SAVEPOINT op; {}; \
             UPDATE identities SET owner_user_id = ?, position = 0, profile_data = NULL, link_state = NULL \
             WHERE provider = ? AND identity_user_id = ?; \
             UPDATE identities SET position = position - 1 WHERE owner_user_id = ? AND position > ?; \
             UPDATE users SET updated_at = ? WHERE user_id = ?; {INSERT_LOG}; RELEASE op",
        *INSERT_USER
    );
    let cols = UserColumns::of(&plan.new_user);
    let write = bind_user(sqlx::query(&sql), &plan.new_user, &cols)
        .bind(&plan.new_user.user_id)
        .bind(&plan.removed.provider)
        .bind(plan.removed.user_id.as_string())
        .bind(&primary.user_id)
        .bind(i64::try_from(plan.position).map_err(Error::internal)?)
        .bind(now)
        .bind(&primary.user_id);
    bind_log(write, audit)
        .execute(&mut *conn)
        .await
        .map_err(Written)?;
    Ok(plan.remaining)
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
        let outcome = match job.run(&mut tx).await {
            Ok(identities) => JobOutcome::Done(Ok(identities)),
            Err(JobError::Refused(err)) => JobOutcome::Done(Err(err)),
            Err(JobError::Written(err)) => {
                // Unlink recreates a user, whose id may be taken; link's writes only map
                // database failures.
                let err = match job {
                    WriteJob::Unlink { .. } => unique_as(Error::UserExists)(err),
                    WriteJob::Link { .. } => Error::from(err),
                };
                if let Err(undo) = sqlx::query("ROLLBACK TO op; RELEASE op")
                    .execute(&mut *tx)
                    .await
                {
                    // The transaction is in an unknown state: give the whole group up
                    // (dropping the transaction rolls it back).
                    drop(tx);
                    let message = undo.to_string();
                    job.reply(Err(err));
                    for (job, _) in done {
                        WriteJob::reply(job, Err(Error::internal(message.clone())));
                    }
                    return;
                }
                JobOutcome::RolledBack(err)
            }
        };
        done.push((job, outcome));
    }
    let committed = tx.commit().await.map_err(|e| e.to_string());
    for (job, outcome) in done {
        let result = match (outcome, &committed) {
            (JobOutcome::Done(Err(err)) | JobOutcome::RolledBack(err), _) => Err(err),
            (JobOutcome::Done(Ok(identities)), Ok(())) => Ok(identities),
            (JobOutcome::Done(Ok(_)), Err(message)) => Err(Error::internal(message.clone())),
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

    async fn client_ids(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT client_id FROM clients ORDER BY created_at, client_id")
                .fetch_all(&self.reader)
                .await?,
        )
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
        .map_err(unique_as(Error::UserExists))?;
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
        let mut user = load_user(&mut tx, user_id)
            .await?
            .ok_or(Error::UserNotFound)?;
        patch.apply(&mut user, now);
        write_user(&mut tx, &user).await?;
        // The main identity's credential follows the root email and the new password.
        if patch.email.is_some() || patch.password_hash.is_some() {
            sqlx::query(
                "UPDATE identities SET login_email = ?, password_hash = COALESCE(?, password_hash) \
                 WHERE owner_user_id = ? AND position = 0 AND password_hash IS NOT NULL",
            )
            .bind(user.profile.email.as_deref().map(str::to_lowercase))
            .bind(&patch.password_hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(unique_as(Error::UserExists))?;
        }
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
        proof: &LinkProof,
        audit: &LogEvent,
    ) -> Result<Vec<Identity>> {
        self.group_commit(|reply| WriteJob::Link {
            primary_id: primary_id.to_owned(),
            target: target.clone(),
            proof: proof.clone(),
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
        insert_log(&mut tx, event).await?;
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
