//! `--db-pooler transaction` (PostgreSQL behind PgBouncer in transaction mode), on a
//! direct connection to the test PostgreSQL: the server links and unlinks in that mode,
//! leaves no named statement and no session setting on its server connections (what
//! would leak to other clients of a pooler's server connection), and refuses to start
//! without `--db-migrate-url`. `tests/pgbouncer/run.sh` runs the PostgreSQL-relevant
//! suites through a real PgBouncer in that mode.
//!
//! Needs `IDLINK_TEST_POSTGRES_URL`; without it each test says so in one line and passes.

mod common;

use common::Api;
use idlink_server::store::postgres::PgStore;
use idlink_server::store::{DbPooler, Shared, Store as _, StoreOptions};
use idlink_server::testing::{
    TestDatabase, TestServer, database_url_with_name, postgres_direct_test_url, postgres_test_url,
};
use serde_json::json;
use sqlx::Row as _;

/// The test PostgreSQL reached directly (under `tests/pgbouncer/run.sh` the main test
/// URL goes through the pooler), or `None` to skip.
fn direct_postgres_or_skip(test: &str) -> Option<String> {
    let url = postgres_direct_test_url().or_else(postgres_test_url);
    if url.is_none() {
        println!("{test}: skipped, IDLINK_TEST_POSTGRES_URL is not set");
    }
    url
}

/// A fresh database and its direct URL.
async fn database(server_url: &str) -> (TestDatabase, String) {
    let database = TestDatabase::create(server_url).await;
    let direct = database_url_with_name(server_url, database.name());
    (database, direct)
}

#[tokio::test]
async fn links_and_unlinks_with_the_transaction_pooler_settings() {
    let Some(url) =
        direct_postgres_or_skip("links_and_unlinks_with_the_transaction_pooler_settings")
    else {
        return;
    };
    let (_database, direct) = database(&url).await;
    let server = TestServer::start_on_with(&direct, |config| {
        config.store.pooler = DbPooler::Transaction;
        config.store.migrate_url = Some(direct.clone());
    })
    .await;
    let api = Api::with_server(server).await;
    let primary = api.db_user("ada@example.com").await;
    let secondary = api
        .social_user("github", json!(7), "ada@github.example")
        .await;
    let linked = api
        .link(&primary, json!({"provider": "github", "user_id": 7}))
        .await;
    assert_eq!(linked.status, 201, "{}", linked.body);
    assert_eq!(
        linked.body.as_array().map(Vec::len),
        Some(2),
        "{}",
        linked.body
    );
    let gone = api.user(&secondary).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    let shown = api.user(&primary).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.body["identities"].as_array().map(Vec::len), Some(2));
    let unlinked = api.unlink(&primary, "github", "7").await;
    assert_eq!(unlinked.status, 200, "{}", unlinked.body);
    assert_eq!(api.user(&secondary).await.status, 200);
    assert_eq!(api.get("/health").await.status, 200);
    api.assert_invariants().await;
}

/// What a store's only pooled connection holds after a few calls: its named
/// statements and its `statement_timeout`.
async fn session_state_after_calls(url: &str, options: StoreOptions) -> (i64, String) {
    let store = Shared(
        PgStore::open(
            url,
            &StoreOptions {
                max_connections: 1,
                ..options
            },
        )
        .await
        .expect("store opens"),
    );
    store.put_setting("k", "v").await.unwrap();
    assert_eq!(store.setting("k").await.unwrap().as_deref(), Some("v"));
    store.client_ids().await.unwrap();
    store.connections().await.unwrap();
    assert!(store.user("auth0|nobody").await.unwrap().is_none());
    store.ping().await.unwrap();
    // Simple queries: they name nothing themselves.
    let named = sqlx::raw_sql("SELECT COUNT(*) FROM pg_prepared_statements")
        .fetch_one(store.0.pool())
        .await
        .unwrap()
        .get(0);
    let timeout = sqlx::raw_sql("SHOW statement_timeout")
        .fetch_one(store.0.pool())
        .await
        .unwrap()
        .get(0);
    (named, timeout)
}

#[tokio::test]
async fn behind_a_transaction_pooler_nothing_stays_on_the_server_connection() {
    let Some(url) = direct_postgres_or_skip(
        "behind_a_transaction_pooler_nothing_stays_on_the_server_connection",
    ) else {
        return;
    };
    let (_database, direct) = database(&url).await;
    let timeout = Some(std::time::Duration::from_secs(30));

    // Directly: named statements stay prepared for reuse, the timeout is the session's.
    let (named, session_timeout) = session_state_after_calls(
        &direct,
        StoreOptions {
            statement_timeout: timeout,
            ..StoreOptions::default()
        },
    )
    .await;
    assert!(named > 0, "the direct store caches named statements");
    assert_eq!(session_timeout, "30s");

    // Behind a transaction pooler: nothing a later client of the server connection
    // would trip over (the timeout is set per transaction, with SET LOCAL).
    let (named, session_timeout) = session_state_after_calls(
        &direct,
        StoreOptions {
            statement_timeout: timeout,
            pooler: DbPooler::Transaction,
            migrate_url: Some(direct.clone()),
            ..StoreOptions::default()
        },
    )
    .await;
    assert_eq!(named, 0, "no named statement left behind");
    assert_ne!(session_timeout, "30s", "no session-level SET");

    // Without a statement cache: unnamed, rather than named and never closed.
    let (named, _) = session_state_after_calls(
        &direct,
        StoreOptions {
            statement_cache_capacity: Some(0),
            ..StoreOptions::default()
        },
    )
    .await;
    assert_eq!(named, 0, "no statement leaked with the cache off");
}

#[tokio::test]
async fn the_transaction_pooler_setting_needs_a_migrate_url() {
    let Some(url) = direct_postgres_or_skip("the_transaction_pooler_setting_needs_a_migrate_url")
    else {
        return;
    };
    let options = StoreOptions {
        pooler: DbPooler::Transaction,
        migrate_url: None,
        ..StoreOptions::default()
    };
    let Err(err) = idlink_server::store::open(&url, &options).await else {
        panic!("--db-pooler transaction without --db-migrate-url started");
    };
    let message = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_else(|| err.to_string());
    assert!(
        message.contains("--db-pooler transaction needs --db-migrate-url"),
        "{message}"
    );
    assert!(message.contains("advisory lock"), "{message}");
}
