//! Emulator mode (`idlink emulate`): an offline stand-in for Auth0 in tests and local
//! development. The tenant starts from a seed (or empty), and the control API under
//! `/idlink/v1/` wipes, resets, snapshots and replaces it, shifts the server's clock and
//! injects faults. The control API exists only in emulator mode, and answers only on
//! loopback unless `--allow-remote-control` is given; like the Firebase emulators it has
//! no other authentication.

pub mod control;
pub mod snapshot;

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::json;

use crate::bootstrap;
use crate::config::Config;
use crate::domain::audit::{self, LogEvent, Outcome};
use crate::domain::ids;
use crate::domain::model::Connection;
use crate::error::{Error, Result};
use crate::http::faults::Faults;
use crate::state::AppState;
use crate::store::{Store, TenantWrite};
use snapshot::{Context, KnownConnection, Snapshot, SnapshotError};

/// Where the control API lives.
pub const CONTROL_PREFIX: &str = "/idlink/v1/";

/// What turns emulator mode on ([`Config::emulator`]).
#[derive(Debug, Clone, Default)]
pub struct EmulatorSettings {
    /// Answer control calls from any address, not only loopback.
    pub allow_remote_control: bool,
    /// The state to start from, and to go back to on `POST /idlink/v1/reset`.
    pub seed: Option<Snapshot>,
    /// Sign with the key in this PEM file, generating it (mode 0600) when missing, so
    /// that a fresh tenant starts without generating an RSA key.
    pub dev_signing_key: Option<PathBuf>,
}

/// The emulator's state beside the tenant's.
#[derive(Debug)]
pub struct Emulator {
    pub allow_remote_control: bool,
    pub faults: Faults,
    /// The emulator's own admin client, outside every snapshot.
    pub admin_client: String,
    /// What `POST /idlink/v1/reset` restores: the tenant as it was once started, kept
    /// as its JSON (a tenth of the decoded form's memory; decoded again on each reset).
    reset_target: Box<[u8]>,
    /// Control calls that replace state run one at a time.
    pub(crate) writing: tokio::sync::Mutex<()>,
}

impl Emulator {
    /// The emulator of a started tenant whose state is `reset_target`.
    pub fn new(
        settings: &EmulatorSettings,
        admin_client: String,
        reset_target: &Snapshot,
    ) -> Result<Self> {
        Ok(Self {
            allow_remote_control: settings.allow_remote_control,
            faults: Faults::default(),
            admin_client,
            reset_target: serde_json::to_vec(reset_target)
                .map_err(Error::internal)?
                .into_boxed_slice(),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// The state `reset` goes back to.
    pub fn reset_target(&self) -> Result<Snapshot> {
        serde_json::from_slice(&self.reset_target).map_err(Error::internal)
    }
}

/// Whether a control call from `peer` is answered: always from loopback (IPv4, IPv6 and
/// IPv4-mapped IPv6), from anywhere else only with `--allow-remote-control`. A request
/// whose peer is unknown is treated as remote.
pub fn control_allowed(peer: Option<IpAddr>, allow_remote: bool) -> bool {
    allow_remote || peer.is_some_and(|ip| ip.to_canonical().is_loopback())
}

/// A log event for a control call (`sapi` when it succeeded, `fapi` when it did not).
pub fn control_event(
    date: &str,
    method: &str,
    path: &str,
    status: u16,
    error: Option<&str>,
) -> LogEvent {
    let outcome = if error.is_none() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let mut response = json!({"statusCode": status});
    if let Some(message) = error {
        response["body"] = json!({"message": message});
    }
    let description = match error {
        None => format!("Emulator control: {method} {path}"),
        Some(message) => format!("Emulator control: {method} {path}: {message}"),
    };
    LogEvent {
        log_id: audit::log_id(),
        date: date.to_owned(),
        outcome,
        description: description.chars().take(512).collect(),
        client_id: None,
        user_id: None,
        secondary_user_id: None,
        details: json!({
            "request": {"method": method.to_ascii_lowercase(), "path": path, "emulator": true},
            "response": response,
        }),
    }
}

/// The admin client a start will have: the pinned one, else the one stored.
async fn admin_client_id(store: &dyn Store, config: &Config) -> Result<Option<String>> {
    match &config.admin_client_id {
        Some(id) => Ok(Some(id.clone())),
        None => store.setting(bootstrap::ADMIN_CLIENT_SETTING).await,
    }
}

/// Why a start failed on its seed: the problem and its JSON path.
#[derive(Debug)]
pub struct SeedError(pub SnapshotError);

impl std::fmt::Display for SeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid seed: {}", self.0)
    }
}

impl std::error::Error for SeedError {}

/// Before bootstrapping: the seed, validated in full (nothing is written if it is
/// wrong), its connections created, then everything else in one transaction. With a
/// `--dev-signing-key`, that key is installed when the tenant has no signing key.
pub async fn prepare(
    store: &dyn Store,
    config: &Config,
    settings: &EmulatorSettings,
    seed: Option<Snapshot>,
    clock: &crate::clock::Clock,
) -> std::result::Result<(), crate::server::StartError> {
    if let Some(seed) = seed {
        let stored = store.connections().await?;
        let mut known: Vec<KnownConnection> = stored.iter().map(KnownConnection::from).collect();
        for (name, strategy) in bootstrap::wanted_connections(config) {
            if !known.iter().any(|c| c.name == name) {
                known.push(KnownConnection {
                    name,
                    strategy,
                    id: None,
                });
            }
        }
        let admin = admin_client_id(store, config).await?;
        let context = Context {
            connections: known,
            may_add_connections: true,
            admin_client: admin.clone(),
        };
        seed.validate(&context).map_err(SeedError)?;
        for connection in &seed.connections {
            store
                .ensure_connection(&Connection {
                    id: connection.id.clone().unwrap_or_else(ids::connection_id),
                    name: connection.name.clone(),
                    strategy: connection.strategy.clone(),
                })
                .await?;
        }
        bootstrap::ensure_connections(store, config).await?;
        let connections = store.connections().await?;
        let now = clock.now_iso();
        let (users, clients, signing_keys) = seed.to_write(&connections, &now).await?;
        // The decoded seed is not needed once it is in the write's form: holding both
        // while the write runs would double the peak memory of a large seed.
        drop(seed);
        let data = TenantWrite {
            users,
            clients,
            keep_client: admin,
            signing_keys,
            now: clock.unix_now(),
        };
        let event = control_event(&now, "PUT", "--seed", 200, None);
        store.replace_tenant(data, &event).await?;
    }
    if let Some(path) = &settings.dev_signing_key {
        let has_signing_key = store
            .signing_keys()
            .await?
            .iter()
            .any(|k| k.retired_at.is_none());
        if !has_signing_key {
            let key = dev_signing_key(path, clock.unix_now()).await?;
            store.add_signing_key(&key).await?;
        }
    }
    Ok(())
}

/// The key in `path`, generated and written (mode 0600, in a directory created 0700)
/// when the file does not exist. Its `kid` is derived from the public key, so every
/// start that uses the file publishes the same one. Emulators starting at once agree on
/// one key: each writes its own beside the file and links it into place only if no
/// other got there first.
async fn dev_signing_key(path: &std::path::Path, now: i64) -> Result<crate::store::SigningKey> {
    let unreadable = |err: std::io::Error| {
        Error::internal(format!(
            "cannot read --dev-signing-key {}: {err}",
            path.display()
        ))
    };
    let pem = match std::fs::read_to_string(path) {
        Ok(pem) => pem,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key =
                tokio::task::spawn_blocking(move || crate::auth::keys::generate_signing_key(now))
                    .await
                    .map_err(Error::internal)??;
            let unwritable = |e: std::io::Error| {
                Error::internal(format!("cannot write {}: {e}", path.display()))
            };
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                crate::private_files::create_private_dir(dir).map_err(unwritable)?;
            }
            let mut staged = path.as_os_str().to_owned();
            staged.push(format!(".{}.tmp", std::process::id()));
            let staged = std::path::PathBuf::from(staged);
            crate::private_files::write_private(&staged, key.private_key_pem.as_bytes())
                .map_err(unwritable)?;
            let linked = std::fs::hard_link(&staged, path);
            let _ = std::fs::remove_file(&staged);
            match linked {
                Ok(()) => key.private_key_pem,
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    std::fs::read_to_string(path).map_err(unreadable)?
                }
                Err(err) => return Err(unwritable(err)),
            }
        }
        Err(err) => return Err(unreadable(err)),
    };
    let key = crate::auth::keys::signing_key_from_pem("pending", &pem, now, None)
        .map_err(|e| Error::internal(format!("--dev-signing-key {}: {e}", path.display())))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, key.public_n.as_bytes());
    let kid = format!("dev-{}", &hex::encode(digest.as_ref())[..16]);
    Ok(crate::store::SigningKey { kid, ..key })
}

/// The tenant now, as a snapshot (the admin client left out).
pub async fn export(state: &AppState, include_keys: bool) -> Result<Snapshot> {
    let admin = state.emulator.as_ref().map(|e| e.admin_client.as_str());
    let rows = state.store.tenant_rows().await?;
    Ok(Snapshot::from_rows(&rows, admin, include_keys))
}

/// What [`export`] gives right after start-up, for `reset`.
pub async fn starting_state(store: &dyn Store, admin_client: &str) -> Result<Snapshot> {
    let rows = store.tenant_rows().await?;
    Ok(Snapshot::from_rows(&rows, Some(admin_client), false))
}

/// Replaces the tenant with `snapshot` (validated against the running server first;
/// nothing changes when it is refused), recording `event` in the same transaction.
pub async fn replace(
    state: &AppState,
    snapshot: &Snapshot,
    event_for: impl FnOnce(&str) -> LogEvent,
) -> Result<()> {
    let emulator = state
        .emulator
        .as_ref()
        .ok_or_else(|| Error::internal("not in emulator mode"))?;
    let context = Context {
        connections: state
            .connections
            .iter()
            .map(KnownConnection::from)
            .collect(),
        may_add_connections: false,
        admin_client: Some(emulator.admin_client.clone()),
    };
    snapshot
        .validate(&context)
        .map_err(|e| Error::InvalidBody(e.to_string()))?;
    let now = state.clock.now_iso();
    let (users, clients, signing_keys) = snapshot.to_write(&state.connections, &now).await?;
    let replaces_keys = signing_keys.is_some();
    let data = TenantWrite {
        users,
        clients,
        keep_client: Some(emulator.admin_client.clone()),
        signing_keys,
        now: state.clock.unix_now(),
    };
    state.store.replace_tenant(data, &event_for(&now)).await?;
    if replaces_keys {
        state.tokens.keys().reload(state.store.as_ref()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_answers_loopback_only_unless_allowed() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(control_allowed(ip("127.0.0.1"), false));
        assert!(control_allowed(ip("127.8.9.10"), false));
        assert!(control_allowed(ip("::1"), false));
        assert!(control_allowed(ip("::ffff:127.0.0.1"), false));
        assert!(!control_allowed(ip("10.0.0.7"), false));
        assert!(!control_allowed(ip("::ffff:192.168.1.2"), false));
        assert!(!control_allowed(ip("fe80::1"), false));
        assert!(!control_allowed(None, false));
        assert!(control_allowed(ip("10.0.0.7"), true));
        assert!(control_allowed(None, true));
    }
}
