//! User search over HTTP (`GET /api/v2/users?q=…&search_engine=v3`): a table of queries
//! and the users each must find, an injection attempt in every position a caller
//! controls, the queries that must be refused, `sort` and `fields`. Runs on the backend
//! `IDLINK_TEST_BACKEND` names.

mod common;

use std::collections::BTreeSet;

use common::{Api, DB, PASSWORD, enc};
use serde_json::{Value, json};

/// The users of the table, by short name: ada and bob (database), carol (GitHub, an
/// integer id), and dave (Google), linked into bob — so he is found only through bob.
struct World {
    api: Api,
    ids: Vec<(&'static str, String)>,
    ada_created_at: String,
}

impl World {
    fn name_of(&self, user_id: &str) -> &'static str {
        self.ids
            .iter()
            .find(|(_, id)| id == user_id)
            .map(|(name, _)| *name)
            .unwrap_or_else(|| panic!("unexpected user {user_id}"))
    }

    async fn search(&self, q: &str) -> Value {
        let path = format!("/api/v2/users?search_engine=v3&per_page=100&q={}", enc(q));
        self.api.get(&path).await.body
    }

    async fn found(&self, q: &str) -> BTreeSet<&'static str> {
        let body = self.search(q).await;
        let users = body.as_array().unwrap_or_else(|| panic!("{q}: {body}"));
        users
            .iter()
            .map(|u| self.name_of(u["user_id"].as_str().unwrap()))
            .collect()
    }
}

async fn create(api: &Api, body: Value) -> String {
    let reply = api.post("/api/v2/users", body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["user_id"].as_str().unwrap().to_owned()
}

async fn world() -> World {
    let api = Api::start().await;
    let ada = create(
        &api,
        json!({"connection": DB, "email": "Ada@Example.com", "password": PASSWORD, "email_verified": true,
               "name": "Ada Lovelace", "given_name": "Ada", "family_name": "Lovelace", "nickname": "ada",
               "username": "ada", "user_metadata": {"plan": "pro", "score": 10, "beta": true},
               "app_metadata": {"tier": "gold"}}),
    )
    .await;
    let bob = create(
        &api,
        json!({"connection": DB, "email": "bob@example.com", "password": PASSWORD, "name": "Bob Stone",
               "username": "bobby", "user_metadata": {"plan": "free"}, "blocked": true}),
    )
    .await;
    let carol = create(
        &api,
        json!({"connection": "github", "user_id": 4242, "email": "carol@example.org", "name": "Carol Johnson", "nickname": "cj"}),
    )
    .await;
    let dave = create(
        &api,
        json!({"connection": "google-oauth2", "user_id": "g-77", "email": "dave@example.org", "name": "Dave Johnson"}),
    )
    .await;
    let linked = api
        .link(
            &bob,
            json!({"provider": "google-oauth2", "user_id": "g-77"}),
        )
        .await;
    assert_eq!(linked.status, 201, "{}", linked.body);
    api.sign_in("ada@example.com").await;
    let ada_created_at = api.user(&ada).await.body["created_at"]
        .as_str()
        .unwrap()
        .to_owned();
    World {
        api,
        ids: vec![("ada", ada), ("bob", bob), ("carol", carol), ("dave", dave)],
        ada_created_at,
    }
}

fn names(list: &[&'static str]) -> BTreeSet<&'static str> {
    list.iter().copied().collect()
}

#[tokio::test]
async fn every_operator_finds_the_right_users() {
    let world = world().await;
    let after_ada = format!("created_at:{{{} TO *}}", world.ada_created_at);
    let from_ada = format!("created_at:[{} TO *]", world.ada_created_at);
    let table: Vec<(&str, &[&str])> = vec![
        ("", &["ada", "bob", "carol"]),
        (r#"email:"ada@example.com""#, &["ada"]),
        ("email:ADA@EXAMPLE.COM", &["ada"]),
        (r#"name:"Ada Lovelace""#, &["ada"]),
        ("name:*Johnson", &["carol"]),
        ("name:bob*", &["bob"]),
        ("name:c*l*son", &["carol"]),
        ("username:bob*", &["bob"]),
        ("email:*@example.org", &["carol"]),
        (r#"name:"Ada*""#, &[]),
        ("given_name:Ada AND family_name:Lovelace", &["ada"]),
        (
            r#"name:"Ada Lovelace" OR name:"Bob Stone""#,
            &["ada", "bob"],
        ),
        (r#"name:"Ada Lovelace" name:"Bob Stone""#, &["ada", "bob"]),
        ("NOT blocked:true", &["ada", "carol"]),
        ("-blocked:true AND email:*example.com", &["ada"]),
        ("blocked:true", &["bob"]),
        ("email_verified:true", &["ada"]),
        ("email_verified:false", &["bob", "carol"]),
        ("identities.provider:github", &["carol"]),
        ("identities.connection:google-oauth2", &["bob"]),
        ("identities.user_id:g-77", &["bob"]),
        ("identities.user_id:4242", &["carol"]),
        ("identities.isSocial:true", &["bob", "carol"]),
        (r#"user_id:"github|4242""#, &["carol"]),
        ("user_metadata.plan:pro", &["ada"]),
        ("user_metadata.plan:*re*", &["bob"]),
        ("user_metadata.score:10", &["ada"]),
        ("user_metadata.beta:true", &["ada"]),
        ("app_metadata.tier:gold", &["ada"]),
        ("_exists_:app_metadata.tier", &["ada"]),
        ("_exists_:user_metadata.plan", &["ada", "bob"]),
        ("NOT _exists_:user_metadata.plan", &["carol"]),
        ("_exists_:last_login", &["ada"]),
        ("_exists_:blocked", &["bob"]),
        ("logins_count:[1 TO *]", &["ada"]),
        ("logins_count:{0 TO 5}", &["ada"]),
        ("logins_count:[0 TO 0]", &["bob", "carol"]),
        (&after_ada, &["bob", "carol"]),
        (&from_ada, &["ada", "bob", "carol"]),
        (
            "updated_at:[2000-01-01 TO 2999-12-31]",
            &["ada", "bob", "carol"],
        ),
        ("created_at:[2000-01-01 TO 2000-12-31T23:59:59Z]", &[]),
        (
            "(name:bob* OR name:carol*) AND NOT identities.provider:github",
            &["bob"],
        ),
    ];
    for (q, expected) in table {
        assert_eq!(world.found(q).await, names(expected), "q = {q}");
    }
    // Without search_engine (terraform-provider-auth0 sends none) and with totals.
    let reply = world
        .api
        .get(&format!(
            "/api/v2/users?include_totals=true&q={}",
            enc("username:bobby")
        ))
        .await;
    assert_eq!(reply.body["total"], 1, "{}", reply.body);
    assert_eq!(reply.body["users"][0]["user_id"], json!(world.ids[1].1));
}

#[tokio::test]
async fn injection_attempts_find_nothing_or_are_refused() {
    let world = world().await;
    let found_nothing = [
        r#"name:"x' OR '1'='1""#,
        r#"name:"%""#,
        "name:*%*",
        "name:_*",
        r#"user_metadata.plan:"pro' OR 1=1 --""#,
        r#"identities.user_id:"1' OR '1'='1""#,
        r#"email:"a@b.c'); DROP TABLE users; --""#,
    ];
    for q in found_nothing {
        assert_eq!(world.found(q).await, names(&[]), "q = {q}");
    }
    let refused = [
        "q=user_metadata.a')%3BDROP:1".to_owned(),
        format!("q={}", enc("name:x'--")),
        format!("q={}", enc(r#"user_metadata.x"y:1"#)),
        format!("q={}", enc("logins_count:[0 TO 1);DROP TABLE users]")),
        format!("q={}", enc("created_at:[2020-01-01' TO *]")),
        format!("sort={}", enc("name;DROP TABLE users:1")),
        format!("sort={}", enc("name:1; DROP TABLE users")),
    ];
    for query in &refused {
        world
            .api
            .get(&format!("/api/v2/users?{query}"))
            .await
            .assert_error(400, "invalid_query_string");
    }
    // `fields` only ever selects keys of the answer.
    let reply = world
        .api
        .get(&format!(
            "/api/v2/users?fields={}",
            enc("user_id) FROM users;--")
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(world.found("").await, names(&["ada", "bob", "carol"]));
}

#[tokio::test]
async fn unsupported_syntax_is_a_clear_400() {
    let world = world().await;
    for q in [
        "password:x",
        "hello",
        "name:/a.*/",
        "name:a^2",
        r#"name:"a b"~2"#,
        "blocked:maybe",
        "logins_count:[a TO b]",
        "name:[a TO b]",
        r#"email:"open"#,
        "name:a)",
    ] {
        let reply = world.api.get(&format!("/api/v2/users?q={}", enc(q))).await;
        reply.assert_error(400, "invalid_query_string");
        assert!(
            reply.body["message"]
                .as_str()
                .unwrap()
                .starts_with("Query validation error"),
            "{q}: {}",
            reply.body
        );
    }
    world
        .api
        .get("/api/v2/users?q=name:a&search_engine=v2")
        .await
        .assert_error(400, "invalid_query_string");
}

#[tokio::test]
async fn sort_and_fields_shape_the_answers() {
    let world = world().await;
    let order = |body: Value| -> Vec<&'static str> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|u| world.name_of(u["user_id"].as_str().unwrap()))
            .collect()
    };
    let ascending = world.api.get("/api/v2/users?sort=name:1").await.body;
    assert_eq!(order(ascending), ["ada", "bob", "carol"]);
    let descending = world.api.get("/api/v2/users?sort=name:-1").await.body;
    assert_eq!(order(descending), ["carol", "bob", "ada"]);
    let by_logins = world
        .api
        .get("/api/v2/users?sort=logins_count:-1")
        .await
        .body;
    assert_eq!(order(by_logins)[0], "ada");

    let keys = |value: &Value| -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    };
    let only = world
        .api
        .get("/api/v2/users?fields=user_id,email&include_fields=true")
        .await
        .body;
    for user in only.as_array().unwrap() {
        assert_eq!(
            keys(user),
            ["email", "user_id"].map(String::from).into_iter().collect()
        );
    }
    let ada = &world.ids[0].1;
    let without = world
        .api
        .get(&format!(
            "/api/v2/users/{}?fields=identities,user_metadata&include_fields=false",
            enc(ada)
        ))
        .await
        .body;
    assert!(without.get("identities").is_none() && without.get("user_metadata").is_none());
    assert_eq!(without["name"], "Ada Lovelace");
    let by_email = world
        .api
        .get("/api/v2/users-by-email?email=ADA%40example.com&fields=email")
        .await
        .body;
    assert_eq!(by_email, json!([{"email": "Ada@Example.com"}]));
}
