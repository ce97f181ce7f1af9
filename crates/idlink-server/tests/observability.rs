//! Request ids on every answer and in the audit trail; `/metrics` on its own listener,
//! parsed as a scraper parses it, with counters that move when a link happens.

mod common;

use common::Api;
use idlink_server::ratelimit::RateLimit;
use idlink_server::testing::TestServer;
use reqwest::Method;
use serde_json::json;

fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (c == '-') && (c == '-' || c.is_ascii_hexdigit())
        })
}

async fn request_id_of(request: reqwest::RequestBuilder) -> (u16, Option<String>) {
    let response = request.send().await.expect("request");
    let id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), id)
}

#[tokio::test]
async fn request_ids_are_returned_on_every_answer() {
    let api = Api::start().await;
    let http = &api.http;
    let sent = "client-trace-42:7";
    // A success, a route that does not exist, a refused token, a refused media type.
    for (request, status) in [
        (
            http.get(api.url("/api/v2/users")).bearer_auth(&api.token),
            200,
        ),
        (http.get(api.url("/no/such/route")), 404),
        (
            http.get(api.url("/api/v2/users"))
                .bearer_auth("not-a-token"),
            401,
        ),
        (
            http.post(api.url("/api/v2/users"))
                .bearer_auth(&api.token)
                .header("content-type", "text/plain")
                .body("x"),
            415,
        ),
    ] {
        let (got_status, id) = request_id_of(request.header("x-request-id", sent)).await;
        assert_eq!(got_status, status);
        assert_eq!(id.as_deref(), Some(sent), "answer {status} keeps the id");
    }
    // None sent: one is generated, fresh for each request.
    let (_, first) = request_id_of(http.get(api.url("/health"))).await;
    let (_, second) = request_id_of(http.get(api.url("/health"))).await;
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(is_uuid(&first), "{first}");
    assert_ne!(first, second);
    // An id a log line should not carry (too long, odd characters) is replaced.
    for bad in ["x".repeat(129), "two words".to_owned(), "a\"b".to_owned()] {
        let (_, id) =
            request_id_of(http.get(api.url("/health")).header("x-request-id", &bad)).await;
        let id = id.unwrap();
        assert!(is_uuid(&id), "{bad:?} replaced by a generated id, got {id}");
    }
}

#[tokio::test]
async fn audit_events_carry_the_request_id() {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    api.social_user("github", json!(7), "gh@example.com").await;
    let link = |id: &'static str| {
        api.http
            .post(api.url(&format!(
                "/api/v2/users/{}/identities",
                common::enc(&primary)
            )))
            .bearer_auth(&api.token)
            .header("x-request-id", id)
            .json(&json!({"provider": "github", "user_id": 7}))
            .send()
    };
    assert_eq!(link("link-ok-1").await.unwrap().status(), 201);
    assert_eq!(link("link-again-2").await.unwrap().status(), 409);
    let events = api.get("/api/v2/logs").await.body;
    let ids: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"]["request"]["id"].as_str().unwrap_or("<none>"))
        .collect();
    assert_eq!(ids, ["link-again-2", "link-ok-1"], "{events}");
}

/// One sample of the exposition: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// A parsed exposition.
#[derive(Debug)]
struct Scrape(Vec<Sample>);

/// Parses the text format by its grammar (OpenMetrics / Prometheus 0.0.4): comment
/// lines, then `name{label="value",…} value` with `\\`, `\"` and `\n` escapes in
/// values. Panics on any line that does not follow it, so a malformed exposition fails
/// the test. (prometheus-parse was tried: it cuts label values at the first `}`, which
/// route templates such as `/api/v2/users/{id}` contain.)
fn parse_exposition(text: &str) -> Scrape {
    let mut samples = Vec::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.split(' ');
            match (words.next(), words.next()) {
                (Some("TYPE"), Some(name)) => {
                    typed.insert(name.to_owned());
                }
                (Some("HELP" | "UNIT"), Some(_)) | (Some("EOF"), None) => {}
                _ => panic!("unexpected comment line {line:?}"),
            }
            continue;
        }
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let (name, mut rest) = line.split_at(name_end);
        assert!(!name.is_empty(), "no metric name in {line:?}");
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            loop {
                if let Some(after) = rest.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let (key, after) = rest
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("label in {line:?}"));
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((i, '"')) => break i,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => value.push(c),
                            other => panic!("bad escape {other:?} in {line:?}"),
                        },
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated label value in {line:?}"),
                    }
                };
                labels.push((key.to_owned(), value));
                rest = &after[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let value = rest
            .strip_prefix(' ')
            .and_then(|v| v.split(' ').next())
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let family = ["_total", "_bucket", "_count", "_sum", "_created"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "{name} has no TYPE line");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Scrape(samples)
}

/// The sum of the samples `name` whose labels include `labels` (0 when absent: a
/// counter that never moved has no series yet).
fn sample(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .0
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(http: &reqwest::Client, url: &str) -> Scrape {
    let response = http.get(url).send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "complete exposition");
    parse_exposition(&text)
}

#[tokio::test]
async fn metrics_are_scraped_apart_and_move_after_a_link() {
    let server = TestServer::start_with(|c| c.metrics_bind = Some("127.0.0.1:0".into())).await;
    let api = Api::with_server(server).await;
    let metrics_url = api.server.metrics_url.clone().expect("metrics listener");
    // Not on the API port: that one answers as Auth0 does.
    let on_api_port = api.send_as(None, Method::GET, "/metrics", None).await;
    assert_eq!(on_api_port.status, 404, "{}", on_api_port.body);

    let primary = api.db_user("p@example.com").await;
    api.social_user("github", json!(7), "gh@example.com").await;
    let before = scrape(&api.http, &metrics_url).await;
    assert_eq!(
        api.link(&primary, json!({"provider": "github", "user_id": 7}))
            .await
            .status,
        201
    );
    let again = api
        .link(&primary, json!({"provider": "github", "user_id": 7}))
        .await;
    again.assert_error(409, "identity_conflict");
    let after = scrape(&api.http, &metrics_url).await;

    let moved = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    let link_route = [
        ("method", "POST"),
        ("route", "/api/v2/users/{id}/identities"),
    ];
    assert_eq!(
        moved(
            "idlink_identity_operations_total",
            &[("operation", "link"), ("outcome", "success")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "idlink_identity_operations_total",
            &[("operation", "link"), ("outcome", "identity_conflict")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "idlink_http_requests_total",
            &[link_route[0], link_route[1], ("status", "201")]
        ),
        1.0
    );
    assert_eq!(
        moved("idlink_http_request_duration_seconds_count", &link_route),
        2.0,
        "both link requests observed in the latency histogram"
    );
    assert!(
        sample(
            &after,
            "idlink_token_grants_total",
            &[("grant_type", "client_credentials"), ("outcome", "success")]
        ) >= 1.0
    );
    assert!(sample(&after, "idlink_db_pool_connections_max", &[]) >= 1.0);
    if api.server.database_url().starts_with("sqlite:") {
        assert!(
            moved("idlink_sqlite_group_commit_size_count", &[]) >= 1.0,
            "the link's write went through a group commit"
        );
    }
}

#[tokio::test]
async fn rate_limit_refusals_are_counted() {
    let server = TestServer::start_with(|c| {
        c.metrics_bind = Some("127.0.0.1:0".into());
        c.tenant.unauthenticated_rate_limit = Some(RateLimit::new(1, 0.001));
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v2/users", server.base_url);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 429);
    let scrape = scrape(&http, server.metrics_url.as_deref().unwrap()).await;
    assert_eq!(
        sample(
            &scrape,
            "idlink_rate_limit_refusals_total",
            &[("route", "/api/v2/users")]
        ),
        1.0
    );
}
