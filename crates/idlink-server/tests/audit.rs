//! The audit trail: every link, unlink and failed attempt, readable in Auth0's
//! log-event shape through `/api/v2/logs` and `/api/v2/users/{id}/logs`.

mod common;

use common::{Api, enc};
use reqwest::Method;
use serde_json::{Value, json};

fn events(reply: &common::Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body.as_array().expect("an array of events").clone()
}

#[tokio::test]
async fn links_unlinks_and_failures_are_recorded() {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    api.social_user("github", json!(7), "gh@example.com").await;
    assert!(
        events(&api.get("/api/v2/logs").await).is_empty(),
        "creating users is not audited here"
    );

    assert_eq!(
        api.link(&primary, json!({"provider": "github", "user_id": 7}))
            .await
            .status,
        201
    );
    api.link(&primary, json!({"provider": "github", "user_id": 7}))
        .await
        .assert_error(409, "identity_conflict");
    api.unlink(&primary, "auth0", primary.trim_start_matches("auth0|"))
        .await
        .assert_error(400, "invalid_uri");
    assert_eq!(api.unlink(&primary, "github", "7").await.status, 200);

    // Newest first, in Auth0's shape.
    let all = events(&api.get("/api/v2/logs").await);
    let summary: Vec<(&str, &str)> = all
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["description"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("sapi", "Unlink a User Identity"),
            (
                "fapi",
                "Unlink a User Identity: Main identity cannot be removed."
            ),
            (
                "fapi",
                "Link a User Account: Specified identity already exists."
            ),
            ("sapi", "Link a User Account"),
        ]
    );
    let link = &all[3];
    assert_eq!(link["client_id"], api.server.admin_client_id);
    assert_eq!(link["user_id"], primary);
    assert!(link["log_id"].as_str().unwrap().len() >= 20);
    assert!(link["date"].as_str().unwrap().ends_with('Z'));
    assert_eq!(link["details"]["request"]["body"]["provider"], "github");
    assert_eq!(link["details"]["response"]["statusCode"], 201);
    assert_eq!(
        all[2]["details"]["response"]["body"]["errorCode"],
        "identity_conflict"
    );

    // The secondary's own log finds the events about it; filters and paging work.
    let github = events(&api.get("/api/v2/users/github%7C7/logs").await);
    assert_eq!(github.len(), 3, "{github:?}");
    let failures = events(&api.get("/api/v2/logs?q=type%3Afapi").await);
    assert_eq!(failures.len(), 2);
    let page = api
        .get("/api/v2/logs?per_page=1&page=1&include_totals=true&sort=date%3A1")
        .await
        .body;
    assert_eq!(
        (
            page["start"].clone(),
            page["limit"].clone(),
            page["length"].clone(),
            page["total"].clone()
        ),
        (json!(1), json!(1), json!(1), json!(4))
    );
    assert_eq!(page["logs"][0]["type"], "fapi");
    assert_eq!(
        page["logs"][0]["details"]["response"]["body"]["errorCode"],
        "identity_conflict"
    );
    api.get("/api/v2/logs?per_page=101")
        .await
        .assert_error(400, "invalid_query_string");
}

#[tokio::test]
async fn user_initiated_links_are_attributed_and_tokens_never_stored() {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    let secondary = api.db_user("s@example.com").await;
    let (bearer, id_token) = api.mode_a_tokens("p@example.com", "s@example.com").await;
    let reply = api
        .send_as(
            Some(&bearer),
            Method::POST,
            &format!("/api/v2/users/{}/identities", enc(&primary)),
            Some(json!({"link_with": id_token})),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    // A forbidden attempt by the same user on someone else is recorded as a failure.
    let other = api.db_user("o@example.com").await;
    api.send_as(
        Some(&bearer),
        Method::DELETE,
        &format!("/api/v2/users/{}/identities/github/1", enc(&other)),
        None,
    )
    .await
    .assert_error(403, "unowned_resource");

    let mine = events(
        &api.get(&format!("/api/v2/users/{}/logs", enc(&primary)))
            .await,
    );
    assert_eq!(mine.len(), 1);
    let event = &mine[0];
    assert_eq!(event["type"], "sapi");
    assert_eq!(event["details"]["request"]["auth"]["sub"], primary);
    assert_eq!(event["details"]["request"]["body"]["sub"], secondary);
    let text = serde_json::to_string(&events(&api.get("/api/v2/logs").await)).unwrap();
    assert!(
        !text.contains(&id_token),
        "the link_with token is never stored"
    );
    assert!(!text.contains(&bearer), "bearer tokens are never stored");
    let other_logs = events(
        &api.get(&format!("/api/v2/users/{}/logs", enc(&other)))
            .await,
    );
    assert_eq!(other_logs[0]["type"], "fapi");
    assert_eq!(
        other_logs[0]["details"]["response"]["body"]["errorCode"],
        "unowned_resource"
    );
}

#[tokio::test]
async fn every_acknowledged_operation_has_its_record() {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    for i in 0..5 {
        api.social_user("github", json!(i), &format!("g{i}@example.com"))
            .await;
    }
    let mut acknowledged = 0;
    for i in 0..5 {
        acknowledged += u64::from(
            api.link(&primary, json!({"provider": "github", "user_id": i}))
                .await
                .status
                == 201,
        );
    }
    for i in 0..3 {
        acknowledged +=
            u64::from(api.unlink(&primary, "github", &i.to_string()).await.status == 200);
    }
    let page = api
        .get("/api/v2/logs?q=type%3Asapi&include_totals=true")
        .await
        .body;
    assert_eq!(page["total"], acknowledged);
    assert_eq!(acknowledged, 8);
}

#[tokio::test]
async fn reading_logs_needs_the_logs_scopes() {
    let api = Api::start().await;
    let token = api
        .server
        .token(json!({"grant_type": "client_credentials", "client_id": api.server.admin_client_id,
            "client_secret": api.server.admin_client_secret, "audience": api.server.audience(), "scope": "read:users"}))
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    api.send_as(Some(&token), Method::GET, "/api/v2/logs", None)
        .await
        .assert_error(403, "insufficient_scope");
    api.send_as(
        Some(&token),
        Method::GET,
        "/api/v2/users/auth0%7Cx/logs",
        None,
    )
    .await
    .assert_error(403, "insufficient_scope");
}

#[tokio::test]
async fn attempts_with_absurdly_long_ids_are_still_recorded() {
    let api = Api::start().await;
    // Incompressible, so PostgreSQL cannot squeeze it under its index row limit; long,
    // but within the 8 KiB request-target limit.
    let noise = |seed: u64, len: usize| -> String {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(x >> 33) as usize % 36])
            })
            .collect()
    };
    let long = format!("auth0|xxx{}", noise(1, 7_000));
    api.link(
        &long,
        json!({"provider": "github", "user_id": noise(2, 7_000)}),
    )
    .await
    .assert_error(404, "inexistent_user");
    let failures = events(&api.get("/api/v2/logs?q=type%3Afapi").await);
    assert_eq!(failures.len(), 1, "the attempt is in the trail");
    assert!(
        failures[0]["user_id"]
            .as_str()
            .unwrap()
            .starts_with("auth0|xxx")
    );
}
