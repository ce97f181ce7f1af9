//! Every write of the store as one value ([`Write`]), run by [`run`] over [`Tx`]: a
//! backend runs a `Write` in one of its transactions and decides, from
//! [`Write::on_unique`], what a unique violation means. The flows with rules live in
//! [`super`]; the simple writes (settings, keys, connections, clients, logins) and
//! sign-in's grants are here.

use super::jobs::Cells;
use super::{
    Failure, Outcome, Param, Tx, create_user, delete_all_users, delete_user, events, insert_log,
    jobs, key_params, link, replace_tenant, unlink, update_user,
};
use crate::domain::audit::LogEvent;
use crate::domain::error::Error as DomainError;
use crate::domain::linking::{LinkProof, LinkingPolicy, UnlinkMode};
use crate::domain::model::{Connection, Identity, IdentityKey, UserRecord};
use crate::domain::users::UserPatch;
use crate::error::Error;
use crate::store::events::{EventOp, EventReply};
use crate::store::grants::{self, Rotation, StoredCode, StoredRefresh, StoredSession};
use crate::store::jobs::{JobOp, JobReply};
use crate::store::{Alongside, ClientRecord, Credential, SigningKey, TenantWrite};

/// One write transaction of the store.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "one value per store call, moved once to the backend: boxing would only add an allocation"
)]
pub enum Write {
    PutSetting {
        key: String,
        value: String,
    },
    AddSigningKey(SigningKey),
    EnsureConnection(Connection),
    PutClient(ClientRecord),
    CreateUser {
        user: UserRecord,
        credential: Option<Credential>,
        alongside: Alongside,
    },
    UpdateUser {
        user_id: String,
        patch: UserPatch,
        now: String,
        alongside: Alongside,
    },
    DeleteUser {
        user_id: String,
        alongside: Alongside,
    },
    RecordLogin {
        user_id: String,
        now: String,
    },
    Link {
        primary_id: String,
        target: IdentityKey,
        proof: LinkProof,
        policy: LinkingPolicy,
        alongside: Alongside,
    },
    Unlink {
        primary_id: String,
        target: IdentityKey,
        now: String,
        mode: UnlinkMode,
        alongside: Alongside,
    },
    ReplaceTenant {
        data: TenantWrite,
        audit: LogEvent,
    },
    DeleteAllUsers(LogEvent),
    RecordLog(LogEvent),
    PutCode {
        code: StoredCode,
        now: i64,
    },
    TakeCode(String),
    PutRefreshToken {
        token: StoredRefresh,
        now: i64,
    },
    RotateRefreshToken {
        hash: String,
        next_hash: String,
        now: i64,
    },
    PutSession {
        session: StoredSession,
        now: i64,
    },
    DeleteSession(String),
    Job(JobOp),
    Event(EventOp),
}

/// What a [`Write`] answers.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one value per store call, moved once back to the caller"
)]
pub enum Reply {
    Done,
    Deleted(bool),
    Connection(Connection),
    User(UserRecord),
    Identities(Vec<Identity>),
    Code(Option<StoredCode>),
    Rotation(Rotation),
    Job(JobReply),
    Event(EventReply),
}

/// What a unique violation means for a write: decided here, once for every backend.
#[derive(Debug, Clone, Copy)]
pub enum OnUnique {
    /// A bug or an impossible state: an internal error.
    Internal,
    /// The request's answer, e.g. 409 for a taken user id.
    Answer(fn() -> Error),
    /// A race with a concurrent writer (backends with [`Tx::ROW_LOCKS`]): run again
    /// (the next attempt sees the winner and answers as the rules say); when attempts
    /// run out, answer this. A single writer has no such race: there it is a bug.
    Retry(fn() -> Error),
}

impl Write {
    /// What a unique violation means for this write.
    pub fn on_unique(&self) -> OnUnique {
        match self {
            // A taken user id, identity or login name (the credential's login email on
            // an update; the recreated user's id on an unlink).
            Self::CreateUser { .. } | Self::UpdateUser { .. } | Self::Unlink { .. } => {
                OnUnique::Answer(|| DomainError::UserExists.into())
            }
            // Only a race the locks did not order (e.g. on an engine with different
            // locking); the retry sees the winner, and if it never settles the request
            // gets what a single writer answers a loser.
            Self::Link { .. } => OnUnique::Retry(|| DomainError::SecondaryNotFound.into()),
            // A racing instance may insert the same name first: retrying reads its row.
            Self::EnsureConnection(_) => {
                OnUnique::Retry(|| Error::internal("connection insert kept colliding"))
            }
            _ => OnUnique::Internal,
        }
    }

    /// The write's name, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::PutSetting { .. } => "put_setting",
            Self::AddSigningKey(_) => "add_signing_key",
            Self::EnsureConnection(_) => "ensure_connection",
            Self::PutClient(_) => "put_client",
            Self::CreateUser { .. } => "create_user",
            Self::UpdateUser { .. } => "update_user",
            Self::DeleteUser { .. } => "delete_user",
            Self::RecordLogin { .. } => "record_login",
            Self::Link { .. } => "link",
            Self::Unlink { .. } => "unlink",
            Self::ReplaceTenant { .. } => "replace_tenant",
            Self::DeleteAllUsers(_) => "delete_all_users",
            Self::RecordLog(_) => "record_log",
            Self::PutCode { .. } => "put_code",
            Self::TakeCode(_) => "take_code",
            Self::PutRefreshToken { .. } => "put_refresh_token",
            Self::RotateRefreshToken { .. } => "rotate_refresh_token",
            Self::PutSession { .. } => "put_session",
            Self::DeleteSession(_) => "delete_session",
            Self::Job(_) => "job",
            Self::Event(_) => "event",
        }
    }
}

/// Runs `write` in the caller's transaction.
pub async fn run<T: Tx>(tx: &mut T, write: &Write) -> Outcome<Reply, T> {
    let done = |()| Reply::Done;
    match write {
        Write::PutSetting { key, value } => put_setting(tx, key, value).await.map(done),
        Write::AddSigningKey(key) => add_signing_key(tx, key).await.map(done),
        Write::EnsureConnection(connection) => ensure_connection(tx, connection)
            .await
            .map(Reply::Connection),
        Write::PutClient(client) => put_client(tx, client).await.map(done),
        Write::CreateUser {
            user,
            credential,
            alongside,
        } => create_user(tx, user, credential.as_ref(), alongside)
            .await
            .map(done),
        Write::UpdateUser {
            user_id,
            patch,
            now,
            alongside,
        } => update_user(tx, user_id, patch, now, alongside)
            .await
            .map(Reply::User),
        Write::DeleteUser { user_id, alongside } => delete_user(tx, user_id, alongside)
            .await
            .map(Reply::Deleted),
        Write::RecordLogin { user_id, now } => record_login(tx, user_id, now).await.map(done),
        Write::Link {
            primary_id,
            target,
            proof,
            policy,
            alongside,
        } => link(tx, primary_id, target, proof, policy, alongside)
            .await
            .map(Reply::Identities),
        Write::Unlink {
            primary_id,
            target,
            now,
            mode,
            alongside,
        } => unlink(tx, primary_id, target, now, *mode, alongside)
            .await
            .map(Reply::Identities),
        Write::ReplaceTenant { data, audit } => replace_tenant(tx, data, audit).await.map(done),
        Write::DeleteAllUsers(audit) => delete_all_users(tx, audit).await.map(done),
        Write::RecordLog(event) => insert_log(tx, event).await.map(done),
        Write::PutCode { code, now } => put_code(tx, code, *now).await.map(done),
        Write::TakeCode(hash) => take_code(tx, hash).await.map(Reply::Code),
        Write::PutRefreshToken { token, now } => put_refresh_token(tx, token, *now).await.map(done),
        Write::RotateRefreshToken {
            hash,
            next_hash,
            now,
        } => rotate_refresh_token(tx, hash, next_hash, *now)
            .await
            .map(Reply::Rotation),
        Write::PutSession { session, now } => put_session(tx, session, *now).await.map(done),
        Write::DeleteSession(hash) => execute(tx, grants::DELETE_SESSION, vec![hash.into()])
            .await
            .map(done),
        Write::Job(op) => jobs::run(tx, op).await.map(Reply::Job),
        Write::Event(op) => events::run(tx, op).await.map(Reply::Event),
    }
}

/// Runs one statement and sends it.
async fn execute<T: Tx>(tx: &mut T, sql: &'static str, params: Vec<Param>) -> Outcome<(), T> {
    tx.execute(sql, params).await.map_err(Failure::Db)?;
    tx.flush().await.map_err(Failure::Db)
}

/// The rows of a query.
async fn fetch<T: Tx>(tx: &mut T, sql: &'static str, params: Vec<Param>) -> Outcome<Vec<Cells>, T> {
    let rows = tx.fetch(sql, params).await.map_err(Failure::Db)?;
    Ok(rows.into_iter().map(|row| Cells(row.into_iter())).collect())
}

const PUT_SETTING: &str = "INSERT INTO settings (key, value) VALUES (?, ?) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

async fn put_setting<T: Tx>(tx: &mut T, key: &str, value: &str) -> Outcome<(), T> {
    execute(tx, PUT_SETTING, vec![key.into(), value.into()]).await
}

const RETIRE_SIGNING_KEY: &str = "UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL";

/// Adds `key` as the signing key, retiring the current one at its `created_at`.
async fn add_signing_key<T: Tx>(tx: &mut T, key: &SigningKey) -> Outcome<(), T> {
    tx.execute(RETIRE_SIGNING_KEY, vec![Param::Int(key.created_at)])
        .await
        .map_err(Failure::Db)?;
    let signing = SigningKey {
        retired_at: None,
        ..key.clone()
    };
    execute(tx, super::INSERT_SIGNING_KEY, key_params(&signing)).await
}

const INSERT_CONNECTION: &str = "INSERT INTO connections (id, name, strategy, created_at) \
     VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING";
const CONNECTION_BY_NAME: &str = "SELECT id, name, strategy FROM connections WHERE name = ?";

/// Adds `connection` unless one of its name exists; the stored one.
async fn ensure_connection<T: Tx>(tx: &mut T, connection: &Connection) -> Outcome<Connection, T> {
    let params = vec![
        (&connection.id).into(),
        (&connection.name).into(),
        (&connection.strategy).into(),
        Param::Int(crate::clock::unix_now()),
    ];
    tx.execute(INSERT_CONNECTION, params)
        .await
        .map_err(Failure::Db)?;
    let mut rows = fetch(tx, CONNECTION_BY_NAME, vec![(&connection.name).into()]).await?;
    let mut row = rows
        .pop()
        .ok_or_else(|| Error::internal("the connection just ensured is missing"))?;
    Ok(Connection {
        id: row.text()?,
        name: row.text()?,
        strategy: row.text()?,
    })
}

const PUT_CLIENT: &str = "INSERT INTO clients (client_id, name, secret_hash, grant_types, \
     scopes, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET \
     name = excluded.name, secret_hash = excluded.secret_hash, \
     grant_types = excluded.grant_types, scopes = excluded.scopes";

async fn put_client<T: Tx>(tx: &mut T, client: &ClientRecord) -> Outcome<(), T> {
    let params = super::client_params(client, crate::clock::unix_now());
    execute(tx, PUT_CLIENT, params).await
}

const RECORD_LOGIN: &str =
    "UPDATE users SET last_login = ?, logins_count = logins_count + 1 WHERE user_id = ?";

async fn record_login<T: Tx>(tx: &mut T, user_id: &str, now: &str) -> Outcome<(), T> {
    execute(tx, RECORD_LOGIN, vec![now.into(), user_id.into()]).await
}

/// Stores a code, dropping the expired ones (so they stay bounded).
async fn put_code<T: Tx>(tx: &mut T, code: &StoredCode, now: i64) -> Outcome<(), T> {
    execute(tx, grants::PURGE_CODES, vec![Param::Int(now)]).await?;
    let params = vec![
        (&code.hash).into(),
        (&code.client_id).into(),
        (&code.payload).into(),
        Param::Int(code.expires_at),
    ];
    execute(tx, grants::INSERT_CODE, params).await
}

async fn take_code<T: Tx>(tx: &mut T, hash: &str) -> Outcome<Option<StoredCode>, T> {
    let Some(mut row) = fetch(tx, grants::TAKE_CODE, vec![hash.into()]).await?.pop() else {
        return Ok(None);
    };
    Ok(Some(StoredCode {
        hash: hash.to_owned(),
        client_id: row.text()?,
        payload: row.text()?,
        expires_at: row.int()?,
    }))
}

async fn insert_refresh<T: Tx>(tx: &mut T, token: &StoredRefresh) -> Outcome<(), T> {
    let params = vec![
        (&token.hash).into(),
        (&token.family_id).into(),
        (&token.client_id).into(),
        (&token.user_id).into(),
        (&token.payload).into(),
        Param::Int(token.expires_at),
    ];
    execute(tx, grants::INSERT_REFRESH, params).await
}

async fn put_refresh_token<T: Tx>(tx: &mut T, token: &StoredRefresh, now: i64) -> Outcome<(), T> {
    tx.execute(grants::PURGE_REFRESH, vec![Param::Int(now)])
        .await
        .map_err(Failure::Db)?;
    insert_refresh(tx, token).await
}

/// Presents the refresh token `hash`: a current one is claimed (its row lock makes a
/// concurrent presentation wait, then find it used: a reuse) and `next_hash` joins its
/// family; one used or revoked before revokes the whole family.
async fn rotate_refresh_token<T: Tx>(
    tx: &mut T,
    hash: &str,
    next_hash: &str,
    now: i64,
) -> Outcome<Rotation, T> {
    let params = vec![Param::Int(now), hash.into(), Param::Int(now)];
    if let Some(mut row) = fetch(tx, grants::CLAIM_REFRESH, params).await?.pop() {
        let old = StoredRefresh {
            hash: hash.to_owned(),
            family_id: row.text()?,
            client_id: row.text()?,
            user_id: row.text()?,
            payload: row.text()?,
            expires_at: row.int()?,
        };
        let next = StoredRefresh {
            hash: next_hash.to_owned(),
            ..old.clone()
        };
        insert_refresh(tx, &next).await?;
        return Ok(Rotation::Rotated(old));
    }
    let Some(mut row) = fetch(tx, grants::FIND_REFRESH, vec![hash.into()])
        .await?
        .pop()
    else {
        return Ok(Rotation::Unknown);
    };
    let (family, expires_at) = (row.text()?, row.int()?);
    if expires_at <= now {
        return Ok(Rotation::Unknown);
    }
    execute(
        tx,
        grants::REVOKE_FAMILY,
        vec![Param::Int(now), (&family).into()],
    )
    .await?;
    Ok(Rotation::Reused)
}

/// Stores a session, dropping the expired ones.
async fn put_session<T: Tx>(tx: &mut T, session: &StoredSession, now: i64) -> Outcome<(), T> {
    execute(tx, grants::PURGE_SESSIONS, vec![Param::Int(now)]).await?;
    let params = vec![
        (&session.hash).into(),
        (&session.user_id).into(),
        Param::Int(session.auth_time),
        Param::Int(session.expires_at),
    ];
    execute(tx, grants::INSERT_SESSION, params).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_writes_take_a_unique_violation_for_a_bug() {
        assert!(matches!(
            Write::TakeCode("c".into()).on_unique(),
            OnUnique::Internal
        ));
        assert!(matches!(
            Write::DeleteSession("s".into()).on_unique(),
            OnUnique::Internal
        ));
    }
}
