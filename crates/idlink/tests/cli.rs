//! The operator CLI end to end: the real `idlink` binary against a real in-process
//! server (SQLite, or PostgreSQL with `IDLINK_TEST_BACKEND=postgres`), over HTTP.

mod cli_support;

use cli_support::*;
use idlink_server::config::ClientConfig;
use idlink_server::testing::{TEST_ADMIN_CLIENT_ID, TEST_ADMIN_CLIENT_SECRET, TestServer};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_search_link_unlink_logs_delete() {
    let server = TestServer::start().await;

    let created = create(
        &server,
        &[
            "--field",
            "connection=Username-Password-Authentication",
            "--field",
            "email=ada@example.com",
            "--field",
            "password=correct horse battery staple 9",
            "--field",
            "email_verified:=true",
            "--field",
            "user_metadata.plan=pro",
        ],
    )
    .await;
    let primary = created["user_id"].as_str().expect("user_id").to_owned();
    assert!(primary.starts_with("auth0|"), "{created}");
    assert_eq!(created["email"], "ada@example.com");
    assert_eq!(created["user_metadata"]["plan"], "pro");

    let github = create(
        &server,
        &[
            "--body",
            r#"{"connection":"github","user_id":"583231","email":"ada@example.com"}"#,
        ],
    )
    .await;
    assert_eq!(github["user_id"], "github|583231");

    let got = json(&idlink(&server, &["users", "get", &primary, "--json"]).await);
    assert_eq!(got["user_id"], primary);
    assert_eq!(got["email_verified"], true);

    // The table for people: the header and the user's row.
    let table = idlink(&server, &["users", "get", &primary]).await;
    assert_exit(&table, 0);
    let text = stdout(&table);
    assert!(text.contains("user_id") && text.contains("email"), "{text}");
    let row = text
        .lines()
        .find(|line| line.contains(&primary))
        .unwrap_or_else(|| panic!("no row for {primary}: {text}"));
    assert!(row.contains("ada@example.com"), "{row}");

    let found = json(
        &idlink(
            &server,
            &["users", "search", r#"email:"ada@example.com""#, "--json"],
        )
        .await,
    );
    let ids: Vec<&str> = found
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|u| u["user_id"].as_str())
        .collect();
    assert!(ids.contains(&primary.as_str()), "{found}");
    assert!(ids.contains(&"github|583231"), "{found}");

    let listed = idlink(&server, &["users", "list", "--ndjson"]).await;
    assert_exit(&listed, 0);
    assert_eq!(stdout(&listed).lines().count(), 2, "{}", stdout(&listed));
    for line in stdout(&listed).lines() {
        serde_json::from_str::<Value>(line).expect("one JSON document a line");
    }

    let linked = json(&idlink(&server, &["link", &primary, "github", "583231", "--json"]).await);
    let providers: Vec<&str> = linked
        .as_array()
        .expect("identities")
        .iter()
        .filter_map(|i| i["provider"].as_str())
        .collect();
    assert_eq!(providers, ["auth0", "github"], "{linked}");
    let gone = idlink(&server, &["users", "get", "github|583231"]).await;
    assert_exit(&gone, 3);

    let remaining =
        json(&idlink(&server, &["unlink", &primary, "github", "583231", "--json"]).await);
    assert_eq!(
        remaining.as_array().expect("identities").len(),
        1,
        "{remaining}"
    );
    json(&idlink(&server, &["users", "get", "github|583231", "--json"]).await);

    let logs = idlink(&server, &["logs", "--user", &primary, "--ndjson"]).await;
    assert_exit(&logs, 0);
    let descriptions: Vec<String> = stdout(&logs)
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("NDJSON");
            event["description"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert!(
        descriptions.iter().any(|d| d.starts_with("Link")),
        "{descriptions:?}"
    );
    assert!(
        descriptions.iter().any(|d| d.starts_with("Unlink")),
        "{descriptions:?}"
    );
    let table = idlink(&server, &["logs"]).await;
    assert_exit(&table, 0);
    assert!(
        stdout(&table).contains("Unlink a User Identity"),
        "{}",
        stdout(&table)
    );

    let deleted = idlink(&server, &["users", "delete", &primary, "github|583231"]).await;
    assert_exit(&deleted, 0);
    assert!(stdout(&deleted).contains(&format!("deleted {primary}")));
    let missing = idlink(&server, &["users", "get", &primary]).await;
    assert_exit(&missing, 3);
    assert!(stderr(&missing).contains("404"), "{}", stderr(&missing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_merges_fields_and_refuses_unknown_ones() {
    let server = TestServer::start().await;
    let created = create(
        &server,
        &[
            "-f",
            "connection=Username-Password-Authentication",
            "-f",
            "email=b@example.com",
            "-f",
            "password=correct horse battery staple 9",
        ],
    )
    .await;
    let id = created["user_id"].as_str().expect("user_id");
    let updated = json(
        &idlink(
            &server,
            &[
                "users",
                "update",
                id,
                "--json",
                "-f",
                "name=Bea",
                "-f",
                "blocked:=true",
            ],
        )
        .await,
    );
    assert_eq!(updated["name"], "Bea");
    assert_eq!(updated["blocked"], true);

    let typo = idlink(&server, &["users", "update", id, "-f", "nmae=Bea"]).await;
    assert_exit(&typo, 2);
    assert!(stderr(&typo).contains("nmae"), "{}", stderr(&typo));
    let unchanged = json(&idlink(&server, &["users", "get", id, "--json"]).await);
    assert_eq!(unchanged["name"], "Bea");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_tell_usage_api_transport_and_partial_failures_apart() {
    let server = TestServer::start_with(|config| {
        config.tenant.clients.push(ClientConfig {
            name: "reader".into(),
            client_id: "reader-client".into(),
            client_secret: Some("reader-secret-0123456789abcdef0123456789".into()),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["read:users".into()],
            ..Default::default()
        });
    })
    .await;

    // Usage: clap's own errors, and a missing target.
    assert_exit(
        &idlink(&server, &["users", "list", "--no-such-flag"]).await,
        2,
    );
    assert_exit(&idlink_env(&["users", "frobnicate"], &[]).await, 2);
    let untargeted = idlink_env(&["users", "list"], &[]).await;
    assert_exit(&untargeted, 2);
    assert!(
        stderr(&untargeted).contains("--url"),
        "{}",
        stderr(&untargeted)
    );

    // API errors: the status, the errorCode and the message on stderr.
    let not_found = idlink(&server, &["users", "get", "auth0|nobody"]).await;
    assert_exit(&not_found, 3);
    assert!(
        stderr(&not_found).contains("404 inexistent_user"),
        "{}",
        stderr(&not_found)
    );
    let reader = [
        "--url",
        &server.base_url,
        "--client-id",
        "reader-client",
        "--client-secret",
        "reader-secret-0123456789abcdef0123456789",
    ];
    let mut args = vec!["logs"];
    args.extend(reader);
    let forbidden = idlink_env(&args, &[]).await;
    assert_exit(&forbidden, 3);
    assert!(
        stderr(&forbidden).contains("403 insufficient_scope"),
        "{}",
        stderr(&forbidden)
    );
    let mut args = vec!["users", "list", "--json"];
    args.extend(reader);
    assert_eq!(json(&idlink_env(&args, &[]).await), serde_json::json!([]));

    // Transport: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let unreachable = idlink_env(
        &[
            "users",
            "list",
            "--url",
            &dead,
            "--client-id",
            "x",
            "--client-secret",
            "y",
        ],
        &[],
    )
    .await;
    assert_exit(&unreachable, 1);

    // Partial: one of two deletions fails (an empty id: no such route).
    let created = create(
        &server,
        &["--body", r#"{"connection":"github","user_id":"1"}"#],
    )
    .await;
    assert_eq!(created["user_id"], "github|1");
    let partial = idlink(&server, &["users", "delete", "github|1", ""]).await;
    assert_exit(&partial, 4);
    assert!(
        stderr(&partial).contains(r#""": API error 404"#),
        "{}",
        stderr(&partial)
    );
    assert!(
        stderr(&partial).contains("1 of 2 failed"),
        "{}",
        stderr(&partial)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_come_from_idlink_or_auth0_environment_variables() {
    let server = TestServer::start().await;
    let idlink_vars = [
        ("IDLINK_URL", server.base_url.as_str()),
        ("IDLINK_CLIENT_ID", TEST_ADMIN_CLIENT_ID),
        ("IDLINK_CLIENT_SECRET", TEST_ADMIN_CLIENT_SECRET),
    ];
    assert_eq!(
        json(&idlink_env(&["users", "list", "--json"], &idlink_vars).await),
        serde_json::json!([])
    );

    // Auth0's names, as the Auth0 tools read them; a domain with a scheme keeps it.
    let auth0_vars = [
        ("AUTH0_DOMAIN", server.base_url.as_str()),
        ("AUTH0_CLIENT_ID", TEST_ADMIN_CLIENT_ID),
        ("AUTH0_CLIENT_SECRET", TEST_ADMIN_CLIENT_SECRET),
    ];
    assert_eq!(
        json(&idlink_env(&["users", "list", "--json"], &auth0_vars).await),
        serde_json::json!([])
    );

    // A flag beats the environment: a wrong secret in the flag fails the token call.
    let overridden = idlink_env(&["users", "list", "--client-secret", "wrong"], &idlink_vars).await;
    assert_exit(&overridden, 3);
    assert!(
        stderr(&overridden).contains("401"),
        "{}",
        stderr(&overridden)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_help() {
    let bash = idlink_env(&["completions", "bash"], &[]).await;
    assert_exit(&bash, 0);
    assert!(stdout(&bash).contains("idlink"), "{}", stdout(&bash));
    let help = idlink_env(&["--help"], &[]).await;
    assert_exit(&help, 0);
    let text = stdout(&help);
    for needle in [
        "users",
        "link",
        "unlink",
        "logs",
        "serve",
        "Exit codes",
        "partial failure",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}
