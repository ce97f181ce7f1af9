//! idlink's opt-in linking extensions, end to end: reversible linking
//! (`[linking] unlink = "restore"`), merge policies (`[linking] merge`, the
//! `idlink-merge-policy` header) and the link preview. Without configuration the same
//! requests behave as Auth0 (the rest of the suite checks that in detail).

mod common;

use common::{Api, Reply, enc};
use idlink_server::domain::linking::{LinkingPolicy, UnlinkMode};
use idlink_server::domain::merge::MergePolicy;
use idlink_server::testing::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn api_with(policy: LinkingPolicy) -> Api {
    Api::with_server(TestServer::start_with(|config| config.tenant.linking = policy).await).await
}

/// A primary with metadata, and a google-oauth2 secondary with its own metadata and a
/// login; returns (primary, secondary user_id).
async fn two_users(api: &Api) -> (String, String) {
    let primary = api.db_user("p@example.com").await;
    let patch = api
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v2/users/{}", enc(&primary)),
            Some(json!({
                "user_metadata": {"theme": "dark", "prefs": {"lang": "fr"}},
                "app_metadata": {"plan": "pro"}
            })),
        )
        .await;
    assert_eq!(patch.status, 200, "{}", patch.body);
    let secondary = api
        .post(
            "/api/v2/users",
            json!({
                "connection": "google-oauth2", "user_id": "4242", "email": "s@example.com",
                "name": "Secondary", "email_verified": true,
                "user_metadata": {"theme": "light", "prefs": {"tz": "UTC"}, "roles": ["reader"]},
                "app_metadata": {"plan": "free", "tier": 2}
            }),
        )
        .await;
    assert_eq!(secondary.status, 201, "{}", secondary.body);
    (
        primary,
        secondary.body["user_id"].as_str().unwrap().to_owned(),
    )
}

const GOOGLE: &str = "google-oauth2";

fn link_body() -> Value {
    json!({"provider": GOOGLE, "user_id": "4242"})
}

async fn post_with_header(api: &Api, path: &str, body: Value, merge: &str) -> Reply {
    let response = api
        .http
        .post(api.url(path))
        .bearer_auth(&api.token)
        .header("idlink-merge-policy", merge)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

fn without_dates(mut user: Value) -> Value {
    let object = user.as_object_mut().unwrap();
    object.remove("updated_at");
    user
}

#[tokio::test]
async fn restoring_unlink_gives_back_the_exact_pre_link_user() {
    let api = api_with(LinkingPolicy {
        unlink: UnlinkMode::Restore,
        merge: MergePolicy::None,
        ..LinkingPolicy::default()
    })
    .await;
    let (primary, secondary) = two_users(&api).await;
    let before = api.user(&secondary).await.body;

    assert_eq!(api.link(&primary, link_body()).await.status, 201);
    assert_eq!(api.user(&secondary).await.status, 404, "linked away");
    // The snapshot is never on Auth0's wire.
    let linked = api.user(&primary).await.body;
    assert!(!linked.to_string().contains("restore"), "{linked}");
    assert_eq!(
        linked["user_metadata"],
        json!({"theme": "dark", "prefs": {"lang": "fr"}})
    );

    let unlinked = api.unlink(&primary, GOOGLE, "4242").await;
    assert_eq!(unlinked.status, 200, "{}", unlinked.body);
    let after = api.user(&secondary).await.body;
    assert_eq!(after["user_metadata"], before["user_metadata"]);
    assert_eq!(after["app_metadata"], before["app_metadata"]);
    assert_eq!(after["created_at"], before["created_at"]);
    assert_eq!(without_dates(after), without_dates(before));
}

#[tokio::test]
async fn auth0_unlink_is_the_default_and_drops_the_metadata() {
    let api = Api::start().await;
    let (primary, secondary) = two_users(&api).await;
    assert_eq!(api.link(&primary, link_body()).await.status, 201);
    // Auth0: the primary's metadata is untouched by a link.
    let linked = api.user(&primary).await.body;
    assert_eq!(linked["app_metadata"], json!({"plan": "pro"}));
    assert_eq!(api.unlink(&primary, GOOGLE, "4242").await.status, 200);
    let after = api.user(&secondary).await.body;
    assert!(after.get("user_metadata").is_none(), "{after}");
    assert!(after.get("app_metadata").is_none(), "{after}");
}

#[tokio::test]
async fn merge_policies_from_the_tenant_and_per_request() {
    let api = api_with(LinkingPolicy {
        unlink: UnlinkMode::Auth0,
        merge: MergePolicy::PrimaryWins,
        ..LinkingPolicy::default()
    })
    .await;
    let (primary, _) = two_users(&api).await;
    assert_eq!(api.link(&primary, link_body()).await.status, 201);
    let merged = api.user(&primary).await.body;
    assert_eq!(
        merged["user_metadata"],
        json!({"theme": "dark", "prefs": {"lang": "fr", "tz": "UTC"}, "roles": ["reader"]})
    );
    assert_eq!(merged["app_metadata"], json!({"plan": "pro", "tier": 2}));

    // The header overrides the tenant's policy for one request.
    let other = api.db_user("q@example.com").await;
    let github = api
        .post(
            "/api/v2/users",
            json!({"connection": "github", "user_id": 77, "email": "g@example.com",
                   "app_metadata": {"plan": "enterprise"}}),
        )
        .await;
    assert_eq!(github.status, 201, "{}", github.body);
    let path = format!("/api/v2/users/{}/identities", enc(&other));
    let body = json!({"provider": "github", "user_id": 77});
    let refused = post_with_header(&api, &path, body.clone(), "loudest-wins").await;
    refused.assert_error(400, "invalid_headers");
    assert_eq!(api.user("github|77").await.status, 200, "nothing linked");
    let linked = post_with_header(&api, &path, body, "secondary-wins").await;
    assert_eq!(linked.status, 201, "{}", linked.body);
    assert_eq!(
        api.user(&other).await.body["app_metadata"],
        json!({"plan": "enterprise"})
    );
}

#[tokio::test]
async fn preview_equals_the_real_link_and_writes_nothing() {
    let api = api_with(LinkingPolicy {
        unlink: UnlinkMode::Auth0,
        merge: MergePolicy::SecondaryWins,
        ..LinkingPolicy::default()
    })
    .await;
    let (primary, _) = two_users(&api).await;
    let before = api.snapshot().await;
    let preview_path = format!("/idlink/v1/users/{}/identities/preview", enc(&primary));
    let preview = api.post(&preview_path, link_body()).await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert_eq!(api.snapshot().await, before, "a preview writes nothing");
    assert_eq!(preview.body["merge"], "secondary-wins");
    assert_eq!(
        preview.body["discarded"],
        json!({"user_metadata": {"theme": "dark"}, "app_metadata": {"plan": "pro"}})
    );

    let linked = api.link(&primary, link_body()).await;
    assert_eq!(linked.status, 201);
    assert_eq!(preview.body["identities"], linked.body);
    let after = api.user(&primary).await.body;
    assert_eq!(
        without_dates(preview.body["user"].clone()),
        without_dates(after)
    );

    // A preview of what can no longer be linked says why, as the link would.
    api.post(&preview_path, link_body())
        .await
        .assert_error(409, "identity_conflict");
    let header = post_with_header(&api, &preview_path, link_body(), "none").await;
    header.assert_error(409, "identity_conflict");
}

#[tokio::test]
async fn preview_needs_the_link_scopes() {
    let api = Api::start().await;
    let (primary, _) = two_users(&api).await;
    let path = format!("/idlink/v1/users/{}/identities/preview", enc(&primary));
    let anonymous = api
        .send_as(None, reqwest::Method::POST, &path, Some(link_body()))
        .await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    let reader = api
        .server
        .token(
            json!({"grant_type": "client_credentials", "client_id": api.server.admin_client_id,
            "client_secret": api.server.admin_client_secret, "audience": api.server.audience(),
            "scope": "read:users"}),
        )
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let denied = api
        .send_as(
            Some(&reader),
            reqwest::Method::POST,
            &path,
            Some(link_body()),
        )
        .await;
    denied.assert_error(403, "insufficient_scope");
}
