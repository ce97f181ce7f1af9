//! Link events end to end (`docs/events.md`), on the backend `IDLINK_TEST_BACKEND`
//! names: webhooks received on loopback with their signatures verified by the
//! `standardwebhooks` crate, retries after 5xx, the dead state, per-user order, the SSE
//! stream with `Last-Event-ID`, and nothing for a change that did not happen.

mod common;

use std::time::{Duration, Instant};

use common::{Api, enc};
use idlink_server::config::{Config, EventsConfig, WebhookConfig};
use idlink_server::testing::{Received, TestServer, WebhookReceiver};
use reqwest::Method;
use serde_json::{Value, json};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Fast retries and polling, so tests do not wait for production's backoff.
fn fast_events() -> EventsConfig {
    EventsConfig {
        retry_initial: Some(0.05),
        retry_max: Some(0.2),
        poll: Some(0.05),
        delivery_timeout: Some(2.0),
        ..EventsConfig::default()
    }
}

fn with_webhook(url: &str, events: &[&str]) -> impl FnOnce(&mut Config) + use<> {
    let hook = WebhookConfig {
        url: url.to_owned(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        secret: SECRET.into(),
    };
    move |config: &mut Config| {
        config.tenant.events = fast_events();
        config.tenant.webhooks = vec![hook];
    }
}

fn types_of(received: &[Received], subject: &str) -> Vec<String> {
    received
        .iter()
        .filter(|r| r.event["subject"] == subject)
        .map(|r| r.event["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_reaches_the_webhook_signed_in_order_despite_5xx() {
    let receiver = WebhookReceiver::start(SECRET).await;
    receiver.fail_next(3);
    let api =
        Api::with_server(TestServer::start_with(with_webhook(&receiver.url, &[])).await).await;

    let primary = api
        .social_user("github", json!(7001), "p@example.com")
        .await;
    let secondary = api
        .social_user("google-oauth2", json!("g-7001"), "s@example.com")
        .await;
    let linked = api
        .link(
            &primary,
            json!({"provider": "google-oauth2", "user_id": "g-7001"}),
        )
        .await;
    assert_eq!(linked.status, 201, "{}", linked.body);
    // A refused link changes nothing and emits nothing.
    let refused = api
        .link(
            &primary,
            json!({"provider": "google-oauth2", "user_id": "nobody"}),
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(
        api.unlink(&primary, "google-oauth2", "g-7001").await.status,
        200
    );
    let patched = api
        .send(
            Method::PATCH,
            &format!("/api/v2/users/{}", enc(&primary)),
            Some(json!({"user_metadata": {"plan": "pro"}})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(
        api.delete(&format!("/api/v2/users/{}", enc(&primary)))
            .await
            .status,
        204
    );
    // Deleting nobody is a 204 as in Auth0, but no event.
    assert_eq!(
        api.delete("/api/v2/users/github%7Cnobody").await.status,
        204
    );

    let expected = [
        "user.created",
        "user.identity.linked",
        "user.identity.unlinked",
        "user.updated",
        "user.deleted",
    ];
    let received = receiver
        .wait_until(Duration::from_secs(20), |r| {
            types_of(r, &primary).len() >= expected.len() && !types_of(r, &secondary).is_empty()
        })
        .await;
    assert_eq!(receiver.bad_signatures(), 0);
    assert!(
        receiver.requests() >= received.len() + 3,
        "the 503s were retried"
    );
    assert_eq!(types_of(&received, &primary), expected, "{received:#?}");
    assert_eq!(types_of(&received, &secondary), ["user.created"]);
    assert!(
        !received
            .iter()
            .any(|r| r.event["subject"] == "github|nobody")
    );

    let link = received
        .iter()
        .find(|r| r.event["type"] == "user.identity.linked")
        .unwrap();
    assert_eq!(link.event["specversion"], "1.0");
    assert_eq!(link.event["id"], link.webhook_id.as_str());
    assert_eq!(link.event["source"], api.server.base_url.as_str());
    assert_eq!(link.event["datacontenttype"], "application/json");
    assert_eq!(
        link.event["data"],
        json!({
            "user_id": primary,
            "secondary_user_id": secondary,
            "identity": {"provider": "google-oauth2", "user_id": "g-7001"},
        })
    );
    let unlink = received
        .iter()
        .find(|r| r.event["type"] == "user.identity.unlinked")
        .unwrap();
    assert_eq!(unlink.event["data"]["new_user_id"], secondary.as_str());
    let update = received
        .iter()
        .find(|r| r.event["type"] == "user.updated")
        .unwrap();
    assert_eq!(update.event["data"]["attributes"], json!(["user_metadata"]));

    // Everything delivered: nothing pending or dead. The receiver has answered the last
    // send, but the deliverer records it in a transaction of its own just after: wait
    // for that (bounded) before reading the states.
    let mut deliveries = api.get("/idlink/v1/webhooks/deliveries").await;
    for _ in 0..100 {
        let all_done = deliveries
            .body
            .as_array()
            .is_some_and(|list| list.len() == 6 && list.iter().all(|d| d["state"] == "delivered"));
        if all_done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        deliveries = api.get("/idlink/v1/webhooks/deliveries").await;
    }
    assert_eq!(deliveries.status, 200, "{}", deliveries.body);
    let states: Vec<&str> = deliveries
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 6, "{}", deliveries.body);
    assert!(
        states.iter().all(|s| *s == "delivered"),
        "{}",
        deliveries.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_keeps_failing_ends_dead_without_slowing_the_api() {
    // Nothing listens on port 9 of loopback (discard): every attempt fails to connect.
    let api = Api::with_server(
        TestServer::start_with(|config| {
            with_webhook("http://127.0.0.1:9/hook", &["user.created"])(config);
            config.tenant.events.max_attempts = Some(3);
        })
        .await,
    )
    .await;
    let started = Instant::now();
    let user = api
        .social_user("github", json!(7002), "d@example.com")
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    // Not subscribed: no delivery for the update.
    let patched = api
        .send(
            Method::PATCH,
            &format!("/api/v2/users/{}", enc(&user)),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(patched.status, 200);

    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let reply = api.get("/idlink/v1/webhooks/deliveries?state=dead").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        if let Some(first) = reply.body.as_array().unwrap().first() {
            break first.clone();
        }
        assert!(Instant::now() < deadline, "no dead delivery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead["attempts"], 3, "{dead}");
    assert_eq!(dead["webhook"], "http://127.0.0.1:9/hook");
    assert_eq!(dead["event"]["type"], "user.created");
    assert_eq!(dead["event"]["subject"], user.as_str());
    assert!(
        dead["last_error"].as_str().unwrap().contains("connect"),
        "{dead}"
    );
    let all = api.get("/idlink/v1/webhooks/deliveries").await;
    assert_eq!(all.body.as_array().unwrap().len(), 1, "{}", all.body);
    api.get("/idlink/v1/webhooks/deliveries?state=lost")
        .await
        .assert_error(400, "invalid_query_string");
}

/// Reads `count` SSE events from `/idlink/v1/events`, after `last_event_id`.
async fn read_stream(api: &Api, last_event_id: Option<&str>, count: usize) -> Vec<(String, Value)> {
    let mut request = api
        .http
        .get(api.url("/idlink/v1/events"))
        .bearer_auth(&api.token);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.len() < count {
        let chunk = tokio::time::timeout_at(deadline.into(), response.chunk())
            .await
            .expect("events in time")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .map(|v| v.trim_start().to_owned())
            };
            if let (Some(id), Some(data)) = (field("id"), field("data")) {
                events.push((id, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_replays_and_resumes_after_last_event_id() {
    let api = Api::with_server(
        TestServer::start_with(|config| {
            config.tenant.events = EventsConfig {
                enabled: Some(true),
                ..fast_events()
            };
        })
        .await,
    )
    .await;
    let a = api
        .social_user("github", json!(7101), "a@example.com")
        .await;
    let b = api
        .social_user("github", json!(7102), "b@example.com")
        .await;
    let all = read_stream(&api, None, 2).await;
    assert_eq!(all[0].1["subject"], a.as_str());
    assert_eq!(all[1].1["subject"], b.as_str());
    // A change made while connected arrives live; a resumed stream skips what it had.
    let c = api
        .social_user("github", json!(7103), "c@example.com")
        .await;
    let resumed = read_stream(&api, Some(&all[0].0), 2).await;
    assert_eq!(resumed[0], all[1]);
    assert_eq!(resumed[1].1["subject"], c.as_str());
    assert_eq!(resumed[1].1["type"], "user.created");

    let anonymous = api
        .send_as(None, Method::GET, "/idlink/v1/events", None)
        .await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    let bad = api
        .http
        .get(api.url("/idlink/v1/events"))
        .bearer_auth(&api.token)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn without_configuration_no_events_are_written_and_the_routes_say_events_are_off() {
    let api = Api::start().await;
    api.social_user("github", json!(7201), "n@example.com")
        .await;
    for path in ["/idlink/v1/events", "/idlink/v1/webhooks/deliveries"] {
        api.get(path).await.assert_error(404, "events_disabled");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_deliver_each_event_once() {
    let receiver = WebhookReceiver::start(SECRET).await;
    let first =
        Api::with_server(TestServer::start_with(with_webhook(&receiver.url, &[])).await).await;
    let url = first.server.database_url().to_owned();
    let second =
        Api::with_server(TestServer::start_on_with(&url, with_webhook(&receiver.url, &[])).await)
            .await;
    let mut users = Vec::new();
    for i in 0..40 {
        let api = if i % 2 == 0 { &first } else { &second };
        users.push(
            api.social_user("github", json!(7300 + i), &format!("m{i}@example.com"))
                .await,
        );
    }
    let received = receiver
        .wait_until(Duration::from_secs(30), |r| r.len() >= users.len())
        .await;
    // Let any duplicate arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received().len().max(received.len());
    assert_eq!(received, users.len(), "each event once");
    assert_eq!(receiver.bad_signatures(), 0);
}
