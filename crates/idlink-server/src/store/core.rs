//! The write flows both backends share, written once: link, unlink and the user update.
//!
//! Each flow loads what its rule needs inside the transaction, asks the pure rule of
//! [`crate::domain`] for a plan (plain data), and applies the plan with SQL that both
//! backends run as is (`?` placeholders). What differs between backends sits behind
//! [`Tx`], which is small: running a statement, loading users, and — for backends where
//! transactions run side by side — locking rows. See `docs/storage.md`.

use std::future::Future;

use crate::domain::audit::LogEvent;
use crate::domain::error::Error as DomainError;
use crate::domain::idempotency::{Claim, StoredAnswer};
use crate::domain::linking::{self, LinkPlan, LinkProof, LinkingPolicy, UnlinkMode, UnlinkPlan};
use crate::domain::model::{Identity, IdentityKey, UserRecord};
use crate::domain::users::UserPatch;
use crate::error::Error;
use crate::store::{Alongside, ClientRecord, Credential, SigningKey, StoredUser, TenantWrite};

use super::rows::{USER_COLUMNS, UserColumns, json_text, link_state_column, user_metadata_text};

/// The link events' flows (outbox, deliveries), over the same [`Tx`].
pub mod events;
/// The jobs API's flows (imports, exports), over the same [`Tx`].
pub mod jobs;
/// Every write as one value, and the simple writes and sign-in grants.
pub mod write;

/// A statement parameter, owned so that a backend may hold statements back and send
/// several in one round trip.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(Option<String>),
    Int(i64),
    /// A nullable integer (typed, so PostgreSQL accepts its NULL in a BIGINT column).
    MaybeInt(Option<i64>),
    Bool(bool),
    /// Binary data (a job's file chunk).
    Bytes(Vec<u8>),
}

/// One column of a row read with [`Tx::fetch`].
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl From<&str> for Param {
    fn from(value: &str) -> Self {
        Self::Text(Some(value.to_owned()))
    }
}

impl From<&String> for Param {
    fn from(value: &String) -> Self {
        Self::Text(Some(value.clone()))
    }
}

impl From<Option<&str>> for Param {
    fn from(value: Option<&str>) -> Self {
        Self::Text(value.map(str::to_owned))
    }
}

impl From<&Option<String>> for Param {
    fn from(value: &Option<String>) -> Self {
        Self::Text(value.clone())
    }
}

impl From<i64> for Param {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<bool> for Param {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

/// Why a flow ended without its result.
#[derive(Debug)]
pub enum Failure<E> {
    /// A rule (or a missing row) decided the request's answer; nothing was written.
    Rule(Error),
    /// The database failed; the backend decides what that means (retry, 409, 500).
    Db(E),
    /// A row to lock changed owner between the read and the lock: start over.
    Moved,
}

impl<E> From<Error> for Failure<E> {
    fn from(err: Error) -> Self {
        Self::Rule(err)
    }
}

impl<E> From<DomainError> for Failure<E> {
    fn from(err: DomainError) -> Self {
        Self::Rule(err.into())
    }
}

/// The primary of a link and the standalone user whose main identity is its target.
pub type LinkParties = (Option<UserRecord>, Option<UserRecord>);

/// What [`Tx::load_locked_parties`] reads under the link's locks: the target's owner
/// and position (if the identity exists), and the locked users that exist.
pub type LockedParties = (Option<(String, i64)>, Vec<UserRecord>);

/// A write statement (`?` placeholders) with its parameters.
pub type Statement = (&'static str, Vec<Param>);

/// One write transaction of a backend, as the flows need it.
pub trait Tx: Send {
    /// The backend's database error.
    type DbError: Send;

    /// Whether other write transactions run beside this one (PostgreSQL). The flows
    /// then lock the users they change, in ascending `user_id` order, before reading
    /// them. SQLite's single writer holds the whole database from `BEGIN IMMEDIATE`:
    /// there is nothing to lock.
    const ROW_LOCKS: bool;

    /// Runs a write statement (`?` placeholders). A backend may hold it back and send
    /// it with the next read or at [`Tx::flush`], so its error may surface there.
    fn execute(
        &mut self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> impl Future<Output = Result<(), Self::DbError>> + Send;

    /// Runs a write statement at once and answers how many rows it changed.
    fn execute_count(
        &mut self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> impl Future<Output = Result<u64, Self::DbError>> + Send;

    /// Runs a query (`?` placeholders); every row as its columns, in order.
    fn fetch(
        &mut self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> impl Future<Output = Result<Vec<Vec<Cell>>, Self::DbError>> + Send;

    /// Whether `err` is a unique (or primary key) violation.
    fn is_unique_violation(err: &Self::DbError) -> bool;

    /// Sends the statements held back, if any.
    fn flush(&mut self) -> impl Future<Output = Result<(), Self::DbError>> + Send;

    /// Runs write statements that change distinct rows and do not read one another's
    /// changes (foreign keys only need to hold once all have run), so a backend may
    /// send them as one statement (PostgreSQL: data-modifying `WITH` queries, one
    /// round trip). By default one after another, as [`Tx::execute`] runs them.
    fn execute_batch(
        &mut self,
        statements: Vec<Statement>,
    ) -> impl Future<Output = Result<(), Self::DbError>> + Send
    where
        Self: Sized,
    {
        async move {
            for (sql, params) in statements {
                self.execute(sql, params).await?;
            }
            Ok(())
        }
    }

    /// One user with its identities, in order.
    fn load_user(
        &mut self,
        user_id: &str,
    ) -> impl Future<Output = Result<Option<UserRecord>, Failure<Self::DbError>>> + Send;

    /// The primary, and the user whose main identity `target` is (if any). Backends
    /// may override it to load both in one round trip.
    fn load_link_parties(
        &mut self,
        primary_id: &str,
        target: &IdentityKey,
    ) -> impl Future<Output = Result<LinkParties, Failure<Self::DbError>>> + Send
    where
        Self: Sized,
    {
        async move {
            let primary = self.load_user(primary_id).await?;
            let owner = self
                .identity_owner(target, false)
                .await
                .map_err(Failure::Db)?;
            let secondary = match owner {
                Some((owner, 0)) => self.load_user(&owner).await?,
                _ => None,
            };
            Ok((primary, secondary))
        }
    }

    /// Locks, in ascending `user_id` order, the primary and the user whose main
    /// identity `target` is as seen now, if any (only called when [`Tx::ROW_LOCKS`]);
    /// answers the ids locked, ascending. Backends may override it to read and lock
    /// in one round trip.
    fn lock_link_parties(
        &mut self,
        primary_id: &str,
        target: &IdentityKey,
    ) -> impl Future<Output = Result<Vec<String>, Self::DbError>> + Send
    where
        Self: Sized,
    {
        async move {
            // Only a standalone user's main identity can be linked: only that owner
            // is locked.
            let seen = self.identity_owner(target, false).await?;
            let mut to_lock = vec![primary_id.to_owned()];
            if let Some((owner, 0)) = seen {
                to_lock.push(owner);
            }
            // Two links involving the same two users (in either role) queue, never
            // deadlock.
            to_lock.sort_unstable();
            to_lock.dedup();
            let mut locked = Vec::with_capacity(to_lock.len());
            for user_id in to_lock {
                if self.lock_user(&user_id).await? {
                    locked.push(user_id);
                }
            }
            Ok(locked)
        }
    }

    /// After [`Tx::lock_link_parties`]: `target`'s owner and position, re-read with
    /// the identity's row locked, and the `locked` users with their identities (only
    /// called when [`Tx::ROW_LOCKS`]). Backends may override it to read all of it in
    /// one round trip.
    fn load_locked_parties(
        &mut self,
        target: &IdentityKey,
        locked: &[String],
    ) -> impl Future<Output = Result<LockedParties, Failure<Self::DbError>>> + Send
    where
        Self: Sized,
    {
        async move {
            let owner = self
                .identity_owner(target, true)
                .await
                .map_err(Failure::Db)?;
            let mut users = Vec::with_capacity(locked.len());
            for user_id in locked {
                users.extend(self.load_user(user_id).await?);
            }
            Ok((owner, users))
        }
    }

    /// Locks the user row (only called when [`Tx::ROW_LOCKS`]); false when missing.
    fn lock_user(
        &mut self,
        user_id: &str,
    ) -> impl Future<Output = Result<bool, Self::DbError>> + Send;

    /// Who owns `key` and at which position; `lock` also locks the identity's row
    /// (only called when [`Tx::ROW_LOCKS`]).
    fn identity_owner(
        &mut self,
        key: &IdentityKey,
        lock: bool,
    ) -> impl Future<Output = Result<Option<(String, i64)>, Self::DbError>> + Send;
}

/// The outcome of a flow on backend `T`.
pub type Outcome<V, T> = Result<V, Failure<<T as Tx>::DbError>>;

/// Moves one identity to an owner and position, with its profileData and the state it
/// keeps while linked (`link_state`).
pub const MOVE_IDENTITY: &str = "UPDATE identities SET owner_user_id = ?, position = ?, \
     profile_data = ?, link_state = ? WHERE provider = ? AND identity_user_id = ?";
/// Makes an identity the main (and only) identity of its recreated user; the state it
/// kept while linked is the recreated user's now.
pub const DETACH_IDENTITY: &str = "UPDATE identities SET owner_user_id = ?, position = 0, \
     profile_data = NULL, link_state = NULL WHERE provider = ? AND identity_user_id = ?";
/// Closes the gap an unlinked identity leaves in its former owner's positions.
pub const CLOSE_GAP: &str =
    "UPDATE identities SET position = position - 1 WHERE owner_user_id = ? AND position > ?";
pub const DELETE_USER: &str = "DELETE FROM users WHERE user_id = ?";
pub const TOUCH_USER: &str = "UPDATE users SET updated_at = ? WHERE user_id = ?";
/// The primary's metadata after a link that merged the secondary's into it, and its
/// `updated_at` (one statement: [`Tx::execute_batch`] may not change a row twice).
pub const WRITE_METADATA: &str =
    "UPDATE users SET user_metadata = ?, app_metadata = ?, updated_at = ? WHERE user_id = ?";
pub const INSERT_LOG: &str = "INSERT INTO logs (log_id, date, type, description, client_id, \
     user_id, secondary_user_id, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
/// Writes a user's root profile (everything a patch can change).
pub const WRITE_USER: &str = "UPDATE users SET email = ?, email_lower = ?, email_verified = ?, \
     username = ?, phone_number = ?, phone_verified = ?, name = ?, given_name = ?, \
     family_name = ?, nickname = ?, picture = ?, profile_extra = ?, user_metadata = ?, \
     app_metadata = ?, blocked = ?, updated_at = ?, invented_attributes = ?, \
     blocked_ever_set = ?, last_password_reset = ? WHERE user_id = ?";
/// The main identity's credential follows the root email and a new password.
pub const WRITE_CREDENTIAL: &str = "UPDATE identities SET login_email = ?, \
     password_hash = COALESCE(?, password_hash) \
     WHERE owner_user_id = ? AND position = 0 AND password_hash IS NOT NULL";
/// Inserts a user (its columns in [`USER_COLUMNS`] order).
pub static INSERT_USER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let placeholders = vec!["?"; USER_COLUMNS.split(',').count()].join(", ");
    format!("INSERT INTO users ({USER_COLUMNS}) VALUES ({placeholders})")
});

/// A user's root profile, as [`WRITE_USER`] sets it and [`USER_COLUMNS`] lists it
/// (from `email` to `blocked`).
fn root_params(user: &UserRecord, cols: UserColumns) -> Vec<Param> {
    let p = &user.profile;
    vec![
        (&p.email).into(),
        Param::Text(cols.email_lower),
        p.email_verified.into(),
        (&p.username).into(),
        (&p.phone_number).into(),
        p.phone_verified.into(),
        (&p.name).into(),
        (&p.given_name).into(),
        (&p.family_name).into(),
        (&p.nickname).into(),
        (&p.picture).into(),
        Param::Text(Some(cols.profile_extra)),
        Param::Text(Some(cols.user_metadata)),
        Param::Text(Some(cols.app_metadata)),
        user.blocked.into(),
    ]
}

/// What the recorded user shape added after `updated_at`, as [`WRITE_USER`] sets it
/// and [`USER_COLUMNS`] lists it (`invented_attributes` from [`UserColumns`]).
fn tail_params(user: &UserRecord, invented_attributes: String) -> Vec<Param> {
    vec![
        Param::Text(Some(invented_attributes)),
        user.blocked_ever_set.into(),
        (&user.last_password_reset).into(),
    ]
}

/// A user's values as [`WRITE_USER`] binds them.
pub fn write_user_params(user: &UserRecord) -> Vec<Param> {
    let cols = UserColumns::of(user);
    let invented = cols.invented_attributes.clone();
    let mut params = root_params(user, cols);
    params.push((&user.updated_at).into());
    params.extend(tail_params(user, invented));
    params.push((&user.user_id).into());
    params
}

/// A user's values in [`USER_COLUMNS`] order.
pub fn user_params(user: &UserRecord) -> Vec<Param> {
    let cols = UserColumns::of(user);
    let invented = cols.invented_attributes.clone();
    let mut params = vec![(&user.user_id).into()];
    params.extend(root_params(user, cols));
    params.extend([
        (&user.last_login).into(),
        user.logins_count.into(),
        (&user.created_at).into(),
        (&user.updated_at).into(),
    ]);
    params.extend(tail_params(user, invented));
    params
}

fn log_params(event: &LogEvent) -> Vec<Param> {
    vec![
        (&event.log_id).into(),
        (&event.date).into(),
        event.outcome.code().into(),
        (&event.description).into(),
        (&event.client_id).into(),
        (&event.user_id).into(),
        (&event.secondary_user_id).into(),
        Param::Text(Some(event.details.to_string())),
    ]
}

fn position(index: usize) -> Result<i64, Error> {
    i64::try_from(index).map_err(Error::internal)
}

/// Drops the keys that have expired (bounded: only keyed writes purge, and only rows
/// past their TTL, through the `created_at` index).
const PURGE_IDEMPOTENCY: &str = "DELETE FROM idempotency_keys WHERE created_at <= ?";
/// Takes a key for this transaction. On PostgreSQL a concurrent claim of the same key
/// waits here for this transaction's end, then finds the key taken (or, after a
/// rollback, takes it); SQLite's single writer runs them one after the other.
const CLAIM_IDEMPOTENCY: &str = "INSERT INTO idempotency_keys \
     (principal, idem_key, fingerprint, status, body, created_at) VALUES (?, ?, ?, 0, '', ?) \
     ON CONFLICT DO NOTHING";
/// Stores the answer of the transaction that claimed the key.
const ANSWER_IDEMPOTENCY: &str =
    "UPDATE idempotency_keys SET status = ?, body = ? WHERE principal = ? AND idem_key = ?";

/// Claims the caller's `Idempotency-Key`, if any, before the change does anything: a
/// key already taken (by a committed call, or a concurrent one that then committed)
/// ends the transaction with [`Error::IdempotencyKeyInUse`], having written nothing,
/// and the HTTP layer replays the stored answer.
pub async fn claim_alongside<T: Tx>(tx: &mut T, alongside: &Alongside) -> Outcome<(), T> {
    let Some(claim) = &alongside.idempotency else {
        return Ok(());
    };
    tx.execute(
        PURGE_IDEMPOTENCY,
        vec![Param::Int(claim.expired_at_or_before)],
    )
    .await
    .map_err(Failure::Db)?;
    let claimed = tx
        .execute_count(CLAIM_IDEMPOTENCY, claim_params(claim))
        .await
        .map_err(Failure::Db)?;
    if claimed == 0 {
        return Err(Error::IdempotencyKeyInUse.into());
    }
    Ok(())
}

fn claim_params(claim: &Claim) -> Vec<Param> {
    vec![
        (&claim.scope).into(),
        (&claim.key).into(),
        (&claim.fingerprint).into(),
        Param::Int(claim.created_at),
    ]
}

/// Writes a change's own statements (`change`, see [`Tx::execute_batch`]) and what
/// goes beside it, in its transaction — the one place every write flow records them:
/// the audit event, the link events (outbox), and the answer under the key
/// [`claim_alongside`] took (`answer` renders it from the change's result, given the
/// claim's status; it is the body the HTTP layer sends). The change, the audit event
/// and the answer go as one batch; the events follow (their ids are read back).
pub async fn write_alongside<T: Tx>(
    tx: &mut T,
    mut change: Vec<Statement>,
    alongside: &Alongside,
    answer: impl FnOnce(u16) -> StoredAnswer + Send,
) -> Result<(), T::DbError> {
    if let Some(event) = &alongside.audit {
        change.push((INSERT_LOG, log_params(event)));
    }
    if let Some(claim) = &alongside.idempotency {
        let answer = answer(claim.status);
        change.push((
            ANSWER_IDEMPOTENCY,
            vec![
                Param::Int(i64::from(answer.status)),
                Param::Text(Some(answer.body)),
                (&claim.scope).into(),
                (&claim.key).into(),
            ],
        ));
    }
    tx.execute_batch(change).await?;
    events::append(tx, &alongside.events).await
}

/// The audit event a link or unlink writes (always one).
fn required_audit(alongside: &Alongside) -> Result<&LogEvent, Error> {
    alongside
        .audit
        .as_ref()
        .ok_or_else(|| Error::internal("a link or unlink is always audited"))
}

/// Writes `event` in the transaction.
pub async fn insert_log<T: Tx>(tx: &mut T, event: &LogEvent) -> Outcome<(), T> {
    tx.execute(INSERT_LOG, log_params(event))
        .await
        .map_err(Failure::Db)
}

/// Links the standalone user whose main identity is `target` into `primary_id`;
/// returns the primary's identities. `alongside` is written in the same transaction.
pub async fn link<T: Tx>(
    tx: &mut T,
    primary_id: &str,
    target: &IdentityKey,
    proof: &LinkProof,
    policy: &LinkingPolicy,
    alongside: &Alongside,
) -> Outcome<Vec<Identity>, T> {
    required_audit(alongside)?;
    claim_alongside(tx, alongside).await?;
    let (primary, secondary) = if T::ROW_LOCKS {
        lock_link_parties(tx, primary_id, target).await?
    } else {
        tx.load_link_parties(primary_id, target).await?
    };
    let primary = primary.ok_or(DomainError::UserNotFound)?;
    let plan = linking::plan_link(&primary, target, proof, secondary.as_ref(), policy)?;
    apply_link(tx, &primary.user_id, &plan, alongside)
        .await
        .map_err(Failure::Db)?;
    Ok(plan.identities)
}

/// The locking protocol of backends with concurrent writers (see `docs/scaling.md`):
/// lock the primary and the target's standalone owner in ascending `user_id` order,
/// then re-read the target under lock; if it now belongs, as a main identity, to a user
/// whose lock we do not hold, start over. Answers the primary and the target's owner
/// when it is a main identity (of a locked user), as read under the locks.
async fn lock_link_parties<T: Tx>(
    tx: &mut T,
    primary_id: &str,
    target: &IdentityKey,
) -> Outcome<LinkParties, T> {
    let locked = tx
        .lock_link_parties(primary_id, target)
        .await
        .map_err(Failure::Db)?;
    if !locked.iter().any(|id| id == primary_id) {
        return Err(DomainError::UserNotFound.into());
    }
    let (owner, mut users) = tx.load_locked_parties(target, &locked).await?;
    let mut take = |user_id: &str| {
        users
            .iter()
            .position(|user| user.user_id == user_id)
            .map(|index| users.swap_remove(index))
    };
    match owner {
        Some((owner, 0)) if !locked.contains(&owner) => Err(Failure::Moved),
        // The target is the primary's own main identity: `plan_link` refuses it.
        Some((owner, 0)) if owner == primary_id => {
            let primary = take(primary_id);
            Ok((primary.clone(), primary))
        }
        Some((owner, 0)) => Ok((take(primary_id), take(&owner))),
        _ => Ok((take(primary_id), None)),
    }
}

async fn apply_link<T: Tx>(
    tx: &mut T,
    primary_id: &str,
    plan: &LinkPlan,
    alongside: &Alongside,
) -> Result<(), T::DbError> {
    let mut change = Vec::with_capacity(plan.moved.len() + 4);
    for (offset, identity) in plan.moved.iter().enumerate() {
        let params = vec![
            primary_id.into(),
            Param::Int(position(plan.first_position + offset).unwrap_or(i64::MAX)),
            Param::Text(identity.profile_data.as_ref().map(json_text)),
            Param::Text(link_state_column(&identity.link_state)),
            (&identity.provider).into(),
            Param::Text(Some(identity.user_id.as_string())),
        ];
        change.push((MOVE_IDENTITY, params));
    }
    // The moved identities now belong to the primary, so the cascade of this delete
    // (which runs after every statement of the batch) finds none of them.
    change.push((DELETE_USER, vec![(&plan.secondary_user_id).into()]));
    // The audit event's date is the link's instant (on the server's clock).
    let date = alongside
        .audit
        .as_ref()
        .map_or_else(crate::clock::now_iso, |audit| audit.date.clone());
    if plan.metadata_changed {
        let params = vec![
            Param::Text(Some(user_metadata_text(plan.user_metadata.as_ref()))),
            Param::Text(Some(json_text(&plan.app_metadata))),
            (&date).into(),
            primary_id.into(),
        ];
        change.push((WRITE_METADATA, params));
    } else {
        change.push((TOUCH_USER, vec![(&date).into(), primary_id.into()]));
    }
    write_alongside(tx, change, alongside, |status| {
        StoredAnswer::identities(status, &plan.identities)
    })
    .await?;
    tx.flush().await
}

/// Unlinks `target` from `primary_id`, recreating it as a standalone user; returns the
/// primary's remaining identities. `alongside` is written in the same transaction.
pub async fn unlink<T: Tx>(
    tx: &mut T,
    primary_id: &str,
    target: &IdentityKey,
    now: &str,
    mode: UnlinkMode,
    alongside: &Alongside,
) -> Outcome<Vec<Identity>, T> {
    required_audit(alongside)?;
    claim_alongside(tx, alongside).await?;
    // Only the primary needs a lock: the recreated user is new.
    if T::ROW_LOCKS && !tx.lock_user(primary_id).await.map_err(Failure::Db)? {
        return Err(DomainError::UserNotFound.into());
    }
    let primary = tx
        .load_user(primary_id)
        .await?
        .ok_or(DomainError::UserNotFound)?;
    let plan = linking::plan_unlink(&primary, target, now, mode)?;
    let gap = position(plan.position)?;
    apply_unlink(tx, &primary.user_id, &plan, gap, now, alongside)
        .await
        .map_err(Failure::Db)?;
    Ok(plan.remaining)
}

async fn apply_unlink<T: Tx>(
    tx: &mut T,
    primary_id: &str,
    plan: &UnlinkPlan,
    gap: i64,
    now: &str,
    alongside: &Alongside,
) -> Result<(), T::DbError> {
    let removed = &plan.removed;
    let change = vec![
        (INSERT_USER.as_str(), user_params(&plan.new_user)),
        // Points at the user inserted beside it: foreign keys are checked once the
        // whole batch has run.
        (
            DETACH_IDENTITY,
            vec![
                (&plan.new_user.user_id).into(),
                (&removed.provider).into(),
                Param::Text(Some(removed.user_id.as_string())),
            ],
        ),
        // The detached identity sits at `gap`, not above it: distinct rows.
        (CLOSE_GAP, vec![primary_id.into(), Param::Int(gap)]),
        (TOUCH_USER, vec![now.into(), primary_id.into()]),
    ];
    write_alongside(tx, change, alongside, |status| {
        StoredAnswer::identities(status, &plan.remaining)
    })
    .await?;
    tx.flush().await
}

/// Applies `patch` to the user under lock; returns the user as written. `alongside`
/// is written in the same transaction.
pub async fn update_user<T: Tx>(
    tx: &mut T,
    user_id: &str,
    patch: &UserPatch,
    now: &str,
    alongside: &Alongside,
) -> Outcome<UserRecord, T> {
    claim_alongside(tx, alongside).await?;
    if T::ROW_LOCKS && !tx.lock_user(user_id).await.map_err(Failure::Db)? {
        return Err(DomainError::UserNotFound.into());
    }
    let mut user = tx
        .load_user(user_id)
        .await?
        .ok_or(DomainError::UserNotFound)?;
    patch.apply(&mut user, now);
    write_user(tx, &user, patch).await.map_err(Failure::Db)?;
    write_alongside(tx, Vec::new(), alongside, |status| {
        StoredAnswer::user(status, &user)
    })
    .await
    .map_err(Failure::Db)?;
    tx.flush().await.map_err(Failure::Db)?;
    Ok(user)
}

/// Inserts a new user's main identity (its credential, if any).
const INSERT_MAIN_IDENTITY: &str = "INSERT INTO identities (provider, identity_user_id, \
     user_id_is_int, owner_user_id, position, connection_id, connection_name, is_social, \
     profile_data, password_hash, login_email, login_username) \
     VALUES (?, ?, ?, ?, 0, ?, ?, ?, NULL, ?, ?, ?)";

/// Creates a user with its single main identity. A taken user id, identity or login
/// name is a unique violation, which the backend answers as `UserExists`.
pub async fn create_user<T: Tx>(
    tx: &mut T,
    user: &UserRecord,
    credential: Option<&Credential>,
    alongside: &Alongside,
) -> Outcome<(), T> {
    let identity = user
        .identities
        .first()
        .ok_or_else(|| Error::internal("a new user needs its main identity"))?;
    claim_alongside(tx, alongside).await?;
    tx.execute(INSERT_USER.as_str(), user_params(user))
        .await
        .map_err(Failure::Db)?;
    let params = vec![
        (&identity.provider).into(),
        Param::Text(Some(identity.user_id.as_string())),
        matches!(identity.user_id, idlink_types::UserId::Integer(_)).into(),
        (&user.user_id).into(),
        (&identity.connection_id).into(),
        (&identity.connection).into(),
        identity.is_social.into(),
        Param::Text(credential.map(|c| c.password_hash.clone())),
        Param::Text(credential.and_then(|c| c.login_email.clone())),
        Param::Text(credential.and_then(|c| c.login_username.clone())),
    ];
    tx.execute(INSERT_MAIN_IDENTITY, params)
        .await
        .map_err(Failure::Db)?;
    write_alongside(tx, Vec::new(), alongside, |status| {
        StoredAnswer::user(status, user)
    })
    .await
    .map_err(Failure::Db)?;
    tx.flush().await.map_err(Failure::Db)
}

/// Deletes a user and (by cascade) every identity it owns; false when there was none.
pub async fn delete_user<T: Tx>(
    tx: &mut T,
    user_id: &str,
    alongside: &Alongside,
) -> Outcome<bool, T> {
    claim_alongside(tx, alongside).await?;
    let deleted = tx
        .execute_count(DELETE_USER, vec![user_id.into()])
        .await
        .map_err(Failure::Db)?;
    // Deleting a user that does not exist answers as a deletion (Auth0: 204, so the key
    // keeps that answer), but nothing happened: no `user.deleted` event.
    let nothing_happened;
    let alongside = if deleted > 0 {
        alongside
    } else {
        nothing_happened = Alongside {
            events: Vec::new(),
            ..alongside.clone()
        };
        &nothing_happened
    };
    write_alongside(tx, Vec::new(), alongside, StoredAnswer::empty)
        .await
        .map_err(Failure::Db)?;
    tx.flush().await.map_err(Failure::Db)?;
    Ok(deleted > 0)
}

async fn write_user<T: Tx>(
    tx: &mut T,
    user: &UserRecord,
    patch: &UserPatch,
) -> Result<(), T::DbError> {
    let email_lower = Param::Text(user.profile.email.as_deref().map(str::to_lowercase));
    tx.execute(WRITE_USER, write_user_params(user)).await?;
    if patch.email.is_some() || patch.password_hash.is_some() {
        let params = vec![
            email_lower,
            (&patch.password_hash).into(),
            (&user.user_id).into(),
        ];
        tx.execute(WRITE_CREDENTIAL, params).await?;
    }
    tx.flush().await
}

/// Users inserted per statement by [`insert_users`]: 100 users are 2,300 parameters,
/// far below PostgreSQL's 65,535 per statement and SQLite's 32,766.
pub const INSERT_BATCH: usize = 100;

/// The columns of `identities` [`insert_users`] writes, in its parameter order.
const IDENTITY_COLUMNS: &str = "provider, identity_user_id, user_id_is_int, owner_user_id, \
     position, connection_id, connection_name, is_social, profile_data, link_state, \
     password_hash, login_email, login_username";

/// `INSERT INTO {table} ({columns}) VALUES (…), (…)` with `rows` rows.
fn multi_insert(table: &str, columns: &str, rows: usize) -> String {
    let one = format!("({})", vec!["?"; columns.split(',').count()].join(", "));
    format!(
        "INSERT INTO {table} ({columns}) VALUES {}",
        vec![one; rows].join(", ")
    )
}

static INSERT_USERS_BATCH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| multi_insert("users", USER_COLUMNS, INSERT_BATCH));
static INSERT_IDENTITIES_BATCH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| multi_insert("identities", IDENTITY_COLUMNS, INSERT_BATCH));
static INSERT_IDENTITY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| multi_insert("identities", IDENTITY_COLUMNS, 1));

fn identity_params(
    owner: &str,
    index: usize,
    identity: &Identity,
    credential: Option<&super::Credential>,
) -> Vec<Param> {
    vec![
        (&identity.provider).into(),
        Param::Text(Some(identity.user_id.as_string())),
        matches!(identity.user_id, idlink_types::UserId::Integer(_)).into(),
        owner.into(),
        Param::Int(i64::try_from(index).unwrap_or(i64::MAX)),
        (&identity.connection_id).into(),
        (&identity.connection).into(),
        identity.is_social.into(),
        Param::Text(identity.profile_data.as_ref().map(json_text)),
        Param::Text(link_state_column(&identity.link_state)),
        // A database user imported without a password has a login but no hash.
        Param::Text(
            credential
                .map(|c| c.password_hash.clone())
                .filter(|hash| !hash.is_empty()),
        ),
        Param::Text(credential.and_then(|c| c.login_email.clone())),
        Param::Text(credential.and_then(|c| c.login_username.clone())),
    ]
}

/// Writes `users`, each with all its identities (already linked ones included, at
/// their positions, with their `profileData`) and their password credentials, in
/// batches of [`INSERT_BATCH`], inside the caller's transaction. The caller has made
/// sure no user id, identity or login name is taken (a unique violation surfaces as the
/// backend's error). The one write path of users with identities: the emulator's
/// seed/snapshot and the users import job both write through it.
pub async fn insert_users<T: Tx>(tx: &mut T, users: &[StoredUser]) -> Outcome<(), T> {
    let mut chunks = users.chunks_exact(INSERT_BATCH);
    for chunk in chunks.by_ref() {
        let params = chunk.iter().flat_map(|u| user_params(&u.user)).collect();
        tx.execute(INSERT_USERS_BATCH.as_str(), params)
            .await
            .map_err(Failure::Db)?;
    }
    for user in chunks.remainder() {
        tx.execute(INSERT_USER.as_str(), user_params(&user.user))
            .await
            .map_err(Failure::Db)?;
    }
    let identities: Vec<Vec<Param>> = users
        .iter()
        .flat_map(|stored| {
            let owner = stored.user.user_id.as_str();
            stored
                .user
                .identities
                .iter()
                .enumerate()
                .map(move |(index, identity)| {
                    let credential = stored.credentials.get(index).and_then(Option::as_ref);
                    identity_params(owner, index, identity, credential)
                })
        })
        .collect();
    insert_identity_rows(tx, &identities).await
}

/// Adds `identities` (without credentials) to the user `owner`, from position `first`
/// on: an import's upsert giving a user the identities it lacks.
pub async fn add_identities<T: Tx>(
    tx: &mut T,
    owner: &str,
    first: usize,
    identities: &[Identity],
) -> Outcome<(), T> {
    let rows: Vec<Vec<Param>> = identities
        .iter()
        .enumerate()
        .map(|(offset, identity)| identity_params(owner, first + offset, identity, None))
        .collect();
    insert_identity_rows(tx, &rows).await
}

/// Inserts identity rows (each bound as [`identity_params`] does) in batches.
async fn insert_identity_rows<T: Tx>(tx: &mut T, identities: &[Vec<Param>]) -> Outcome<(), T> {
    let mut chunks = identities.chunks_exact(INSERT_BATCH);
    for chunk in chunks.by_ref() {
        tx.execute(INSERT_IDENTITIES_BATCH.as_str(), chunk.concat())
            .await
            .map_err(Failure::Db)?;
    }
    for params in chunks.remainder() {
        tx.execute(INSERT_IDENTITY.as_str(), params.clone())
            .await
            .map_err(Failure::Db)?;
    }
    tx.flush().await.map_err(Failure::Db)
}

/// Makes concurrent writers of users and clients wait for this transaction (backends
/// with concurrent writers), so that a wipe or a replacement leaves exactly its own
/// state: a write that began earlier commits first and is then deleted, one that comes
/// later sees the new state. Readers are not blocked. SQLite's single writer already
/// runs everything one after another.
async fn lock_tenant<T: Tx>(tx: &mut T) -> Outcome<(), T> {
    if T::ROW_LOCKS {
        tx.execute(
            "LOCK TABLE users, identities, clients, signing_keys IN EXCLUSIVE MODE",
            Vec::new(),
        )
        .await
        .map_err(Failure::Db)?;
    }
    Ok(())
}

const INSERT_CLIENT: &str = "INSERT INTO clients (client_id, name, secret_hash, grant_types, \
     scopes, created_at) VALUES (?, ?, ?, ?, ?, ?)";
const INSERT_SIGNING_KEY: &str = "INSERT INTO signing_keys (kid, private_key_pem, public_n, \
     public_e, created_at, retired_at) VALUES (?, ?, ?, ?, ?, ?)";

fn client_params(client: &ClientRecord, created_at: i64) -> Vec<Param> {
    vec![
        (&client.client_id).into(),
        (&client.name).into(),
        (&client.secret_hash).into(),
        Param::Text(Some(client.grant_types.join(" "))),
        Param::Text(Some(client.scopes.join(" "))),
        Param::Int(created_at),
    ]
}

fn key_params(key: &SigningKey) -> Vec<Param> {
    vec![
        (&key.kid).into(),
        (&key.private_key_pem).into(),
        (&key.public_n).into(),
        (&key.public_e).into(),
        Param::Int(key.created_at),
        Param::MaybeInt(key.retired_at),
    ]
}

/// Deletes every user and identity, writing `audit`.
pub async fn delete_all_users<T: Tx>(tx: &mut T, audit: &LogEvent) -> Outcome<(), T> {
    lock_tenant(tx).await?;
    // Remembered answers describe users that are gone.
    for sql in [
        "DELETE FROM identities",
        "DELETE FROM users",
        "DELETE FROM idempotency_keys",
    ] {
        tx.execute(sql, Vec::new()).await.map_err(Failure::Db)?;
    }
    insert_log(tx, audit).await?;
    tx.flush().await.map_err(Failure::Db)
}

/// Replaces the tenant's users, identities, clients (but `data.keep_client`) and, when
/// given, signing keys with `data`, writing `audit`: one transaction, so readers see
/// the old state or the new one, never a mix.
pub async fn replace_tenant<T: Tx>(
    tx: &mut T,
    data: &TenantWrite,
    audit: &LogEvent,
) -> Outcome<(), T> {
    lock_tenant(tx).await?;
    for sql in [
        "DELETE FROM identities",
        "DELETE FROM users",
        "DELETE FROM idempotency_keys",
    ] {
        tx.execute(sql, Vec::new()).await.map_err(Failure::Db)?;
    }
    tx.execute(
        "DELETE FROM clients WHERE client_id <> ?",
        vec![Param::Text(Some(
            data.keep_client.clone().unwrap_or_default(),
        ))],
    )
    .await
    .map_err(Failure::Db)?;
    for client in &data.clients {
        tx.execute(INSERT_CLIENT, client_params(client, data.now))
            .await
            .map_err(Failure::Db)?;
    }
    if let Some(keys) = &data.signing_keys {
        tx.execute("DELETE FROM signing_keys", Vec::new())
            .await
            .map_err(Failure::Db)?;
        for key in keys {
            tx.execute(INSERT_SIGNING_KEY, key_params(key))
                .await
                .map_err(Failure::Db)?;
        }
    }
    insert_users(tx, &data.users).await?;
    insert_log(tx, audit).await?;
    tx.flush().await.map_err(Failure::Db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_inserts_have_one_placeholder_per_value() {
        assert_eq!(INSERT_USERS_BATCH.matches('?').count(), 23 * INSERT_BATCH);
        assert_eq!(
            INSERT_IDENTITIES_BATCH.matches('?').count(),
            13 * INSERT_BATCH
        );
        assert_eq!(INSERT_IDENTITY.matches('?').count(), 13);
        assert!(INSERT_IDENTITY.ends_with("VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    }

    #[test]
    fn insert_user_has_one_placeholder_per_column() {
        let columns = USER_COLUMNS.split(',').count();
        assert_eq!(INSERT_USER.matches('?').count(), columns);
        assert_eq!(columns, 23);
    }
}
