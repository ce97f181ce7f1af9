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

use sqlx::Postgres;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection as _, Executor as _};

use self::wire::{Db, Session, Wire};

use super::StoreOptions;
use super::core::write::{OnUnique, Reply, Write};
use super::core::{self, Failure, Param};
use super::reads::{self, Fetch, Read, Sql};
use super::rows::{At, IDENTITY_SELECT, SharedRow};
use super::search_sql::Dialect;
use super::shared::{Backend, Isolation};
use crate::domain::error::Error as DomainError;
use crate::domain::model::{IdentityKey, UserRecord};
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

/// The PostgreSQL [`Backend`] (a [`super::Store`] through [`super::shared::Shared`]).
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
        // The statements are a fixed set of constants: the cache stays small.
        Box::leak(number_placeholders(sql).into_boxed_str())
    })
}

/// `sql` with its `?` placeholders numbered, for statements built at run time.
fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    push_numbered(&mut out, sql, &mut 0);
    out
}

/// Appends `sql` to `out` with its `?` placeholders numbered on from `*n`.
fn push_numbered(out: &mut String, sql: &str, n: &mut usize) {
    for c in sql.chars() {
        if c == '?' {
            *n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
}

/// The statements of a [`core::Tx::execute_batch`] as one: each but the last as a
/// data-modifying `WITH` query (run to completion although nothing reads it), the last
/// as the main statement, placeholders numbered across all of them. PostgreSQL runs
/// them on one snapshot, in no set order, and fires the foreign keys' checks and
/// cascades after all of them: what the batch's contract allows (distinct rows, no
/// statement reading another's change). Cached per sequence of statements; `None`
/// (send them one by one) once the cache is full, or past the protocol's 65,535
/// parameters.
fn batched(statements: &[core::Statement]) -> Option<&'static str> {
    /// Distinct batches kept: the flows make a handful (a link moves one identity or a
    /// few); past this, rare shapes go one statement at a time.
    const MAX_SHAPES: usize = 256;
    type Shapes = std::collections::HashMap<Vec<&'static str>, &'static str>;
    static CACHE: std::sync::LazyLock<std::sync::Mutex<Shapes>> =
        std::sync::LazyLock::new(Default::default);
    let params: usize = statements.iter().map(|(_, params)| params.len()).sum();
    if params > usize::from(u16::MAX) {
        return None;
    }
    let shape: Vec<&'static str> = statements.iter().map(|(sql, _)| *sql).collect();
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(sql) = cache.get(&shape) {
        return Some(sql);
    }
    if cache.len() >= MAX_SHAPES {
        return None;
    }
    let (last, first) = shape.split_last()?;
    let mut out = String::from("WITH ");
    let mut n = 0;
    for (index, sql) in first.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!("w{index} AS ("));
        push_numbered(&mut out, sql, &mut n);
        out.push(')');
    }
    out.push(' ');
    push_numbered(&mut out, last, &mut n);
    let sql: &'static str = Box::leak(out.into_boxed_str());
    cache.insert(shape, sql);
    Some(sql)
}

/// [`core::Tx::lock_link_parties`] in one statement: the primary and the target's
/// standalone owner as this statement sees it, locked in ascending `user_id` order
/// (rows are locked as the sort hands them out; `COLLATE "C"` is byte order, as Rust
/// sorts strings).
const LOCK_LINK_PARTIES: &str = "SELECT user_id FROM users WHERE user_id = $1 \
     OR user_id = (SELECT owner_user_id FROM identities \
     WHERE provider = $2 AND identity_user_id = $3 AND position = 0) \
     ORDER BY user_id COLLATE \"C\" FOR UPDATE";

/// [`core::Tx::load_locked_parties`] in one statement, run once the locks are held:
/// the target's owner and position, its row locked, beside the locked users (`$3`)
/// joined with their identities. Those users' rows and identities change only under
/// their locks, which we hold, so this snapshot holds them as they will stay.
static LOAD_LOCKED_PARTIES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH target (target_owner, target_position) AS (SELECT owner_user_id, position \
         FROM identities WHERE provider = $1 AND identity_user_id = $2 FOR UPDATE) \
         SELECT t.target_owner, t.target_position, u.*, {IDENTITY_SELECT} \
         FROM (SELECT 1) AS one LEFT JOIN target t ON true \
         LEFT JOIN users u ON u.user_id = ANY($3) \
         LEFT JOIN identities i ON i.owner_user_id = u.user_id \
         ORDER BY u.user_id, i.position"
    )
});

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

    async fn execute_batch(&mut self, statements: Vec<core::Statement>) -> Result<(), sqlx::Error> {
        let sql = match statements.len() {
            0 => return Ok(()),
            1 => None,
            _ => batched(&statements),
        };
        let Some(sql) = sql else {
            for (sql, params) in statements {
                self.execute(sql, params).await?;
            }
            return Ok(());
        };
        let params = statements.into_iter().flat_map(|(_, params)| params);
        bind_params(sqlx::query(sql), params.collect())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn lock_link_parties(
        &mut self,
        primary_id: &str,
        target: &IdentityKey,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(LOCK_LINK_PARTIES)
            .bind(primary_id)
            .bind(&target.provider)
            .bind(&target.user_id)
            .fetch_all(&mut *self.0)
            .await
    }

    async fn load_locked_parties(
        &mut self,
        target: &IdentityKey,
        locked: &[String],
    ) -> Result<core::LockedParties, Failure<sqlx::Error>> {
        use sqlx::Row as _;
        let rows = sqlx::query(LOAD_LOCKED_PARTIES.as_str())
            .bind(&target.provider)
            .bind(&target.user_id)
            .bind(locked)
            .fetch_all(&mut *self.0)
            .await
            .map_err(Failure::Db)?;
        let owner = match rows.first() {
            Some(row) => {
                let owner: Option<String> = row.try_get("target_owner").map_err(Failure::Db)?;
                let position: Option<i64> = row.try_get("target_position").map_err(Failure::Db)?;
                owner.zip(position)
            }
            None => None,
        };
        Ok((owner, reads::users_of_joined_rows(&rows)?))
    }

    async fn load_user(
        &mut self,
        user_id: &str,
    ) -> Result<Option<UserRecord>, Failure<sqlx::Error>> {
        Ok(reads::user(self.0, user_id).await?)
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

/// Binds [`Param`]s in order.
fn bind_params(
    mut query: sqlx::query::Query<'_, Postgres, PgArguments>,
    params: Vec<Param>,
) -> sqlx::query::Query<'_, Postgres, PgArguments> {
    for param in params {
        query = match param {
            Param::Text(text) => query.bind(text),
            Param::Int(n) => query.bind(n),
            Param::MaybeInt(n) => query.bind(n),
            Param::Bool(b) => query.bind(b),
            Param::Bytes(data) => query.bind(data),
        };
    }
    query
}

impl SharedRow for PgRow {
    fn text_cell(&self, at: At<'_>) -> Result<Option<String>> {
        cell(self, at)
    }
    fn int_cell(&self, at: At<'_>) -> Result<Option<i64>> {
        cell(self, at)
    }
    fn bool_cell(&self, at: At<'_>) -> Result<Option<bool>> {
        cell(self, at)
    }
}

/// The cell of a PostgreSQL row at `at`.
fn cell<T>(row: &PgRow, at: At<'_>) -> Result<Option<T>>
where
    T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    use sqlx::Row as _;
    Ok(match at {
        At::Index(index) => row.try_get(index)?,
        At::Name(name) => row.try_get(name)?,
    })
}

impl Fetch for Db<'_> {
    type Row = PgRow;
    const DIALECT: Dialect = Dialect::Postgres;

    async fn fetch(&mut self, sql: Sql) -> Result<Vec<PgRow>> {
        let text = number_placeholders(&sql.text);
        Ok(bind_params(sqlx::query(&text), sql.params)
            .fetch_all(self)
            .await?)
    }
}

impl Fetch for Session {
    type Row = PgRow;
    const DIALECT: Dialect = Dialect::Postgres;

    async fn fetch(&mut self, sql: Sql) -> Result<Vec<PgRow>> {
        Fetch::fetch(&mut self.db(), sql).await
    }
}

impl Read for Session {
    async fn finish(self) -> Result<()> {
        Ok(Session::finish(self).await?)
    }
}

impl Backend for PgStore {
    type Read = Session;

    async fn read(&self, isolation: Isolation) -> Result<Session> {
        Ok(self.wire.session(&self.pool, isolation).await?)
    }

    async fn write(&self, write: Write) -> Result<Reply> {
        transaction!(self, write.on_unique(), |conn| async {
            core::write::run(&mut PgTx(conn), &write).await
        })
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

    fn pool_usage(&self) -> crate::metrics::PoolUsage {
        crate::metrics::PoolUsage::of(&self.pool)
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
