//! Link and unlink over HTTP: both modes, their semantics, and what is stored after.

mod common;

use common::{Api, DB, decode_claims, enc};
use serde_json::{Value, json};

#[tokio::test]
async fn mode_b_links_with_string_integer_and_prefixed_ids_and_form_bodies() {
    let api = Api::start().await;
    let primary = api.db_user("primary@example.com").await;
    api.social_user("google-oauth2", json!("1093"), "g@example.com")
        .await;
    api.social_user("github", json!(583231), "gh@example.com")
        .await;
    api.social_user("facebook", json!("fb-7"), "fb@example.com")
        .await;
    api.social_user("twitter", json!("tw-9"), "tw@example.com")
        .await;

    let reply = api
        .link(
            &primary,
            json!({"provider": "google-oauth2", "user_id": "1093"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body.as_array().unwrap().len(), 2);

    // An integer id, kept an integer on the wire.
    let reply = api
        .link(&primary, json!({"provider": "github", "user_id": 583231}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body[2]["user_id"], json!(583231));
    assert_eq!(reply.body[2]["provider"], "github");

    // A `provider|`-prefixed id is tolerated.
    let reply = api
        .link(
            &primary,
            json!({"provider": "facebook", "user_id": "facebook|fb-7"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);

    // Form-encoded body.
    let response = api
        .http
        .post(api.url(&format!("/api/v2/users/{}/identities", enc(&primary))))
        .bearer_auth(&api.token)
        .form(&[("provider", "twitter"), ("user_id", "tw-9")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let providers: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["provider"].as_str().unwrap())
        .collect();
    assert_eq!(
        providers,
        ["auth0", "google-oauth2", "github", "facebook", "twitter"]
    );

    let stored = api.user(&primary).await.body;
    assert_eq!(
        stored["identities"],
        without_main_profile_data(&body),
        "the stored identities are the response"
    );
    assert_eq!(api.assert_invariants().await, 5);
}

#[tokio::test]
async fn link_moves_the_secondary_profile_and_drops_the_secondary() {
    let api = Api::start().await;
    let primary = api.db_user("ada@example.com").await;
    api.send(
        reqwest::Method::PATCH,
        &format!("/api/v2/users/{}", enc(&primary)),
        Some(json!({"user_metadata": {"theme": "dark"}, "app_metadata": {"plan": "pro"}})),
    )
    .await;
    let reply = api
        .post(
            "/api/v2/users",
            json!({
                "connection": "google-oauth2", "user_id": "1093", "email": "ada@gmail.com",
                "email_verified": true, "name": "Ada Lovelace", "given_name": "Ada",
                "family_name": "Lovelace", "nickname": "ada", "picture": "https://example.com/ada.png",
                "user_metadata": {"secondary": true}, "app_metadata": {"secondary_app": 1}
            }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);

    let reply = api
        .link(
            &primary,
            json!({"provider": "google-oauth2", "user_id": "1093"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let linked = &reply.body[1];
    assert_eq!(linked["connection"], "google-oauth2");
    assert_eq!(linked["isSocial"], true);
    assert_eq!(
        linked["profileData"],
        json!({
            "email": "ada@gmail.com", "email_verified": true, "name": "Ada Lovelace",
            "given_name": "Ada", "family_name": "Lovelace", "nickname": "ada",
            "picture": "https://example.com/ada.png"
        })
    );
    assert_eq!(
        reply.body[0]["profileData"],
        json!({"email": "ada@example.com", "email_verified": true}),
        "the main identity's profileData is the primary's own supplied profile"
    );

    // The primary keeps its id, root profile and metadata.
    let user = api.user(&primary).await.body;
    assert_eq!(user["user_id"], primary);
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["user_metadata"], json!({"theme": "dark"}));
    assert_eq!(user["app_metadata"], json!({"plan": "pro"}));

    // The secondary is gone from every lookup.
    api.user("google-oauth2|1093")
        .await
        .assert_error(404, "inexistent_user");
    let by_email = api
        .get("/api/v2/users-by-email?email=ada%40gmail.com")
        .await;
    assert_eq!(by_email.body, json!([]));
    let search = api
        .get("/api/v2/users?q=email%3A%22ada%40gmail.com%22")
        .await;
    assert_eq!(search.body, json!([]));
    let all = api.snapshot().await;
    assert_eq!(all.keys().collect::<Vec<_>>(), [&primary]);

    // Its metadata was discarded: unlinking brings back a user without any.
    let reply = api.unlink(&primary, "google-oauth2", "1093").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let recreated = api.user("google-oauth2|1093").await.body;
    assert!(recreated.get("user_metadata").is_none(), "{recreated}");
    assert!(recreated.get("app_metadata").is_none(), "{recreated}");
}

#[tokio::test]
async fn a_secondary_brings_its_own_linked_identities() {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    let middle = api
        .social_user("google-oauth2", json!("g1"), "m@example.com")
        .await;
    api.social_user("github", json!(42), "gh@example.com").await;
    api.social_user("apple", json!("ap-1"), "ap@example.com")
        .await;
    assert_eq!(
        api.link(&middle, json!({"provider": "github", "user_id": 42}))
            .await
            .status,
        201
    );
    assert_eq!(
        api.link(&middle, json!({"provider": "apple", "user_id": "ap-1"}))
            .await
            .status,
        201
    );

    let reply = api
        .link(
            &primary,
            json!({"provider": "google-oauth2", "user_id": "g1"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let ids: Vec<(String, String)> = reply
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["provider"].as_str().unwrap().to_owned(),
                common::id_string(&i["user_id"]),
            )
        })
        .collect();
    assert_eq!(
        ids[1..],
        [
            ("google-oauth2".into(), "g1".into()),
            ("github".into(), "42".into()),
            ("apple".into(), "ap-1".into())
        ]
    );
    // Identities already linked keep the profileData they came with.
    assert_eq!(reply.body[2]["profileData"]["email"], "gh@example.com");
    assert_eq!(reply.body[1]["profileData"]["email"], "m@example.com");
    assert_eq!(api.assert_invariants().await, 4);
    assert_eq!(api.snapshot().await.len(), 1);
}

#[tokio::test]
async fn unlink_returns_the_rest_and_recreates_a_standalone_user() {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    api.social_user("google-oauth2", json!("g1"), "g@example.com")
        .await;
    api.social_user("github", json!(7), "gh@example.com").await;
    api.link(
        &primary,
        json!({"provider": "google-oauth2", "user_id": "g1"}),
    )
    .await;
    api.link(&primary, json!({"provider": "github", "user_id": 7}))
        .await;

    let reply = api.unlink(&primary, "google-oauth2", "g1").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let remaining: Vec<&str> = reply
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["provider"].as_str().unwrap())
        .collect();
    assert_eq!(remaining, ["auth0", "github"]);

    let recreated = api.user("google-oauth2|g1").await;
    assert_eq!(recreated.status, 200, "{}", recreated.body);
    assert_eq!(recreated.body["email"], "g@example.com");
    assert_eq!(recreated.body["name"], "Name of g@example.com");
    assert_eq!(
        recreated.body["identities"],
        json!([{"connection": "google-oauth2", "user_id": "g1", "provider": "google-oauth2", "isSocial": true}])
    );
    assert_eq!(
        api.user(&primary).await.body["identities"],
        without_main_profile_data(&reply.body)
    );

    // The unlinked identity can be linked again, and the integer id unlinks by its
    // string form.
    assert_eq!(
        api.link(
            &primary,
            json!({"provider": "google-oauth2", "user_id": "g1"})
        )
        .await
        .status,
        201
    );
    let reply = api.unlink(&primary, "github", "7").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let github = api.user("github|7").await.body;
    assert_eq!(
        github["identities"][0]["user_id"],
        json!(7),
        "the id stays an integer"
    );
    assert_eq!(api.assert_invariants().await, 3);
}

#[tokio::test]
async fn deleting_the_primary_deletes_its_linked_identities() {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    api.social_user("github", json!(99), "gh@example.com").await;
    api.link(&primary, json!({"provider": "github", "user_id": 99}))
        .await;

    let reply = api
        .delete(&format!("/api/v2/users/{}", enc(&primary)))
        .await;
    assert_eq!(reply.status, 204);
    api.user(&primary)
        .await
        .assert_error(404, "inexistent_user");
    api.user("github|99")
        .await
        .assert_error(404, "inexistent_user");
    assert!(api.snapshot().await.is_empty());
    // The identity is free again.
    api.social_user("github", json!(99), "gh@example.com").await;
}

#[tokio::test]
async fn mode_a_links_with_the_secondary_id_token() {
    let api = Api::start().await;
    let primary = api.db_user("primary@example.com").await;
    let secondary = api.db_user("secondary@example.com").await;
    let primary_tokens = api.sign_in("primary@example.com").await;
    let secondary_tokens = api.sign_in("secondary@example.com").await;
    let bearer = primary_tokens["access_token"].as_str().unwrap();
    let id_token = secondary_tokens["id_token"].as_str().unwrap();

    let reply = api
        .send_as(
            Some(bearer),
            reqwest::Method::POST,
            &format!("/api/v2/users/{}/identities", enc(&primary)),
            Some(json!({"link_with": id_token})),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body[1]["provider"], "auth0");
    assert_eq!(
        format!("auth0|{}", reply.body[1]["user_id"].as_str().unwrap()),
        secondary
    );
    assert_eq!(
        reply.body[1]["profileData"]["email"],
        "secondary@example.com"
    );

    // The secondary's password now signs in to the primary.
    let again = api.sign_in("secondary@example.com").await;
    let claims = decode_claims(again["id_token"].as_str().unwrap());
    assert_eq!(claims["sub"], primary);

    // A user token may unlink its own identities, and only its own.
    let other = api.db_user("other@example.com").await;
    let reply = api
        .send_as(
            Some(bearer),
            reqwest::Method::DELETE,
            &format!("/api/v2/users/{}/identities/auth0/{}", enc(&other), "x"),
            None,
        )
        .await;
    reply.assert_error(403, "unowned_resource");
    let secondary_id = secondary.trim_start_matches("auth0|");
    let reply = api
        .send_as(
            Some(bearer),
            reqwest::Method::DELETE,
            &format!(
                "/api/v2/users/{}/identities/auth0/{secondary_id}",
                enc(&primary)
            ),
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(api.user(&secondary).await.status, 200);
}

#[tokio::test]
async fn the_secondary_database_user_keeps_its_connection_id() {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    let secondary = api.db_user("s@example.com").await;
    let secondary_id = secondary.trim_start_matches("auth0|").to_owned();
    let connection_id = api
        .server
        .state()
        .connection_by_name(DB)
        .unwrap()
        .id
        .clone();
    let reply = api
        .link(
            &primary,
            json!({"provider": "auth0", "user_id": secondary_id, "connection_id": connection_id}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body[1]["connection"], DB);
    assert_eq!(reply.body[1]["isSocial"], false);
}

/// A link or unlink answer as `GET user` shows the same identities: link and unlink give
/// the main identity the primary's profileData, a GET does not.
fn without_main_profile_data(answer: &Value) -> Value {
    let mut identities = answer.clone();
    identities[0].as_object_mut().unwrap().remove("profileData");
    identities
}
