//! The client against the real idlink server, in process on 127.0.0.1:0 with a fresh
//! SQLite file per test (so the tests run in parallel).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use idlink_client::{
    CreateUserRequestContent, Error, LinkUserIdentityRequestContent, ListUsersRequestParameters,
    ListUsersResponse, ManagementClient, Method, RequestOptions, RetryPolicy, TokenResponse,
    UpdateUserRequestContent, User, UserId, UserIdentityProviderEnum as Provider,
    encode_path_segment,
};
use idlink_server::testing::TestServer;
use serde_json::json;

const DB: &str = "Username-Password-Authentication";
const PASSWORD: &str = "correct-Horse-battery-staple-42";

fn fast() -> RetryPolicy {
    RetryPolicy::default().with_base_delay(Duration::from_millis(10))
}

/// The admin client, authenticated by client credentials; the audience is derived from
/// the base URL (`https://127.0.0.1:PORT/api/v2/`), as for a tenant domain.
fn admin(server: &TestServer) -> ManagementClient {
    ManagementClient::builder()
        .base_url(server.api_url())
        .client_credentials(&server.admin_client_id, server.admin_client_secret.as_str())
        .retry_policy(fast())
        .build()
        .unwrap()
}

fn with_token(server: &TestServer, token: &str) -> ManagementClient {
    ManagementClient::builder()
        .base_url(server.api_url())
        .token(token)
        .retry_policy(fast())
        .build()
        .unwrap()
}

fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn db_user(client: &ManagementClient, email: &str) -> User {
    client
        .users()
        .create(
            CreateUserRequestContent {
                connection: DB.into(),
                email: Some(email.into()),
                password: Some(PASSWORD.into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
}

async fn social_user(client: &ManagementClient, connection: &str, id: UserId) -> User {
    client
        .users()
        .create(
            CreateUserRequestContent {
                connection: connection.into(),
                user_id: Some(id),
                email: Some(format!("{}@social.example", unique("s"))),
                name: Some("Social Person".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
}

/// Signs a database user in (password-realm grant) for mode A: an access token for the
/// Management API with `update:current_user_identities`, and an ID token.
async fn sign_in(server: &TestServer, email: &str) -> TokenResponse {
    let json = server
        .token(json!({
            "grant_type": "http://auth0.com/oauth/grant-type/password-realm",
            "realm": DB,
            "username": email,
            "password": PASSWORD,
            "client_id": server.admin_client_id,
            "client_secret": server.admin_client_secret,
            "audience": server.audience(),
            "scope": "openid update:current_user_identities",
        }))
        .await;
    serde_json::from_value(json).unwrap()
}

fn suffix(user_id: &str) -> &str {
    user_id.split_once('|').unwrap().1
}

#[tokio::test]
async fn link_mode_b_then_unlink_with_numeric_github_id() {
    let server = TestServer::start().await;
    let client = admin(&server);
    let primary = db_user(&client, "primary@example.com").await;
    let github = social_user(&client, "github", UserId::from(583231)).await;
    assert_eq!(github.user_id, "github|583231");
    assert_eq!(github.identities[0].user_id, UserId::Integer(583231));

    let r = client
        .users()
        .identities()
        .link(
            &primary.user_id,
            LinkUserIdentityRequestContent {
                provider: Some(Provider::Github),
                user_id: Some(UserId::from(583231)),
                ..Default::default()
            },
            None,
        )
        .with_raw_response()
        .await
        .unwrap();
    assert_eq!(r.raw_response.status_code, 201);
    assert_eq!(
        r.raw_response.url.as_str(),
        format!(
            "{}/users/{}/identities",
            server.api_url(),
            encode_path_segment(&primary.user_id)
        )
    );
    assert!(r.raw_response.url.as_str().contains("auth0%7C"));
    let remaining = r.raw_response.headers.get("X-RateLimit-Remaining").unwrap();
    assert_eq!(
        r.raw_response.headers.get("x-ratelimit-remaining").unwrap(),
        remaining
    );
    assert!(remaining.to_str().unwrap().parse::<u64>().is_ok());

    let identities = r.data;
    assert_eq!(identities.len(), 2);
    assert_eq!(identities[0].provider, "auth0");
    assert_eq!(identities[0].provider_enum(), Provider::Auth0);
    assert_eq!(
        identities[0].user_id,
        UserId::from(suffix(&primary.user_id))
    );
    assert_eq!(identities[1].provider_enum(), Provider::Github);
    assert_eq!(
        identities[1].user_id,
        UserId::Integer(583231),
        "numeric id round-trips"
    );
    assert_eq!(identities[1].is_social, Some(true));
    let profile = identities[1].profile_data.as_ref().unwrap();
    assert_eq!(profile.email, github.email);

    // The secondary is gone as a user; the primary holds both identities.
    let err = client.users().get("github|583231", None).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    let fetched = client.users().get(&primary.user_id, None).await.unwrap();
    // The link answer gives the main identity the primary's profileData; a GET does not.
    assert_eq!(
        identities[0].profile_data.as_ref().unwrap().email,
        primary.email
    );
    let mut as_read = identities.clone();
    as_read[0].profile_data = None;
    assert_eq!(fetched.identities, as_read);

    // Unlink (the integer form of the id), then the identity is a user again.
    let remaining = client
        .users()
        .identities()
        .delete(&primary.user_id, Provider::Github, 583231, None)
        .await
        .unwrap();
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0].provider, "auth0");
    let back = client.users().get("github|583231", None).await.unwrap();
    assert_eq!(back.identities.len(), 1);
    assert_eq!(back.identities[0].user_id, UserId::Integer(583231));
    assert_eq!(back.email, github.email);
}

#[tokio::test]
async fn link_mode_b_with_string_id_and_unlink_by_string() {
    let server = TestServer::start().await;
    let client = admin(&server);
    let primary = db_user(&client, "p2@example.com").await;
    social_user(&client, "google-oauth2", UserId::from("109876543210")).await;
    let identities = client
        .users()
        .identities()
        .link(
            &primary.user_id,
            LinkUserIdentityRequestContent::identity(Provider::GoogleOauth2, "109876543210"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(identities[1].provider_enum(), Provider::GoogleOauth2);
    assert_eq!(identities[1].user_id, UserId::from("109876543210"));
    let remaining = client
        .users()
        .identities()
        .delete(&primary.user_id, "google-oauth2", "109876543210", None)
        .await
        .unwrap();
    assert_eq!(remaining.len(), 1);
}

#[tokio::test]
async fn link_mode_a_with_link_with_then_unlink_own_identity() {
    let server = TestServer::start().await;
    let client = admin(&server);
    let primary = db_user(&client, "main@example.com").await;
    let secondary = db_user(&client, "other@example.com").await;

    let main_tokens = sign_in(&server, "main@example.com").await;
    let other_tokens = sign_in(&server, "other@example.com").await;
    let id_token = other_tokens.id_token.expect("an id_token for scope openid");

    // The user's own token (scope update:current_user_identities, sub = primary).
    let user_client = with_token(&server, &main_tokens.access_token);
    let r = user_client
        .users()
        .identities()
        .link(
            &primary.user_id,
            LinkUserIdentityRequestContent::link_with(id_token),
            None,
        )
        .with_raw_response()
        .await
        .unwrap();
    assert_eq!(r.raw_response.status_code, 201);
    assert_eq!(r.data.len(), 2);
    assert_eq!(r.data[1].provider_enum(), Provider::Auth0);
    assert_eq!(r.data[1].user_id, UserId::from(suffix(&secondary.user_id)));
    let profile = r.data[1].profile_data.as_ref().unwrap();
    assert_eq!(profile.email.as_deref(), Some("other@example.com"));

    // The same token may not act on another user.
    let err = user_client
        .users()
        .identities()
        .delete(
            &secondary.user_id,
            Provider::Auth0,
            suffix(&secondary.user_id),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    assert_eq!(err.error_code(), Some("unowned_resource"));

    // …but may unlink from itself.
    let remaining = user_client
        .users()
        .identities()
        .delete(
            &primary.user_id,
            Provider::Auth0,
            suffix(&secondary.user_id),
            None,
        )
        .await
        .unwrap();
    assert_eq!(remaining.len(), 1);
    client.users().get(&secondary.user_id, None).await.unwrap();
}

#[tokio::test]
async fn users_calls() {
    let server = TestServer::start().await;
    let client = admin(&server);
    let created = client
        .users()
        .create(
            CreateUserRequestContent {
                connection: DB.into(),
                email: Some("Ada@Example.com".into()),
                password: Some(PASSWORD.into()),
                name: Some("Ada".into()),
                user_metadata: Some(
                    json!({"theme": "dark", "lang": "en"})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
                ..Default::default()
            },
            None,
        )
        .with_raw_response()
        .await
        .unwrap();
    assert_eq!(created.raw_response.status_code, 201);
    let ada = created.data;
    assert!(ada.user_id.starts_with("auth0|"));
    assert_eq!(suffix(&ada.user_id).len(), 24);
    db_user(&client, "bob@example.com").await;

    let got = client.users().get(&ada.user_id, None).await.unwrap();
    assert_eq!(got.user_id, ada.user_id);
    assert_eq!(got.name.as_deref(), Some("Ada"));

    let page = client
        .users()
        .list(
            ListUsersRequestParameters {
                include_totals: Some(true),
                per_page: Some(1),
                page: Some(0),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert!(matches!(page, ListUsersResponse::Page(_)), "{page:?}");
    assert_eq!(page.total(), Some(2));
    assert_eq!(page.users().len(), 1);

    let bare = client
        .users()
        .list(ListUsersRequestParameters::default(), None)
        .await
        .unwrap();
    assert!(matches!(bare, ListUsersResponse::Users(_)), "{bare:?}");
    assert_eq!(bare.users().len(), 2);

    let searched = client
        .users()
        .list(
            ListUsersRequestParameters {
                q: Some(format!(r#"email:"{}""#, ada.email.as_deref().unwrap())),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let ids: Vec<String> = searched
        .into_users()
        .into_iter()
        .map(|u| u.user_id)
        .collect();
    assert_eq!(ids, vec![ada.user_id.clone()]);

    let by_email = client
        .users()
        .list_by_email(ada.email.as_deref().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(by_email.len(), 1);
    assert_eq!(by_email[0].user_id, ada.user_id);

    let updated = client
        .users()
        .update(
            &ada.user_id,
            UpdateUserRequestContent {
                nickname: Some("countess".into()),
                user_metadata: Some(
                    json!({"theme": null, "tz": "UTC"})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(updated.nickname.as_deref(), Some("countess"));
    assert_eq!(
        serde_json::Value::Object(updated.user_metadata.unwrap()),
        json!({"lang": "en", "tz": "UTC"})
    );

    // The raw escape hatch reaches the same endpoints.
    let raw: serde_json::Value = client
        .request(
            Method::GET,
            format!("/users/{}", encode_path_segment(&ada.user_id)),
        )
        .await
        .unwrap();
    assert_eq!(raw["user_id"], ada.user_id.as_str());

    let deleted = client
        .users()
        .delete(&ada.user_id, None)
        .with_raw_response()
        .await
        .unwrap();
    assert_eq!(deleted.raw_response.status_code, 204);
    let err = client.users().get(&ada.user_id, None).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn typed_errors() {
    let server = TestServer::start().await;
    let client = admin(&server);
    let primary = db_user(&client, "errors@example.com").await;
    social_user(&client, "github", UserId::from(42)).await;

    // 400 invalid_uri: the main identity cannot be removed.
    let err = client
        .users()
        .identities()
        .delete(
            &primary.user_id,
            Provider::Auth0,
            suffix(&primary.user_id),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err:?}");
    assert_eq!(err.status_code(), Some(400));
    assert_eq!(err.error_code(), Some("invalid_uri"));
    assert!(!err.message().is_empty());
    assert_eq!(err.raw_response().unwrap().status_code, 400);

    // 400 invalid_body: an empty link request.
    let err = client
        .users()
        .identities()
        .link(
            &primary.user_id,
            LinkUserIdentityRequestContent::default(),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err:?}");
    assert_eq!(err.error_code(), Some("invalid_body"));

    // 401: a token that is not one.
    let err = with_token(&server, "not-a-jwt")
        .users()
        .identities()
        .link(
            &primary.user_id,
            LinkUserIdentityRequestContent::identity(Provider::Github, 42),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");
    assert_eq!(err.error_code(), Some("invalid_token"));

    // 403 insufficient_scope: a client-credentials token holding only read:users.
    let reader = ManagementClient::builder()
        .base_url(server.api_url())
        .client_credentials(&server.admin_client_id, server.admin_client_secret.as_str())
        .scope("read:users")
        .build()
        .unwrap();
    reader.users().get(&primary.user_id, None).await.unwrap();
    let err = reader
        .users()
        .identities()
        .link(
            &primary.user_id,
            LinkUserIdentityRequestContent::identity(Provider::Github, 42),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    assert_eq!(err.error_code(), Some("insufficient_scope"));

    // 404: the primary does not exist.
    let err = client
        .users()
        .identities()
        .link(
            "auth0|000000000000000000000000",
            LinkUserIdentityRequestContent::identity(Provider::Github, 42),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert_eq!(err.error_code(), Some("inexistent_user"));

    // An identity that is not on the user: a 200 no-op, as recorded on Auth0.
    let unchanged = client
        .users()
        .identities()
        .delete(&primary.user_id, Provider::Github, 7, None)
        .await
        .unwrap();
    assert_eq!(unchanged.len(), 1, "{unchanged:?}");

    // 409 identity_conflict: linking an identity the primary already has.
    client
        .users()
        .identities()
        .link(
            &primary.user_id,
            LinkUserIdentityRequestContent::identity(Provider::Github, 42),
            None,
        )
        .await
        .unwrap();
    let err = client
        .users()
        .identities()
        .link(
            &primary.user_id,
            LinkUserIdentityRequestContent::identity(Provider::Github, "42"),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert_eq!(err.status_code(), Some(409));
    assert_eq!(err.error_code(), Some("identity_conflict"));

    // 400 inexistent_user: the secondary does not exist.
    let err = client
        .users()
        .identities()
        .link(
            &primary.user_id,
            LinkUserIdentityRequestContent::identity(Provider::Github, 999),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err:?}");
    assert_eq!(err.error_code(), Some("inexistent_user"));
}

#[tokio::test]
async fn provider_enum_round_trips_including_other() {
    let server = TestServer::start_with(|config| {
        config
            .tenant
            .connections
            .push(idlink_server::config::ConnectionConfig {
                name: "acme-sso".into(),
                strategy: "acme-idp".into(),
                ..Default::default()
            });
    })
    .await;
    let client = admin(&server);
    let primary = db_user(&client, "enum@example.com").await;

    // An unknown provider name travels verbatim both ways.
    let acme = social_user(&client, "acme-sso", UserId::from("u-1")).await;
    assert_eq!(acme.user_id, "acme-idp|u-1");
    let identities = client
        .users()
        .identities()
        .link(
            &primary.user_id,
            LinkUserIdentityRequestContent::identity(Provider::Other("acme-idp".into()), "u-1"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(identities[1].provider, "acme-idp");
    assert_eq!(
        identities[1].provider_enum(),
        Provider::Other("acme-idp".into())
    );
    let remaining = client
        .users()
        .identities()
        .delete(
            &primary.user_id,
            Provider::Other("acme-idp".into()),
            "u-1",
            None,
        )
        .await
        .unwrap();
    assert_eq!(remaining.len(), 1);

    // Known providers with a dash in their wire name.
    for (connection, provider, id) in [
        ("google-oauth2", Provider::GoogleOauth2, "g-1"),
        ("windowslive", Provider::Windowslive, "w-1"),
    ] {
        social_user(&client, connection, UserId::from(id)).await;
        let identities = client
            .users()
            .identities()
            .link(
                &primary.user_id,
                LinkUserIdentityRequestContent::identity(provider.clone(), id),
                None,
            )
            .await
            .unwrap();
        let last = identities.last().unwrap();
        assert_eq!(last.provider_enum(), provider);
        assert_eq!(last.provider, provider.as_str());
    }

    // A provider no connection uses: the server says so, the name went through intact.
    let err = client
        .users()
        .identities()
        .link(
            &primary.user_id,
            LinkUserIdentityRequestContent::identity(Provider::Other("no-such-idp".into()), "x"),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err:?}");
    assert_eq!(err.error_code(), Some("inexistent_connection"));
}

#[tokio::test]
async fn per_call_options_reach_the_server() {
    let server = TestServer::start().await;
    let client = admin(&server);
    let primary = db_user(&client, "opts@example.com").await;
    social_user(&client, "github", UserId::from(77)).await;
    // Additional body properties are merged into the link body: an unknown property is
    // rejected by the server, which proves it was sent.
    let err = client
        .users()
        .identities()
        .link(
            &primary.user_id,
            LinkUserIdentityRequestContent::identity(Provider::Github, 77),
            Some(RequestOptions::new().body_property("surprise", true)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err:?}");
    assert_eq!(err.error_code(), Some("invalid_body"));
    // Per-call base URL and timeout.
    let elsewhere = ManagementClient::builder()
        .base_url("http://127.0.0.1:9/api/v2")
        .client_credentials(&server.admin_client_id, server.admin_client_secret.as_str())
        .audience(server.audience())
        .build()
        .unwrap();
    let err = elsewhere
        .users()
        .get(&primary.user_id, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Transport(_)),
        "token endpoint unreachable: {err:?}"
    );
    let via_admin = client
        .users()
        .get(
            &primary.user_id,
            Some(
                RequestOptions::new()
                    .base_url(server.api_url())
                    .timeout(Duration::from_secs(5)),
            ),
        )
        .await
        .unwrap();
    assert_eq!(via_admin.user_id, primary.user_id);
}

#[tokio::test]
async fn rate_limited_calls_are_typed_and_retried_after_the_advertised_delay() {
    let server = TestServer::start_with(|config| {
        config.tenant.rate_limit = Some("2/1".parse().unwrap());
    })
    .await;
    let client = admin(&server);
    let nobody = "auth0|000000000000000000000000";
    let no_retry = || Some(RequestOptions::new().max_retries(0));

    // Drain the bucket (burst 2), then one more call is refused.
    for _ in 0..2 {
        let err = client.users().get(nobody, no_retry()).await.unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    }
    let err = client.users().get(nobody, no_retry()).await.unwrap_err();
    let Error::TooManyRequests(api) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(api.error_code(), Some("too_many_requests"));
    let rl = api.rate_limit();
    assert_eq!(rl.limit, Some(2));
    assert_eq!(rl.remaining, Some(0));
    assert!(rl.reset.is_some(), "{rl:?}");
    let retry_after = rl.retry_after.expect("429 carries Retry-After");
    assert!(retry_after <= Duration::from_secs(2), "{retry_after:?}");

    // With the default policy the client waits as told and gets the real answer.
    let started = std::time::Instant::now();
    let err = client.users().get(nobody, None).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound(_)),
        "retried past the 429: {err:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}
