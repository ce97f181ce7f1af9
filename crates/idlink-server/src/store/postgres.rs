//! The PostgreSQL backend: many stateless instances on one database.
//!
//! Every write is one transaction at READ COMMITTED (PostgreSQL's default). Link and
//! unlink lock the `users` rows they are about to change with `SELECT … FOR UPDATE`,
//! always in ascending `user_id` order, before they read the identities those users
//! own. An identity changes owner only while its owner's row is locked (link, unlink,
//! delete all lock it first), so once the locks are held the rows read next are stable
//! until commit, and the pure rules of [`crate::domain::linking`] decide on exactly what
//! will be written. The primary key of `identities` is the ownership guard underneath.
//!
//! Under READ COMMITTED each statement sees what was committed before it started, so a
//! transaction that waited for a lock reads the winner's result (a secondary already
//! linked elsewhere answers 400 `inexistent_user`, exactly as on SQLite). Engines that
//! run the same SQL at a stronger isolation (CockroachDB: SERIALIZABLE; YugabyteDB:
//! snapshot) report such races as serialization failures (`40001`) instead; those and
//! deadlocks (`40P01`) restart the whole transaction, a bounded number of times, inside
//! the store. See `docs/scaling.md`.
//!
//! Queries are built at run time (`sqlx::query`/`query_as` with `FromRow`): the checked
//! macros bind one database per crate, and both backends share the row types of
//! [`super::rows`]; both are exercised by the same end-to-end suite.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection as _, Executor as _, Postgres, QueryBuilder};

use self::wire::{Db, Isolation, Wire};

use super::core::{self, Failure, Param};
use super::filters::{push_log_filter, push_log_page, push_user_order, push_user_search};
use super::grants::{self, Rotation, StoredCode, StoredRefresh, StoredSession};
use super::rows::{
    self, ClientRow, ConnectionRow, CredentialRow, IDENTITY_SELECT, IDENTITY_SELECT_ALL,
    IdentityRow, LOG_SELECT, LogRow, SigningKeyRow, UserRow,
};
use super::search_sql::Dialect;
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
use crate::startup::{StartError, StartKind};

mod wire;

/// The embedded migrations. sqlx's migrator holds a PostgreSQL advisory lock (keyed
/// by the database name) while it checks and applies them, so instances starting
/// together apply each migration once; the others wait, then find nothing to do.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Attempts of one transaction before giving up on transient failures.
pub const MAX_ATTEMPTS: u32 = 10;

/// How long `ping` (and so `GET /health`) waits for the database.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// PostgreSQL-backed [`Store`].
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    wire: Wire,
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Whether a failed connection attempt is worth repeating (the server is down,
/// starting, or out of connection slots), as opposed to a wrong URL or password.
fn connect_error_is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // cannot_connect_now (starting up / shutting down), too_many_connections,
            // admin_shutdown, crash_shutdown
            Some("57P03" | "53300" | "57P01" | "57P02")
        ),
        _ => false,
    }
}

/// Serialization failure or deadlock: the transaction may succeed when run again.
fn is_transient(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| matches!(&*code, "40001" | "40P01"))
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}

/// Why one attempt of a transaction ended early.
#[derive(Debug)]
enum Attempt {
    /// The database said no; [`settle`] decides whether to try again.
    Db(sqlx::Error),
    /// A rule said no: the request's answer.
    Rule(Error),
    /// A row we meant to lock changed owner between the read and the lock.
    Moved,
}

impl From<sqlx::Error> for Attempt {
    fn from(err: sqlx::Error) -> Self {
        Self::Db(err)
    }
}

impl From<DomainError> for Attempt {
    fn from(err: DomainError) -> Self {
        Self::Rule(err.into())
    }
}

impl From<Error> for Attempt {
    fn from(err: Error) -> Self {
        Self::Rule(err)
    }
}

/// What a unique violation means for a transaction.
#[derive(Debug, Clone, Copy)]
enum OnUnique {
    /// A bug or an impossible state: an internal error.
    Internal,
    /// The request's answer, e.g. 409 for a taken user id.
    Answer(fn() -> Error),
    /// A race with a concurrent writer: run again (the next attempt sees the winner and
    /// answers as the rules say); when attempts run out, answer this.
    Retry(fn() -> Error),
}

/// What to do after an attempt.
enum Next<T> {
    Done(Result<T>),
    Again(&'static str),
}

fn settle<T>(outcome: Result<T, Attempt>, on_unique: OnUnique, attempt: u32) -> Next<T> {
    let last = attempt >= MAX_ATTEMPTS;
    let again = |reason: &'static str, exhausted: Error| {
        if last {
            Next::Done(Err(exhausted))
        } else {
            Next::Again(reason)
        }
    };
    match outcome {
        Ok(value) => Next::Done(Ok(value)),
        Err(Attempt::Rule(err)) => Next::Done(Err(err)),
        Err(Attempt::Moved) => again(
            "an identity changed owner while locking",
            Error::internal(format!(
                "gave up after {attempt} attempts: identity kept moving"
            )),
        ),
        Err(Attempt::Db(err)) if is_transient(&err) => {
            let reason = if err
                .as_database_error()
                .and_then(|db| db.code())
                .is_some_and(|code| code == "40P01")
            {
                "deadlock detected"
            } else {
                "serialization failure"
            };
            again(
                reason,
                Error::internal(format!("gave up after {attempt} attempts: {err}")),
            )
        }
        Err(Attempt::Db(err)) if is_unique_violation(&err) => match on_unique {
            OnUnique::Internal => Next::Done(Err(err.into())),
            OnUnique::Answer(answer) => Next::Done(Err(answer())),
            OnUnique::Retry(answer) => again("unique violation in a race", answer()),
        },
        Err(Attempt::Db(err)) => Next::Done(Err(err.into())),
    }
}

/// Sleeps a little before attempt `attempt + 1`: a few milliseconds, growing, with
/// jitter so that the transactions that collided do not collide again.
async fn back_off(attempt: u32, reason: &str) {
    use rand::Rng;
    let base = 2u64.saturating_pow(attempt.min(6));
    let millis = rand::thread_rng().gen_range(base..=base * 3);
    tracing::debug!(attempt, reason, millis, "retrying transaction");
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

/// Runs `$body` (an expression using `$conn: &mut Db`, evaluating to a future of
/// `Result<T, Attempt>`) in a transaction, committing on success, and runs the whole
/// transaction again on transient failures (see [`settle`]).
macro_rules! transaction {
    ($store:expr, $on_unique:expr, |$conn:ident| $body:expr) => {{
        let mut attempt: u32 = 1;
        loop {
            let outcome: Result<_, Attempt> = async {
                let mut tx = $store.wire.begin(&$store.pool, Isolation::Default).await?;
                let value = {
                    let $conn: &mut Db<'_> = &mut $store.wire.db(&mut tx);
                    $body.await?
                };
                tx.commit().await?;
                Ok(value)
            }
            .await;
            match settle(outcome, $on_unique, attempt) {
                Next::Done(result) => break result,
                Next::Again(reason) => {
                    back_off(attempt, reason).await;
                    attempt += 1;
                }
            }
        }
    }};
}

/// Runs `$body` (an expression using `$db: &mut Db`, evaluating to a future of
/// `Result<T, _>`) as a read of the given [`Isolation`] (see [`Wire::session`]).
macro_rules! read {
    ($store:expr, $isolation:expr, |$db:ident| $body:expr) => {{
        let mut session = $store.wire.session(&$store.pool, $isolation).await?;
        let value = {
            let $db: &mut Db<'_> = &mut session.db();
            $body.await?
        };
        session.finish().await?;
        value
    }};
}

impl PgStore {
    /// Connects to the database at `url` (retrying while it is unreachable, as
    /// `options.connect_retries` allows), applies migrations under the migrator's
    /// advisory lock, and opens the pool.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Self> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| {
                Error::internal(
                    StartError::config(format!("invalid database URL {}: {e}", redact_url(url)))
                        .hint("a PostgreSQL URL is postgres://USER:PASSWORD@HOST:PORT/DATABASE (percent-encode special characters in the password)"),
                )
            })?
            .application_name("idlink");
        let connect = match options.statement_cache_capacity {
            Some(capacity) => connect.statement_cache_capacity(capacity),
            None => connect,
        };
        let wire = Wire::new(options);
        if options.migrate_url.is_none() && !wire.migrates_through_pool() {
            return Err(Error::internal(
                StartError::config(format!(
                    "--db-pooler transaction needs --db-migrate-url: the migrations cannot run through the pooler at {}",
                    redact_url(url)
                ))
                .hint("pass --db-migrate-url postgres://USER:PASSWORD@HOST:PORT/DATABASE (IDLINK_DB_MIGRATE_URL), a direct connection to the server: sqlx's migrator holds a session-level advisory lock, which a transaction pooler cannot keep"),
            ));
        }

        // Migrations run on a connection of their own that is closed afterwards: the
        // advisory lock is session-level, so even a migration that fails half-way can
        // never leave it held by a pooled connection. Behind a transaction pooler they
        // run over `migrate_url`, a direct connection.
        let migrate_url = options.migrate_url.as_deref().unwrap_or(url);
        let migrate_connect = if migrate_url == url {
            connect.clone()
        } else {
            PgConnectOptions::from_str(migrate_url)
                .map_err(|e| {
                    Error::internal(StartError::config(format!(
                        "invalid --db-migrate-url {}: {e}",
                        redact_url(migrate_url)
                    )))
                })?
                .application_name("idlink-migrate")
        };
        let mut conn = connect_with_retries(
            &migrate_connect,
            migrate_url,
            options.connect_retries,
            options.connect_timeout,
        )
        .await?;
        let migrated = MIGRATOR.run(&mut conn).await;
        let _ = conn.close().await;
        migrated.map_err(|err| {
            Error::internal(StartError::new(
                StartKind::Data,
                format!("migrating {} failed: {err}", redact_url(url)),
            ).hint("a database migrated by a newer idlink cannot be used by an older one: run the newer version"))
        })?;

        let on_connect = wire.connect_statement();
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |conn, _meta| {
                let on_connect = on_connect.clone();
                Box::pin(async move {
                    if let Some(sql) = on_connect {
                        conn.execute(sql.as_str()).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect)
            .await?;
        Ok(Self { pool, wire })
    }

    /// The pool, for tools and tests that inspect the database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Connects, retrying transient failures (server down or starting) with a doubling
/// delay until `retries` retries or `total` time are spent, whichever comes first;
/// every failed attempt is logged. A wrong password or database name fails at once.
async fn connect_with_retries(
    connect: &PgConnectOptions,
    url: &str,
    retries: u32,
    total: Duration,
) -> Result<PgConnection> {
    let started = tokio::time::Instant::now();
    let deadline = started + total;
    let mut delay = Duration::from_millis(500);
    let mut attempt: u32 = 0;
    let database = redact_url(url);
    loop {
        attempt += 1;
        // Each attempt is bounded too: a host that drops packets would otherwise hang
        // for the operating system's TCP timeout (minutes).
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let outcome = match tokio::time::timeout(
            remaining.max(Duration::from_millis(100)),
            PgConnection::connect_with(connect),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        };
        let err = match outcome {
            Ok(conn) => return Ok(conn),
            Err(err) => err,
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if connect_error_is_transient(&err) && attempt <= retries && left > Duration::ZERO {
            let wait = delay.min(left);
            tracing::warn!(
                database = %database,
                error = %err,
                "PostgreSQL connection attempt {attempt} failed; retrying in {wait:?} ({left:?} left of --db-connect-timeout)"
            );
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            continue;
        }
        tracing::warn!(database = %database, error = %err, "PostgreSQL connection attempt {attempt} failed");
        return Err(Error::internal(connect_failure(
            &err,
            &database,
            attempt,
            started.elapsed(),
        )));
    }
}

/// What a final connection failure means for the operator.
fn connect_failure(err: &sqlx::Error, database: &str, attempts: u32, took: Duration) -> StartError {
    let code = err
        .as_database_error()
        .and_then(|db| db.code())
        .map(|c| c.into_owned());
    match code.as_deref() {
        Some("28P01" | "28000") => StartError::new(
            StartKind::NoPermission,
            format!("PostgreSQL at {database} refused the login: {err}"),
        )
        .hint("check the user and password in the database URL, and pg_hba.conf on the server"),
        Some("3D000") => StartError::config(format!(
            "the database named in {database} does not exist: {err}"
        ))
        .hint("create it first (createdb NAME), or fix its name in the URL"),
        _ if connect_error_is_transient(err) => StartError::new(
            StartKind::Unavailable,
            format!(
                "cannot reach PostgreSQL at {database} after {attempts} attempt(s) in {:.1} s: {err}",
                took.as_secs_f64()
            ),
        )
        .hint("check that PostgreSQL runs and that host and port are right; wait longer with --db-connect-timeout SECONDS"),
        _ => StartError::new(
            StartKind::Unavailable,
            format!("cannot connect to PostgreSQL at {database}: {err}"),
        ),
    }
}

async fn load_user(conn: &mut Db<'_>, user_id: &str) -> Result<Option<UserRecord>> {
    let Some(row) = sqlx::query_as::<_, UserRow>("SELECT * FROM users WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let identities = sqlx::query_as::<_, IdentityRow>(&format!(
        "SELECT {IDENTITY_SELECT} FROM identities WHERE owner_user_id = $1 ORDER BY position"
    ))
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(IdentityRow::into_identity)
    .collect::<Result<_>>()?;
    row.into_user(identities).map(Some)
}

/// `sql` with its `?` placeholders numbered (`$1`, `$2`, …), as PostgreSQL wants them;
/// each statement is translated once.
fn numbered(sql: &'static str) -> &'static str {
    static CACHE: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<&'static str, &'static str>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    cache.entry(sql).or_insert_with(|| {
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        // The statements are a fixed set of constants: the cache stays small.
        Box::leak(out.into_boxed_str())
    })
}

/// Binds [`Param`]s in order.
fn bind_params(
    mut query: sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments>,
    params: Vec<Param>,
) -> sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments> {
    for param in params {
        query = match param {
            Param::Text(text) => query.bind(text),
            Param::Int(n) => query.bind(n),
            Param::Bool(b) => query.bind(b),
            Param::Bytes(data) => query.bind(data),
            Param::MaybeInt(n) => query.bind(n),
        };
    }
    query
}

/// A PostgreSQL transaction, for the shared flows of [`super::core`]: statements run
/// at once; users and identities are locked with `FOR UPDATE`.
struct PgTx<'a, 'c>(&'a mut Db<'c>);

impl core::Tx for PgTx<'_, '_> {
    type DbError = sqlx::Error;
    const ROW_LOCKS: bool = true;

    async fn execute(&mut self, sql: &'static str, params: Vec<Param>) -> Result<(), sqlx::Error> {
        bind_params(sqlx::query(numbered(sql)), params)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn execute_count(
        &mut self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<u64, sqlx::Error> {
        Ok(bind_params(sqlx::query(numbered(sql)), params)
            .execute(&mut *self.0)
            .await?
            .rows_affected())
    }

    async fn fetch(
        &mut self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<Vec<Vec<core::Cell>>, sqlx::Error> {
        use sqlx::{Column as _, Row as _, TypeInfo as _};
        let rows = bind_params(sqlx::query(numbered(sql)), params)
            .fetch_all(&mut *self.0)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut cells = Vec::with_capacity(row.len());
            for (index, column) in row.columns().iter().enumerate() {
                let cell = match column.type_info().name() {
                    "INT8" => row.try_get::<Option<i64>, _>(index)?.map(core::Cell::Int),
                    "INT4" => row
                        .try_get::<Option<i32>, _>(index)?
                        .map(|n| core::Cell::Int(n.into())),
                    "BOOL" => row
                        .try_get::<Option<bool>, _>(index)?
                        .map(|b| core::Cell::Int(b.into())),
                    "BYTEA" => row
                        .try_get::<Option<Vec<u8>>, _>(index)?
                        .map(core::Cell::Bytes),
                    _ => row
                        .try_get::<Option<String>, _>(index)?
                        .map(core::Cell::Text),
                };
                cells.push(cell.unwrap_or(core::Cell::Null));
            }
            out.push(cells);
        }
        Ok(out)
    }

    fn is_unique_violation(err: &sqlx::Error) -> bool {
        is_unique_violation(err)
    }

    async fn flush(&mut self) -> Result<(), sqlx::Error> {
        Ok(())
    }

    async fn load_user(
        &mut self,
        user_id: &str,
    ) -> Result<Option<UserRecord>, Failure<sqlx::Error>> {
        Ok(load_user(self.0, user_id).await?)
    }

    async fn lock_user(&mut self, user_id: &str) -> Result<bool, sqlx::Error> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT user_id FROM users WHERE user_id = $1 FOR UPDATE")
                .bind(user_id)
                .fetch_optional(&mut *self.0)
                .await?;
        Ok(row.is_some())
    }

    async fn identity_owner(
        &mut self,
        key: &IdentityKey,
        lock: bool,
    ) -> Result<Option<(String, i64)>, sqlx::Error> {
        let sql = if lock {
            "SELECT owner_user_id, position FROM identities \
             WHERE provider = $1 AND identity_user_id = $2 FOR UPDATE"
        } else {
            "SELECT owner_user_id, position FROM identities \
             WHERE provider = $1 AND identity_user_id = $2"
        };
        sqlx::query_as(sql)
            .bind(&key.provider)
            .bind(&key.user_id)
            .fetch_optional(&mut *self.0)
            .await
    }
}

impl From<Failure<sqlx::Error>> for Attempt {
    fn from(failure: Failure<sqlx::Error>) -> Self {
        match failure {
            Failure::Rule(err) => Self::Rule(err),
            Failure::Db(err) => Self::Db(err),
            Failure::Moved => Self::Moved,
        }
    }
}

async fn add_signing_key_once(conn: &mut Db<'_>, key: &SigningKey) -> Result<(), Attempt> {
    sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
        .bind(key.created_at)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO signing_keys (kid, private_key_pem, public_n, public_e, created_at, retired_at) \
         VALUES ($1, $2, $3, $4, $5, NULL)",
    )
    .bind(&key.kid)
    .bind(&key.private_key_pem)
    .bind(&key.public_n)
    .bind(&key.public_e)
    .bind(key.created_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn ensure_connection_once(
    conn: &mut Db<'_>,
    connection: &Connection,
) -> Result<Connection, Attempt> {
    sqlx::query(
        "INSERT INTO connections (id, name, strategy, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&connection.id)
    .bind(&connection.name)
    .bind(&connection.strategy)
    .bind(crate::clock::unix_now())
    .execute(&mut *conn)
    .await?;
    let row: ConnectionRow =
        sqlx::query_as("SELECT id, name, strategy FROM connections WHERE name = $1")
            .bind(&connection.name)
            .fetch_one(&mut *conn)
            .await?;
    Ok(row.into())
}

async fn insert_refresh(conn: &mut Db<'_>, token: &StoredRefresh) -> Result<u64, Attempt> {
    execute(
        conn,
        sqlx::query(numbered(grants::INSERT_REFRESH))
            .bind(&token.hash)
            .bind(&token.family_id)
            .bind(&token.client_id)
            .bind(&token.user_id)
            .bind(&token.payload)
            .bind(token.expires_at),
    )
    .await
}

async fn execute(
    conn: &mut Db<'_>,
    query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
) -> Result<u64, Attempt> {
    Ok(query.execute(&mut *conn).await?.rows_affected())
}

#[async_trait]
impl Store for PgStore {
    fn pool_usage(&self) -> crate::metrics::PoolUsage {
        crate::metrics::PoolUsage {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    async fn ping(&self) -> Result<()> {
        // A simple query (one message, one round trip): no statement to name or to
        // keep on one server connection.
        match tokio::time::timeout(PING_TIMEOUT, sqlx::raw_sql("SELECT 1").execute(&self.pool))
            .await
        {
            Ok(done) => {
                done?;
                Ok(())
            }
            Err(_) => Err(Error::internal("database ping timed out")),
        }
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(read!(self, Isolation::Default, |db| sqlx::query_scalar(
            "SELECT value FROM settings WHERE key = $1"
        )
        .bind(key)
        .fetch_optional(&mut *db)))
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        transaction!(self, OnUnique::Internal, |conn| execute(
            conn,
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key)
            .bind(value)
        ))?;
        Ok(())
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        let rows: Vec<SigningKeyRow> = read!(self, Isolation::Default, |db| sqlx::query_as(
            "SELECT * FROM signing_keys ORDER BY created_at DESC, kid"
        )
        .fetch_all(&mut *db));
        Ok(rows.into_iter().map(SigningKey::from).collect())
    }

    async fn add_signing_key(&self, key: &SigningKey) -> Result<()> {
        transaction!(self, OnUnique::Internal, |conn| add_signing_key_once(
            conn, key
        ))
    }

    async fn connections(&self) -> Result<Vec<Connection>> {
        let rows: Vec<ConnectionRow> = read!(self, Isolation::Default, |db| sqlx::query_as(
            "SELECT id, name, strategy FROM connections ORDER BY created_at, name"
        )
        .fetch_all(&mut *db));
        Ok(rows.into_iter().map(Connection::from).collect())
    }

    async fn ensure_connection(&self, connection: &Connection) -> Result<Connection> {
        // A racing instance may insert the same name first: retrying reads its row.
        transaction!(
            self,
            OnUnique::Retry(|| Error::internal("connection insert kept colliding")),
            |conn| ensure_connection_once(conn, connection)
        )
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>> {
        let row: Option<ClientRow> = read!(self, Isolation::Default, |db| {
            sqlx::query_as(
            "SELECT client_id, name, secret_hash, grant_types, scopes FROM clients WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&mut *db)
        });
        Ok(row.map(ClientRecord::from))
    }

    async fn client_ids(&self) -> Result<Vec<String>> {
        Ok(read!(self, Isolation::Default, |db| sqlx::query_scalar(
            "SELECT client_id FROM clients ORDER BY created_at, client_id"
        )
        .fetch_all(&mut *db)))
    }

    async fn put_client(&self, client: &ClientRecord) -> Result<()> {
        let grant_types = client.grant_types.join(" ");
        let scopes = client.scopes.join(" ");
        transaction!(self, OnUnique::Internal, |conn| {
            execute(
            conn,
            sqlx::query(
                "INSERT INTO clients (client_id, name, secret_hash, grant_types, scopes, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (client_id) DO UPDATE SET \
                 name = excluded.name, secret_hash = excluded.secret_hash, \
                 grant_types = excluded.grant_types, scopes = excluded.scopes",
            )
            .bind(&client.client_id)
            .bind(&client.name)
            .bind(&client.secret_hash)
            .bind(&grant_types)
            .bind(&scopes)
            .bind(crate::clock::unix_now())
        )
        })?;
        Ok(())
    }

    async fn create_user(
        &self,
        user: &UserRecord,
        credential: Option<&Credential>,
        alongside: &Alongside,
    ) -> Result<()> {
        transaction!(
            self,
            OnUnique::Answer(|| DomainError::UserExists.into()),
            |conn| async move { core::create_user(&mut PgTx(conn), user, credential, alongside).await }
        )
    }

    async fn user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        // One snapshot for the user and its identities, so a concurrent link cannot
        // show a half-moved picture.
        Ok(read!(self, Isolation::Snapshot, |db| load_user(
            db, user_id
        )))
    }

    async fn list_users(&self, query: &UserQuery) -> Result<(Vec<UserRecord>, u64)> {
        let mut session = self.wire.session(&self.pool, Isolation::Snapshot).await?;
        let tx = &mut session.db();
        let mut count = QueryBuilder::<Postgres>::new("SELECT COUNT(*) FROM users u");
        push_user_search(&mut count, query, Dialect::Postgres);
        let (total,): (i64,) = count.build_query_as().fetch_one(&mut *tx).await?;

        let mut select = QueryBuilder::<Postgres>::new("SELECT u.* FROM users u");
        push_user_search(&mut select, query, Dialect::Postgres);
        push_user_order(&mut select, query);
        select
            .push(" LIMIT ")
            .push_bind(i64::try_from(query.per_page).unwrap_or(i64::MAX))
            .push(" OFFSET ")
            .push_bind(i64::try_from(query.offset()).unwrap_or(i64::MAX));
        let users: Vec<UserRow> = select.build_query_as().fetch_all(&mut *tx).await?;
        if users.is_empty() {
            session.finish().await?;
            return Ok((Vec::new(), total.unsigned_abs()));
        }
        let mut ids = QueryBuilder::<Postgres>::new(format!(
            "SELECT {IDENTITY_SELECT} FROM identities WHERE owner_user_id IN ("
        ));
        let mut separated = ids.separated(", ");
        for user in &users {
            separated.push_bind(user.user_id.clone());
        }
        ids.push(") ORDER BY owner_user_id, position");
        let identities: Vec<IdentityRow> = ids.build_query_as().fetch_all(&mut *tx).await?;
        session.finish().await?;
        Ok((rows::assemble(users, identities)?, total.unsigned_abs()))
    }

    async fn update_user(
        &self,
        user_id: &str,
        patch: &UserPatch,
        now: &str,
        alongside: &Alongside,
    ) -> Result<UserRecord> {
        transaction!(
            self,
            OnUnique::Answer(|| DomainError::UserExists.into()),
            |conn| async move {
                core::update_user(&mut PgTx(conn), user_id, patch, now, alongside).await
            }
        )
    }

    async fn delete_user(&self, user_id: &str, alongside: &Alongside) -> Result<bool> {
        transaction!(self, OnUnique::Internal, |conn| async move {
            core::delete_user(&mut PgTx(conn), user_id, alongside).await
        })
    }

    async fn find_login(&self, connection_id: &str, login: &str) -> Result<Option<Login>> {
        let login = login.to_lowercase();
        let row = sqlx::query_as::<_, (String, String, bool, Option<String>)>(
            "SELECT i.owner_user_id, i.password_hash, u.blocked, i.link_state FROM identities i \
             JOIN users u ON u.user_id = i.owner_user_id \
             WHERE i.connection_id = $1 AND (i.login_email = $2 OR i.login_username = $2) \
             AND i.password_hash IS NOT NULL LIMIT 1",
        )
        .bind(connection_id)
        .bind(&login);
        let row = read!(self, Isolation::Default, |db| row.fetch_optional(&mut *db));
        row.map(Login::from_row).transpose()
    }

    async fn record_login(&self, user_id: &str, now: &str) -> Result<()> {
        transaction!(self, OnUnique::Internal, |conn| execute(
            conn,
            sqlx::query(
                "UPDATE users SET last_login = $1, logins_count = logins_count + 1 \
                 WHERE user_id = $2",
            )
            .bind(now)
            .bind(user_id)
        ))?;
        Ok(())
    }

    async fn link(
        &self,
        primary_id: &str,
        target: &IdentityKey,
        proof: &LinkProof,
        policy: &LinkingPolicy,
        alongside: &Alongside,
    ) -> Result<Vec<Identity>> {
        // A unique violation here can only come from a race the locks did not order
        // (e.g. on an engine with different locking); the retry sees the winner, and
        // if it never settles the request gets what SQLite answers a loser.
        transaction!(
            self,
            OnUnique::Retry(|| DomainError::SecondaryNotFound.into()),
            |conn| async move {
                core::link(
                    &mut PgTx(conn),
                    primary_id,
                    target,
                    proof,
                    policy,
                    alongside,
                )
                .await
            }
        )
    }

    async fn unlink(
        &self,
        primary_id: &str,
        target: &IdentityKey,
        now: &str,
        mode: UnlinkMode,
        alongside: &Alongside,
    ) -> Result<Vec<Identity>> {
        transaction!(
            self,
            OnUnique::Answer(|| DomainError::UserExists.into()),
            |conn| async move {
                core::unlink(&mut PgTx(conn), primary_id, target, now, mode, alongside).await
            }
        )
    }

    async fn idempotency_key(
        &self,
        scope: &str,
        key: &str,
        expired_at_or_before: i64,
    ) -> Result<Option<StoredKey>> {
        let sql = numbered(rows::IDEMPOTENCY_SELECT);
        let row = sqlx::query_as::<_, (String, i64, String)>(sql)
            .bind(scope)
            .bind(key)
            .bind(expired_at_or_before);
        let row = read!(self, Isolation::Default, |db| row.fetch_optional(&mut *db));
        row.map(rows::stored_key).transpose()
    }

    async fn tenant_rows(&self) -> Result<TenantRows> {
        use sqlx::FromRow;
        let mut session = self.wire.session(&self.pool, Isolation::Snapshot).await?;
        let tx = &mut session.db();
        let users: Vec<UserRow> = sqlx::query_as("SELECT * FROM users")
            .fetch_all(&mut *tx)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {IDENTITY_SELECT_ALL} FROM identities ORDER BY owner_user_id, position"
        ))
        .fetch_all(&mut *tx)
        .await?;
        let identities = rows
            .iter()
            .map(|row| Ok((IdentityRow::from_row(row)?, CredentialRow::from_row(row)?)))
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
        let clients: Vec<ClientRow> =
            sqlx::query_as("SELECT client_id, name, secret_hash, grant_types, scopes FROM clients")
                .fetch_all(&mut *tx)
                .await?;
        let connections: Vec<ConnectionRow> =
            sqlx::query_as("SELECT id, name, strategy FROM connections")
                .fetch_all(&mut *tx)
                .await?;
        let keys: Vec<SigningKeyRow> =
            sqlx::query_as("SELECT * FROM signing_keys ORDER BY created_at DESC, kid")
                .fetch_all(&mut *tx)
                .await?;
        session.finish().await?;
        Ok(TenantRows {
            users: rows::assemble_stored(users, identities)?,
            clients: clients.into_iter().map(ClientRecord::from).collect(),
            connections: connections.into_iter().map(Connection::from).collect(),
            signing_keys: keys.into_iter().map(SigningKey::from).collect(),
        })
    }

    async fn replace_tenant(&self, data: &TenantWrite, audit: &LogEvent) -> Result<()> {
        let now = crate::clock::unix_now();
        transaction!(self, OnUnique::Internal, |conn| async move {
            core::replace_tenant(&mut PgTx(conn), data, audit, now).await
        })
    }

    async fn delete_all_users(&self, audit: &LogEvent) -> Result<()> {
        transaction!(self, OnUnique::Internal, |conn| async move {
            core::delete_all_users(&mut PgTx(conn), audit).await
        })
    }

    async fn put_code(&self, code: &StoredCode, now: i64) -> Result<()> {
        transaction!(self, OnUnique::Internal, |conn| async {
            execute(conn, sqlx::query(numbered(grants::PURGE_CODES)).bind(now)).await?;
            execute(
                conn,
                sqlx::query(numbered(grants::INSERT_CODE))
                    .bind(&code.hash)
                    .bind(&code.client_id)
                    .bind(&code.payload)
                    .bind(code.expires_at),
            )
            .await
        })?;
        Ok(())
    }

    async fn take_code(&self, hash: &str) -> Result<Option<StoredCode>> {
        let row: Option<(String, String, i64)> =
            transaction!(self, OnUnique::Internal, |conn| async {
                Ok::<_, Attempt>(
                    sqlx::query_as(numbered(grants::TAKE_CODE))
                        .bind(hash)
                        .fetch_optional(&mut *conn)
                        .await?,
                )
            })?;
        Ok(row.map(|(client_id, payload, expires_at)| StoredCode {
            hash: hash.to_owned(),
            client_id,
            payload,
            expires_at,
        }))
    }

    async fn put_refresh_token(&self, token: &StoredRefresh, now: i64) -> Result<()> {
        transaction!(self, OnUnique::Internal, |conn| async {
            execute(conn, sqlx::query(numbered(grants::PURGE_REFRESH)).bind(now)).await?;
            insert_refresh(conn, token).await
        })?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        hash: &str,
        next_hash: &str,
        now: i64,
    ) -> Result<Rotation> {
        transaction!(self, OnUnique::Internal, |conn| async {
            // The row lock of the UPDATE makes a concurrent presentation wait, then
            // find the token used: it is a reuse.
            let claimed: Option<(String, String, String, String, i64)> =
                sqlx::query_as(numbered(grants::CLAIM_REFRESH))
                    .bind(now)
                    .bind(hash)
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await?;
            if let Some((family_id, client_id, user_id, payload, expires_at)) = claimed {
                let old = StoredRefresh {
                    hash: hash.to_owned(),
                    family_id,
                    client_id,
                    user_id,
                    payload,
                    expires_at,
                };
                let next = StoredRefresh {
                    hash: next_hash.to_owned(),
                    ..old.clone()
                };
                insert_refresh(conn, &next).await?;
                return Ok::<_, Attempt>(Rotation::Rotated(old));
            }
            let found: Option<(String, i64)> = sqlx::query_as(numbered(grants::FIND_REFRESH))
                .bind(hash)
                .fetch_optional(&mut *conn)
                .await?;
            match found {
                Some((family, expires_at)) if expires_at > now => {
                    execute(
                        conn,
                        sqlx::query(numbered(grants::REVOKE_FAMILY))
                            .bind(now)
                            .bind(family),
                    )
                    .await?;
                    Ok(Rotation::Reused)
                }
                _ => Ok(Rotation::Unknown),
            }
        })
    }

    async fn put_session(&self, session: &StoredSession, now: i64) -> Result<()> {
        transaction!(self, OnUnique::Internal, |conn| async {
            execute(
                conn,
                sqlx::query(numbered(grants::PURGE_SESSIONS)).bind(now),
            )
            .await?;
            execute(
                conn,
                sqlx::query(numbered(grants::INSERT_SESSION))
                    .bind(&session.hash)
                    .bind(&session.user_id)
                    .bind(session.auth_time)
                    .bind(session.expires_at),
            )
            .await
        })?;
        Ok(())
    }

    async fn session(&self, hash: &str, now: i64) -> Result<Option<StoredSession>> {
        let row: Option<(String, i64, i64)> = read!(self, Isolation::Default, |db| {
            sqlx::query_as(numbered(grants::FIND_SESSION))
                .bind(hash)
                .bind(now)
                .fetch_optional(&mut *db)
        });
        Ok(row.map(|(user_id, auth_time, expires_at)| StoredSession {
            hash: hash.to_owned(),
            user_id,
            auth_time,
            expires_at,
        }))
    }

    async fn delete_session(&self, hash: &str) -> Result<()> {
        transaction!(self, OnUnique::Internal, |conn| execute(
            conn,
            sqlx::query(numbered(grants::DELETE_SESSION)).bind(hash)
        ))?;
        Ok(())
    }

    async fn identity_login(&self, key: &IdentityKey) -> Result<Option<(String, bool)>> {
        let row: Option<(String, bool, Option<String>)> =
            read!(self, Isolation::Default, |db| sqlx::query_as(numbered(
                grants::IDENTITY_OWNER
            ))
            .bind(&key.provider)
            .bind(&key.user_id)
            .fetch_optional(&mut *db));
        row.map(|(owner, blocked, link_state)| {
            let linked_blocked = rows::link_state_of(link_state.as_deref())?.blocked;
            Ok((owner, blocked || linked_blocked))
        })
        .transpose()
    }

    async fn record_log(&self, event: &LogEvent) -> Result<()> {
        transaction!(self, OnUnique::Internal, |conn| async move {
            core::insert_log(&mut PgTx(conn), event).await
        })
    }

    async fn job_op(&self, op: &crate::store::jobs::JobOp) -> Result<crate::store::jobs::JobReply> {
        transaction!(self, OnUnique::Internal, |conn| async move {
            core::jobs::run(&mut PgTx(conn), op).await
        })
    }

    async fn event_op(
        &self,
        op: &crate::store::events::EventOp,
    ) -> Result<crate::store::events::EventReply> {
        transaction!(self, OnUnique::Internal, |conn| async move {
            core::events::run(&mut PgTx(conn), op).await
        })
    }

    async fn list_logs(&self, query: &LogQuery) -> Result<(Vec<LogEvent>, u64)> {
        let mut session = self.wire.session(&self.pool, Isolation::Default).await?;
        let conn = &mut session.db();
        let mut count = QueryBuilder::<Postgres>::new("SELECT COUNT(*) FROM logs");
        push_log_filter(&mut count, query);
        let (total,): (i64,) = count.build_query_as().fetch_one(&mut *conn).await?;
        let mut select = QueryBuilder::<Postgres>::new(format!("SELECT {LOG_SELECT} FROM logs"));
        push_log_filter(&mut select, query);
        push_log_page(&mut select, query);
        let rows: Vec<LogRow> = select.build_query_as().fetch_all(&mut *conn).await?;
        session.finish().await?;
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

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://idlink:s3cret@db.internal:5432/idlink?sslmode=require"),
            "postgres://idlink:***@db.internal:5432/idlink?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact_url("postgresql:///test"), "postgresql:///test");
    }

    #[test]
    fn retries_are_bounded() {
        let outcome: Result<(), Attempt> = Err(Attempt::Moved);
        assert!(matches!(
            settle(outcome, OnUnique::Internal, 1),
            Next::Again(_)
        ));
        let outcome: Result<(), Attempt> = Err(Attempt::Moved);
        assert!(matches!(
            settle(outcome, OnUnique::Internal, MAX_ATTEMPTS),
            Next::Done(Err(Error::Internal(_)))
        ));
        let outcome: Result<(), Attempt> = Err(DomainError::SecondaryNotFound.into());
        assert!(matches!(
            settle(outcome, OnUnique::Internal, 1),
            Next::Done(Err(Error::Domain(DomainError::SecondaryNotFound)))
        ));
    }
}
