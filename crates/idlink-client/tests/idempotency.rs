//! The client's retries of link and unlink are exactly-once: each logical call sends a
//! fresh `Idempotency-Key` and keeps it for its retries. Proven against the real idlink
//! server behind a proxy that lets the first link reach the server (which links and
//! commits) and then loses its answer, telling the client 500 instead — the failure a
//! crashed load balancer or a dropped response causes, *after* the change. The
//! emulator's fault injection cannot show this: a fault answers before the handler.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use idlink_client::{
    CreateUserRequestContent, LinkUserIdentityRequestContent, ManagementClient, RequestOptions,
    RetryPolicy, UserId, UserIdentityProviderEnum as Provider,
};
use idlink_server::testing::TestServer;

/// What the proxy saw, and how many answers it still has to lose.
#[derive(Default)]
struct Seen {
    /// `(method, path, Idempotency-Key)` of every request forwarded.
    requests: Vec<(String, String, Option<String>)>,
    /// Answers to identities endpoints still to replace with a 500.
    to_lose: usize,
}

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    seen: Mutex<Seen>,
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let path = parts.uri.path_and_query().unwrap().to_string();
    let key = parts
        .headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut upstream = proxy
        .http
        .request(parts.method.clone(), format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    // The request reaches the server and is served in full before we decide.
    let answer = upstream.send().await.unwrap();
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap();
    let lose = {
        let mut seen = proxy.seen.lock().unwrap();
        seen.requests
            .push((parts.method.to_string(), parts.uri.path().to_owned(), key));
        let lose = parts.uri.path().contains("/identities") && seen.to_lose > 0;
        if lose {
            seen.to_lose -= 1;
        }
        lose
    };
    if lose {
        return (StatusCode::INTERNAL_SERVER_ERROR, "upstream answer lost").into_response();
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

async fn start_proxy(upstream: &str, to_lose: usize) -> (String, Arc<Proxy>) {
    let proxy = Arc::new(Proxy {
        upstream: upstream.trim_end_matches('/').to_owned(),
        http: reqwest::Client::new(),
        seen: Mutex::new(Seen {
            requests: Vec::new(),
            to_lose,
        }),
    });
    let app = Router::new().fallback(forward).with_state(proxy.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), proxy)
}

fn through(proxy_url: &str, token: &str) -> ManagementClient {
    ManagementClient::builder()
        .base_url(format!("{proxy_url}/api/v2"))
        .token(token)
        .retry_policy(RetryPolicy::default().with_base_delay(Duration::from_millis(10)))
        .build()
        .unwrap()
}

async fn social(client: &ManagementClient, id: i64) -> String {
    client
        .users()
        .create(
            CreateUserRequestContent {
                connection: "github".into(),
                user_id: Some(UserId::from(id)),
                email: Some(format!("gh{id}@example.com")),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
        .user_id
}

/// The keys the proxy saw on the identities endpoints, in order.
fn identity_keys(proxy: &Proxy) -> Vec<(String, Option<String>)> {
    proxy
        .seen
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|(_, path, _)| path.contains("/identities"))
        .map(|(method, _, key)| (method.clone(), key.clone()))
        .collect()
}

#[tokio::test]
async fn a_link_retried_after_its_answer_was_lost_links_once() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let (proxy_url, proxy) = start_proxy(&server.base_url, 1).await;
    let client = through(&proxy_url, &token);
    let primary = client
        .users()
        .create(
            CreateUserRequestContent {
                connection: "Username-Password-Authentication".into(),
                email: Some("primary@example.com".into()),
                password: Some("correct-Horse-battery-staple-42".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
        .user_id;
    social(&client, 77).await;

    let identities = client
        .users()
        .identities()
        .link(
            &primary,
            LinkUserIdentityRequestContent::identity(Provider::Github, 77),
            None,
        )
        .await
        .expect("the retry gets the first link's answer, not 400 or 409");
    assert_eq!(identities.len(), 2);

    // Two attempts reached the server with one key; the server linked once.
    let keys = identity_keys(&proxy);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[0].1.is_some(), "a link carries a key");
    assert_eq!(keys[0], keys[1], "the retry reuses the key");
    let logs = reqwest::Client::new()
        .get(format!("{}/api/v2/logs", server.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let links: Vec<_> = logs
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["description"]
                .as_str()
                .unwrap()
                .starts_with("Link a User Account")
        })
        .collect();
    assert_eq!(
        links.len(),
        1,
        "one link attempt in the audit trail: {links:?}"
    );
    assert_eq!(links[0]["type"], "sapi");
    let user = client.users().get(&primary, None).await.unwrap();
    assert_eq!(user.identities.len(), 2);

    // An unlink whose answer is lost the same way unlinks once too.
    proxy.seen.lock().unwrap().to_lose = 1;
    let remaining = client
        .users()
        .identities()
        .delete(&primary, Provider::Github, 77, None)
        .await
        .expect("the unlink's retry gets its answer");
    assert_eq!(remaining.len(), 1);
    let keys = identity_keys(&proxy);
    assert_eq!(keys.len(), 4);
    assert_eq!(keys[2], keys[3]);
    assert_ne!(keys[2].1, keys[0].1, "every logical call has its own key");
}

#[tokio::test]
async fn a_caller_given_key_is_sent_as_is_and_each_call_gets_a_fresh_one_otherwise() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let (proxy_url, proxy) = start_proxy(&server.base_url, 0).await;
    let client = through(&proxy_url, &token);
    let primary = social(&client, 1).await;
    social(&client, 2).await;
    social(&client, 3).await;

    let options = RequestOptions::new().idempotency_key("order-17-link");
    let link = || LinkUserIdentityRequestContent::identity(Provider::Github, 2);
    let first = client
        .users()
        .identities()
        .link(&primary, link(), Some(options.clone()))
        .await
        .unwrap();
    // The same key again (the caller's own retry, e.g. after a crash): the stored
    // answer, not a 409 for an identity already linked.
    let again = client
        .users()
        .identities()
        .link(&primary, link(), Some(options))
        .with_raw_response()
        .await
        .unwrap();
    assert_eq!(again.data, first);
    assert_eq!(
        again
            .raw_response
            .headers
            .get("idempotent-replayed")
            .unwrap(),
        "true"
    );
    // Without one, two logical calls are two keys: the second acts (409 here).
    let conflict = client
        .users()
        .identities()
        .link(&primary, link(), None)
        .await
        .unwrap_err();
    assert_eq!(conflict.status_code(), Some(409));

    let keys = identity_keys(&proxy);
    assert_eq!(keys[0].1.as_deref(), Some("order-17-link"));
    assert_eq!(keys[1].1.as_deref(), Some("order-17-link"));
    let fresh = keys[2].1.clone().unwrap();
    assert_eq!(fresh.len(), 36, "a UUID: {fresh}");
    assert_ne!(fresh, "order-17-link");
    // Other calls send none unless asked.
    let creates: Vec<_> = proxy
        .seen
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|(method, path, _)| method == "POST" && path.ends_with("/users"))
        .map(|(_, _, key)| key.clone())
        .collect();
    assert!(creates.iter().all(Option::is_none), "{creates:?}");
}
