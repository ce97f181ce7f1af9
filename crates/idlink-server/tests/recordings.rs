//! Replays the traffic recorded against live Auth0 tenants (`tests/recordings/`, a
//! verbatim copy of `shared/reference/auth0-recordings/`) against idlink and compares the
//! answers structurally: the same status and `Content-Type`, the same key set at every
//! level, the same JSON value types, and the same values wherever a rule defines them —
//! ids (after mapping the recorded ones onto the ones idlink made), emails, names, the
//! invented gravatar picture, flags, metadata, counts, and so the identity order. Only
//! timestamps (`created_at`, `updated_at`, `last_login`, `last_password_reset`) and the
//! recording tenant's own configuration ([`TENANT_CONFIGURATION`]) are compared by type.
//!
//! Runs on the backend `IDLINK_TEST_BACKEND` names, like every end-to-end test.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{Api, DB};
use idlink_server::config::{ClientConfig, ConnectionConfig};
use idlink_server::domain::password::PasswordPolicy;
use idlink_server::testing::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

/// Keys whose values are moments: compared by type only.
const TIMESTAMPS: &[&str] = &[
    "created_at",
    "updated_at",
    "last_login",
    "last_password_reset",
];

/// Paths holding the recording tenant's configuration rather than Auth0's behaviour:
/// its dashboard's connection options (idlink shows only the options it enforces, see
/// `docs/auth0-compatibility.md`) and its applications. Compared as "an object" and "an
/// array of strings".
const TENANT_CONFIGURATION: &[&str] =
    &["$.connections[].options", "$.connections[].enabled_clients"];

/// Recordings whose recorder re-serialised the answer through a typed struct, dropping
/// keys it did not know and empty ones (see the file's `_source.authority`): there, the
/// recorded keys must be present with their types, and extra keys are allowed; values
/// are not compared (the recorder replaced them).
const REDUCED_BY_THE_RECORDER: &[&str] = &["go-auth0_oauth-token.json"];

/// Reference material, not recordings (see the folder's README).
const NOT_RECORDINGS: &[&str] = &["generated-sdk-mocks.json"];

/// The public client the password-grant recording used (its id was redacted to this).
const RECORDED_CLIENT_ID: &str = "test-client_id";

fn vendored_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recordings")
}

fn recording_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(vendored_dir())
        .expect("tests/recordings")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .filter(|path| !NOT_RECORDINGS.contains(&file_name(path)))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

/// The vendored copy is the shared reference, byte for byte, wherever the reference is
/// beside the repository (a fresh clone may not have it: then there is nothing to check).
#[test]
fn vendored_recordings_equal_the_shared_reference() {
    let shared =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/auth0-recordings");
    let Ok(entries) = std::fs::read_dir(&shared) else {
        eprintln!("{} not found: nothing to compare", shared.display());
        return;
    };
    let mut names = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        let name = file_name(&path).to_owned();
        let vendored = std::fs::read(vendored_dir().join(&name))
            .unwrap_or_else(|_| panic!("{name} is not vendored in tests/recordings"));
        assert_eq!(
            vendored,
            std::fs::read(&path).unwrap(),
            "{name} differs from the shared reference"
        );
        names.push(name);
    }
    let vendored = std::fs::read_dir(vendored_dir()).unwrap().count();
    assert_eq!(vendored, names.len(), "tests/recordings has extra files");
}

/// One recorded exchange.
struct Interaction<'a> {
    raw: &'a Value,
}

impl Interaction<'_> {
    fn str(&self, key: &str) -> &str {
        self.raw[key].as_str().unwrap_or_default()
    }

    fn response_content_type(&self) -> Option<&str> {
        self.raw["response_content_type"]
            .as_str()
            .or_else(|| self.raw["response_headers"]["Content-Type"].as_str())
    }

    fn label(&self, recording: &str) -> String {
        format!(
            "{recording} #{} {} {}",
            self.raw["id"],
            self.str("method"),
            self.str("url")
        )
    }
}

/// Recorded ids and names mapped onto the ones this idlink made or uses.
#[derive(Default)]
struct Substitutions(BTreeMap<String, String>);

impl Substitutions {
    fn add(&mut self, recorded: &str, actual: &str) {
        if !recorded.is_empty() && recorded != actual {
            self.0.insert(recorded.to_owned(), actual.to_owned());
        }
    }

    fn apply(&self, text: &str) -> String {
        // Longest first, so an id is never replaced inside a longer one.
        let mut pairs: Vec<_> = self.0.iter().collect();
        pairs.sort_by_key(|(recorded, _)| std::cmp::Reverse(recorded.len()));
        pairs
            .into_iter()
            .fold(text.to_owned(), |text, (recorded, actual)| {
                text.replace(recorded.as_str(), actual)
            })
    }

    /// Learns the ids a recorded answer named from the answer idlink gave to the same
    /// request: created users' identity ids and the connections' `con_…` ids.
    fn learn(&mut self, recorded: &Value, actual: &Value) {
        let identity_id = |user: &Value| user["identities"][0]["user_id"].clone();
        if let (Value::String(r), Value::String(a)) = (identity_id(recorded), identity_id(actual)) {
            self.add(&r, &a);
        }
        if let (Some(recorded), Some(actual)) = (
            recorded["connections"].as_array(),
            actual["connections"].as_array(),
        ) {
            for connection in recorded {
                let twin = actual.iter().find(|c| c["name"] == connection["name"]);
                if let (Some(r), Some(a)) = (
                    connection["id"].as_str(),
                    twin.and_then(|c| c["id"].as_str()),
                ) {
                    self.add(r, a);
                }
            }
        }
    }
}

/// How a path of the answer is compared.
fn is_tenant_configuration(path: &str) -> bool {
    TENANT_CONFIGURATION.contains(&path)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Compares `actual` with `recorded` at `path`, pushing every difference.
fn compare(
    path: &str,
    recorded: &Value,
    actual: &Value,
    subs: &Substitutions,
    reduced: bool,
    diffs: &mut Vec<String>,
) {
    if type_name(recorded) != type_name(actual) {
        diffs.push(format!(
            "{path}: recorded a {} ({recorded}), idlink a {} ({actual})",
            type_name(recorded),
            type_name(actual)
        ));
        return;
    }
    let key = path.rsplit('.').next().unwrap_or_default();
    if is_tenant_configuration(path) {
        if let (Value::Array(r), Value::Array(a)) = (recorded, actual) {
            let types = |items: &Vec<Value>| {
                items
                    .iter()
                    .map(type_name)
                    .collect::<std::collections::BTreeSet<_>>()
            };
            if !types(a).is_subset(&types(r)) {
                diffs.push(format!("{path}: element types differ"));
            }
        }
        return;
    }
    match (recorded, actual) {
        (Value::Object(r), Value::Object(a)) => {
            let missing: Vec<_> = r.keys().filter(|k| !a.contains_key(*k)).collect();
            let extra: Vec<_> = a.keys().filter(|k| !r.contains_key(*k)).collect();
            if !missing.is_empty() {
                diffs.push(format!(
                    "{path}: keys missing from idlink's answer: {missing:?}"
                ));
            }
            if !extra.is_empty() && !reduced {
                diffs.push(format!("{path}: keys Auth0 did not send: {extra:?}"));
            }
            for (k, r) in r {
                if let Some(a) = a.get(k) {
                    compare(&format!("{path}.{k}"), r, a, subs, reduced, diffs);
                }
            }
        }
        (Value::Array(r), Value::Array(a)) => {
            if r.len() != a.len() {
                diffs.push(format!(
                    "{path}: recorded {} items, idlink {}",
                    r.len(),
                    a.len()
                ));
                return;
            }
            for (r, a) in r.iter().zip(a) {
                compare(&format!("{path}[]"), r, a, subs, reduced, diffs);
            }
        }
        _ if TIMESTAMPS.contains(&key) => {}
        // The recorder replaced values (tokens, client ids): only keys and types count.
        _ if reduced => {}
        (Value::String(r), Value::String(a)) => {
            if subs.apply(r) != *a {
                diffs.push(format!("{path}: recorded {r:?}, idlink {a:?}"));
            }
        }
        (r, a) => {
            if r != a {
                diffs.push(format!("{path}: recorded {r}, idlink {a}"));
            }
        }
    }
}

/// The part of a body a `compare_path` hint names (`$.identities[0]`-style paths).
fn select<'v>(body: &'v Value, path: &str) -> &'v Value {
    let mut value = body;
    for part in path.trim_start_matches("$.").split('.') {
        let (key, index) = match part.split_once('[') {
            Some((key, index)) => (key, index.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        value = &value[key];
        if let Some(index) = index {
            value = &value[index];
        }
    }
    value
}

/// A request to send as recorded, and its URL with idlink's host and ids.
fn request_for(
    api: &Api,
    interaction: &Interaction<'_>,
    subs: &Substitutions,
) -> reqwest::RequestBuilder {
    let url = interaction.str("url");
    let path_and_query = url
        .find("://")
        .and_then(|scheme_end| url[scheme_end + 3..].find('/').map(|i| scheme_end + 3 + i))
        .map_or(url, |start| &url[start..]);
    let method = Method::from_bytes(interaction.str("method").as_bytes()).unwrap();
    let mut request = api
        .http
        .request(method, api.url(&subs.apply(path_and_query)));
    if path_and_query.starts_with("/api/v2/") {
        request = request.bearer_auth(&api.token);
    }
    let body = interaction.str("request_body");
    if !body.is_empty() {
        let content_type = interaction.raw["request_content_type"]
            .as_str()
            .unwrap_or("application/json");
        request = request
            .header("content-type", content_type)
            .body(subs.apply(body));
    }
    request
}

/// What a recording needs that happened before its first request (a user to sign in,
/// the client it used), and the recorded stand-ins it maps.
async fn prepare(api: &Api, file: &str, recording: &str, subs: &mut Substitutions) {
    if file != "go-auth0_oauth-token.json" {
        return;
    }
    subs.add("test-audience", &url_encode(&api.server.audience()));
    if recording.starts_with("TestLoginWithClientCredentials") {
        subs.add(RECORDED_CLIENT_ID, &api.server.admin_client_id);
        subs.add("test-client_secret", &api.server.admin_client_secret);
    } else {
        let created = api
            .post(
                "/api/v2/users",
                json!({"connection": DB, "email": "test-user@example.com", "username": "test-user", "password": "Testpassword123!"}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
    }
}

fn url_encode(value: &str) -> String {
    serde_urlencoded::to_string([("v", value)]).unwrap()[2..].to_owned()
}

/// A server for a recording: the password-grant one needs the public client it used.
async fn server_for(file: &str) -> Api {
    let server = if file == "go-auth0_oauth-token.json" {
        TestServer::start_with(|config| {
            config.tenant.clients.push(ClientConfig {
                name: "recorded public client".into(),
                client_id: RECORDED_CLIENT_ID.into(),
                client_secret: None,
                grant_types: vec!["password".into()],
                scopes: Vec::new(),
                ..Default::default()
            });
        })
        .await
    } else if file == "ruby-auth0_2019-06_vcr4.json" {
        // That tenant accepted "KkScYmWePz" (letters only) for a new database user, so
        // its connection's password policy was `low` or weaker, not today's `good`.
        TestServer::start_with(|config| {
            config.tenant.connections.push(ConnectionConfig {
                name: DB.into(),
                strategy: "auth0".into(),
                password_policy: Some(PasswordPolicy::Low),
                ..Default::default()
            });
        })
        .await
    } else {
        TestServer::start().await
    };
    Api::with_server(server).await
}

async fn replay_file(path: &Path) -> Vec<String> {
    let file = file_name(path);
    let document: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let reduced = REDUCED_BY_THE_RECORDER.contains(&file);
    let mut diffs = Vec::new();
    for recording in document["recordings"].as_array().unwrap() {
        let name = format!("{file} {}", recording["name"].as_str().unwrap_or_default());
        let api = server_for(file).await;
        let mut subs = Substitutions::default();
        prepare(
            &api,
            file,
            recording["name"].as_str().unwrap_or_default(),
            &mut subs,
        )
        .await;
        for raw in recording["interactions"].as_array().unwrap() {
            let interaction = Interaction { raw };
            let label = interaction.label(&name);
            let response = request_for(&api, &interaction, &subs).send().await.unwrap();
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = response.text().await.unwrap();
            if status != raw["status"].as_u64().unwrap_or_default() as u16 {
                diffs.push(format!(
                    "{label}: recorded status {}, idlink {status}: {text}",
                    raw["status"]
                ));
                continue;
            }
            if raw["compare"] == "status-only" {
                continue;
            }
            if let Some(recorded) = interaction.response_content_type() {
                if content_type.as_deref() != Some(recorded) {
                    diffs.push(format!(
                        "{label}: recorded Content-Type {recorded:?}, idlink {content_type:?}"
                    ));
                }
            }
            let recorded_text = interaction.str("response_body");
            if recorded_text.is_empty() {
                if !text.is_empty() {
                    diffs.push(format!("{label}: recorded no body, idlink {text}"));
                }
                continue;
            }
            let recorded: Value = serde_json::from_str(recorded_text).unwrap();
            let Ok(actual) = serde_json::from_str::<Value>(&text) else {
                diffs.push(format!("{label}: idlink's answer is not JSON: {text}"));
                continue;
            };
            subs.learn(&recorded, &actual);
            let (recorded, actual) = match raw["compare_path"].as_str() {
                Some(path) => (select(&recorded, path), select(&actual, path)),
                None => (&recorded, &actual),
            };
            let mut found = Vec::new();
            compare("$", recorded, actual, &subs, reduced, &mut found);
            diffs.extend(found.into_iter().map(|d| format!("{label}: {d}")));
        }
    }
    diffs
}

/// Every recorded exchange, answered as recorded.
#[tokio::test]
async fn every_recorded_exchange_is_answered_as_recorded() {
    let files = recording_files();
    assert!(files.len() >= 7, "recordings missing: {files:?}");
    let mut diffs = Vec::new();
    let mut exchanges = 0;
    for path in &files {
        let document: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        exchanges += document["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["interactions"].as_array().unwrap().len())
            .sum::<usize>();
        diffs.extend(replay_file(path).await);
    }
    assert!(
        diffs.is_empty(),
        "{} of {exchanges} recorded exchanges differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// The comparison itself catches what it must: a missing key, an extra key, a type, a
/// value, an identity order.
#[test]
fn the_comparison_catches_differences() {
    let subs = Substitutions::default();
    let recorded = json!({"identities": [{"provider": "auth0", "user_id": "a"}, {"provider": "github", "user_id": 1}], "updated_at": "t"});
    let check = |actual: Value| {
        let mut diffs = Vec::new();
        compare("$", &recorded, &actual, &subs, false, &mut diffs);
        diffs
    };
    assert!(check(recorded.clone()).is_empty());
    assert!(check(json!({"identities": [{"provider": "auth0", "user_id": "a"}, {"provider": "github", "user_id": 1}], "updated_at": "later"})).is_empty(), "timestamps by type");
    assert_eq!(check(json!({"identities": [{"provider": "github", "user_id": 1}, {"provider": "auth0", "user_id": "a"}], "updated_at": "t"})).len(), 4, "order");
    assert_eq!(check(json!({"identities": [{"provider": "auth0", "user_id": "a"}, {"provider": "github", "user_id": "1"}], "updated_at": "t"})).len(), 1, "type");
    assert_eq!(check(json!({"identities": [{"provider": "auth0", "user_id": "a", "profileData": {}}, {"provider": "github", "user_id": 1}], "updated_at": "t"})).len(), 1, "extra key");
    assert_eq!(check(json!({"identities": [{"provider": "auth0", "user_id": "a"}, {"provider": "github", "user_id": 1}]})).len(), 1, "missing key");
}
