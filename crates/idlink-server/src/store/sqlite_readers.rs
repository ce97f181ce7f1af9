//! SQLite's readers: a bounded pool of read-only `rusqlite` connections, used on the
//! caller's own thread.
//!
//! A point read (a user, a client, a session) takes tens of microseconds in SQLite, less
//! than handing the statement to another thread and waking the caller again, which is
//! what a connection with a worker thread of its own (sqlx's) costs on every statement.
//! So a read runs its statements right where the request runs; only reads that may be
//! long (see [`super::sqlite::SqliteStore`]'s snapshot reads) move to the blocking pool.
//! With WAL, readers never wait for the writer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::{FromSql, Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::rows::{At, SharedRow};
use crate::error::{Error, Result};
use crate::metrics::PoolUsage;

/// How long a read waits for a free connection before it gives up (sqlx's default).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Prepared statements kept per connection (the reads' statements, and the user
/// searches' most recent shapes).
const STATEMENT_CACHE: usize = 64;

/// The pool of read-only connections. Cheap to clone.
#[derive(Clone)]
pub struct Readers(Arc<Pool>);

struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    open: AtomicU32,
    max: u32,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("path", &self.0.path)
            .field("max", &self.0.max)
            .finish_non_exhaustive()
    }
}

impl Readers {
    /// A pool of at most `max` connections to the database at `path`, which must exist
    /// in WAL mode already; one connection is opened now, so a database that cannot be
    /// read is reported at start.
    pub fn open(path: &Path, max: u32) -> Result<Self> {
        let max = max.max(1);
        let first = open_read_only(path).map_err(Error::internal)?;
        Ok(Self(Arc::new(Pool {
            path: path.to_owned(),
            idle: Mutex::new(vec![first]),
            permits: Arc::new(Semaphore::new(max as usize)),
            open: AtomicU32::new(1),
            max,
        })))
    }

    /// A connection of the pool, waiting while all are in use.
    pub async fn acquire(&self) -> Result<Reader> {
        let permit =
            tokio::time::timeout(ACQUIRE_TIMEOUT, Arc::clone(&self.0.permits).acquire_owned())
                .await
                .map_err(|_| Error::internal("timed out waiting for a SQLite read connection"))?
                .map_err(Error::internal)?;
        let idle = self.0.lock_idle().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = open_read_only(&self.0.path).map_err(Error::internal)?;
                self.0.open.fetch_add(1, Ordering::Relaxed);
                conn
            }
        };
        Ok(Reader {
            conn: Some(conn),
            pool: Arc::clone(&self.0),
            _permit: permit,
        })
    }

    /// The pool's use right now.
    pub fn usage(&self) -> PoolUsage {
        PoolUsage {
            open: self.0.open.load(Ordering::Relaxed),
            idle: u32::try_from(self.0.lock_idle().len()).unwrap_or(u32::MAX),
            max: self.0.max,
        }
    }
}

impl Pool {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // The list is only pushed to and popped from: a panic cannot leave it half-changed.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    // NO_MUTEX: a connection is used by one thread at a time (the pool hands it out).
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// A connection taken from [`Readers`]; back in the pool when dropped, its read
/// transaction (if the read was cancelled inside one) rolled back first.
pub struct Reader {
    conn: Option<Connection>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl Reader {
    /// The connection.
    pub fn conn(&self) -> &Connection {
        // Taken out only in `drop`.
        self.conn
            .as_ref()
            .expect("a reader holds its connection until dropped")
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
            // Closed rather than handed out inside someone else's snapshot.
            self.pool.open.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        self.pool.lock_idle().push(conn);
    }
}

/// A row copied out of a `rusqlite` statement (whose rows live only until the next
/// step), for the shared reads.
#[derive(Debug)]
pub struct SqliteRow {
    names: Arc<[Box<str>]>,
    cells: Vec<Value>,
}

/// Runs `sql` on `conn` (a cached prepared statement) and copies out every row.
pub fn rows_of(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<SqliteRow>> {
    let mut statement = conn.prepare_cached(sql)?;
    let names: Arc<[Box<str>]> = statement
        .column_names()
        .into_iter()
        .map(Box::from)
        .collect();
    let mut rows = statement.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let cells = (0..names.len())
            .map(|index| row.get::<_, Value>(index))
            .collect::<rusqlite::Result<_>>()?;
        out.push(SqliteRow {
            names: Arc::clone(&names),
            cells,
        });
    }
    Ok(out)
}

impl SqliteRow {
    fn cell<T: FromSql>(&self, at: At<'_>) -> Result<Option<T>> {
        let index = match at {
            At::Index(index) => Some(index),
            At::Name(name) => self
                .names
                .iter()
                .position(|column| column.eq_ignore_ascii_case(name)),
        };
        let value = index
            .and_then(|index| self.cells.get(index))
            .ok_or_else(|| Error::internal(format!("no {at} in the row")))?;
        Option::<T>::column_result(ValueRef::from(value))
            .map_err(|e| Error::internal(format!("{at}: {e}")))
    }
}

impl SharedRow for SqliteRow {
    fn text_cell(&self, at: At<'_>) -> Result<Option<String>> {
        self.cell(at)
    }
    fn int_cell(&self, at: At<'_>) -> Result<Option<i64>> {
        self.cell(at)
    }
    fn bool_cell(&self, at: At<'_>) -> Result<Option<bool>> {
        self.cell(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("readers.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER, name TEXT, flag BOOLEAN);
             INSERT INTO t VALUES (1, 'one', 1), (2, NULL, 0);",
        )
        .unwrap();
        (dir, path)
    }

    #[test]
    fn rows_read_by_index_and_by_name_with_nulls() {
        let (_dir, path) = database();
        let conn = open_read_only(&path).unwrap();
        let rows = rows_of(&conn, "SELECT id, name, flag FROM t ORDER BY id", []).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].int(0).unwrap(), 1);
        assert_eq!(rows[0].text("name").unwrap(), "one");
        assert!(rows[0].boolean("FLAG").unwrap());
        assert_eq!(rows[1].opt_text("name").unwrap(), None);
        assert!(rows[1].text("name").is_err(), "NULL is not a String");
        assert!(rows[0].text("missing").is_err());
        assert!(rows[0].text("id").is_err(), "an integer is not text");
    }

    #[tokio::test]
    async fn the_pool_is_bounded_and_a_cancelled_snapshot_is_rolled_back() {
        let (_dir, path) = database();
        let readers = Readers::open(&path, 2).unwrap();
        let first = readers.acquire().await.unwrap();
        let second = readers.acquire().await.unwrap();
        assert_eq!(readers.usage().open, 2);
        let third = tokio::time::timeout(Duration::from_millis(50), readers.acquire()).await;
        assert!(third.is_err(), "a third reader waits while two are out");
        first
            .conn()
            .execute_batch("BEGIN; SELECT * FROM t;")
            .unwrap();
        drop(first);
        drop(second);
        let usage = readers.usage();
        assert_eq!((usage.open, usage.idle, usage.max), (2, 2, 2));
        let (a, b) = (
            readers.acquire().await.unwrap(),
            readers.acquire().await.unwrap(),
        );
        assert!(
            a.conn().is_autocommit() && b.conn().is_autocommit(),
            "no snapshot left open"
        );
    }

    #[test]
    fn readers_cannot_write() {
        let (_dir, path) = database();
        let conn = open_read_only(&path).unwrap();
        assert!(conn.execute("DELETE FROM t", []).is_err());
    }
}
