//! The store ceiling: the link/unlink transactions idlink's handlers issue, run straight
//! against `idlink_server::store` — no HTTP, no tokens — as the floor the full path is
//! measured against.

use idlink_server::domain::audit::{LogEvent, Operation};
use std::sync::Arc;

use idlink_server::config::Config;
use idlink_server::domain::linking::{LinkProof, LinkingPolicy, UnlinkMode};
use idlink_server::domain::model::IdentityKey;
use idlink_server::domain::users;
use idlink_server::store::{self, Alongside, Store, StoreOptions};
use serde_json::json;

use crate::load::Worker;
use crate::scenario::run_tag;

const PROVIDER: &str = "google-oauth2";

/// Opens the store at `database_url` (migrating it) and creates the tenant in it, as
/// the server does at start-up.
pub async fn open(database_url: &str) -> Result<Arc<dyn Store>, String> {
    let store = store::open(database_url, &StoreOptions::default())
        .await
        .map_err(|e| format!("cannot open {database_url}: {e}"))?;
    let config = Config {
        database_url: database_url.to_owned(),
        admin_client_id: Some("idlink-bench-ceiling".into()),
        admin_client_secret: Some("idlink-bench-ceiling-secret-0123456789abcdef".into()),
        print_credentials: false,
        ..Config::default()
    };
    idlink_server::bootstrap::ensure_tenant(store.as_ref(), &config)
        .await
        .map_err(|e| format!("cannot create the tenant: {e}"))?;
    Ok(store)
}

/// Creates `pairs` standalone social users pairs; returns `(primary user_id,
/// secondary identity)` for each.
pub async fn prepare(
    store: &Arc<dyn Store>,
    pairs: usize,
) -> Result<Vec<(String, IdentityKey)>, String> {
    let connection = store
        .connections()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|c| c.name == PROVIDER)
        .ok_or("the tenant has no google-oauth2 connection")?;
    let tag = run_tag();
    let now = idlink_server::clock::now_iso();
    let mut out = Vec::new();
    for i in 0..pairs {
        let mut ids = Vec::new();
        for role in ["p", "s"] {
            let body = json!({"connection": PROVIDER, "user_id": format!("c{tag}{role}{i}")});
            let new = users::new_user(&body, &connection, &now).map_err(|e| e.to_string())?;
            store
                .create_user(&new.user, None, &Alongside::default())
                .await
                .map_err(|e| e.to_string())?;
            ids.push(new.user.user_id);
        }
        let secondary = IdentityKey::new(PROVIDER, &format!("c{tag}s{i}"));
        out.push((ids.swap_remove(0), secondary));
    }
    Ok(out)
}

/// Links then unlinks one pair, each call one op.
#[derive(Debug)]
pub struct StoreWorker {
    store: Arc<dyn Store>,
    primary: String,
    secondary: IdentityKey,
    linked: bool,
}

impl StoreWorker {
    pub fn new(store: Arc<dyn Store>, pair: &(String, IdentityKey)) -> Self {
        Self {
            store,
            primary: pair.0.clone(),
            secondary: pair.1.clone(),
            linked: false,
        }
    }
}

fn error_key(err: &idlink_server::error::Error) -> String {
    format!("store: {err}")
}

impl Worker for StoreWorker {
    async fn op(&mut self) -> Result<(), String> {
        // The same transactions the server runs, audit record included.
        let now = idlink_server::clock::now_iso();
        let operation = if self.linked {
            Operation::Unlink
        } else {
            Operation::Link
        };
        let alongside = Alongside::audit(LogEvent::for_tool(
            "idlink-bench",
            operation,
            &self.primary,
            &self.secondary,
            &now,
        ));
        let outcome = if self.linked {
            self.store
                .unlink(
                    &self.primary,
                    &self.secondary,
                    &now,
                    UnlinkMode::Auth0,
                    &alongside,
                )
                .await
        } else {
            self.store
                .link(
                    &self.primary,
                    &self.secondary,
                    &LinkProof::Named {
                        connection_id: None,
                    },
                    &LinkingPolicy::default(),
                    &alongside,
                )
                .await
        };
        self.linked = !self.linked;
        outcome.map(drop).map_err(|e| error_key(&e))
    }

    fn at_cycle_start(&self) -> bool {
        !self.linked
    }
}
