//! Running the real `idlink` binary against an in-process server, for the CLI tests.
#![allow(dead_code)]

use std::process::{Command, Output};

use idlink_server::testing::{TEST_ADMIN_CLIENT_ID, TEST_ADMIN_CLIENT_SECRET, TestServer};
use serde_json::Value;

/// Every variable the CLI reads, cleared so the caller's environment cannot leak in.
pub const TARGET_VARS: &[&str] = &[
    "IDLINK_URL",
    "IDLINK_CLIENT_ID",
    "IDLINK_CLIENT_SECRET",
    "AUTH0_DOMAIN",
    "AUTH0_CLIENT_ID",
    "AUTH0_CLIENT_SECRET",
];

/// `idlink ARGS` with `env` set (and nothing else of the target family).
pub async fn idlink_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_idlink"));
    command.args(args).env("RUST_LOG", "warn");
    for var in TARGET_VARS {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    // The server under test runs on this process's runtime: wait off its threads.
    tokio::task::spawn_blocking(move || command.output().expect("run idlink"))
        .await
        .expect("join")
}

/// `idlink ARGS --url SERVER --client-id ADMIN --client-secret …`.
pub async fn idlink(server: &TestServer, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend([
        "--url",
        &server.base_url,
        "--client-id",
        TEST_ADMIN_CLIENT_ID,
        "--client-secret",
        TEST_ADMIN_CLIENT_SECRET,
    ]);
    idlink_env(&all, &[]).await
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing both streams when it differs.
#[track_caller]
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

#[track_caller]
pub fn json(output: &Output) -> Value {
    assert_exit(output, 0);
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(output)))
}

/// `idlink users create --json ARGS…`, parsed.
pub async fn create(server: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["users", "create", "--json"];
    all.extend(args);
    json(&idlink(server, &all).await)
}
