//! Request limits (body, URI, headers, deadline), string field lengths, and Unicode and
//! control characters in ids and emails. Every refusal answers in Auth0's error shape and
//! changes nothing.

mod common;

use std::time::Duration;

use common::{Api, DB, PASSWORD, enc};
use idlink_server::testing::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

/// Asserts the complete Auth0 error body for a status without an errorCode.
#[track_caller]
fn assert_shape(status: u16, reason: &str, body: &Value) {
    assert_eq!(body["statusCode"], status, "{body}");
    assert_eq!(body["error"], reason, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

async fn raw(
    _api: &Api,
    request: reqwest::RequestBuilder,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

#[tokio::test]
async fn oversized_body_uri_and_headers_are_refused_in_the_error_shape() {
    let api = Api::start().await;
    let before = api.snapshot().await;

    // Body over 1 MB: 413 on the Management API...
    let big = json!({"connection": DB, "email": "big@example.com", "password": PASSWORD,
        "user_metadata": {"blob": "x".repeat(1024 * 1024)}});
    let (status, headers, body) = raw(
        &api,
        api.http
            .post(api.url("/api/v2/users"))
            .bearer_auth(&api.token)
            .json(&big),
    )
    .await;
    assert_eq!(status, 413);
    assert_shape(413, "Payload Too Large", &body);
    assert!(headers.contains_key("x-ratelimit-limit"));
    // ...and on the token endpoint.
    let (status, _, body) = raw(
        &api,
        api.http
            .post(api.url("/oauth/token"))
            .json(&json!({"grant_type": "x".repeat(1024 * 1024 + 1)})),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_shape(413, "Payload Too Large", &body);

    // A request target over 8 KiB: 414.
    let long_id = "a".repeat(9 * 1024);
    let (status, _, body) = raw(
        &api,
        api.http
            .get(api.url(&format!("/api/v2/users/auth0%7C{long_id}")))
            .bearer_auth(&api.token),
    )
    .await;
    assert_eq!(status, 414, "{body}");
    assert_shape(414, "URI Too Long", &body);
    // Also in the query string, and also on an unknown route (checked before routing).
    for path in [
        format!("/api/v2/users?q={long_id}"),
        format!("/nowhere/{long_id}"),
    ] {
        let (status, _, body) = raw(&api, api.http.get(api.url(&path))).await;
        assert_eq!(status, 414, "{path}: {body}");
    }
    // Just under the limit is served.
    let (status, _, _) = raw(
        &api,
        api.http
            .get(api.url(&format!("/api/v2/users/auth0%7C{}", "a".repeat(8000))))
            .bearer_auth(&api.token),
    )
    .await;
    assert_eq!(status, 404);

    // Headers over 16 KiB in total: 431.
    let (status, _, body) = raw(
        &api,
        api.http
            .get(api.url("/api/v2/users"))
            .bearer_auth(&api.token)
            .header("x-padding", "p".repeat(17 * 1024)),
    )
    .await;
    assert_eq!(status, 431, "{body}");
    assert_shape(431, "Request Header Fields Too Large", &body);
    // Many small headers add up the same way.
    let mut request = api
        .http
        .get(api.url("/api/v2/users"))
        .bearer_auth(&api.token);
    for i in 0..60 {
        request = request.header(format!("x-h{i}"), "v".repeat(300));
    }
    let (status, _, _) = raw(&api, request).await;
    assert_eq!(status, 431);
    // A giant bearer token is refused the same way, before any verification.
    let (status, _, _) = raw(
        &api,
        api.http
            .get(api.url("/api/v2/users"))
            .bearer_auth("e".repeat(20 * 1024)),
    )
    .await;
    assert_eq!(status, 431);
    // Past hyper's own limit (~400 KiB of request head) hyper answers a bare 431 and
    // closes the connection before idlink sees the request (documented in security.md).
    let outcome = api
        .http
        .get(api.url("/api/v2/users"))
        .header("x-padding", "p".repeat(512 * 1024))
        .send()
        .await;
    if let Ok(response) = outcome {
        assert_eq!(response.status(), 431);
    }

    // per_page above 100.
    let reply = api.get("/api/v2/users?per_page=101").await;
    reply.assert_error(400, "invalid_query_string");

    assert_eq!(api.snapshot().await, before, "nothing changed");
}

#[tokio::test]
async fn string_fields_have_length_limits() {
    let api = Api::start().await;
    let user = api.db_user("len@example.com").await;
    let before = api.snapshot().await;
    let long = |n: usize| "名".repeat(n);
    let too_long = [
        ("name", json!(long(301))),
        ("nickname", json!(long(301))),
        ("given_name", json!(long(151))),
        ("family_name", json!(long(151))),
        ("username", json!(long(129))),
        ("email", json!(format!("{}@example.com", "a".repeat(501)))),
        ("phone_number", json!(format!("+{}", "1".repeat(64)))),
        (
            "picture",
            json!(format!("https://x.example/{}", "p".repeat(2048))),
        ),
    ];
    for (field, value) in &too_long {
        let mut create = json!({"connection": "github", "user_id": "len-1"});
        create[field] = value.clone();
        let reply = api.post("/api/v2/users", create).await;
        reply.assert_error(400, "invalid_body");
        assert!(
            reply.body["message"].as_str().unwrap().contains(field),
            "{}",
            reply.body
        );
        let reply = api
            .send(
                Method::PATCH,
                &format!("/api/v2/users/{}", enc(&user)),
                Some(json!({ *field: value })),
            )
            .await;
        reply.assert_error(400, "invalid_body");
    }
    let reply = api
        .post(
            "/api/v2/users",
            json!({"connection": "github", "user_id": "9".repeat(256)}),
        )
        .await;
    reply.assert_error(400, "invalid_body");
    let reply = api
        .post(
            "/api/v2/users",
            json!({"connection": DB, "email": "pw@example.com", "password": "p".repeat(1025)}),
        )
        .await;
    reply.assert_error(400, "invalid_body");
    assert_eq!(api.snapshot().await, before, "nothing changed");

    // At the limit, values are stored whole (counted in characters, not bytes).
    let reply = api
        .send(
            Method::PATCH,
            &format!("/api/v2/users/{}", enc(&user)),
            Some(json!({"name": long(300), "given_name": long(150)})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["name"], json!(long(300)));
}

/// Ids and emails in many scripts round-trip byte for byte: no normalization, no
/// mangling in paths, in linking, in unlinking or in search.
#[tokio::test]
async fn unicode_ids_and_emails_round_trip_through_link_and_unlink() {
    let api = Api::start().await;
    let primary = api.db_user("primary@example.com").await;
    let ids = [
        "🦀-crab-👩🏽‍💻",                   // emoji, skin tone, ZWJ sequence
        "עברית-مرحبا",                  // right-to-left scripts
        "e\u{301}-cafe\u{301}",         // combining acute (NFD), not normalized to é
        "caf\u{e9}",                    // the NFC form is a different id
        "\u{202e}reversed\u{202c}",     // bidi override characters
        "spaces and / slash ? query #", // reserved URI characters
        "100%25-percent",               // a literal percent sign
    ];
    for id in ids {
        let user_id = api
            .social_user("github", json!(id), &format!("{}@example.com", id.len()))
            .await;
        assert_eq!(user_id, format!("github|{id}"));
        let reply = api.user(&user_id).await;
        assert_eq!(reply.status, 200, "{id:?}: {}", reply.body);
        assert_eq!(reply.body["user_id"], json!(user_id));
        assert_eq!(reply.body["identities"][0]["user_id"], json!(id));
    }
    for id in ids {
        let reply = api
            .link(&primary, json!({"provider": "github", "user_id": id}))
            .await;
        assert_eq!(reply.status, 201, "{id:?}: {}", reply.body);
    }
    let reply = api.user(&primary).await;
    let linked: Vec<&str> = reply.body["identities"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|i| i["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(linked, ids);
    for id in ids {
        let reply = api.unlink(&primary, "github", id).await;
        assert_eq!(reply.status, 200, "{id:?}: {}", reply.body);
        let back = api.user(&format!("github|{id}")).await;
        assert_eq!(back.status, 200, "{id:?}: {}", back.body);
        assert_eq!(back.body["identities"][0]["user_id"], json!(id));
    }
    assert_eq!(api.assert_invariants().await, ids.len() + 1);

    // Emails outside ASCII are stored and found as sent.
    for email in [
        "用户@例子.测试",
        "ÄÖÜ.éè@exämple.de",
        "\u{202e}evil@example.com",
    ] {
        let reply = api
            .post(
                "/api/v2/users",
                json!({"connection": DB, "email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(reply.status, 201, "{email:?}: {}", reply.body);
        assert_eq!(reply.body["email"], json!(email));
        let found = api
            .http
            .get(api.url("/api/v2/users-by-email"))
            .query(&[("email", email)])
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(found[0]["email"], json!(email), "{email:?}");
    }
}

#[tokio::test]
async fn control_characters_in_emails_and_ids_are_refused() {
    let api = Api::start().await;
    let user = api.db_user("ctl@example.com").await;
    let before = api.snapshot().await;
    for email in [
        "a\u{0}b@example.com",
        "a@exam\nple.com",
        "a\r\n@example.com",
        "bell\u{7}@example.com",
        "del\u{7f}@example.com",
        "nel\u{85}@example.com",
        "esc\u{1b}[31m@example.com",
    ] {
        let reply = api
            .post(
                "/api/v2/users",
                json!({"connection": DB, "email": email, "password": PASSWORD}),
            )
            .await;
        reply.assert_error(400, "invalid_body");
        let reply = api
            .send(
                Method::PATCH,
                &format!("/api/v2/users/{}", enc(&user)),
                Some(json!({ "email": email })),
            )
            .await;
        reply.assert_error(400, "invalid_body");
    }
    for id in ["line\nbreak", "nul\u{0}", "esc\u{1b}[2J", "tab\tid"] {
        let reply = api
            .post(
                "/api/v2/users",
                json!({"connection": "github", "user_id": id}),
            )
            .await;
        reply.assert_error(400, "invalid_body");
    }
    assert_eq!(api.snapshot().await, before, "nothing changed");
}

/// Two servers on one database under one public URL (so tokens verify on both): one
/// with a deadline too short for anything, one normal to look with.
async fn fast_and_normal(timeout: f64) -> (Api, TestServer) {
    let normal = TestServer::start_with(|c| c.public_url = Some("http://idlink.test".into())).await;
    let hasty = TestServer::start_on_with(normal.database_url(), |c| {
        c.public_url = Some("http://idlink.test".into());
        c.tenant.request_timeout = Some(timeout);
    })
    .await;
    (Api::with_server(normal).await, hasty)
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_503_and_leaves_nothing_behind() {
    let (api, hasty) = fast_and_normal(0.005).await;
    let before = api.snapshot().await;
    // Creating a database user hashes the password with argon2 (tens of milliseconds)
    // before its transaction: the deadline passes first.
    let response = api
        .http
        .post(format!("{}/api/v2/users", hasty.base_url))
        .bearer_auth(&api.token)
        .json(&json!({"connection": DB, "email": "late@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["statusCode"], 503);
    assert_eq!(body["error"], "Service Unavailable");
    assert_eq!(body["errorCode"], "request_timeout");
    // The abandoned hash finishes on its blocking thread; give it time, then look.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.snapshot().await, before, "the user was not created");
}

/// Links and unlinks abandoned at their deadline at many different moments: each one
/// happened whole or not at all, and nothing is left stuck. The deadlines sweep the time
/// a link takes, so some requests are cut inside their store transaction (which rolls
/// back when dropped), and some just after `BEGIN` was acknowledged but before sqlx
/// handed the transaction over: that window used to leave the SQLite writer inside a
/// transaction nobody owned, and every later write failed with a 500 (fixed by starting
/// write transactions in a task of their own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_cut_off_at_any_moment_happen_whole_or_not_at_all() {
    let normal = TestServer::start_with(|c| c.public_url = Some("http://idlink.test".into())).await;
    let database_url = normal.database_url().to_owned();
    let api = Api::with_server(normal).await;
    let primary = api.social_user("github", json!(1), "p@example.com").await;
    for i in 0..10 {
        api.social_user("google-oauth2", json!(format!("s{i}")), "s@example.com")
            .await;
    }
    let identities = api.assert_invariants().await;

    let mut timed_out = 0;
    let mut completed = 0;
    for step in 1..=24 {
        let millis = f64::from(step) * 0.25;
        let hasty = TestServer::start_on_with(&database_url, |c| {
            c.public_url = Some("http://idlink.test".into());
            c.tenant.request_timeout = Some(millis / 1000.0);
        })
        .await;
        let hasty_api = Api {
            server: hasty,
            http: reqwest::Client::new(),
            token: api.token.clone(),
        };
        for i in 0..10 {
            let id = format!("s{i}");
            for reply in [
                hasty_api
                    .link(
                        &primary,
                        json!({"provider": "google-oauth2", "user_id": id}),
                    )
                    .await,
                hasty_api.unlink(&primary, "google-oauth2", &id).await,
            ] {
                match reply.status.as_u16() {
                    503 => {
                        assert_eq!(reply.body["errorCode"], "request_timeout");
                        timed_out += 1;
                    }
                    200 | 201 | 400 | 404 | 409 => completed += 1,
                    other => panic!("{millis} ms deadline: unexpected {other}: {}", reply.body),
                }
            }
        }
        // Whatever was cut off: no identity lost or doubled, every user whole.
        assert_eq!(api.assert_invariants().await, identities, "{millis} ms");
    }
    assert!(timed_out > 0, "no request hit its deadline");
    assert!(completed > 0, "every request hit its deadline");
    let reply = api
        .link(
            &primary,
            json!({"provider": "google-oauth2", "user_id": "s0"}),
        )
        .await;
    assert!(
        [201, 409].contains(&reply.status.as_u16()),
        "{}",
        reply.body
    );
    println!("{timed_out} requests abandoned at their deadline, {completed} completed");
}

/// A request abandoned while its `BEGIN IMMEDIATE` waits for the write lock (held here by
/// another connection, as another process would) changes nothing, and the writer
/// connection it was using takes the next write as usual.
#[tokio::test]
async fn a_request_abandoned_while_waiting_for_the_write_lock_does_not_wedge_writes() {
    use sqlx::{Connection as _, Executor as _};
    if idlink_server::testing::TestBackend::from_env()
        != idlink_server::testing::TestBackend::Sqlite
    {
        println!("SQLite only: the write lock is held through a second SQLite connection");
        return;
    }
    let (api, hasty) = fast_and_normal(0.3).await;
    let primary = api.social_user("github", json!(1), "p@example.com").await;
    api.social_user("google-oauth2", json!("g1"), "g@example.com")
        .await;
    api.social_user("google-oauth2", json!("g2"), "g2@example.com")
        .await;
    let hasty_api = Api {
        server: hasty,
        http: reqwest::Client::new(),
        token: api.token.clone(),
    };

    let mut blocker = sqlx::SqliteConnection::connect(api.server.database_url())
        .await
        .unwrap();
    blocker.execute("BEGIN IMMEDIATE").await.unwrap();
    let reply = hasty_api
        .link(
            &primary,
            json!({"provider": "google-oauth2", "user_id": "g1"}),
        )
        .await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    tokio::time::sleep(Duration::from_millis(100)).await;
    blocker.execute("ROLLBACK").await.unwrap();
    blocker.close().await.unwrap();

    let reply = hasty_api
        .link(
            &primary,
            json!({"provider": "google-oauth2", "user_id": "g2"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    // The abandoned link did not happen; the later one did, whole.
    let identities = api.user(&primary).await.body["identities"].clone();
    let linked: Vec<&Value> = identities.as_array().unwrap().iter().skip(1).collect();
    assert_eq!(linked.len(), 1, "{identities}");
    assert_eq!(linked[0]["user_id"], "g2");
    assert_eq!(api.assert_invariants().await, 3);
}

/// Regression: a NUL character in a path, a query or a body reached the database, which
/// PostgreSQL refuses ("invalid byte sequence for encoding UTF8: 0x00"): every such
/// request was a 500 there. Now each is a 400 in the error shape, on every backend.
#[tokio::test]
async fn nul_characters_are_refused_before_the_database() {
    let api = Api::start().await;
    let primary = api.social_user("github", json!(1), "p@example.com").await;
    let before = api.snapshot().await;
    for (path, code) in [
        ("/api/v2/users/auth0%7Ca%00b", "invalid_uri"),
        (
            "/api/v2/users/github%7C%00/identities/github/1",
            "invalid_uri",
        ),
        ("/api/v2/users-by-email?email=a%00b", "invalid_query_string"),
        ("/api/v2/users?q=name:a%00b", "invalid_query_string"),
    ] {
        let reply = api.get(path).await;
        if reply.status == 405 {
            let reply = api.delete(path).await;
            reply.assert_error(400, code);
        } else {
            reply.assert_error(400, code);
        }
    }
    api.delete("/api/v2/users/github%7C%00")
        .await
        .assert_error(400, "invalid_uri");
    for body in [
        json!({"connection": "github", "user_id": "x", "name": "a\u{0}b"}),
        json!({"connection": "github", "user_id": "y", "user_metadata": {"k": "v\u{0}"}}),
        json!({"connection": "github", "user_id": "z", "app_metadata": {"k\u{0}": 1}}),
    ] {
        api.post("/api/v2/users", body)
            .await
            .assert_error(400, "invalid_body");
    }
    api.link(
        &primary,
        json!({"provider": "google-oauth2", "user_id": "a\u{0}"}),
    )
    .await
    .assert_error(400, "invalid_body");
    api.send(
        Method::PATCH,
        &format!("/api/v2/users/{}", enc(&primary)),
        Some(json!({"nickname": "\u{0}"})),
    )
    .await
    .assert_error(400, "invalid_body");
    for body in [
        json!({"grant_type": "password", "username": "a\u{0}", "password": "x",
            "client_id": api.server.admin_client_id, "client_secret": api.server.admin_client_secret}),
        json!({"grant_type": "client_credentials", "client_id": "a\u{0}", "client_secret": "x",
            "audience": api.server.audience()}),
    ] {
        let response = api
            .http
            .post(api.url("/oauth/token"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");
    }
    assert_eq!(api.snapshot().await, before, "nothing changed");
}
