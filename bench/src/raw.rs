//! `sqlite-raw`: the hardware reference. idlink's own schema (the migrations in
//! `crates/idlink-server/migrations/sqlite`) and the statements its SQLite store runs
//! for a link and an unlink, audit record included, on one plain `rusqlite` connection
//! on one thread: no HTTP, no async, no thread hand-off, cached prepared statements,
//! 16 operations per transaction (each in its own savepoint), WAL with
//! `synchronous=FULL`. What disk and SQLite allow for this work: every idlink figure is
//! also a fraction of this one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value, json};

use crate::load::{LoadOptions, Measurement, new_histogram};

/// Operations per transaction: the group size the reference commits.
pub const GROUP: usize = 16;

const PROVIDER: &str = "google-oauth2";
const CONNECTION_ID: &str = "con_sqliteRawBench01";

/// A prepared reference database: the schema, one connection row and `pairs` pairs of
/// standalone social users.
#[derive(Debug)]
pub struct RawSqlite {
    path: PathBuf,
    pairs: Vec<Pair>,
}

#[derive(Debug, Clone)]
struct Pair {
    primary: String,
    secondary_id: String,
}

/// The folder of idlink's SQLite migrations.
fn migrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/idlink-server/migrations/sqlite")
}

fn sql_error(err: rusqlite::Error) -> String {
    format!("sqlite-raw: {err}")
}

/// Opens `path` as the reference does: WAL, `synchronous=FULL`, foreign keys on.
fn connect(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open(path).map_err(sql_error)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
        row.get::<_, String>(0)
    })
    .map_err(sql_error)?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(sql_error)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sql_error)?;
    Ok(conn)
}

/// Creates the database at `path` with idlink's schema: every migration, in order.
fn create_schema(path: &Path) -> Result<Connection, String> {
    let conn = connect(path)?;
    let mut migrations: Vec<PathBuf> = std::fs::read_dir(migrations_dir())
        .map_err(|e| format!("sqlite-raw: the migrations: {e}"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    migrations.sort();
    for file in &migrations {
        let sql = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
        conn.execute_batch(&sql)
            .map_err(|e| format!("sqlite-raw: {}: {e}", file.display()))?;
    }
    Ok(conn)
}

/// The import ceiling: `users` database users (a user row and its identity, as an import
/// writes them) inserted on one plain connection, 500 per transaction (an import job's
/// batch), `synchronous=FULL`. Users per second.
pub fn insert_ceiling(path: &Path, users: usize) -> Result<f64, String> {
    let mut conn = create_schema(path)?;
    conn.execute(
        "INSERT INTO connections (id, name, strategy, created_at) VALUES (?, ?, 'auth0', 0)",
        params![CONNECTION_ID, "Username-Password-Authentication"],
    )
    .map_err(sql_error)?;
    let now = idlink_server::clock::now_iso();
    let started = std::time::Instant::now();
    for batch in (0..users).collect::<Vec<_>>().chunks(500) {
        let tx = conn.transaction().map_err(sql_error)?;
        for i in batch {
            let id = format!("{i:024x}");
            let user_id = format!("auth0|{id}");
            tx.prepare_cached(
                "INSERT INTO users (user_id, email, email_lower, email_verified, name, created_at, updated_at) \
                 VALUES (?1, ?2, ?2, 1, ?3, ?4, ?4)",
            )
            .and_then(|mut st| st.execute(params![user_id, format!("u{i}@example.com"), id, now]))
            .map_err(sql_error)?;
            tx.prepare_cached(
                "INSERT INTO identities (provider, identity_user_id, owner_user_id, position, \
                 connection_id, connection_name, is_social) VALUES ('auth0', ?, ?, 0, ?, ?, 0)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    id,
                    user_id,
                    CONNECTION_ID,
                    "Username-Password-Authentication"
                ])
            })
            .map_err(sql_error)?;
        }
        tx.commit().map_err(sql_error)?;
    }
    Ok(users as f64 / started.elapsed().as_secs_f64())
}

impl RawSqlite {
    /// Creates the database at `path`: every migration in order, then the users.
    pub fn create(path: &Path, pairs: usize) -> Result<Self, String> {
        let conn = create_schema(path)?;
        conn.execute(
            "INSERT INTO connections (id, name, strategy, created_at) VALUES (?, ?, 'google-oauth2', 0)",
            params![CONNECTION_ID, PROVIDER],
        )
        .map_err(sql_error)?;
        let tag = crate::scenario::run_tag();
        let now = idlink_server::clock::now_iso();
        let mut out = Vec::with_capacity(pairs);
        for i in 0..pairs {
            let ids = ["p", "s"].map(|role| format!("raw{tag}{role}{i}"));
            for id in &ids {
                let user_id = format!("{PROVIDER}|{id}");
                conn.execute(
                    "INSERT INTO users (user_id, email, email_lower, email_verified, name, created_at, updated_at) \
                     VALUES (?1, ?2, ?2, 1, ?3, ?4, ?4)",
                    params![user_id, format!("{id}@example.com"), id, now],
                )
                .map_err(sql_error)?;
                conn.execute(
                    "INSERT INTO identities (provider, identity_user_id, owner_user_id, position, \
                     connection_id, connection_name, is_social) VALUES (?, ?, ?, 0, ?, ?, 1)",
                    params![PROVIDER, id, user_id, CONNECTION_ID, PROVIDER],
                )
                .map_err(sql_error)?;
            }
            let [primary, secondary] = ids;
            out.push(Pair {
                primary: format!("{PROVIDER}|{primary}"),
                secondary_id: secondary,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            pairs: out,
        })
    }

    /// Runs link/unlink for the warm-up and the window, `GROUP` operations per
    /// transaction, cycling through the pairs; every pair is unlinked again at the end.
    /// Blocking: call it from a thread of its own. An operation's latency is its
    /// group's, since it is acknowledged at the group's `COMMIT`.
    pub fn measure(&self, options: &LoadOptions) -> Result<Measurement, String> {
        let conn = connect(&self.path)?;
        let mut linked = vec![false; self.pairs.len()];
        let mut next = 0;
        // Log ids are unique per database: this measurement's differ from the last one's.
        let run = crate::scenario::run_tag();
        let mut log_seq = 0_u64;
        let mut m = Measurement {
            ok: 0,
            errors: Default::default(),
            latency_us: new_histogram(),
            window: options.duration,
            server_cpu_s: None,
            client_cpu_s: None,
        };
        let measure_from = Instant::now() + options.warmup;
        let end = measure_from + options.duration;
        // CPU seconds of this process at the window's edges (taken between groups).
        let (mut cpu_start, mut cpu_end) = (None, None);
        loop {
            let now = Instant::now();
            if now >= measure_from && cpu_start.is_none() {
                cpu_start = Some(crate::cpu::own_seconds());
            }
            // Past the window, only finish the cycles: unlink what is still linked.
            let finishing = now >= end;
            if finishing && cpu_end.is_none() {
                cpu_end = Some(crate::cpu::own_seconds());
            }
            if finishing && !linked.contains(&true) {
                break;
            }
            let started = Instant::now();
            conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_error)?;
            let mut outcomes = Vec::with_capacity(GROUP);
            for _ in 0..GROUP {
                let i = next % self.pairs.len();
                next += 1;
                if finishing && !linked[i] {
                    continue;
                }
                log_seq += 1;
                let log_id = format!("raw{run}{log_seq:x}");
                let outcome = in_savepoint(&conn, || {
                    if linked[i] {
                        unlink(&conn, &self.pairs[i], &log_id)
                    } else {
                        link(&conn, &self.pairs[i], &log_id)
                    }
                });
                if outcome.is_ok() {
                    linked[i] = !linked[i];
                }
                outcomes.push(outcome);
            }
            conn.execute_batch("COMMIT").map_err(sql_error)?;
            let done = Instant::now();
            if done < measure_from || done >= end {
                continue;
            }
            let micros = u64::try_from((done - started).as_micros()).unwrap_or(u64::MAX);
            for outcome in outcomes {
                m.latency_us.saturating_record(micros.max(1));
                match outcome {
                    Ok(()) => m.ok += 1,
                    Err(key) => *m.errors.entry(key).or_default() += 1,
                }
            }
        }
        m.server_cpu_s = cpu_start
            .flatten()
            .zip(cpu_end.flatten())
            .map(|(a, b)| b - a);
        // One process: the load generator is the "server".
        m.client_cpu_s = m.server_cpu_s;
        Ok(m)
    }
}

/// Runs `op` inside `SAVEPOINT op`, rolled back to it on failure (as idlink's group
/// commit does), so one failed operation leaves the group's others intact.
fn in_savepoint(
    conn: &Connection,
    op: impl FnOnce() -> rusqlite::Result<()>,
) -> Result<(), String> {
    conn.execute_batch("SAVEPOINT op").map_err(sql_error)?;
    match op() {
        Ok(()) => conn.execute_batch("RELEASE op").map_err(sql_error),
        Err(err) => {
            conn.execute_batch("ROLLBACK TO op; RELEASE op")
                .map_err(sql_error)?;
            Err(sql_error(err))
        }
    }
}

/// The columns a user row is loaded with (idlink's `users.*`), then its identity's.
const USER_AND_IDENTITY: &str = "u.user_id, u.email, u.email_verified, u.username, u.phone_number, \
     u.phone_verified, u.name, u.given_name, u.family_name, u.nickname, u.picture, u.profile_extra, \
     u.user_metadata, u.app_metadata, u.blocked, u.last_login, u.logins_count, u.created_at, \
     u.updated_at, i.owner_user_id, i.provider, i.identity_user_id, i.user_id_is_int, \
     i.connection_id, i.connection_name, i.is_social, i.profile_data";

/// One loaded row, decoded the way idlink decodes it (every column read and owned).
#[derive(Debug)]
struct LoadedRow {
    user_id: String,
    email: Option<String>,
    name: Option<String>,
    provider: Option<String>,
    identity_user_id: Option<String>,
    profile_data: Option<String>,
}

fn loaded_row(row: &Row<'_>) -> rusqlite::Result<LoadedRow> {
    // Decode every column, as the store's row mapping does, even those unused here.
    for column in 2..19 {
        let _: rusqlite::types::Value = row.get(column)?;
    }
    for column in 22..26 {
        let _: rusqlite::types::Value = row.get(column)?;
    }
    Ok(LoadedRow {
        user_id: row.get(0)?,
        email: row.get(1)?,
        name: row.get(6)?,
        provider: row.get(20)?,
        identity_user_id: row.get(21)?,
        profile_data: row.get(26)?,
    })
}

/// idlink's user load (`users LEFT JOIN identities`).
fn load_user(conn: &Connection, user_id: &str) -> rusqlite::Result<Vec<LoadedRow>> {
    let sql = format!(
        "SELECT {USER_AND_IDENTITY} FROM users u LEFT JOIN identities i ON i.owner_user_id = u.user_id \
         WHERE u.user_id = ? ORDER BY i.position"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    statement
        .query_map([user_id], loaded_row)?
        .collect::<rusqlite::Result<_>>()
}

/// idlink's load of the standalone user whose main identity is the link target.
fn load_target_owner(conn: &Connection, secondary_id: &str) -> rusqlite::Result<Vec<LoadedRow>> {
    let sql = format!(
        "SELECT {USER_AND_IDENTITY} FROM identities t JOIN users u ON u.user_id = t.owner_user_id \
         LEFT JOIN identities i ON i.owner_user_id = u.user_id \
         WHERE t.provider = ? AND t.identity_user_id = ? AND t.position = 0 ORDER BY i.position"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    statement
        .query_map([PROVIDER, secondary_id], loaded_row)?
        .collect::<rusqlite::Result<_>>()
}

const INSERT_LOG: &str = "INSERT INTO logs (log_id, date, type, description, client_id, user_id, \
     secondary_user_id, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

fn insert_log(
    conn: &Connection,
    log_id: &str,
    description: &str,
    primary: &str,
    secondary: &str,
) -> rusqlite::Result<()> {
    let details = json!({"tool": "idlink-bench", "provider": PROVIDER}).to_string();
    conn.prepare_cached(INSERT_LOG)?.execute(params![
        log_id,
        idlink_server::clock::now_iso(),
        "sapi",
        description,
        None::<String>,
        primary,
        secondary,
        details
    ])?;
    Ok(())
}

fn touch_user(conn: &Connection, user_id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE users SET updated_at = ? WHERE user_id = ?")?
        .execute(params![idlink_server::clock::now_iso(), user_id])?;
    Ok(())
}

/// A link, statement for statement as idlink's store runs it.
fn link(conn: &Connection, pair: &Pair, log_id: &str) -> rusqlite::Result<()> {
    let primary = load_user(conn, &pair.primary)?;
    let secondary = load_target_owner(conn, &pair.secondary_id)?;
    let (Some(first), Some(owner)) = (primary.first(), secondary.first()) else {
        return Err(rusqlite::Error::QueryReturnedNoRows);
    };
    let position = i64::try_from(primary.len()).unwrap_or(i64::MAX);
    // The secondary's root profile becomes its main identity's profileData.
    let profile = json!({"email": owner.email, "email_verified": true, "name": owner.name});
    let mut move_identity = conn.prepare_cached(
        "UPDATE identities SET owner_user_id = ?, position = ?, profile_data = ?, \
         link_state = ? WHERE provider = ? AND identity_user_id = ?",
    )?;
    for (offset, row) in secondary.iter().enumerate() {
        let data = (offset == 0).then(|| profile.to_string());
        move_identity.execute(params![
            first.user_id,
            position + i64::try_from(offset).unwrap_or(0),
            data.or_else(|| row.profile_data.clone()),
            // As idlink writes it for a secondary that was not blocked.
            None::<String>,
            row.provider,
            row.identity_user_id
        ])?;
    }
    conn.prepare_cached("DELETE FROM users WHERE user_id = ?")?
        .execute([&owner.user_id])?;
    touch_user(conn, &first.user_id)?;
    insert_log(
        conn,
        log_id,
        "Link a user account",
        &first.user_id,
        &owner.user_id,
    )
}

/// An unlink, statement for statement as idlink's store runs it.
fn unlink(conn: &Connection, pair: &Pair, log_id: &str) -> rusqlite::Result<()> {
    let primary = load_user(conn, &pair.primary)?;
    let (index, removed) = primary
        .iter()
        .enumerate()
        .find(|(_, row)| row.identity_user_id.as_deref() == Some(pair.secondary_id.as_str()))
        .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    let profile: Map<String, Value> = removed
        .profile_data
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?
        .unwrap_or_default();
    let text = |key: &str| profile.get(key).and_then(Value::as_str).map(str::to_owned);
    let new_user_id = format!("{PROVIDER}|{}", pair.secondary_id);
    let now = idlink_server::clock::now_iso();
    let email = text("email");
    conn.prepare_cached(
        "INSERT INTO users (user_id, email, email_lower, email_verified, username, phone_number, \
         phone_verified, name, given_name, family_name, nickname, picture, profile_extra, user_metadata, \
         app_metadata, blocked, last_login, logins_count, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        new_user_id,
        email,
        email.as_deref().map(str::to_lowercase),
        true,
        text("username"),
        text("phone_number"),
        false,
        text("name"),
        text("given_name"),
        text("family_name"),
        text("nickname"),
        text("picture"),
        "{}",
        "{}",
        "{}",
        false,
        None::<String>,
        0,
        now,
        now
    ])?;
    conn.prepare_cached(
        "UPDATE identities SET owner_user_id = ?, position = 0, profile_data = NULL, \
         link_state = NULL WHERE provider = ? AND identity_user_id = ?",
    )?
    .execute(params![new_user_id, PROVIDER, pair.secondary_id])?;
    conn.prepare_cached(
        "UPDATE identities SET position = position - 1 WHERE owner_user_id = ? AND position > ?",
    )?
    .execute(params![pair.primary, i64::try_from(index).unwrap_or(0)])?;
    touch_user(conn, &pair.primary)?;
    insert_log(
        conn,
        log_id,
        "Unlink a user account",
        &pair.primary,
        &new_user_id,
    )?;
    Ok(())
}

/// Whether every pair is as it started: each user owns only its main identity.
pub fn all_unlinked(path: &Path) -> Result<bool, String> {
    let conn = connect(path)?;
    let linked: Option<i64> = conn
        .query_row(
            "SELECT COUNT(*) FROM identities WHERE position > 0",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql_error)?;
    Ok(linked == Some(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_unlinks_with_idlinks_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw.db");
        let raw = RawSqlite::create(&path, 3).unwrap();
        let options = LoadOptions {
            concurrency: 3,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
        };
        for _ in 0..2 {
            let m = raw.measure(&options).unwrap();
            assert!(m.errors.is_empty(), "{:?}", m.errors);
            assert!(m.ok > 0);
        }
        let m = raw.measure(&options).unwrap();
        assert!(all_unlinked(&path).unwrap(), "every cycle is finished");
        let conn = connect(&path).unwrap();
        let logs: i64 = conn
            .query_row("SELECT COUNT(*) FROM logs", [], |row| row.get(0))
            .unwrap();
        assert!(logs >= i64::try_from(m.ok).unwrap(), "one audit row per op");
    }
}
