//! The bench's CI smoke run: every scenario for a moment against an in-process server
//! (SQLite, or PostgreSQL with `IDLINK_TEST_BACKEND=postgres`), and the store ceiling on
//! the same store. It fails on errors only, never on slowness.

use std::time::Duration;

use idlink_bench::ceiling::{self, StoreWorker};
use idlink_bench::idlink::IdlinkApi;
use idlink_bench::load::{self, LoadOptions, Measurement};
use idlink_bench::raw::RawSqlite;
use idlink_bench::report::BenchResult;
use idlink_bench::scenario::Scenario;
use idlink_server::domain::audit::{LogEvent, Operation};
use idlink_server::domain::linking::{LinkProof, LinkingPolicy};
use idlink_server::testing::TestServer;

const OPTIONS: LoadOptions = LoadOptions {
    concurrency: 4,
    duration: Duration::from_millis(1500),
    warmup: Duration::from_millis(200),
};

fn check(target: &str, scenario: &str, m: &Measurement) {
    let row = BenchResult::from_measurement(target, scenario, OPTIONS.concurrency, m);
    println!("{}", row.human());
    assert!(
        row.errors.is_empty(),
        "{target} {scenario}: {:?}",
        row.errors
    );
    assert!(row.ops > 0, "{target} {scenario}: no operation completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_without_errors() {
    let server = TestServer::start().await;
    let api = IdlinkApi::new(
        &server.base_url,
        &server.admin_client_id,
        &server.admin_client_secret,
    );
    let fixture = api.prepare(OPTIONS.concurrency).await.expect("fixture");
    for scenario in Scenario::ALL {
        let workers = api.workers(scenario, &fixture, OPTIONS.concurrency);
        let m = load::run(&OPTIONS, workers, || None).await;
        check("idlink", scenario.name(), &m);
    }

    // Every pair is unlinked again after the run: a link now succeeds.
    let (primary, secondary) = &fixture.pairs[0];
    let store = server.state().store.clone();
    let key = idlink_server::domain::model::IdentityKey::new("google-oauth2", secondary);
    let event = LogEvent::for_tool(
        "idlink-bench",
        Operation::Link,
        primary,
        &key,
        &idlink_server::clock::now_iso(),
    );
    assert_eq!(
        store
            .link(
                primary,
                &key,
                &LinkProof::Named {
                    connection_id: None
                },
                &LinkingPolicy::default(),
                &idlink_server::store::Alongside::audit(event)
            )
            .await
            .unwrap()
            .len(),
        2
    );

    let pairs = ceiling::prepare(&store, OPTIONS.concurrency)
        .await
        .expect("pairs");
    let workers = pairs
        .iter()
        .map(|p| StoreWorker::new(store.clone(), p))
        .collect();
    let m = load::run(&OPTIONS, workers, idlink_bench::cpu::own_seconds).await;
    check("store-ceiling", "link-unlink", &m);

    // The hardware reference, as `compare` runs it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raw.db");
    let raw = RawSqlite::create(&path, OPTIONS.concurrency).expect("sqlite-raw");
    let m = tokio::task::spawn_blocking(move || raw.measure(&OPTIONS))
        .await
        .unwrap()
        .expect("sqlite-raw run");
    check("sqlite-raw", "link-unlink", &m);
    assert!(idlink_bench::raw::all_unlinked(&path).unwrap());
}

/// The import bench end to end, small: the import job, the export job and the ceiling
/// all complete (the `idlink` binary is the one `cargo test --workspace` builds for the
/// `idlink` crate's own tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_import_bench_imports_exports_and_measures_its_ceiling() {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("idlink");
    let bin = idlink_bench::targets::idlink_binary(Some(bin)).unwrap();
    let rows = idlink_bench::import::run(&bin, 300)
        .await
        .expect("import bench");
    println!("{rows:?}");
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r["users_per_sec"].as_f64().unwrap() > 0.0)
    );
}
