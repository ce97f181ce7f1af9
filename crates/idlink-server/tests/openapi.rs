//! `/api/v2/openapi.json` describes exactly what the router serves: every `.route(…)` in
//! `src/http` is in the document with each of its methods, every documented operation
//! is served (not the fallback 404/405), and the documented limits are the enforced ones.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Api;
use idlink_server::domain::users::FIELD_LIMITS;
use reqwest::Method;
use serde_json::Value;

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete", "head", "options"];

/// `(path, methods)` of every `.route("…", …)` call in the HTTP sources.
fn routes_in_source() -> Vec<(String, BTreeSet<String>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
    let mut routes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let mut rest = source.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let call = &rest[..call_length(rest)];
            let Some(start) = call.find('"') else {
                continue;
            };
            let end = start + 1 + call[start + 1..].find('"').unwrap();
            let route = call[start + 1..end].to_owned();
            let methods: BTreeSet<String> = METHODS
                .iter()
                .filter(|m| {
                    call.match_indices(&format!("{m}(")).any(|(i, _)| {
                        i == 0
                            || !call.as_bytes()[i - 1].is_ascii_alphanumeric()
                                && call.as_bytes()[i - 1] != b'_'
                    })
                })
                .map(|m| (*m).to_owned())
                .collect();
            assert!(
                !methods.is_empty(),
                "{}: {route}: no method",
                path.display()
            );
            routes.push((route, methods));
        }
    }
    assert!(routes.len() >= 10, "found only {routes:?}");
    routes
}

/// Length of a call's argument list (up to its closing parenthesis).
fn call_length(s: &str) -> usize {
    let mut depth = 1;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    s.len()
}

async fn document(api: &Api) -> Value {
    let response = api
        .http
        .get(api.url("/api/v2/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    response.json().await.unwrap()
}

fn operations(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .cloned()
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_is_served() {
    let api = Api::start().await;
    let doc = document(&api).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let documented = operations(&doc);

    // Router → document.
    for (route, methods) in routes_in_source() {
        let full = [
            route.clone(),
            format!("/api/v2{route}"),
            format!("/idlink/v1{route}"),
        ];
        let Some(documented_methods) = full.iter().find_map(|p| documented.get(p)) else {
            panic!("route {route} is not in the OpenAPI document");
        };
        for method in methods {
            assert!(
                documented_methods.contains(&method),
                "{method} {route} is not in the OpenAPI document"
            );
        }
    }

    // Document → router: each operation reaches a handler (anything but the fallback).
    for (path, methods) in &documented {
        let concrete = path
            .replace("{id}", "auth0%7Cnobody")
            .replace("{provider}", "github")
            .replace("{user_id}", "1");
        for method in methods {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let reply = api.send(method.clone(), &concrete, None).await;
            let fallback = reply.status == 405
                || (reply.status == 404 && reply.body.get("errorCode").is_none());
            assert!(
                !fallback,
                "{method} {path} is documented but not served: {}",
                reply.body
            );
        }
    }
}

#[tokio::test]
async fn operations_state_bodies_errors_and_scopes() {
    let api = Api::start().await;
    let doc = document(&api).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path}: no success response"
            );
            let management = path.starts_with("/api/v2/") && path != "/api/v2/openapi.json";
            if management {
                let security = op["security"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path}: no security"));
                assert!(
                    security.iter().all(|s| s["bearer"]
                        .as_array()
                        .is_some_and(|scopes| !scopes.is_empty())),
                    "{method} {path}: {security:?}"
                );
                for status in ["400", "401", "403", "429"] {
                    assert_eq!(
                        responses[status]["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
            if ["post", "patch"].contains(&method.as_str()) {
                // An import's file comes as multipart/form-data, as Auth0 takes it.
                let content = &op["requestBody"]["content"];
                assert!(
                    content["application/json"].is_object()
                        || content["multipart/form-data"].is_object(),
                    "{method} {path}: no JSON request body"
                );
            }
        }
    }
    // Path parameters are declared.
    let unlink = &doc["paths"]["/api/v2/users/{id}/identities/{provider}/{user_id}"]["delete"];
    let names: BTreeSet<&str> = unlink["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["id", "provider", "user_id"]));
}

#[tokio::test]
async fn documented_limits_are_the_enforced_ones() {
    let api = Api::start().await;
    let doc = document(&api).await;
    let schemas = &doc["components"]["schemas"];
    for schema in ["CreateUserRequestContent", "UpdateUserRequestContent"] {
        let properties = schemas[schema]["properties"].as_object().unwrap();
        for (field, max) in FIELD_LIMITS {
            if let Some(property) = properties.get(*field) {
                if property.get("type").is_some() {
                    assert_eq!(property["maxLength"], *max, "{schema}.{field}");
                }
            }
        }
    }
    let per_page = doc["paths"]["/api/v2/users"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "per_page")
        .unwrap()
        .clone();
    assert_eq!(per_page["schema"]["maximum"], 100);
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(target)) => out.push(target),
                    _ => refs(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
        _ => {}
    }
}

/// Regression: query parameters of a type of ours (`sort`) pointed at schemas the
/// document did not contain (schemathesis reported them unresolvable).
#[tokio::test]
async fn every_reference_resolves() {
    let api = Api::start().await;
    let doc = document(&api).await;
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20, "{all:?}");
    for target in all {
        let pointer = target.strip_prefix('#').expect("a local reference");
        assert!(
            doc.pointer(pointer).is_some(),
            "unresolvable reference {target}"
        );
    }
}
