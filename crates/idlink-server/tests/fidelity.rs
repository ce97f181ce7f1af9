//! One test per point of issue 10: idlink answers as the recorded Auth0 traffic does
//! (`tests/recordings/`). Each compares whole bodies — key sets and value types — with
//! what the recordings show; `recordings.rs` replays the recordings themselves.

mod common;

use std::collections::BTreeSet;

use common::{Api, DB, PASSWORD, enc};
use reqwest::Method;
use serde_json::{Value, json};

const JSON_UTF8: &str = "application/json; charset=utf-8";

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

/// Point 7: every Management API answer says `application/json; charset=utf-8`,
/// bodies, errors and empty 204s alike.
#[tokio::test]
async fn management_answers_are_labelled_json_utf8_including_204s() {
    let api = Api::start().await;
    let user = api.db_user("ct@example.com").await;
    let created = api.user(&user).await;
    assert_eq!(created.headers["content-type"], JSON_UTF8);
    let missing = api.user("auth0|nobody").await;
    missing.assert_error(404, "inexistent_user");
    assert_eq!(missing.headers["content-type"], JSON_UTF8);
    let unknown_route = api.get("/api/v2/nothing-here").await;
    assert_eq!(unknown_route.headers["content-type"], JSON_UTF8);
    let deleted = api
        .send(
            Method::DELETE,
            &format!("/api/v2/users/{}", enc(&user)),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(deleted.body, Value::Null);
    assert_eq!(deleted.headers["content-type"], JSON_UTF8);
}

/// The go-auth0 test user (`TestUserManager_Link`): every attribute supplied.
fn go_user(n: u32) -> Value {
    json!({
        "connection": DB, "email": format!("chuck{n}@example.com"), "given_name": "Chuck",
        "family_name": "Sanchez", "username": format!("test-user{n}"), "nickname": "Chucky",
        "password": PASSWORD, "user_metadata": {"favourite_attack": "roundhouse_kick"},
        "verify_email": false, "app_metadata": {"facts": ["count_to_infinity_twice"]},
        "picture": "https://example-picture-url.jpg", "blocked": false, "email_verified": true,
    })
}

/// The key sets of go-auth0's recorded link answer.
const GO_PROFILE_DATA: &[&str] = &[
    "email",
    "given_name",
    "family_name",
    "username",
    "nickname",
    "picture",
    "email_verified",
];
const IDENTITY_KEYS: &[&str] = &["connection", "user_id", "provider", "isSocial"];

async fn create(api: &Api, body: Value) -> Value {
    let reply = api.post("/api/v2/users", body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body
}

/// Points 1 and 2: link and unlink answers give every identity `profileData` (the
/// primary's too: its own supplied attributes, current values); a GET does not give
/// the main identity one.
#[tokio::test]
async fn link_and_unlink_answers_carry_profile_data_on_every_identity() {
    let api = Api::start().await;
    let primary = create(&api, go_user(249)).await;
    let secondary = create(&api, go_user(203)).await;
    let primary_id = primary["user_id"].as_str().unwrap();
    let secondary_id = secondary["user_id"].as_str().unwrap();

    let linked = api
        .link(
            primary_id,
            json!({"provider": "auth0", "user_id": secondary_id}),
        )
        .await;
    assert_eq!(linked.status, 201, "{}", linked.body);
    let identities = linked.body.as_array().unwrap();
    assert_eq!(identities.len(), 2);
    let mut with_profile = set(IDENTITY_KEYS);
    with_profile.insert("profileData");
    for identity in identities {
        assert_eq!(keys(identity), with_profile, "{identity}");
        assert_eq!(keys(&identity["profileData"]), set(GO_PROFILE_DATA));
    }
    assert_eq!(
        identities[0]["profileData"]["email"],
        "chuck249@example.com"
    );
    assert_eq!(
        identities[1]["profileData"]["email"],
        "chuck203@example.com"
    );

    // GET of the linked primary: the main identity has no profileData, linked ones do.
    let read = api.user(primary_id).await;
    assert_eq!(keys(&read.body["identities"][0]), set(IDENTITY_KEYS));
    assert_eq!(keys(&read.body["identities"][1]), with_profile);

    // The primary's profileData follows its current values.
    let patched = api
        .send(
            Method::PATCH,
            &format!("/api/v2/users/{}", enc(primary_id)),
            Some(json!({"given_name": "Carlos"})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let secondary_key = identities[1]["user_id"].as_str().unwrap();
    let unlinked = api.unlink(primary_id, "auth0", secondary_key).await;
    assert_eq!(unlinked.status, 200, "{}", unlinked.body);
    let remaining = unlinked.body.as_array().unwrap();
    assert_eq!(remaining.len(), 1);
    assert_eq!(keys(&remaining[0]), with_profile);
    assert_eq!(keys(&remaining[0]["profileData"]), set(GO_PROFILE_DATA));
    assert_eq!(remaining[0]["profileData"]["given_name"], "Carlos");

    // An unlinked user has a single identity without profileData.
    let read = api.user(primary_id).await;
    assert_eq!(keys(&read.body["identities"][0]), set(IDENTITY_KEYS));
    // The recreated database user gets back the default name its profileData left out.
    let recreated = api.user(secondary_id).await;
    assert_eq!(recreated.status, 200, "{}", recreated.body);
    assert_eq!(recreated.body["name"], "chuck203@example.com");
    assert_eq!(recreated.body["nickname"], "Chucky");
    assert_eq!(keys(&recreated.body["identities"][0]), set(IDENTITY_KEYS));
}

/// Point 2 with invented attributes: ruby-auth0's users sent only a name, so their
/// profileData is `{name, email, email_verified}` — never the invented nickname or
/// picture, never metadata or blocked.
#[tokio::test]
async fn profile_data_leaves_out_invented_attributes_until_patched() {
    let api = Api::start().await;
    let primary = create(
        &api,
        json!({"connection": DB, "email": "rubytest-p@auth0.com", "password": PASSWORD, "name": "p"}),
    )
    .await;
    let secondary = create(
        &api,
        json!({"connection": DB, "email": "rubytest-s@auth0.com", "password": PASSWORD, "name": "s",
               "user_metadata": {"a": 1}, "blocked": false}),
    )
    .await;
    let primary_id = primary["user_id"].as_str().unwrap();
    let linked = api
        .link(
            primary_id,
            json!({"provider": "auth0", "user_id": secondary["user_id"]}),
        )
        .await;
    assert_eq!(linked.status, 201, "{}", linked.body);
    let ruby = set(&["name", "email", "email_verified"]);
    assert_eq!(keys(&linked.body[0]["profileData"]), ruby);
    assert_eq!(keys(&linked.body[1]["profileData"]), ruby);

    // A PATCH of an invented attribute makes it supplied.
    let patched = api
        .send(
            Method::PATCH,
            &format!("/api/v2/users/{}", enc(primary_id)),
            Some(json!({"nickname": "pp"})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let no_op = api.unlink(primary_id, "auth0", "no-such-identity").await;
    assert_eq!(no_op.status, 200, "{}", no_op.body);
    assert_eq!(
        keys(&no_op.body[0]["profileData"]),
        set(&["name", "email", "email_verified", "nickname"])
    );
}

/// Point 3: unlink compares the path user_id literally; an identity not on the user is
/// a 200 no-op that changes nothing and is audited as a no-op; the main identity stays
/// 400 `invalid_uri`.
#[tokio::test]
async fn unlink_of_an_identity_not_on_the_user_is_a_200_no_op() {
    let api = Api::start().await;
    let primary = api.db_user("noop-p@example.com").await;
    let secondary = api.db_user("noop-s@example.com").await;
    let linked = api
        .link(&primary, json!({"provider": "auth0", "user_id": secondary}))
        .await;
    assert_eq!(linked.status, 201, "{}", linked.body);
    let before = api.snapshot().await;

    // ruby-auth0's unlink: the prefixed id names nothing, so nothing is unlinked.
    let reply = api.unlink(&primary, "auth0", &secondary).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, linked.body, "identities unchanged");
    assert_eq!(api.snapshot().await, before, "nothing changed");
    let missing = api.unlink(&primary, "github", "12345").await;
    assert_eq!(missing.status, 200, "{}", missing.body);
    assert_eq!(missing.body.as_array().unwrap().len(), 2);

    let main = primary.strip_prefix("auth0|").unwrap();
    api.unlink(&primary, "auth0", main)
        .await
        .assert_error(400, "invalid_uri");
    api.unlink("auth0|nobody", "auth0", "x")
        .await
        .assert_error(404, "inexistent_user");

    let logs = api
        .get(&format!("/api/v2/logs?user_id={}", enc(&primary)))
        .await;
    assert_eq!(logs.status, 200, "{}", logs.body);
    let no_ops: Vec<&Value> = logs
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["details"]["response"]["no_op"] == true)
        .collect();
    assert_eq!(no_ops.len(), 2, "{}", logs.body);
    for event in no_ops {
        assert!(
            event["description"]
                .as_str()
                .unwrap()
                .contains("identity is not on the user"),
            "{event}"
        );
        assert_eq!(event["details"]["response"]["statusCode"], 200);
    }
}

/// Point 4: database users get `name` = email, `nickname` = local part and the
/// gravatar `picture` when the client sends none (go-auth0 `TestUserManager_Create`),
/// and may be created with an explicit user_id (terraform `TestAccUser`).
#[tokio::test]
async fn database_users_get_invented_name_nickname_and_picture() {
    let api = Api::start().await;
    let user = create(
        &api,
        json!({"connection": DB, "email": "chuck@example.com", "username": "chuck", "password": PASSWORD}),
    )
    .await;
    assert_eq!(
        keys(&user),
        set(&[
            "created_at",
            "email",
            "email_verified",
            "identities",
            "name",
            "nickname",
            "picture",
            "updated_at",
            "user_id",
            "username"
        ])
    );
    assert_eq!(user["name"], "chuck@example.com");
    assert_eq!(user["nickname"], "chuck");
    assert_eq!(
        user["picture"],
        "https://s.gravatar.com/avatar/0b79e7da7bc7877560620cf8f2cc93ae?s=480&r=pg&d=https%3A%2F%2Fcdn.auth0.com%2Favatars%2Fch.png"
    );
    assert_eq!(keys(&user["identities"][0]), set(IDENTITY_KEYS));

    let terraform = create(
        &api,
        json!({"user_id": "testaccuser", "connection": DB, "email": "testaccuser@acceptance.test.com",
               "username": "testaccuser", "password": PASSWORD}),
    )
    .await;
    assert_eq!(terraform["user_id"], "auth0|testaccuser");
    assert_eq!(terraform["identities"][0]["user_id"], "testaccuser");
    assert_eq!(terraform["nickname"], "testaccuser");
}

/// Point 5: `logins_count`/`last_login` are absent until the first login; `blocked`
/// appears once it was ever set, `false` included.
#[tokio::test]
async fn login_counters_appear_after_a_login_and_blocked_once_set() {
    let api = Api::start().await;
    let user = create(
        &api,
        json!({"connection": DB, "email": "counter@example.com", "password": PASSWORD}),
    )
    .await;
    for key in ["logins_count", "last_login", "blocked"] {
        assert!(user.get(key).is_none(), "{key} in {user}");
    }
    let user_id = user["user_id"].as_str().unwrap();
    api.sign_in("counter@example.com").await;
    let read = api.user(user_id).await.body;
    assert_eq!(read["logins_count"], 1);
    assert!(read["last_login"].is_string());
    assert!(read.get("blocked").is_none());

    let echoed = create(&api, go_user(1)).await;
    assert_eq!(echoed["blocked"], false);
    let patched = api
        .send(
            Method::PATCH,
            &format!("/api/v2/users/{}", enc(user_id)),
            Some(json!({"blocked": false})),
        )
        .await;
    assert_eq!(patched.body["blocked"], false);
}

/// Point 6: PATCH with empty metadata objects (terraform `TestAccUser`), a password
/// change (go-auth0 `TestUserManager_Update`), and `fields` ignored (ruby-auth0).
#[tokio::test]
async fn patch_clears_metadata_as_recorded_and_stamps_password_resets() {
    let api = Api::start().await;
    let user = create(&api, go_user(407)).await;
    let path = format!("/api/v2/users/{}", enc(user["user_id"].as_str().unwrap()));
    let patch = |body: Value| api.send(Method::PATCH, &path, Some(body));

    let reply = patch(json!({"user_metadata": {"baz": null, "x": 1}, "app_metadata": {"facts": null, "foo": "bars"}})).await;
    assert_eq!(
        reply.body["user_metadata"],
        json!({"favourite_attack": "roundhouse_kick", "x": 1})
    );
    assert_eq!(reply.body["app_metadata"], json!({"foo": "bars"}));
    let reply = patch(json!({"user_metadata": {}, "app_metadata": {}})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["user_metadata"], json!({}));
    assert!(reply.body.get("app_metadata").is_none(), "{}", reply.body);
    assert_eq!(api.get(&path).await.body, reply.body);
    assert!(reply.body.get("last_password_reset").is_none());

    let reply = patch(
        json!({"connection": DB, "password": "I don't need one!1", "app_metadata": {"foo": "bar"}}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body["last_password_reset"].is_string(),
        "{}",
        reply.body
    );
    assert_eq!(reply.body["app_metadata"], json!({"foo": "bar"}));

    let fields = api
        .send(
            Method::PATCH,
            &format!("{path}?fields=email&include_fields=true"),
            Some(json!({"email_verified": true})),
        )
        .await;
    assert_eq!(fields.status, 200, "{}", fields.body);
    assert_eq!(
        keys(&fields.body),
        keys(&reply.body),
        "fields ignored on PATCH"
    );
}

/// Point 8: connections can be read, as go-auth0 does before linking: the envelope
/// `{total, start, limit, connections}`, Auth0's connection keys, filters, `fields`,
/// 404 `inexistent_connection`, scope `read:connections`.
#[tokio::test]
async fn connections_are_listed_and_read_in_auth0_shape() {
    let api = Api::start().await;
    let reply = api
        .get(&format!(
            "/api/v2/connections?include_totals=true&name={DB}&per_page=50"
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.headers["content-type"], JSON_UTF8);
    assert_eq!(
        keys(&reply.body),
        set(&["total", "start", "limit", "connections"])
    );
    assert_eq!(reply.body["total"], 1);
    assert_eq!(reply.body["limit"], 50);
    let connection = &reply.body["connections"][0];
    assert_eq!(
        keys(connection),
        set(&[
            "id",
            "options",
            "strategy",
            "name",
            "is_domain_connection",
            "realms",
            "enabled_clients"
        ])
    );
    assert_eq!(connection["name"], DB);
    assert_eq!(connection["strategy"], "auth0");
    assert_eq!(connection["realms"], json!([DB]));
    assert!(
        connection["enabled_clients"]
            .as_array()
            .unwrap()
            .contains(&json!(api.server.admin_client_id))
    );
    let id = connection["id"].as_str().unwrap();

    let one = api.get(&format!("/api/v2/connections/{id}")).await;
    assert_eq!(&one.body, connection);
    let narrowed = api
        .get(&format!("/api/v2/connections/{id}?fields=id,name"))
        .await;
    assert_eq!(narrowed.body, json!({"id": id, "name": DB}));
    let social = api.get("/api/v2/connections?strategy=github").await;
    assert_eq!(social.body.as_array().unwrap().len(), 1);
    assert_eq!(social.body[0]["options"], json!({}));
    let all = api.get("/api/v2/connections?per_page=1&page=1").await;
    assert_eq!(all.body.as_array().unwrap().len(), 1);
    assert_ne!(all.body[0]["id"], json!(id));

    api.get("/api/v2/connections/con_0000000000000000")
        .await
        .assert_error(404, "inexistent_connection");

    // The connection id it gives links, as go-auth0 sends it.
    let primary = api.db_user("con-p@example.com").await;
    let secondary = api.db_user("con-s@example.com").await;
    let linked = api
        .link(
            &primary,
            json!({"connection_id": id, "user_id": secondary, "provider": "auth0"}),
        )
        .await;
    assert_eq!(linked.status, 201, "{}", linked.body);

    let tokens = api.sign_in("con-p@example.com").await;
    let user_token = tokens["access_token"].as_str().unwrap();
    api.send_as(Some(user_token), Method::GET, "/api/v2/connections", None)
        .await
        .assert_error(403, "insufficient_scope");
}
