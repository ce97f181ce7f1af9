//! The request log of a real `idlink serve`: one line per request by default, human or
//! JSON, and no secret or token in the output even at trace level.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{AUDIENCE, PUBLIC_URL, TEST_ADMIN_CLIENT_ID, TEST_ADMIN_CLIENT_SECRET};
use serde_json::{Value, json};

/// A running server whose stderr goes to a file, read after it is stopped.
struct Logged {
    child: Child,
    base_url: String,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    stderr: std::path::PathBuf,
}

impl Logged {
    fn spawn(dir: &Path, extra: &[&str], rust_log: Option<&str>) -> Self {
        let stderr = dir.join("stderr.log");
        let db = format!("sqlite://{}", dir.join("idlink.db").display());
        let mut command = Command::new(env!("CARGO_BIN_EXE_idlink"));
        command
            .args(["serve", "--bind", "127.0.0.1:0", "--db", &db])
            .args(["--public-url", PUBLIC_URL, "--rate-limit", "off"])
            .args(["--admin-client-id", TEST_ADMIN_CLIENT_ID])
            .args(["--admin-client-secret", TEST_ADMIN_CLIENT_SECRET])
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("IDLINK_CONFIG")
            .env_remove("IDLINK_LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let mut child = command.spawn().expect("spawn idlink");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let base_url = loop {
            let line = lines
                .next()
                .expect("idlink exited before listening")
                .unwrap();
            stdout.lock().unwrap().push_str(&line);
            if let Some(rest) = line.strip_prefix("idlink listening on ") {
                break format!("http://{}", rest.split_whitespace().next().unwrap());
            }
        };
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push_str(&line);
            }
        });
        Self {
            child,
            base_url,
            stdout,
            stderr,
        }
    }

    /// Stops the server; returns (stdout, stderr).
    fn stop(mut self) -> (String, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = std::fs::read_to_string(&self.stderr).unwrap();
        let stdout = self.stdout.lock().unwrap().clone();
        (stdout, stderr)
    }
}

async fn admin_token(http: &reqwest::Client, base: &str) -> String {
    let reply: Value = http
        .post(format!("{base}/oauth/token"))
        .json(&json!({
            "grant_type": "client_credentials",
            "client_id": TEST_ADMIN_CLIENT_ID,
            "client_secret": TEST_ADMIN_CLIENT_SECRET,
            "audience": AUDIENCE,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["access_token"].as_str().expect("a token").to_owned()
}

async fn list_users(http: &reqwest::Client, base: &str, token: &str, request_id: &str) {
    let response = http
        .get(format!("{base}/api/v2/users"))
        .bearer_auth(token)
        .header("x-request-id", request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], request_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_human_line_per_request_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let server = Logged::spawn(dir.path(), &[], None);
    let http = reqwest::Client::new();
    let token = admin_token(&http, &server.base_url).await;
    list_users(&http, &server.base_url, &token, "human-line-1").await;
    let (_, stderr) = server.stop();
    let line = stderr
        .lines()
        .find(|l| l.contains("request_id=human-line-1"))
        .unwrap_or_else(|| panic!("no line for the request in\n{stderr}"));
    for part in [
        "INFO",
        "idlink::request",
        "method=GET",
        "route=/api/v2/users ",
        "status=200",
        "duration_ms=",
        &format!("client_id={TEST_ADMIN_CLIENT_ID}"),
    ] {
        assert!(line.contains(part), "{part:?} missing from {line:?}");
    }
    assert!(
        !line.contains('\u{1b}'),
        "no colour codes when stderr is not a terminal"
    );
    // The token request has its line too, naming the client it asked for.
    assert!(
        stderr.lines().any(|l| l.contains("route=/oauth/token")
            && l.contains("status=200")
            && l.contains(&format!("client_id={TEST_ADMIN_CLIENT_ID}"))),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_for_log_shippers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Logged::spawn(dir.path(), &["--log-format", "json"], None);
    let http = reqwest::Client::new();
    let token = admin_token(&http, &server.base_url).await;
    list_users(&http, &server.base_url, &token, "json-line-1").await;
    let missing = http
        .get(format!("{}/api/v2/users/auth0%7Cnobody", server.base_url))
        .bearer_auth(&token)
        .header("x-request-id", "json-line-2")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let (_, stderr) = server.stop();
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} is not JSON")))
        .collect();
    let line = |id: &str| {
        lines
            .iter()
            .find(|l| l["request_id"] == id)
            .unwrap_or_else(|| panic!("no line for {id} in\n{stderr}"))
            .clone()
    };
    let ok = line("json-line-1");
    assert_eq!(ok["level"], "INFO");
    assert_eq!(ok["target"], "idlink::request");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["route"], "/api/v2/users");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["client_id"], TEST_ADMIN_CLIENT_ID);
    assert!(
        ok["duration_ms"].is_string() || ok["duration_ms"].is_number(),
        "{ok}"
    );
    assert!(ok["timestamp"].is_string(), "{ok}");
    let not_found = line("json-line-2");
    assert_eq!(
        not_found["route"], "/api/v2/users/{id}",
        "the template, not the id"
    );
    assert_eq!(not_found["status"], 404);
    assert_eq!(not_found["error_code"], "inexistent_user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_tokens_are_never_logged_even_at_trace() {
    let dir = tempfile::tempdir().unwrap();
    let server = Logged::spawn(dir.path(), &[], Some("trace"));
    let http = reqwest::Client::new();
    let base = server.base_url.clone();
    let token = admin_token(&http, &base).await;
    let password = "Sturdy-Log-Secret-Passphrase-7731";
    let created = http
        .post(format!("{base}/api/v2/users"))
        .bearer_auth(&token)
        .json(&json!({
            "connection": "Username-Password-Authentication",
            "email": "logged@example.com",
            "password": password,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // A form-encoded token request and HTTP Basic client authentication too.
    let form = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(TEST_ADMIN_CLIENT_ID, Some(TEST_ADMIN_CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials"), ("audience", AUDIENCE)])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let second_token = form.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    list_users(&http, &base, &second_token, "trace-1").await;
    let (stdout, stderr) = server.stop();
    assert!(
        stderr.contains("idlink::request"),
        "trace output was captured: {stderr}"
    );
    let signature = |jwt: &str| jwt.rsplit('.').next().unwrap().to_owned();
    for secret in [
        TEST_ADMIN_CLIENT_SECRET.to_owned(),
        password.to_owned(),
        token.clone(),
        signature(&token),
        signature(&second_token),
    ] {
        assert!(!stderr.contains(&secret), "{secret} logged:\n{stderr}");
        assert!(!stdout.contains(&secret), "{secret} printed:\n{stdout}");
    }
}
