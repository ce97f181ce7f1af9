//! The SQLite backend: one file, WAL mode.
//!
//! Every write runs on the writer thread ([`super::sqlite_writer`]): one `rusqlite`
//! connection, group commit, each operation in its own savepoint, synchronously — so
//! writers queue in-process instead of spinning on SQLite's busy handler, and a group
//! costs one thread hand-off however many statements it runs. The write flows are the
//! shared ones of [`super::core`], driven on that thread by a trivial executor: the
//! [`RusqliteTx`] futures complete at once, since every statement is a plain blocking
//! call. Readers have a pool of read-only connections ([`super::sqlite_readers`]) and,
//! thanks to WAL, never wait for the writer.

use std::str::FromStr;
use std::time::Duration;

use crate::startup::{StartError, StartKind};
use rusqlite::{OptionalExtension as _, params};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use super::StoreOptions;
use super::core::write::{OnUnique, Reply, Write};
use super::core::{self, Failure, Param};
use super::reads::{self, Fetch, Read, Sql};
use super::search_sql::Dialect;
use super::shared::{Backend, Isolation};
use super::sqlite_readers::{Reader, Readers, SqliteRow, rows_of};
use super::sqlite_writer::Writer;
use crate::domain::model::{IdentityKey, UserRecord};
use crate::error::{Error, Result};

/// The SQLite [`Backend`] (a [`super::Store`] through [`super::shared::Shared`]).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    readers: Readers,
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

/// A write's failure on SQLite, where nothing is locked (so nothing moves) and no other
/// writer races this one: a unique violation is the request's answer, or a bug.
fn settle(failure: Failure<rusqlite::Error>, write: &Write) -> Error {
    match failure {
        Failure::Rule(err) => err,
        Failure::Db(err) if is_unique_violation(&err) => match write.on_unique() {
            OnUnique::Answer(answer) => answer(),
            OnUnique::Internal | OnUnique::Retry(_) => Error::internal(format!(
                "unique violation in {} on the single writer: {err}",
                write.name()
            )),
        },
        Failure::Db(err) => Error::internal(err),
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

        let readers = Readers::open(connect.get_filename(), options.max_connections)?;
        Ok(Self { readers, writer })
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
        let rows = rows_of(self.0, reads::load_user_sql(), [user_id]).map_err(Failure::Db)?;
        Ok(reads::users_of_joined_rows(&rows)?.pop())
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

/// One read on the read-only pool. A read of one statement runs it on the caller's
/// thread; a snapshot (several statements in one read transaction: a page of users, the
/// whole tenant) may read many rows, so each of its statements runs on the blocking
/// pool instead of holding up the requests that share the caller's thread.
#[derive(Debug)]
pub struct SqliteRead {
    // `None` while a snapshot's statement has it on the blocking pool, and for good if
    // that statement panicked.
    reader: Option<Reader>,
    snapshot: bool,
}

impl SqliteRead {
    fn reader(&self) -> Result<&Reader> {
        self.reader.as_ref().ok_or_else(lost_reader)
    }
}

fn lost_reader() -> Error {
    Error::internal("a SQLite read was used after its statement failed on the blocking pool")
}

fn run_read(reader: &Reader, sql: &Sql) -> Result<Vec<SqliteRow>> {
    rows_of(
        reader.conn(),
        &sql.text,
        rusqlite::params_from_iter(&sql.params),
    )
    .map_err(Error::internal)
}

impl Fetch for SqliteRead {
    type Row = SqliteRow;
    const DIALECT: Dialect = Dialect::Sqlite;

    async fn fetch(&mut self, sql: Sql) -> Result<Vec<SqliteRow>> {
        if !self.snapshot {
            return run_read(self.reader()?, &sql);
        }
        // Lost only if a statement panicked on the blocking pool (the reader is then
        // dropped there, back to its pool); this read is over.
        let reader = self.reader.take().ok_or_else(lost_reader)?;
        let (reader, rows) = tokio::task::spawn_blocking(move || {
            let rows = run_read(&reader, &sql);
            (reader, rows)
        })
        .await
        .map_err(Error::internal)?;
        self.reader = Some(reader);
        rows
    }
}

impl Read for SqliteRead {
    async fn finish(self) -> Result<()> {
        if self.snapshot {
            self.reader()?
                .conn()
                .execute_batch("COMMIT")
                .map_err(Error::internal)?;
        }
        Ok(())
    }
}

impl Backend for SqliteStore {
    type Read = SqliteRead;

    async fn read(&self, isolation: Isolation) -> Result<SqliteRead> {
        let reader = self.readers.acquire().await?;
        let snapshot = isolation == Isolation::Snapshot;
        if snapshot {
            // Deferred: the snapshot is taken by the first statement.
            reader
                .conn()
                .execute_batch("BEGIN")
                .map_err(Error::internal)?;
        }
        Ok(SqliteRead {
            reader: Some(reader),
            snapshot,
        })
    }

    async fn write(&self, write: Write) -> Result<Reply> {
        self.writer
            .run(move |conn| {
                drive(conn, async |tx| core::write::run(tx, &write).await)
                    .map_err(|failure| settle(failure, &write))
            })
            .await
    }

    async fn ping(&self) -> Result<()> {
        let reader = self.readers.acquire().await?;
        reader
            .conn()
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(Error::internal)
    }

    fn pool_usage(&self) -> crate::metrics::PoolUsage {
        self.readers.usage()
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
