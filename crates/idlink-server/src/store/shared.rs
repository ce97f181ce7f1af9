//! [`Store`], implemented once for every backend: each read is one of
//! [`super::reads`] on a read the backend opens, each write a [`Write`] the backend
//! runs in one of its transactions. What is left per backend is [`Backend`]: opening a
//! read, running a transaction (its start, retries, what its error codes mean), the
//! health check and the pool's figures.

use std::future::Future;

use async_trait::async_trait;

use super::core::write::{Reply, Write};
use super::events::{EventOp, EventReply};
use super::grants::{Rotation, StoredCode, StoredRefresh, StoredSession};
use super::jobs::{JobOp, JobReply};
use super::reads::{self, Read};
use super::{
    Alongside, ClientRecord, Credential, Login, SigningKey, Store, TenantRows, TenantWrite,
};
use crate::domain::audit::{LogEvent, LogQuery};
use crate::domain::idempotency::StoredKey;
use crate::domain::linking::{LinkProof, LinkingPolicy, UnlinkMode};
use crate::domain::model::{Connection, Identity, IdentityKey, UserRecord};
use crate::domain::users::{UserPatch, UserQuery};
use crate::error::{Error, Result};

/// The isolation a read needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Each statement sees what was committed before it started: reads of one
    /// statement, or of statements that need not agree.
    Default,
    /// One snapshot for several statements (a page of users with its count and
    /// identities, the whole tenant), so a concurrent write cannot show half of itself.
    Snapshot,
}

/// What a database engine implements to serve as a [`Store`].
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// One read (see [`reads::Read`]).
    type Read: Read;

    /// Opens a read of `isolation`.
    fn read(&self, isolation: Isolation) -> impl Future<Output = Result<Self::Read>> + Send;

    /// Runs `write` in one transaction ([`super::core::write::run`] over the backend's
    /// [`super::core::Tx`]), answering its unique violations as
    /// [`Write::on_unique`] says.
    fn write(&self, write: Write) -> impl Future<Output = Result<Reply>> + Send;

    /// Checks the database answers.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;

    /// The connection pool's use right now.
    fn pool_usage(&self) -> crate::metrics::PoolUsage;
}

/// The [`Store`] of a [`Backend`].
#[derive(Debug)]
pub struct Shared<B>(pub B);

/// Runs one of [`reads`] on a read of `$isolation` and ends the read.
macro_rules! read {
    ($backend:expr, $isolation:expr, |$conn:ident| $body:expr) => {{
        let mut read = $backend.read($isolation).await?;
        let value = {
            let $conn = &mut read;
            $body.await?
        };
        read.finish().await?;
        Ok(value)
    }};
}

/// Runs a write and takes the reply it must answer.
macro_rules! write {
    ($backend:expr, $write:expr, $reply:pat => $value:expr) => {{
        match $backend.write($write).await? {
            $reply => Ok($value),
            other => Err(Error::internal(format!("unexpected store reply {other:?}"))),
        }
    }};
}

#[async_trait]
impl<B: Backend> Store for Shared<B> {
    async fn ping(&self) -> Result<()> {
        self.0.ping().await
    }

    fn pool_usage(&self) -> crate::metrics::PoolUsage {
        self.0.pool_usage()
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        read!(self.0, Isolation::Default, |conn| reads::setting(conn, key))
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        write!(self.0, Write::PutSetting { key, value }, Reply::Done => ())
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        read!(self.0, Isolation::Default, |conn| reads::signing_keys(conn))
    }

    async fn add_signing_key(&self, key: &SigningKey) -> Result<()> {
        write!(self.0, Write::AddSigningKey(key.clone()), Reply::Done => ())
    }

    async fn connections(&self) -> Result<Vec<Connection>> {
        read!(self.0, Isolation::Default, |conn| reads::connections(conn))
    }

    async fn ensure_connection(&self, connection: &Connection) -> Result<Connection> {
        let write = Write::EnsureConnection(connection.clone());
        write!(self.0, write, Reply::Connection(stored) => stored)
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>> {
        read!(self.0, Isolation::Default, |conn| reads::client(
            conn, client_id
        ))
    }

    async fn client_ids(&self) -> Result<Vec<String>> {
        read!(self.0, Isolation::Default, |conn| reads::client_ids(conn))
    }

    async fn put_client(&self, client: &ClientRecord) -> Result<()> {
        write!(self.0, Write::PutClient(client.clone()), Reply::Done => ())
    }

    async fn create_user(
        &self,
        user: &UserRecord,
        credential: Option<&Credential>,
        alongside: &Alongside,
    ) -> Result<()> {
        let write = Write::CreateUser {
            user: user.clone(),
            credential: credential.cloned(),
            alongside: alongside.clone(),
        };
        write!(self.0, write, Reply::Done => ())
    }

    async fn user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        // One statement: one snapshot already.
        read!(self.0, Isolation::Default, |conn| reads::user(
            conn, user_id
        ))
    }

    async fn list_users(&self, query: &UserQuery) -> Result<(Vec<UserRecord>, u64)> {
        read!(self.0, Isolation::Snapshot, |conn| reads::list_users(
            conn, query
        ))
    }

    async fn update_user(
        &self,
        user_id: &str,
        patch: &UserPatch,
        now: &str,
        alongside: &Alongside,
    ) -> Result<UserRecord> {
        let write = Write::UpdateUser {
            user_id: user_id.to_owned(),
            patch: patch.clone(),
            now: now.to_owned(),
            alongside: alongside.clone(),
        };
        write!(self.0, write, Reply::User(user) => user)
    }

    async fn delete_user(&self, user_id: &str, alongside: &Alongside) -> Result<bool> {
        let write = Write::DeleteUser {
            user_id: user_id.to_owned(),
            alongside: alongside.clone(),
        };
        write!(self.0, write, Reply::Deleted(deleted) => deleted)
    }

    async fn find_login(&self, connection_id: &str, login: &str) -> Result<Option<Login>> {
        read!(self.0, Isolation::Default, |conn| reads::find_login(
            conn,
            connection_id,
            login
        ))
    }

    async fn record_login(&self, user_id: &str, now: &str) -> Result<()> {
        let write = Write::RecordLogin {
            user_id: user_id.to_owned(),
            now: now.to_owned(),
        };
        write!(self.0, write, Reply::Done => ())
    }

    async fn link(
        &self,
        primary_id: &str,
        target: &IdentityKey,
        proof: &LinkProof,
        policy: &LinkingPolicy,
        alongside: &Alongside,
    ) -> Result<Vec<Identity>> {
        let write = Write::Link {
            primary_id: primary_id.to_owned(),
            target: target.clone(),
            proof: proof.clone(),
            policy: *policy,
            alongside: alongside.clone(),
        };
        write!(self.0, write, Reply::Identities(identities) => identities)
    }

    async fn unlink(
        &self,
        primary_id: &str,
        target: &IdentityKey,
        now: &str,
        mode: UnlinkMode,
        alongside: &Alongside,
    ) -> Result<Vec<Identity>> {
        let write = Write::Unlink {
            primary_id: primary_id.to_owned(),
            target: target.clone(),
            now: now.to_owned(),
            mode,
            alongside: alongside.clone(),
        };
        write!(self.0, write, Reply::Identities(identities) => identities)
    }

    async fn idempotency_key(
        &self,
        scope: &str,
        key: &str,
        expired_at_or_before: i64,
    ) -> Result<Option<StoredKey>> {
        read!(self.0, Isolation::Default, |conn| reads::idempotency_key(
            conn,
            scope,
            key,
            expired_at_or_before
        ))
    }

    async fn tenant_rows(&self) -> Result<TenantRows> {
        read!(self.0, Isolation::Snapshot, |conn| reads::tenant_rows(conn))
    }

    async fn replace_tenant(&self, data: TenantWrite, audit: &LogEvent) -> Result<()> {
        let write = Write::ReplaceTenant {
            data,
            audit: audit.clone(),
        };
        write!(self.0, write, Reply::Done => ())
    }

    async fn delete_all_users(&self, audit: &LogEvent) -> Result<()> {
        write!(self.0, Write::DeleteAllUsers(audit.clone()), Reply::Done => ())
    }

    async fn put_code(&self, code: &StoredCode, now: i64) -> Result<()> {
        let write = Write::PutCode {
            code: code.clone(),
            now,
        };
        write!(self.0, write, Reply::Done => ())
    }

    async fn take_code(&self, hash: &str) -> Result<Option<StoredCode>> {
        write!(self.0, Write::TakeCode(hash.to_owned()), Reply::Code(code) => code)
    }

    async fn put_refresh_token(&self, token: &StoredRefresh, now: i64) -> Result<()> {
        let write = Write::PutRefreshToken {
            token: token.clone(),
            now,
        };
        write!(self.0, write, Reply::Done => ())
    }

    async fn rotate_refresh_token(
        &self,
        hash: &str,
        next_hash: &str,
        now: i64,
    ) -> Result<Rotation> {
        let write = Write::RotateRefreshToken {
            hash: hash.to_owned(),
            next_hash: next_hash.to_owned(),
            now,
        };
        write!(self.0, write, Reply::Rotation(rotation) => rotation)
    }

    async fn put_session(&self, session: &StoredSession, now: i64) -> Result<()> {
        let write = Write::PutSession {
            session: session.clone(),
            now,
        };
        write!(self.0, write, Reply::Done => ())
    }

    async fn session(&self, hash: &str, now: i64) -> Result<Option<StoredSession>> {
        read!(self.0, Isolation::Default, |conn| reads::session(
            conn, hash, now
        ))
    }

    async fn delete_session(&self, hash: &str) -> Result<()> {
        write!(self.0, Write::DeleteSession(hash.to_owned()), Reply::Done => ())
    }

    async fn identity_login(&self, key: &IdentityKey) -> Result<Option<(String, bool)>> {
        read!(self.0, Isolation::Default, |conn| reads::identity_login(
            conn, key
        ))
    }

    async fn record_log(&self, event: &LogEvent) -> Result<()> {
        write!(self.0, Write::RecordLog(event.clone()), Reply::Done => ())
    }

    async fn list_logs(&self, query: &LogQuery) -> Result<(Vec<LogEvent>, u64)> {
        read!(self.0, Isolation::Default, |conn| reads::list_logs(
            conn, query
        ))
    }

    async fn job_op(&self, op: &JobOp) -> Result<JobReply> {
        write!(self.0, Write::Job(op.clone()), Reply::Job(reply) => reply)
    }

    async fn event_op(&self, op: &EventOp) -> Result<EventReply> {
        write!(self.0, Write::Event(op.clone()), Reply::Event(reply) => reply)
    }
}
