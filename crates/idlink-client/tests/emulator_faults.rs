//! The client's retries seen through the emulator's fault injection: the emulator
//! counts every faulted attempt (`GET /idlink/v1/faults` → `hits`), so the number of
//! requests the client made is known exactly.

use std::time::{Duration, Instant};

use idlink_client::{CreateUserRequestContent, ManagementClient, RetryPolicy};
use idlink_server::emulator::EmulatorSettings;
use idlink_server::testing::TestServer;
use serde_json::{Value, json};

async fn emulator() -> TestServer {
    TestServer::start_with(|config| config.emulator = Some(EmulatorSettings::default())).await
}

fn client(server: &TestServer) -> ManagementClient {
    ManagementClient::builder()
        .base_url(server.api_url())
        .client_credentials(&server.admin_client_id, server.admin_client_secret.as_str())
        .retry_policy(RetryPolicy::default().with_base_delay(Duration::from_millis(10)))
        .build()
        .unwrap()
}

async fn set_faults(server: &TestServer, rules: Value) {
    let response = reqwest::Client::new()
        .put(format!("{}/idlink/v1/faults", server.base_url))
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn hits(server: &TestServer) -> Vec<u64> {
    let body: Value = reqwest::get(format!("{}/idlink/v1/faults", server.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["hits"].as_u64().unwrap())
        .collect()
}

async fn user(client: &ManagementClient) -> String {
    client
        .users()
        .create(
            CreateUserRequestContent {
                connection: "github".into(),
                user_id: Some(idlink_client::UserId::Integer(5)),
                email: Some("five@example.com".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
        .user_id
}

#[tokio::test]
async fn transient_faults_are_retried_and_counted() {
    let server = emulator().await;
    let client = client(&server);
    let id = user(&client).await;

    // Two 503s, then the real answer: three attempts, one success.
    set_faults(
        &server,
        json!({"rules": [
            {"method": "GET", "path": "/api/v2/users/*", "status": 503, "times": 2}
        ]}),
    )
    .await;
    let got = client.users().get(&id, None).await.unwrap();
    assert_eq!(got.user_id, id);
    assert_eq!(hits(&server).await, vec![2]);

    // More faults than retries: the default policy gives up after 1 + 2 attempts.
    set_faults(
        &server,
        json!({"rules": [
            {"method": "GET", "path": "/api/v2/users/*", "status": 500, "times": 5}
        ]}),
    )
    .await;
    let err = client.users().get(&id, None).await.unwrap_err();
    assert_eq!(err.status_code(), Some(500));
    assert_eq!(hits(&server).await, vec![3]);

    // A 429 is waited out for its Retry-After (1 s), then retried once.
    set_faults(&server, json!({"rules": [
        {"method": "GET", "path": "/api/v2/users/*", "status": 429, "times": 1, "retry_after": 1}
    ]}))
    .await;
    let started = Instant::now();
    client.users().get(&id, None).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(hits(&server).await, vec![1]);

    // Not retryable: a 404-shaped fault is answered at once (one attempt).
    set_faults(
        &server,
        json!({"rules": [
            {"method": "GET", "path": "/api/v2/users/*", "status": 404, "times": 3}
        ]}),
    )
    .await;
    assert_eq!(
        client
            .users()
            .get(&id, None)
            .await
            .unwrap_err()
            .status_code(),
        Some(404)
    );
    assert_eq!(hits(&server).await, vec![1]);
}
