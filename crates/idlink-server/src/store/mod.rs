//! Persistence behind one interface. SQL lives below this line, rules above it: the
//! backends load and lock rows, call the pure rules of [`crate::domain`], and write the
//! outcome in the same transaction.

mod core;
pub mod events;
mod filters;
pub mod grants;
pub mod jobs;
pub mod postgres;
mod reads;
mod rows;
mod search_sql;
mod shared;
pub mod sqlite;
mod sqlite_readers;
mod sqlite_writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::audit::{LogEvent, LogQuery};
use crate::domain::idempotency::{Claim, StoredKey};
use crate::domain::linking::{LinkProof, LinkingPolicy, UnlinkMode};
use crate::domain::model::{Connection, Identity, IdentityKey, UserRecord};
use crate::domain::users::{UserPatch, UserQuery};
use crate::error::{Error, Result};
pub use grants::{Rotation, StoredCode, StoredRefresh, StoredSession};
pub use shared::{Backend, Shared};

/// What a change writes beside itself, in its own transaction (so the change is never
/// without them, nor they without the change), through [`core::write_alongside`].
#[derive(Debug, Clone, Default)]
pub struct Alongside {
    /// The audit log event; `None` where Auth0 logs nothing (user create, update,
    /// delete).
    pub audit: Option<LogEvent>,
    /// The caller's `Idempotency-Key`: claimed first in the transaction, so a
    /// concurrent duplicate waits for it (or sees it), and answered at its end. See
    /// `docs/idempotency.md`.
    pub idempotency: Option<Claim>,
    /// Link events for the outbox (`docs/events.md`); empty when events are off.
    pub events: Vec<crate::domain::events::OutboxEvent>,
}

impl Alongside {
    /// An audit event alone.
    pub fn audit(audit: LogEvent) -> Self {
        Self {
            audit: Some(audit),
            ..Self::default()
        }
    }

    /// Adds the outbox events.
    #[must_use]
    pub fn with_events(mut self, events: Vec<crate::domain::events::OutboxEvent>) -> Self {
        self.events = events;
        self
    }

    /// With the caller's key claim, if it sent a key.
    #[must_use]
    pub fn with_idempotency(mut self, claim: Option<Claim>) -> Self {
        self.idempotency = claim;
        self
    }
}

/// An RS256 signing key as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    pub private_key_pem: String,
    /// Modulus, base64url.
    pub public_n: String,
    /// Exponent, base64url.
    pub public_e: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` while it signs.
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// An application allowed to ask for tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub client_id: String,
    pub name: String,
    /// argon2id PHC string; `None` for a public client.
    pub secret_hash: Option<String>,
    pub grant_types: Vec<String>,
    /// Management API scopes granted to its client-credentials tokens.
    pub scopes: Vec<String>,
}

/// The password credential of a database identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub password_hash: String,
    /// Lowercased email to sign in with.
    pub login_email: Option<String>,
    /// Lowercased username to sign in with.
    pub login_username: Option<String>,
}

/// What the password grant needs about a database identity.
#[derive(Debug, Clone)]
pub struct Login {
    /// The user that owns the identity (its primary when linked).
    pub owner_user_id: String,
    pub password_hash: String,
    /// The owner is blocked, or the identity's own user was blocked when it was linked
    /// (a blocked secondary's password must not sign in as its primary).
    pub blocked: bool,
}

impl Login {
    /// From `(owner_user_id, password_hash, users.blocked, identities.link_state)`.
    fn from_row(
        (owner_user_id, password_hash, owner_blocked, link_state): (
            String,
            String,
            bool,
            Option<String>,
        ),
    ) -> Result<Self> {
        let linked_blocked = rows::link_state_of(link_state.as_deref())?.blocked;
        Ok(Self {
            owner_user_id,
            password_hash,
            blocked: owner_blocked || linked_blocked,
        })
    }
}

/// A user as stored whole: its record and, aligned with `user.identities`, each
/// identity's password credential (database identities with a password).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUser {
    pub user: UserRecord,
    pub credentials: Vec<Option<Credential>>,
}

/// Everything a tenant holds but its settings and audit log: what an emulator snapshot
/// exports.
#[derive(Debug, Clone, Default)]
pub struct TenantRows {
    /// Ordered by `user_id`; identities in position order.
    pub users: Vec<StoredUser>,
    pub clients: Vec<ClientRecord>,
    pub connections: Vec<Connection>,
    /// Newest first.
    pub signing_keys: Vec<SigningKey>,
}

/// What replacing a tenant's state writes (see [`Store::replace_tenant`]). Connections
/// are not part of it: identities refer to the ones already stored.
#[derive(Debug, Clone, Default)]
pub struct TenantWrite {
    /// Every user, replacing all users and identities.
    pub users: Vec<StoredUser>,
    /// Every client but `keep_client`, replacing the others.
    pub clients: Vec<ClientRecord>,
    /// The client left as it is (the emulator's admin client).
    pub keep_client: Option<String>,
    /// When given, these replace every signing key.
    pub signing_keys: Option<Vec<SigningKey>>,
    /// Unix seconds on the server's clock (shifted by the emulator's `PUT
    /// /idlink/v1/clock`): the written clients' `created_at`.
    pub now: i64,
}

/// The storage interface. Every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Checks the database answers.
    async fn ping(&self) -> Result<()>;
    /// The connection pool's use right now, for `/metrics`.
    fn pool_usage(&self) -> crate::metrics::PoolUsage;
    /// A tenant-wide setting.
    async fn setting(&self, key: &str) -> Result<Option<String>>;
    /// Sets a tenant-wide setting.
    async fn put_setting(&self, key: &str, value: &str) -> Result<()>;

    /// Every signing key, newest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKey>>;
    /// Adds a signing key and retires the current one (at `key.created_at`).
    async fn add_signing_key(&self, key: &SigningKey) -> Result<()>;

    /// Every connection.
    async fn connections(&self) -> Result<Vec<Connection>>;
    /// Adds a connection unless one of that name exists; returns the stored one.
    async fn ensure_connection(&self, connection: &Connection) -> Result<Connection>;

    /// One client.
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>>;
    /// Every client's id, in the order they were added.
    async fn client_ids(&self) -> Result<Vec<String>>;
    /// Creates or replaces a client.
    async fn put_client(&self, client: &ClientRecord) -> Result<()>;

    /// Creates a user with its single main identity; [`domain::error::Error::UserExists`](crate::domain::error::Error::UserExists) when the
    /// identity, user id or login name is taken. `alongside` is written in the same
    /// transaction; a key already claimed is [`Error::IdempotencyKeyInUse`] (nothing
    /// written).
    async fn create_user(
        &self,
        user: &UserRecord,
        credential: Option<&Credential>,
        alongside: &Alongside,
    ) -> Result<()>;
    /// One user with its identities.
    async fn user(&self, user_id: &str) -> Result<Option<UserRecord>>;
    /// A page of users and the total matching.
    async fn list_users(&self, query: &UserQuery) -> Result<(Vec<UserRecord>, u64)>;
    /// Applies a patch under lock; [`domain::error::Error::UserNotFound`](crate::domain::error::Error::UserNotFound) when missing.
    /// `alongside` is written in the same transaction.
    async fn update_user(
        &self,
        user_id: &str,
        patch: &UserPatch,
        now: &str,
        alongside: &Alongside,
    ) -> Result<UserRecord>;
    /// Deletes a user and every identity linked to it; false when it did not exist
    /// (then `alongside` is not written either).
    async fn delete_user(&self, user_id: &str, alongside: &Alongside) -> Result<bool>;

    /// The database identity signing in as `login` (email or username, any case).
    async fn find_login(&self, connection_id: &str, login: &str) -> Result<Option<Login>>;
    /// Counts a successful login.
    async fn record_login(&self, user_id: &str, now: &str) -> Result<()>;

    /// Links the standalone user whose main identity is `target` into `primary_id`;
    /// returns the primary's identities. See [`crate::domain::linking::plan_link`], which
    /// gets `proof` and decides on the rows as loaded inside the transaction.
    /// `policy` says what becomes of the secondary's metadata (and whether a restoring
    /// unlink's snapshot is kept). `alongside` (its audit event required; link events,
    /// idempotency claim) is written in
    /// the same transaction, so a link is never without its record.
    async fn link(
        &self,
        primary_id: &str,
        target: &IdentityKey,
        proof: &LinkProof,
        policy: &LinkingPolicy,
        alongside: &Alongside,
    ) -> Result<Vec<Identity>>;
    /// Unlinks `target` from `primary_id`, recreating it as a standalone user; returns
    /// the primary's remaining identities (`mode`: as Auth0, or restoring the user as it
    /// was). `alongside` is written in the same transaction.
    async fn unlink(
        &self,
        primary_id: &str,
        target: &IdentityKey,
        now: &str,
        mode: UnlinkMode,
        alongside: &Alongside,
    ) -> Result<Vec<Identity>>;

    /// The answer stored under the caller's `Idempotency-Key`, unless it has expired
    /// (created at or before `expired_at_or_before`, unix seconds).
    async fn idempotency_key(
        &self,
        scope: &str,
        key: &str,
        expired_at_or_before: i64,
    ) -> Result<Option<StoredKey>>;

    /// The whole tenant (users with identities and credentials, clients, connections,
    /// keys), read from one snapshot of the database.
    async fn tenant_rows(&self) -> Result<TenantRows>;
    /// Replaces users, identities, clients (and keys when given) with `data` in one
    /// transaction, writing `audit` in it; concurrent writes wait or come after. `data`
    /// is taken, not copied: a seed of many users is held once.
    async fn replace_tenant(&self, data: TenantWrite, audit: &LogEvent) -> Result<()>;
    /// Deletes every user and identity in one transaction, writing `audit` in it.
    async fn delete_all_users(&self, audit: &LogEvent) -> Result<()>;
    /// Stores an authorization code (and drops the expired ones, so they stay bounded).
    async fn put_code(&self, code: &StoredCode, now: i64) -> Result<()>;
    /// Removes and returns a code: a second call for the same code finds nothing.
    async fn take_code(&self, hash: &str) -> Result<Option<StoredCode>>;
    /// Stores the first refresh token of a family (and drops expired ones).
    async fn put_refresh_token(&self, token: &StoredRefresh, now: i64) -> Result<()>;
    /// Presents the refresh token `hash`: if current, it is marked used and `next_hash`
    /// joins its family with the same grant and expiry; if used or revoked before, the
    /// whole family is revoked (reuse detection).
    async fn rotate_refresh_token(&self, hash: &str, next_hash: &str, now: i64)
    -> Result<Rotation>;
    /// Stores a login session (and drops expired ones).
    async fn put_session(&self, session: &StoredSession, now: i64) -> Result<()>;
    /// The unexpired session `hash`.
    async fn session(&self, hash: &str, now: i64) -> Result<Option<StoredSession>>;
    /// Ends a session (logout).
    async fn delete_session(&self, hash: &str) -> Result<()>;
    /// Who signs in with the identity `key` (its owner: a primary when it is linked), and
    /// whether that sign-in is blocked (the owner is, or the identity's own user was
    /// blocked when it was linked).
    async fn identity_login(&self, key: &IdentityKey) -> Result<Option<(String, bool)>>;

    /// Records an event on its own (a failed attempt: there is no change to join).
    async fn record_log(&self, event: &LogEvent) -> Result<()>;
    /// A page of the log and the total matching.
    async fn list_logs(&self, query: &LogQuery) -> Result<(Vec<LogEvent>, u64)>;

    /// One operation of the jobs API, in one transaction (see [`jobs::Jobs`] for the
    /// typed calls).
    async fn job_op(&self, op: &jobs::JobOp) -> Result<jobs::JobReply>;

    /// One operation on the link events' outbox and deliveries, in one transaction
    /// (see [`events::Events`] for the typed calls).
    async fn event_op(&self, op: &events::EventOp) -> Result<events::EventReply>;
}

/// Opens the store a database URL names (`sqlite://…`, `postgres://…` or
/// `postgresql://…`), applying migrations.
pub async fn open(url: &str, options: &StoreOptions) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(shared::Shared(
            sqlite::SqliteStore::open(url, options).await?,
        )))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(shared::Shared(
            postgres::PgStore::open(url, options).await?,
        )))
    } else {
        Err(Error::internal(
            crate::startup::StartError::config(format!(
                "unsupported database URL {:?}",
                postgres::redact_url(url)
            ))
            .hint("use sqlite://PATH (e.g. sqlite://idlink.db) or postgres://USER:PASSWORD@HOST:PORT/DATABASE in --db / IDLINK_DATABASE_URL"),
        ))
    }
}

/// Tuning shared by the backends.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Pool size: connections for readers (SQLite) or in all (PostgreSQL).
    pub max_connections: u32,
    /// PostgreSQL: statements running longer are cancelled (`statement_timeout`);
    /// `None` keeps the server's setting.
    pub statement_timeout: Option<Duration>,
    /// PostgreSQL: how many times to retry the first connection at start-up (1 s
    /// apart, doubling up to 10 s), so instances can start before the database.
    pub connect_retries: u32,
    /// PostgreSQL: the most time spent connecting at start-up, all retries included
    /// (each attempt is logged); then start-up fails with exit code 69.
    pub connect_timeout: Duration,
    /// PostgreSQL: how long a request waits for a free pooled connection.
    pub acquire_timeout: Duration,
    /// PostgreSQL: prepared statements cached per connection (`None`: sqlx's default,
    /// 100). `Some(0)` sends every query as an unnamed statement (sqlx itself would
    /// name them and never close them when its cache is off).
    pub statement_cache_capacity: Option<usize>,
    /// PostgreSQL: what sits between idlink and the server; behind a pooler in
    /// transaction mode the store sends its statements the way such a pooler needs.
    pub pooler: DbPooler,
    /// PostgreSQL: run the migrations over this URL instead (a direct connection,
    /// when the main URL goes through a transaction pooler, which cannot hold the
    /// migrator's session-level advisory lock).
    pub migrate_url: Option<String>,
    /// SQLite: how hard a commit waits for the disk.
    pub sqlite_synchronous: SqliteSynchronous,
    /// Where the SQLite writer records its group commits (the server registers the
    /// same histograms for `/metrics`).
    pub metrics: crate::metrics::StoreMetrics,
}

/// What sits between idlink and PostgreSQL (`--db-pooler`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DbPooler {
    /// A direct connection, or a pooler in session mode: a client keeps its server
    /// connection, so named statements are cached per connection (one round trip per
    /// query once prepared) and `statement_timeout` is set once per connection.
    #[default]
    None,
    /// A pooler in transaction mode (PgBouncer's `pool_mode = transaction`): a client
    /// holds a server connection only from `BEGIN` to `COMMIT`. Every store call then
    /// runs in a transaction, statements are unnamed, `statement_timeout` is set per
    /// transaction (`SET LOCAL`), and migrations need `--db-migrate-url`. See
    /// `docs/scaling.md`.
    Transaction,
}

impl std::str::FromStr for DbPooler {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "transaction" => Ok(Self::Transaction),
            _ => Err(format!(
                "{s:?} is not a pooler mode: expected none or transaction"
            )),
        }
    }
}

/// SQLite's `synchronous` setting, as idlink offers it (WAL mode always).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqliteSynchronous {
    /// Every commit is on disk (fsync of the WAL) before it is acknowledged: an
    /// acknowledged write survives a process kill, an OS crash and power loss. Group
    /// commit pays the fsync once per group of operations, so it costs little.
    #[default]
    Full,
    /// The WAL is synced only at checkpoints: an acknowledged write survives a process
    /// kill, but an OS crash or power loss may take the last commits with it (the
    /// database stays consistent).
    Normal,
}

impl SqliteSynchronous {
    /// The value of `PRAGMA synchronous`.
    pub fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

impl std::str::FromStr for SqliteSynchronous {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            _ => Err(format!(
                "{s:?} is not a synchronous mode: expected full or normal"
            )),
        }
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            statement_timeout: Some(Duration::from_secs(30)),
            connect_retries: 5,
            connect_timeout: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(10),
            statement_cache_capacity: None,
            migrate_url: None,
            pooler: DbPooler::default(),
            sqlite_synchronous: SqliteSynchronous::default(),
            metrics: crate::metrics::StoreMetrics::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DbPooler, SqliteSynchronous};

    #[test]
    fn pooler_modes_parse_and_default_to_none() {
        assert_eq!(DbPooler::default(), DbPooler::None);
        assert_eq!("transaction".parse(), Ok(DbPooler::Transaction));
        assert_eq!("None".parse(), Ok(DbPooler::None));
        assert!("session".parse::<DbPooler>().is_err());
    }

    #[test]
    fn synchronous_modes_parse_and_default_to_full() {
        assert_eq!(SqliteSynchronous::default(), SqliteSynchronous::Full);
        assert_eq!("normal".parse(), Ok(SqliteSynchronous::Normal));
        assert_eq!("FULL".parse(), Ok(SqliteSynchronous::Full));
        assert!("off".parse::<SqliteSynchronous>().is_err());
    }
}
