//! Auth0's jobs API end to end: imports (Auth0's JSON array and NDJSON, with idlink's
//! `identities`), their errors, exports and their signed download, on a real server.

mod common;

use std::io::Read as _;

use common::{Api, DB};
use idlink_server::testing::TestServer;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

fn connection_id(api: &Api, name: &str) -> String {
    api.server
        .state()
        .connection_by_name(name)
        .expect("connection")
        .id
        .clone()
}

/// Posts an import; returns the raw reply.
async fn post_import(api: &Api, file: Vec<u8>, fields: &[(&str, String)]) -> (u16, Value) {
    let mut form = Form::new();
    for (name, value) in fields {
        form = form.text((*name).to_owned(), value.clone());
    }
    form = form.part("users", Part::bytes(file).file_name("users.json"));
    let response = api
        .http
        .post(api.url("/api/v2/jobs/users-imports"))
        .bearer_auth(&api.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn import(api: &Api, file: &str, upsert: bool) -> Value {
    let (status, body) = post_import(
        api,
        file.as_bytes().to_vec(),
        &[
            ("connection_id", connection_id(api, DB)),
            ("upsert", upsert.to_string()),
            ("external_id", "ext-1".into()),
        ],
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "pending");
    assert_eq!(body["type"], "users_import");
    assert_eq!(body["external_id"], "ext-1");
    assert!(body["id"].as_str().unwrap().starts_with("job_"));
    finished(api, body["id"].as_str().unwrap()).await
}

/// Polls the job until it is completed or failed.
async fn finished(api: &Api, id: &str) -> Value {
    for _ in 0..600 {
        let reply = api.get(&format!("/api/v2/jobs/{id}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        if matches!(reply.body["status"].as_str(), Some("completed" | "failed")) {
            return reply.body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("job {id} did not finish");
}

async fn job_errors(api: &Api, id: &str) -> Vec<Value> {
    let reply = api.get(&format!("/api/v2/jobs/{id}/errors")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body.as_array().unwrap().clone()
}

/// How many rows of `table` the database holds (to prove nothing was written).
async fn rows(api: &Api, table: &str) -> i64 {
    let url = api.server.database_url().to_owned();
    let sql = format!("SELECT COUNT(*) FROM {table}");
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap()
    } else {
        // A simple query (no prepared statement): under tests/pgbouncer/run.sh the URL
        // goes through PgBouncer in transaction mode.
        use sqlx::Row as _;
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let row = sqlx::raw_sql(&sql).fetch_one(&pool).await.unwrap();
        row.get(0)
    }
}

#[tokio::test]
async fn an_import_creates_linked_users_reports_bad_lines_and_keeps_bcrypt_passwords() {
    let api = Api::start().await;
    let hash = bcrypt::hash("imported-Pass-1", 4).unwrap();
    // Auth0's JSON array; the second record is malformed JSON on line 9.
    let file = format!(
        r#"[
  {{"email": "ada@example.com", "email_verified": true, "user_id": "5f7c8ec7c33c6c004bbafe82",
    "given_name": "Ada", "user_metadata": {{"plan": "pro"}},
    "custom_password_hash": {{"algorithm": "bcrypt", "hash": {{"value": "{hash}"}}}},
    "identities": [
      {{"provider": "auth0", "user_id": "5f7c8ec7c33c6c004bbafe82", "connection": "{DB}"}},
      {{"provider": "google-oauth2", "user_id": "1091", "connection": "google-oauth2",
        "isSocial": true, "profileData": {{"email": "ada@gmail.com", "name": "Ada G"}}}}]}},
  {{"email": "broken@example.com", "email_verified": tru}},
  {{"email": "bob@example.com", "password_hash": "{hash}", "blocked": false}}
]"#
    );
    let job = import(&api, &file, false).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        job["summary"],
        json!({"failed": 1, "updated": 0, "inserted": 2, "total": 3})
    );
    let errors = job_errors(&api, job["id"].as_str().unwrap()).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["line"], 9);
    assert_eq!(errors[0]["errors"][0]["code"], "INVALID_FORMAT");
    // Not JSON: `user` stays an object (as the SDKs expect), the text is in `record`.
    assert_eq!(errors[0]["user"], json!({}));
    assert!(
        errors[0]["record"]
            .as_str()
            .unwrap()
            .contains("broken@example.com")
    );

    let ada = api.user("auth0|5f7c8ec7c33c6c004bbafe82").await.body;
    let identities = ada["identities"].as_array().unwrap();
    assert_eq!(identities.len(), 2, "{ada}");
    assert_eq!(identities[1]["provider"], "google-oauth2");
    assert_eq!(identities[1]["profileData"]["email"], "ada@gmail.com");
    assert_eq!(ada["user_metadata"]["plan"], "pro");
    // The google identity is linked, not a user of its own.
    assert_eq!(api.user("google-oauth2|1091").await.status, 404);

    // The bcrypt hash signs in as it is.
    let token = api
        .server
        .token(json!({
            "grant_type": "password", "username": "ada@example.com",
            "password": "imported-Pass-1", "client_id": api.server.admin_client_id,
            "client_secret": api.server.admin_client_secret, "audience": api.server.audience(),
        }))
        .await;
    assert!(token["access_token"].is_string(), "{token}");
}

#[tokio::test]
async fn an_identity_owned_by_another_user_is_reported_and_not_moved() {
    let api = Api::start().await;
    let owner = api
        .social_user("github", json!(4242), "octo@example.com")
        .await;
    let file = format!(
        "{{\"email\": \"c@example.com\", \"identities\": [{{\"provider\": \"auth0\", \"user_id\": \"c1\", \"connection\": \"{DB}\"}}, {{\"provider\": \"github\", \"user_id\": 4242, \"connection\": \"github\"}}]}}\n\n{{\"email\": \"d@example.com\"}}\n{{not json\n"
    );
    let job = import(&api, &file, false).await;
    assert_eq!(
        job["summary"],
        json!({"failed": 2, "updated": 0, "inserted": 1, "total": 3}),
        "{job}"
    );
    let errors = job_errors(&api, job["id"].as_str().unwrap()).await;
    assert_eq!(errors[0]["line"], 1);
    assert_eq!(errors[0]["errors"][0]["code"], "IDENTITY_CONFLICT");
    assert_eq!(errors[0]["errors"][0]["path"], "identities/1");
    assert_eq!(errors[1]["line"], 4);
    // Still github's own user, and the record's user was not half-created.
    assert_eq!(api.user(&owner).await.status, 200);
    assert_eq!(api.user("auth0|c1").await.status, 404);

    // Again with upsert: the existing user is updated, not duplicated.
    let job = import(
        &api,
        "{\"email\": \"d@example.com\", \"name\": \"Dee\"}\n",
        true,
    )
    .await;
    assert_eq!(
        job["summary"],
        json!({"failed": 0, "updated": 1, "inserted": 0, "total": 1}),
        "{job}"
    );
    let job = import(&api, "{\"email\": \"d@example.com\"}\n", false).await;
    assert_eq!(
        job_errors(&api, job["id"].as_str().unwrap()).await[0]["errors"][0]["code"],
        "DUPLICATED_USER"
    );
}

#[tokio::test]
async fn a_bad_connection_or_an_oversized_file_fails_before_anything_is_written() {
    let api = Api::with_server(
        TestServer::start_with(|config| config.tenant.max_import_bytes = Some(2000)).await,
    )
    .await;
    let file = b"{\"email\": \"x@example.com\"}\n".to_vec();
    let (status, body) = post_import(
        &api,
        file.clone(),
        &[("connection_id", "con_AAAAAAAAAAAAAAAA".into())],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errorCode"], "inexistent_connection");
    let (status, body) = post_import(&api, file.clone(), &[("connection_id", "nope".into())]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errorCode"], "invalid_body");
    let (status, body) = post_import(
        &api,
        vec![b' '; 5000],
        &[("connection_id", connection_id(&api, DB))],
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["statusCode"], 413);
    // The guard removes an abandoned upload in the background.
    for _ in 0..100 {
        if rows(&api, "jobs").await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(rows(&api, "jobs").await, 0);
    assert_eq!(rows(&api, "job_chunks").await, 0);
    assert_eq!(rows(&api, "users").await, 0);
    // Scope: reading users is not enough to import.
    let reply = api.get("/api/v2/jobs/job_doesnotexist0000").await;
    reply.assert_error(404, "inexistent_job");
}

async fn export(api: &Api, body: Value) -> String {
    let reply = api.post("/api/v2/jobs/users-exports", body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["type"], "users_export");
    let job = finished(api, reply.body["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "completed", "{job}");
    let location = job["location"].as_str().unwrap();
    let response = api.http.get(location).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let gz = response.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    // A forged or expired link is refused.
    let forged = location.replace("signature=", "signature=00");
    let response = api.http.get(&forged).send().await.unwrap();
    assert_eq!(response.status(), 403);
    text
}

fn sorted_lines(text: &str) -> Vec<Value> {
    let mut lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    lines.sort_by_key(|user| user["user_id"].as_str().unwrap_or("").to_owned());
    lines
}

#[tokio::test]
async fn export_then_import_then_export_gives_the_same_users() {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    let social = api
        .social_user("google-oauth2", json!("g-77"), "p@gmail.com")
        .await;
    let reply = api
        .link(
            &primary,
            json!({"provider": "google-oauth2", "user_id": "g-77"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let _ = social;
    api.social_user("github", json!(9), "solo@example.com")
        .await;

    let first = export(&api, json!({"format": "json"})).await;
    assert_eq!(first.lines().count(), 2, "{first}");

    let other = Api::start().await;
    let job = import(&other, &first, false).await;
    assert_eq!(job["summary"]["inserted"], 2, "{job}");
    let second = export(&other, json!({})).await;
    assert_eq!(sorted_lines(&first), sorted_lines(&second));

    // Fields and CSV.
    let csv = export(
        &api,
        json!({"format": "csv", "fields": [{"name": "email"}, {"name": "user_id", "export_as": "id"}]}),
    )
    .await;
    let mut lines: Vec<String> = csv.lines().map(str::to_owned).collect();
    assert_eq!(lines.remove(0), "email,id");
    lines.sort_unstable();
    assert_eq!(
        lines,
        vec![
            format!("p@example.com,{primary}"),
            "solo@example.com,github|9".to_owned()
        ]
    );
}

#[tokio::test]
async fn a_job_needs_its_scope() {
    let api = Api::start().await;
    let reply = api
        .send_as(
            None,
            reqwest::Method::POST,
            "/api/v2/jobs/users-exports",
            Some(json!({})),
        )
        .await;
    reply.assert_error(401, "invalid_token");
}

#[tokio::test]
async fn an_all_or_nothing_import_with_a_refused_record_leaves_no_user_behind() {
    let api = Api::start().await;
    let owner = api
        .social_user("github", json!(4242), "octo@example.com")
        .await;
    let (users_before, identities_before) =
        (rows(&api, "users").await, rows(&api, "identities").await);
    // 1,200 good records (three batches of the runner), then one whose github identity
    // another user owns: the whole import is undone.
    let good: String = (0..1200)
        .map(|i| format!("{{\"email\": \"u{i}@example.com\", \"user_id\": \"aon{i}\"}}\n"))
        .collect();
    let refused = format!(
        "{{\"email\": \"c@example.com\", \"identities\": [{{\"provider\": \"auth0\", \"user_id\": \"c1\", \"connection\": \"{DB}\"}}, {{\"provider\": \"github\", \"user_id\": 4242, \"connection\": \"github\"}}]}}\n"
    );
    let fields = |upsert: bool| {
        vec![
            ("connection_id", connection_id(&api, DB)),
            ("upsert", upsert.to_string()),
            ("all_or_nothing", "true".to_owned()),
        ]
    };
    let (status, body) = post_import(
        &api,
        format!("{good}{refused}").into_bytes(),
        &fields(false),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let job = finished(&api, body["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["failure"]
            .as_str()
            .is_some_and(|f| f.contains("all_or_nothing")),
        "{job}"
    );
    assert_eq!(
        job["summary"],
        json!({"failed": 1, "updated": 0, "inserted": 0, "total": 1201}),
        "{job}"
    );
    let errors = job_errors(&api, job["id"].as_str().unwrap()).await;
    assert_eq!(errors[0]["line"], 1201, "{errors:?}");
    assert_eq!(errors[0]["errors"][0]["code"], "IDENTITY_CONFLICT");
    assert_eq!(rows(&api, "users").await, users_before);
    assert_eq!(rows(&api, "identities").await, identities_before);
    assert_eq!(rows(&api, "job_created").await, 0);
    assert_eq!(api.user("auth0|aon0").await.status, 404);
    assert_eq!(api.user(&owner).await.status, 200);

    // Without the refused record, all of it lands.
    let (status, body) = post_import(&api, good.into_bytes(), &fields(false)).await;
    assert_eq!(status, 201, "{body}");
    let job = finished(&api, body["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["summary"]["inserted"], 1200, "{job}");
    assert_eq!(api.user("auth0|aon1199").await.status, 200);

    // Updates cannot be undone by deleting: the combination is refused up front.
    let (status, body) = post_import(&api, b"{}\n".to_vec(), &fields(true)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("all_or_nothing")),
        "{body}"
    );
}

#[tokio::test]
async fn an_import_stamps_its_dates_on_the_servers_clock() {
    let server = TestServer::start().await;
    // What the emulator's `PUT /idlink/v1/clock` does: shift the server's clock (before
    // the admin token is issued, so the token is valid on the shifted clock).
    let clock = server.state().clock.clone();
    clock.advance(400 * 86_400).expect("within bounds");
    let api = Api::with_server(server).await;
    let shifted_day = clock.now_iso()[..10].to_owned();
    assert_ne!(shifted_day, idlink_server::clock::now_iso()[..10]);

    let job = import(
        &api,
        r#"[{"user_id": "clocked", "email": "clocked@example.com", "email_verified": true}]"#,
        false,
    )
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    for stamp in ["created_at", "completed_at"] {
        let at = job[stamp]
            .as_str()
            .unwrap_or_else(|| panic!("{stamp} in {job}"));
        assert!(
            at.starts_with(&shifted_day),
            "{stamp} {at} vs {shifted_day}"
        );
    }
    let user = api.user("auth0|clocked").await.body;
    for stamp in ["created_at", "updated_at"] {
        let at = user[stamp].as_str().unwrap();
        assert!(
            at.starts_with(&shifted_day),
            "{stamp} {at} vs {shifted_day}"
        );
    }
}
