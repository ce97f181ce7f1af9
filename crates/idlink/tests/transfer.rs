//! `idlink import` and `idlink export` end to end: the real binary against a real
//! in-process server (SQLite, or PostgreSQL with `IDLINK_TEST_BACKEND=postgres`).

mod cli_support;

use cli_support::*;
use idlink_server::testing::TestServer;
use serde_json::{Value, json};

async fn user(server: &TestServer, id: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!(
            "{}/users/{}",
            server.api_url(),
            id.replace('|', "%7C")
        ))
        .bearer_auth(server.admin_token().await)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn sorted(text: &str) -> Vec<Value> {
    let mut users: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    users.sort_by_key(|u| u["user_id"].as_str().unwrap_or("").to_owned());
    users
}

#[tokio::test]
async fn a_firebase_export_moves_in_linked_and_round_trips_through_export() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    let firebase = json!({"users": [
        {"localId": "fb1", "email": "ada@example.com", "emailVerified": true,
         "passwordHash": "c2NyeXB0", "salt": "c2FsdA==", "createdAt": "1700000000000",
         "providerUserInfo": [
            {"providerId": "password", "rawId": "ada@example.com", "email": "ada@example.com"},
            {"providerId": "google.com", "rawId": "1091", "email": "ada@gmail.com", "displayName": "Ada"}]},
        {"localId": "fb2", "email": "gh@example.com",
         "providerUserInfo": [{"providerId": "github.com", "rawId": "77", "email": "gh@example.com"}]}
    ]});
    let file = dir.path().join("firebase.json");
    std::fs::write(&file, firebase.to_string()).unwrap();
    let dry = idlink(&server, &["import", file.to_str().unwrap(), "--dry-run"]).await;
    assert_exit(&dry, 0);
    assert!(
        stdout(&dry).contains("2 users would be imported (1 linked identities)"),
        "{}",
        stdout(&dry)
    );
    assert_eq!(user(&server, "auth0|fb1").await.0, 404);

    let run = idlink(&server, &["import", file.to_str().unwrap()]).await;
    assert_exit(&run, 0);
    assert!(stdout(&run).contains("2 inserted"), "{}", stdout(&run));
    let (status, ada) = user(&server, "auth0|fb1").await;
    assert_eq!(status, 200, "{ada}");
    assert_eq!(ada["identities"][1]["provider"], "google-oauth2");
    assert_eq!(ada["identities"][1]["user_id"], "1091");
    assert_eq!(ada["created_at"], "2023-11-14T22:13:20.000Z");
    assert_eq!(user(&server, "github|77").await.0, 200);

    let exported = dir.path().join("users.ndjson");
    let run = idlink(&server, &["export", "--out", exported.to_str().unwrap()]).await;
    assert_exit(&run, 0);
    let first = std::fs::read_to_string(&exported).unwrap();
    assert_eq!(first.lines().count(), 2, "{first}");

    // Into another server (format detected: NDJSON), and out again: the same users.
    let other = TestServer::start().await;
    let run = idlink(&other, &["import", exported.to_str().unwrap()]).await;
    assert_exit(&run, 0);
    let again = dir.path().join("again.ndjson");
    let run = idlink(&other, &["export", "--out", again.to_str().unwrap()]).await;
    assert_exit(&run, 0);
    assert_eq!(
        sorted(&first),
        sorted(&std::fs::read_to_string(&again).unwrap())
    );
}

#[tokio::test]
async fn a_malformed_line_is_reported_with_its_number_and_the_rest_imported() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    let file = dir.path().join("users.ndjson");
    std::fs::write(
        &file,
        "{\"email\": \"a@example.com\", \"user_id\": \"a1\"}\n{\"email\": oops}\n{\"email\": \"b@example.com\", \"user_id\": \"b1\"}\n",
    )
    .unwrap();
    let run = idlink(
        &server,
        &["import", file.to_str().unwrap(), "--format", "auth0-ndjson"],
    )
    .await;
    assert_exit(&run, 4);
    assert!(stderr(&run).contains("line 2"), "{}", stderr(&run));
    assert_eq!(user(&server, "auth0|a1").await.0, 200);
    assert_eq!(user(&server, "auth0|b1").await.0, 200);
}

#[tokio::test]
async fn an_export_to_firebase_and_auth0_json_imports_back_as_the_same_users() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    let ndjson = dir.path().join("users.ndjson");
    std::fs::write(
        &ndjson,
        [
            json!({"user_id": "auth0|ada", "email": "ada@example.com", "email_verified": true,
                "name": "Ada", "app_metadata": {"plan": "pro"},
                "identities": [
                    {"provider": "auth0", "user_id": "ada", "connection": "Username-Password-Authentication"},
                    {"provider": "google-oauth2", "user_id": "1091", "connection": "google-oauth2",
                     "isSocial": true, "profileData": {"email": "ada@gmail.com"}}]}),
            json!({"user_id": "github|77", "email": "gh@example.com",
                "identities": [{"provider": "github", "user_id": "77", "connection": "github", "isSocial": true}]}),
        ]
        .map(|u| u.to_string())
        .join("\n"),
    )
    .unwrap();
    assert_exit(
        &idlink(&server, &["import", ndjson.to_str().unwrap()]).await,
        0,
    );

    for format in ["firebase", "auth0-json"] {
        let out = dir.path().join(format!("users.{format}.json"));
        let run = idlink(
            &server,
            &["export", "--format", format, "--out", out.to_str().unwrap()],
        )
        .await;
        assert_exit(&run, 0);
        let written: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        if format == "firebase" {
            let ada = &written["users"][0];
            assert_eq!(ada["localId"], "ada", "{written}");
            assert_eq!(ada["customAttributes"], "{\"plan\":\"pro\"}");
            assert_eq!(ada["providerUserInfo"][1]["providerId"], "google.com");
        } else {
            assert_eq!(written.as_array().map(Vec::len), Some(2), "{written}");
        }
        // Into a fresh server (format detected): the same users, linked the same way.
        let other = TestServer::start().await;
        assert_exit(&idlink(&other, &["import", out.to_str().unwrap()]).await, 0);
        for id in ["auth0|ada", "github|77"] {
            let (before, after) = (user(&server, id).await.1, user(&other, id).await.1);
            assert_eq!(after["identities"], before["identities"], "{format} {id}");
            assert_eq!(after["email"], before["email"], "{format} {id}");
            assert_eq!(
                after["app_metadata"], before["app_metadata"],
                "{format} {id}"
            );
        }
    }
}

#[tokio::test]
async fn all_or_nothing_imports_nothing_when_a_record_is_malformed_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    let file = dir.path().join("users.ndjson");
    let good = "{\"email\": \"a@example.com\", \"user_id\": \"a1\"}\n";
    std::fs::write(&file, format!("{good}{{\"email\": oops}}\n")).unwrap();
    let path = file.to_str().unwrap();
    let run = idlink(&server, &["import", path, "--all-or-nothing"]).await;
    assert_exit(&run, 4);
    assert!(
        stderr(&run).contains("nothing was sent"),
        "{}",
        stderr(&run)
    );
    assert_eq!(user(&server, "auth0|a1").await.0, 404);

    // Refused by the server (the second record's user id is the first's): undone.
    std::fs::write(&file, format!("{good}{good}")).unwrap();
    let run = idlink(&server, &["import", path, "--all-or-nothing"]).await;
    assert_exit(&run, 4);
    assert!(stderr(&run).contains("line 2"), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("no user was imported"),
        "{}",
        stderr(&run)
    );
    assert_eq!(user(&server, "auth0|a1").await.0, 404);

    let run = idlink(&server, &["import", path, "--all-or-nothing", "--upsert"]).await;
    assert_exit(&run, 2);
}
