//! `Idempotency-Key` on link, unlink and user create/update/delete, end to end on the
//! backend the harness picks (`IDLINK_TEST_BACKEND`): a repeat is answered from the
//! store without acting again, concurrent duplicates act once, another request under
//! the same key is a 422, bad keys are a 400, keys expire, and each caller has its own.

mod common;

use common::{Api, DB, PASSWORD, decode_claims, enc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A raw answer: status, whether it was replayed, and the body's exact text.
#[derive(Debug, Clone, PartialEq)]
struct Raw {
    status: StatusCode,
    replayed: bool,
    body: String,
}

fn keyed_request(
    api: &Api,
    token: &str,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> reqwest::RequestBuilder {
    let mut request = api
        .http
        .request(method, api.url(path))
        .bearer_auth(token)
        .header("Idempotency-Key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request
}

async fn keyed(
    api: &Api,
    token: &str,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> Raw {
    raw(keyed_request(api, token, method, path, key, body)).await
}

/// Sends `request` and reads its answer.
async fn raw(request: reqwest::RequestBuilder) -> Raw {
    let response = request.send().await.expect("request");
    let status = response.status();
    let replayed = match response.headers().get("idempotent-replayed") {
        None => false,
        Some(value) => {
            assert_eq!(value, "true");
            true
        }
    };
    Raw {
        status,
        replayed,
        body: response.text().await.expect("body"),
    }
}

fn identities_path(primary: &str) -> String {
    format!("/api/v2/users/{}/identities", enc(primary))
}

/// Sends 32 copies of `request` at once (each on its own task); their answers.
async fn thirty_two_at_once(request: &reqwest::RequestBuilder) -> Vec<Raw> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let copy = request.try_clone().expect("a cloneable request");
        tasks.spawn(raw(copy));
    }
    tasks.join_all().await
}

/// The audit trail's successful links.
async fn successful_links(api: &Api) -> usize {
    let logs = api.get("/api/v2/logs").await;
    logs.body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "sapi" && e["description"] == "Link a User Account")
        .count()
}

#[tokio::test]
async fn the_same_key_sent_32_times_at_once_links_once_with_32_identical_answers() {
    let api = Api::start().await;
    let primary = api.db_user("primary@example.com").await;
    api.social_user("github", json!(4242), "gh@example.com")
        .await;
    let path = identities_path(&primary);
    let body = json!({"provider": "github", "user_id": 4242});

    let answers = thirty_two_at_once(&keyed_request(
        &api,
        &api.token,
        Method::POST,
        &path,
        "link-once-4242",
        Some(body.clone()),
    ))
    .await;

    for answer in &answers {
        assert_eq!(answer.status, 201, "{answer:?}");
        assert_eq!(
            answer.body, answers[0].body,
            "every answer is the first one"
        );
    }
    assert_eq!(
        answers.iter().filter(|a| !a.replayed).count(),
        1,
        "one call acted, the others were replayed"
    );
    let identities: Value = serde_json::from_str(&answers[0].body).unwrap();
    assert_eq!(identities.as_array().unwrap().len(), 2);
    assert_eq!(
        successful_links(&api).await,
        1,
        "one link in the audit trail"
    );
    assert_eq!(
        api.user("github|4242").await.status,
        404,
        "the secondary was absorbed"
    );
    assert_eq!(api.assert_invariants().await, 2);

    // Later repeats still get the same answer, replayed.
    let again = keyed(
        &api,
        &api.token,
        Method::POST,
        &path,
        "link-once-4242",
        Some(body),
    )
    .await;
    assert_eq!(again.status, 201);
    assert!(again.replayed);
    assert_eq!(again.body, answers[0].body);
}

#[tokio::test]
async fn the_same_key_sent_32_times_at_once_creates_one_user() {
    let api = Api::start().await;
    let body = json!({"connection": DB, "email": "once@example.com", "password": PASSWORD});
    let answers = thirty_two_at_once(&keyed_request(
        &api,
        &api.token,
        Method::POST,
        "/api/v2/users",
        "create-once",
        Some(body),
    ))
    .await;
    for answer in &answers {
        assert_eq!(answer.status, 201, "{answer:?}");
        assert_eq!(answer.body, answers[0].body);
    }
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1);
    let users = api
        .get("/api/v2/users?q=email:%22once@example.com%22")
        .await;
    assert_eq!(users.body.as_array().unwrap().len(), 1, "{}", users.body);
}

#[tokio::test]
async fn repeats_of_unlink_patch_and_delete_replay_without_acting_again() {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    api.social_user("github", json!(7), "gh@example.com").await;
    assert_eq!(
        api.link(&primary, json!({"provider": "github", "user_id": 7}))
            .await
            .status,
        201
    );

    // Unlink twice with one key: the second answer is the first's, and the user the
    // first unlink recreated is not recreated again (nor is a 200 no-op answered).
    let unlink_path = format!("{}/github/7", identities_path(&primary));
    let first = keyed(
        &api,
        &api.token,
        Method::DELETE,
        &unlink_path,
        "unlink-1",
        None,
    )
    .await;
    assert_eq!(first.status, 200);
    assert!(!first.replayed);
    let second = keyed(
        &api,
        &api.token,
        Method::DELETE,
        &unlink_path,
        "unlink-1",
        None,
    )
    .await;
    assert_eq!(
        second,
        Raw {
            replayed: true,
            ..first.clone()
        }
    );
    assert_eq!(api.user("github|7").await.status, 200);

    // A patch, then a change by someone else, then the patch's repeat: the repeat
    // answers the first patch's user and does not write its name again.
    let user_path = format!("/api/v2/users/{}", enc(&primary));
    let patch = keyed(
        &api,
        &api.token,
        Method::PATCH,
        &user_path,
        "patch-1",
        Some(json!({"name": "First"})),
    )
    .await;
    assert_eq!(patch.status, 200);
    let other = api
        .send(Method::PATCH, &user_path, Some(json!({"name": "Second"})))
        .await;
    assert_eq!(other.status, 200);
    assert!(
        other.headers.get("idempotent-replayed").is_none(),
        "no key, no replay"
    );
    let repeat = keyed(
        &api,
        &api.token,
        Method::PATCH,
        &user_path,
        "patch-1",
        Some(json!({"name": "First"})),
    )
    .await;
    assert_eq!(
        repeat,
        Raw {
            replayed: true,
            ..patch.clone()
        }
    );
    assert_eq!(api.user(&primary).await.body["name"], "Second");

    // A delete's repeat answers 204 again, replayed; a user created meanwhile under
    // the same id would not be deleted by it.
    let delete = keyed(
        &api,
        &api.token,
        Method::DELETE,
        &user_path,
        "delete-1",
        None,
    )
    .await;
    assert_eq!(
        (delete.status, delete.replayed, delete.body.as_str()),
        (StatusCode::NO_CONTENT, false, "")
    );
    let repeat = keyed(
        &api,
        &api.token,
        Method::DELETE,
        &user_path,
        "delete-1",
        None,
    )
    .await;
    assert_eq!(
        (repeat.status, repeat.replayed, repeat.body.as_str()),
        (StatusCode::NO_CONTENT, true, "")
    );
}

#[tokio::test]
async fn a_key_reused_with_another_request_is_422_and_changes_nothing() {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    api.social_user("github", json!(1), "one@example.com").await;
    api.social_user("github", json!(2), "two@example.com").await;
    let path = identities_path(&primary);
    let first = keyed(
        &api,
        &api.token,
        Method::POST,
        &path,
        "k-1",
        Some(json!({"provider": "github", "user_id": 1})),
    )
    .await;
    assert_eq!(first.status, 201);

    let before = api.snapshot_without_logins().await;
    let other_body = api
        .http
        .post(api.url(&path))
        .bearer_auth(&api.token)
        .header("Idempotency-Key", "k-1")
        .json(&json!({"provider": "github", "user_id": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(other_body.status(), 422);
    assert!(other_body.headers().get("idempotent-replayed").is_none());
    let error: Value = other_body.json().await.unwrap();
    assert_eq!(
        error,
        json!({
            "statusCode": 422,
            "error": "Unprocessable Entity",
            "message": "The Idempotency-Key was already used with a different request.",
            "errorCode": "idempotency_key_reused"
        })
    );
    // Another endpoint under the same key is another request too.
    let other_path = keyed(
        &api,
        &api.token,
        Method::PATCH,
        &format!("/api/v2/users/{}", enc(&primary)),
        "k-1",
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(other_path.status, 422, "{other_path:?}");
    assert_eq!(
        api.snapshot_without_logins().await,
        before,
        "nothing changed"
    );
}

#[tokio::test]
async fn invalid_keys_are_400_in_auth0_shape() {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    api.social_user("github", json!(3), "gh@example.com").await;
    let path = identities_path(&primary);
    let before = api.snapshot_without_logins().await;
    let too_long = "k".repeat(256);
    let bad: [&[u8]; 4] = [
        too_long.as_bytes(),
        b"tab\there",
        "caf\u{e9}".as_bytes(),
        b"",
    ];
    for key in bad {
        let response = api
            .http
            .post(api.url(&path))
            .bearer_auth(&api.token)
            .header(
                "Idempotency-Key",
                reqwest::header::HeaderValue::from_bytes(key).unwrap(),
            )
            .json(&json!({"provider": "github", "user_id": 3}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{key:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["statusCode"], 400);
        assert_eq!(body["error"], "Bad Request");
        assert_eq!(body["errorCode"], "invalid_headers", "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key")
        );
    }
    // The same key twice in one request.
    let response = api
        .http
        .delete(api.url(&format!("/api/v2/users/{}", enc(&primary))))
        .bearer_auth(&api.token)
        .header("Idempotency-Key", "a")
        .header("Idempotency-Key", "b")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        api.snapshot_without_logins().await,
        before,
        "nothing changed"
    );

    // 255 characters is the longest key; the Structured Field form names the same key.
    let longest = "k".repeat(255);
    let body = json!({"provider": "github", "user_id": 3});
    let first = keyed(
        &api,
        &api.token,
        Method::POST,
        &path,
        &longest,
        Some(body.clone()),
    )
    .await;
    assert_eq!(first.status, 201, "{first:?}");
    let quoted = keyed(
        &api,
        &api.token,
        Method::POST,
        &path,
        &format!("\"{longest}\""),
        Some(body),
    )
    .await;
    assert_eq!(
        quoted,
        Raw {
            replayed: true,
            ..first
        }
    );
}

#[tokio::test]
async fn a_failed_call_stores_nothing_and_its_retry_acts() {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    let path = identities_path(&primary);
    let body = json!({"provider": "github", "user_id": 99});
    // The secondary does not exist yet: 400, nothing written, the key not taken.
    let failed = keyed(
        &api,
        &api.token,
        Method::POST,
        &path,
        "retry-me",
        Some(body.clone()),
    )
    .await;
    assert_eq!(failed.status, 400, "{failed:?}");
    api.social_user("github", json!(99), "late@example.com")
        .await;
    let retried = keyed(
        &api,
        &api.token,
        Method::POST,
        &path,
        "retry-me",
        Some(body),
    )
    .await;
    assert_eq!(retried.status, 201, "{retried:?}");
    assert!(!retried.replayed);
}

#[tokio::test]
async fn keys_belong_to_their_caller() {
    let api = Api::start().await;
    let body = json!({"connection": DB, "email": "mine@example.com", "password": PASSWORD});
    let first = keyed(
        &api,
        &api.token,
        Method::POST,
        "/api/v2/users",
        "shared",
        Some(body.clone()),
    )
    .await;
    assert_eq!(first.status, 201);

    // Another client (same scopes) sending the same key and body is its own call: it
    // acts (and the user exists now), and never sees the first client's answer.
    let mut claims = decode_claims(&api.token);
    claims["azp"] = json!("another-client");
    claims["sub"] = json!("another-client@clients");
    let other_token = api.server.sign_with_tenant_key(&claims);
    let other = keyed(
        &api,
        &other_token,
        Method::POST,
        "/api/v2/users",
        "shared",
        Some(body),
    )
    .await;
    assert_eq!(other.status, 409, "{other:?}");
    assert!(!other.replayed);
}

#[tokio::test]
async fn keys_expire_after_the_configured_ttl() {
    let server = idlink_server::testing::TestServer::start_with(|config| {
        config.tenant.idempotency.ttl_seconds = Some(60);
    })
    .await;
    let api = Api::with_server(server).await;
    let body = json!({"connection": DB, "email": "ttl@example.com", "password": PASSWORD});
    let first = keyed(
        &api,
        &api.token,
        Method::POST,
        "/api/v2/users",
        "ttl",
        Some(body.clone()),
    )
    .await;
    assert_eq!(first.status, 201);
    api.server.state().clock.advance(59);
    let within = keyed(
        &api,
        &api.token,
        Method::POST,
        "/api/v2/users",
        "ttl",
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        within,
        Raw {
            replayed: true,
            ..first
        }
    );
    api.server.state().clock.advance(2);
    // Expired: the key is absent, the call acts again (and the user now exists).
    let after = keyed(
        &api,
        &api.token,
        Method::POST,
        "/api/v2/users",
        "ttl",
        Some(body),
    )
    .await;
    assert_eq!(after.status, 409, "{after:?}");
    assert!(!after.replayed);
}

#[tokio::test]
async fn a_ttl_below_one_second_is_refused_naming_the_setting() {
    let mut config = idlink_server::config::Config::default();
    config.tenant.idempotency.ttl_seconds = Some(0);
    let err = config.tenant.idempotency.ttl_seconds().unwrap_err();
    assert!(err.contains("[idempotency] ttl_seconds"), "{err}");
}
