//! How the PostgreSQL store's statements travel: directly, or through a pooler in
//! transaction mode (PgBouncer's `pool_mode = transaction`).
//!
//! sqlx 0.8 sends a query with parameters in two round trips, Parse/Describe/**Sync**
//! then Bind/Execute/Sync, and names the statement (`sqlx_s_N`) unless the query is
//! marked non-persistent; with its statement cache off it still names them and never
//! closes them. A transaction pooler gives the server connection back to its pool at
//! every Sync outside a transaction, so the Bind may reach a server that never saw the
//! Parse (`prepared statement "sqlx_s_1" does not exist`), and names left behind collide
//! with another client's (`already exists`). Inside `BEGIN … COMMIT` the pooler keeps
//! the client on one server connection, and an unnamed statement lives only until the
//! next Parse. So behind such a pooler every store call runs in a transaction and every
//! statement is unnamed; session state (`SET statement_timeout`) is set per transaction
//! with `SET LOCAL`, in the same round trip as `BEGIN`.
//!
//! Every statement of the store goes through a [`Db`], the one place that decides
//! whether it is named.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use sqlx::error::BoxDynError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{
    PgArguments, PgConnection, PgPool, PgQueryResult, PgRow, PgStatement, PgTypeInfo,
};
use sqlx::{Describe, Either, Execute, Executor, Postgres, Transaction};

use crate::store::shared::Isolation;
use crate::store::{DbPooler, StoreOptions};

/// How statements are sent, decided once from `--db-pooler` and `--db-statement-cache`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wire {
    /// Named statements, which sqlx prepares once per connection and then runs in one
    /// round trip. Off behind a transaction pooler, and when the statement cache is
    /// off (sqlx would then name every statement and never close it).
    named: bool,
    /// Every store call in `BEGIN … COMMIT`, so a transaction pooler keeps each query's
    /// two round trips on one server connection.
    pinned: bool,
    /// `statement_timeout` in milliseconds: set per connection directly, per
    /// transaction (`SET LOCAL`) behind a transaction pooler.
    timeout_millis: Option<u128>,
    /// What [`Wire::after_begin_statement`] answers, for the default isolation and for
    /// a snapshot, made once per store.
    after_begin: [Option<String>; 2],
}

impl Wire {
    pub(super) fn new(options: &StoreOptions) -> Self {
        let pinned = options.pooler == DbPooler::Transaction;
        let timeout_millis = options
            .statement_timeout
            .map(|timeout: Duration| timeout.as_millis().max(1));
        let after_begin = |snapshot: bool| {
            let mut parts = Vec::new();
            if snapshot {
                parts.push("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY".to_owned());
            }
            if let (true, Some(millis)) = (pinned, timeout_millis) {
                parts.push(format!("SET LOCAL statement_timeout = {millis}"));
            }
            (!parts.is_empty()).then(|| parts.join("; "))
        };
        Self {
            named: !pinned && options.statement_cache_capacity != Some(0),
            pinned,
            timeout_millis,
            after_begin: [after_begin(false), after_begin(true)],
        }
    }

    /// The statement a new pooled connection runs once: session settings, which only
    /// last while the client keeps its server connection (not behind a transaction
    /// pooler, where [`Wire::after_begin_statement`] sets them instead).
    pub(super) fn connect_statement(&self) -> Option<String> {
        match self.timeout_millis {
            Some(millis) if !self.pinned => Some(format!("SET statement_timeout = {millis}")),
            _ => None,
        }
    }

    /// What a transaction runs right after sqlx's own `BEGIN` (one simple query): the
    /// isolation asked for and, behind a transaction pooler, the session settings as
    /// `SET LOCAL`. Not folded into the `BEGIN` (`begin_with`): a call cancelled while
    /// that custom `BEGIN` is in flight gave its connection back to the pool still in a
    /// (read-only) transaction, and the next write on it failed (tests/limits.rs).
    pub(super) fn after_begin_statement(&self, isolation: Isolation) -> Option<&str> {
        match isolation {
            Isolation::Default => self.after_begin[0].as_deref(),
            Isolation::Snapshot => self.after_begin[1].as_deref(),
        }
    }

    /// Whether the migrations may run over the pooled URL: sqlx's migrator holds a
    /// session-level advisory lock, which a transaction pooler cannot keep on one
    /// server connection.
    pub(super) fn migrates_through_pool(&self) -> bool {
        !self.pinned
    }

    /// Begins a transaction on a pooled connection.
    pub(super) async fn begin(
        &self,
        pool: &PgPool,
        isolation: Isolation,
    ) -> sqlx::Result<Transaction<'static, Postgres>> {
        let mut tx = pool.begin().await?;
        if let Some(sql) = self.after_begin_statement(isolation) {
            tx.execute(sql).await?;
        }
        Ok(tx)
    }

    /// The connection of a store call that is not a write transaction: a pooled
    /// connection, or a transaction when the call needs a snapshot or the pooler
    /// needs one. End it with [`Session::finish`].
    pub(super) async fn session(
        &self,
        pool: &PgPool,
        isolation: Isolation,
    ) -> sqlx::Result<Session> {
        let held = if self.pinned || isolation == Isolation::Snapshot {
            Held::Tx(self.begin(pool, isolation).await?)
        } else {
            Held::Conn(pool.acquire().await?)
        };
        Ok(Session {
            held,
            named: self.named,
        })
    }

    /// `conn` as the store's statements use it.
    pub(super) fn db<'c>(&self, conn: &'c mut PgConnection) -> Db<'c> {
        Db {
            conn,
            named: self.named,
        }
    }
}

/// A connection (usually inside a transaction) that every statement of the store runs
/// on: `&mut Db` is a sqlx [`Executor`] that sends statements unnamed unless
/// [`Wire`] allows names.
#[derive(Debug)]
pub(super) struct Db<'c> {
    conn: &'c mut PgConnection,
    named: bool,
}

/// A query, named only if both it and the [`Db`] it runs on allow it.
struct Sent<E> {
    query: E,
    named: bool,
}

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Sent<E> {
    fn sql(&self) -> &'q str {
        self.query.sql()
    }

    fn statement(&self) -> Option<&PgStatement<'q>> {
        self.query.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, BoxDynError> {
        self.query.take_arguments()
    }

    fn persistent(&self) -> bool {
        self.named && self.query.persistent()
    }
}

impl<'c> Executor<'c> for &'c mut Db<'_> {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let named = self.named;
        (&mut *self.conn).fetch_many(Sent { query, named })
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let named = self.named;
        (&mut *self.conn).fetch_optional(Sent { query, named })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        (&mut *self.conn).prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        (&mut *self.conn).describe(sql)
    }
}

/// What a [`Session`] holds.
#[derive(Debug)]
enum Held {
    Conn(PoolConnection<Postgres>),
    Tx(Transaction<'static, Postgres>),
}

/// The connection of one read (see [`Wire::session`]).
#[derive(Debug)]
pub struct Session {
    held: Held,
    named: bool,
}

impl Session {
    /// The connection, for the read's statements.
    pub(super) fn db(&mut self) -> Db<'_> {
        let conn: &mut PgConnection = match &mut self.held {
            Held::Conn(conn) => conn,
            Held::Tx(tx) => tx,
        };
        Db {
            conn,
            named: self.named,
        }
    }

    /// Ends the read: commits its transaction, if it has one.
    pub(super) async fn finish(self) -> sqlx::Result<()> {
        match self.held {
            Held::Tx(tx) => tx.commit().await,
            Held::Conn(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(pooler: DbPooler, cache: Option<usize>, timeout: Option<u64>) -> Wire {
        Wire::new(&StoreOptions {
            pooler,
            statement_cache_capacity: cache,
            statement_timeout: timeout.map(Duration::from_secs),
            ..StoreOptions::default()
        })
    }

    #[test]
    fn direct_connections_name_statements_and_set_the_timeout_once() {
        let direct = wire(DbPooler::None, None, Some(30));
        assert!(direct.named);
        assert_eq!(
            direct.connect_statement().as_deref(),
            Some("SET statement_timeout = 30000")
        );
        assert_eq!(direct.after_begin_statement(Isolation::Default), None);
        assert_eq!(
            direct.after_begin_statement(Isolation::Snapshot),
            Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        );
        assert!(direct.migrates_through_pool());
        // No cache: unnamed, rather than named and never closed.
        assert!(!wire(DbPooler::None, Some(0), Some(30)).named);
        assert_eq!(wire(DbPooler::None, None, None).connect_statement(), None);
    }

    #[test]
    fn a_transaction_pooler_gets_unnamed_statements_in_transactions_with_local_settings() {
        let pooled = wire(DbPooler::Transaction, Some(100), Some(30));
        assert!(!pooled.named);
        assert!(pooled.pinned);
        assert_eq!(pooled.connect_statement(), None);
        assert_eq!(
            pooled.after_begin_statement(Isolation::Default),
            Some("SET LOCAL statement_timeout = 30000")
        );
        assert_eq!(
            pooled.after_begin_statement(Isolation::Snapshot),
            Some(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
                 SET LOCAL statement_timeout = 30000"
            )
        );
        assert!(!pooled.migrates_through_pool());
        assert_eq!(
            wire(DbPooler::Transaction, None, None).after_begin_statement(Isolation::Default),
            None
        );
    }
}
