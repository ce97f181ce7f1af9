//! The SQLite writer: one dedicated thread owns the one write connection (`rusqlite`)
//! and runs every write, in groups.
//!
//! Writes are queued; the thread takes the queue's operations (up to
//! [`GROUP_COMMIT_MAX`]), runs them one after another in one `BEGIN IMMEDIATE`
//! transaction, each in its own savepoint, and answers each only after the shared
//! `COMMIT`. An operation that fails — an error, or a panic — is rolled back to its
//! savepoint and answered with its error; the group's others commit. Everything between
//! `BEGIN` and `COMMIT` happens on this thread, synchronously, with cached prepared
//! statements: no statement crosses a thread boundary inside a transaction, and one
//! group costs one hand-off to the thread and back. Callers may go away at any moment
//! (cancel-safe): the thread finishes what it started, and skips an operation whose
//! caller left before it began.

use std::panic::AssertUnwindSafe;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::metrics::StoreMetrics;

/// Most operations committed together.
pub const GROUP_COMMIT_MAX: usize = 64;

/// The handle to the writer thread. The thread ends once every handle is dropped.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

fn stopped() -> Error {
    Error::internal("the SQLite writer has stopped")
}

impl Writer {
    /// Starts the thread, which owns `conn` from now on.
    pub fn start(conn: Connection, metrics: StoreMetrics) -> Result<Self> {
        let (jobs, queue) = mpsc::channel(1024);
        std::thread::Builder::new()
            .name("idlink-sqlite-writer".into())
            .spawn(move || run_groups(conn, queue, &metrics))
            .map_err(Error::internal)?;
        Ok(Self { jobs })
    }

    /// Runs `work` on the writer thread, inside a savepoint of the next group, and
    /// answers once that group has committed. `work`'s error rolls back only its own
    /// changes.
    pub async fn run<R, F>(&self, work: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op = Op {
            work: Some(work),
            outcome: None,
            reply,
        };
        self.jobs.send(Box::new(op)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One queued operation, whatever its result type.
trait Job: Send {
    /// Whether its caller has stopped waiting.
    fn abandoned(&self) -> bool;
    /// Runs the work; false when it failed (its savepoint is then rolled back).
    fn run(&mut self, conn: &mut Connection) -> bool;
    /// Answers the caller, once the group's fate (`committed`) is known.
    fn answer(self: Box<Self>, committed: &std::result::Result<(), String>);
}

struct Op<R, F> {
    work: Option<F>,
    outcome: Option<Result<R>>,
    reply: oneshot::Sender<Result<R>>,
}

impl<R, F> Job for Op<R, F>
where
    R: Send,
    F: FnOnce(&mut Connection) -> Result<R> + Send,
{
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn run(&mut self, conn: &mut Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        // A panic is that operation's failure, not the writer's: the thread lives on.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| work(conn)))
            .unwrap_or_else(|_| Err(Error::internal("a write operation panicked")));
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn answer(self: Box<Self>, committed: &std::result::Result<(), String>) {
        let result = match (self.outcome, committed) {
            (Some(Err(err)), _) => Err(err),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)) | None, Err(message)) => Err(Error::internal(message.clone())),
            (None, Ok(())) => Err(Error::internal("the operation did not run")),
        };
        let _ = self.reply.send(result);
    }
}

fn run_groups(
    mut conn: Connection,
    mut queue: mpsc::Receiver<Box<dyn Job>>,
    metrics: &StoreMetrics,
) {
    while let Some(first) = queue.blocking_recv() {
        let mut group = vec![first];
        while group.len() < GROUP_COMMIT_MAX {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let size = group.len();
        commit_group(&mut conn, group);
        metrics.record_group(size, started.elapsed());
    }
}

/// Answers every job of a group that could not commit.
fn give_up(conn: &Connection, jobs: Vec<Box<dyn Job>>, err: &rusqlite::Error) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let failed = Err(err.to_string());
    for job in jobs {
        job.answer(&failed);
    }
}

fn commit_group(conn: &mut Connection, group: Vec<Box<dyn Job>>) {
    if let Err(err) = conn.execute_batch("BEGIN IMMEDIATE") {
        return give_up(conn, group, &err);
    }
    let mut ran: Vec<Box<dyn Job>> = Vec::with_capacity(group.len());
    let mut queued = group.into_iter();
    while let Some(mut job) = queued.next() {
        // A request abandoned while it waited (deadline, client gone) changes nothing.
        if job.abandoned() {
            continue;
        }
        if let Err(err) = conn.execute_batch("SAVEPOINT op") {
            ran.push(job);
            ran.extend(queued);
            return give_up(conn, ran, &err);
        }
        let ok = job.run(conn);
        let end = if ok {
            "RELEASE op"
        } else {
            "ROLLBACK TO op; RELEASE op"
        };
        ran.push(job);
        if let Err(err) = conn.execute_batch(end) {
            // The transaction is in an unknown state: the whole group is given up.
            ran.extend(queued);
            return give_up(conn, ran, &err);
        }
    }
    let committed = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
    if committed.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for job in ran {
        job.answer(&committed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &tempfile::TempDir) -> (Writer, std::path::PathBuf) {
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
            row.get::<_, String>(0)
        })
        .unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY NOT NULL)")
            .unwrap();
        (Writer::start(conn, StoreMetrics::default()).unwrap(), path)
    }

    fn insert(key: &'static str) -> impl FnOnce(&mut Connection) -> Result<()> + Send {
        move |conn| {
            conn.execute("INSERT INTO t (k) VALUES (?)", [key])
                .map_err(Error::internal)?;
            Ok(())
        }
    }

    fn keys(path: &std::path::Path) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut statement = conn.prepare("SELECT k FROM t ORDER BY k").unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// Operations queued at once (one group, or a few): the one that panics and the one
    /// that fails half-way are rolled back alone, the others commit, and the writer
    /// keeps going.
    #[tokio::test]
    async fn a_failing_or_panicking_operation_rolls_back_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = writer(&dir);
        let panics = |conn: &mut Connection| -> Result<()> {
            conn.execute("INSERT INTO t (k) VALUES ('panicked')", [])
                .map_err(Error::internal)?;
            panic!("boom");
        };
        let fails_half_way = |conn: &mut Connection| -> Result<()> {
            conn.execute("INSERT INTO t (k) VALUES ('half')", [])
                .map_err(Error::internal)?;
            // The primary key refuses the second row: the first must go too.
            conn.execute("INSERT INTO t (k) VALUES ('a')", [])
                .map_err(Error::internal)?;
            Ok(())
        };
        let (a, p, f, b) = tokio::join!(
            writer.run(insert("a")),
            writer.run(panics),
            writer.run(fails_half_way),
            writer.run(insert("b")),
        );
        assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
        assert!(matches!(p, Err(Error::Internal(_))), "{p:?}");
        assert!(matches!(f, Err(Error::Internal(_))), "{f:?}");
        assert_eq!(keys(&path), ["a", "b"]);
        // The thread survived the panic.
        writer.run(insert("c")).await.unwrap();
        assert_eq!(keys(&path), ["a", "b", "c"]);
    }

    /// An operation whose caller went away before the group began is skipped.
    #[tokio::test]
    async fn an_abandoned_operation_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = writer(&dir);
        // Hold the thread busy, then queue an operation and drop its caller.
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let busy_writer = writer.clone();
        let busy = tokio::spawn(async move {
            busy_writer
                .run(move |_conn| {
                    started_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    Ok(())
                })
                .await
        });
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        let abandoned = writer.run(insert("gone"));
        let _ = tokio::time::timeout(std::time::Duration::from_millis(50), abandoned).await;
        release_tx.send(()).unwrap();
        busy.await.unwrap().unwrap();
        writer.run(insert("kept")).await.unwrap();
        assert_eq!(keys(&path), ["kept"]);
    }
}
