//! Rate limiting per client as well as per tenant: a client's own bucket empties
//! without touching another client's, user tokens draw on the bucket of the client they
//! were issued to, and the `x-ratelimit-*` headers report the tighter bucket.

mod common;

use common::Api;
use idlink_server::config::ClientConfig;
use idlink_server::ratelimit::RateLimit;
use idlink_server::testing::TestServer;
use reqwest::Method;
use serde_json::json;

const OTHER_CLIENT: &str = "other-client";
const OTHER_SECRET: &str = "other-client-secret-0123456789abcdef";

fn other_client() -> ClientConfig {
    ClientConfig {
        name: "Another back end".into(),
        client_id: OTHER_CLIENT.into(),
        client_secret: Some(OTHER_SECRET.into()),
        grant_types: vec!["client_credentials".into()],
        scopes: vec!["read:users".into()],
        ..Default::default()
    }
}

async fn other_token(api: &Api) -> String {
    api.server
        .token(
            json!({"grant_type": "client_credentials", "client_id": OTHER_CLIENT,
            "client_secret": OTHER_SECRET, "audience": api.server.audience()}),
        )
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn header(reply: &common::Reply, name: &str) -> u64 {
    reply.headers[name].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn each_client_has_its_own_bucket() {
    let server = TestServer::start_with(|c| {
        c.tenant.rate_limit = Some(RateLimit::new(1000, 1000.0));
        c.tenant.client_rate_limit = Some(RateLimit::new(3, 0.2));
        c.tenant.clients.push(other_client());
    })
    .await;
    let api = Api::with_server(server).await;
    let other = other_token(&api).await;

    let mut statuses = Vec::new();
    for _ in 0..4 {
        let reply = api.get("/api/v2/users").await;
        assert_eq!(
            header(&reply, "x-ratelimit-limit"),
            3,
            "client bucket shown"
        );
        statuses.push(reply.status.as_u16());
        if reply.status == 429 {
            reply.assert_error(429, "too_many_requests");
            assert!((1..=6).contains(&header(&reply, "retry-after")));
            assert_eq!(header(&reply, "x-ratelimit-remaining"), 0);
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429]);

    // Another client is not slowed down by the first one.
    let reply = api
        .send_as(Some(&other), Method::GET, "/api/v2/users", None)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(header(&reply, "x-ratelimit-remaining"), 2);
}

#[tokio::test]
async fn user_tokens_draw_on_their_clients_bucket() {
    let server = TestServer::start_with(|c| {
        c.tenant.rate_limit = Some(RateLimit::new(1000, 1000.0));
        c.tenant.client_rate_limit = Some(RateLimit::new(4, 0.2));
    })
    .await;
    let api = Api::with_server(server).await;
    // Two requests of the admin client (creating the user costs one).
    let user = api.db_user("u@example.com").await;
    let signed_in = api.sign_in("u@example.com").await;
    let user_token = signed_in["access_token"].as_str().unwrap().to_owned();
    let path = format!("/api/v2/users/{}", common::enc(&user));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let reply = api
            .send_as(Some(&user_token), Method::GET, &path, None)
            .await;
        statuses.push(reply.status.as_u16());
    }
    // 1 request by the admin client, then the user's token: 3 more, then refused.
    assert_eq!(statuses, [200, 200, 200, 429]);
    let reply = api.get("/api/v2/users").await;
    reply.assert_error(429, "too_many_requests");
}

#[tokio::test]
async fn headers_report_the_tighter_bucket_and_bad_tokens_spend_only_their_addresss() {
    // The tenant bucket is the tighter one here.
    let server = TestServer::start_with(|c| {
        c.tenant.rate_limit = Some(RateLimit::new(5, 0.1));
        c.tenant.client_rate_limit = Some(RateLimit::new(100, 100.0));
    })
    .await;
    let api = Api::with_server(server).await;
    let reply = api.get("/api/v2/users").await;
    assert_eq!(reply.status, 200);
    assert_eq!(header(&reply, "x-ratelimit-limit"), 5);
    assert_eq!(header(&reply, "x-ratelimit-remaining"), 4);

    // Requests with a forged token are refused with 401 and spend their source
    // address's bucket of unauthenticated requests (by default the tenant's shape), never
    // the tenant's: the admin keeps its budget.
    for remaining in (0..5).rev() {
        let reply = api
            .send_as(Some("not.a.token"), Method::GET, "/api/v2/users", None)
            .await;
        reply.assert_error(401, "invalid_token");
        assert_eq!(header(&reply, "x-ratelimit-limit"), 5);
        assert_eq!(header(&reply, "x-ratelimit-remaining"), remaining);
    }
    let reply = api.send_as(None, Method::GET, "/api/v2/users", None).await;
    reply.assert_error(429, "too_many_requests");
    assert!(reply.headers.contains_key("retry-after"));
    let reply = api.get("/api/v2/users").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(header(&reply, "x-ratelimit-remaining"), 3);
}
