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
