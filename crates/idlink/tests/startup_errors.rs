//! Start-up failures of the real binary: each names what and where, says what to do,
//! and exits with its documented (sysexits-style) code.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn serve(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_idlink"))
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("IDLINK_CONFIG")
        .env_remove("IDLINK_DATABASE_URL")
        .env_remove("IDLINK_BIND")
        .stdin(Stdio::null())
        .output()
        .expect("run idlink")
}

#[track_caller]
fn assert_fails(output: &Output, code: i32, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{needle:?} missing from:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("internal error"),
        "a user mistake is not an internal error:\n{stderr}"
    );
    assert!(stderr.contains("hint:"), "says what to do:\n{stderr}");
}

fn sqlite(path: &std::path::Path) -> String {
    format!("sqlite://{}", path.display())
}

#[test]
fn an_unsupported_database_url_is_a_config_error() {
    let output = serve(&[
        "--bind",
        "127.0.0.1:0",
        "--db",
        "mysql://root:hunter2-secret@db/idlink",
    ]);
    assert_fails(&output, 78, &["unsupported database URL", "root:***@db"]);
    assert!(!String::from_utf8_lossy(&output.stderr).contains("hunter2"));
}

#[test]
fn a_missing_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("not/yet/there/idlink.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_idlink"))
        .args(["serve", "--bind", "127.0.0.1:0", "--db", &sqlite(&db)])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !db.exists() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(db.exists(), "the database was created in a new directory");
}

#[test]
fn a_directory_that_cannot_be_created_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let output = serve(&[
        "--bind",
        "127.0.0.1:0",
        "--db",
        &sqlite(&blocker.join("idlink.db")),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(73), "{stderr}");
    assert!(stderr.contains(&blocker.display().to_string()), "{stderr}");
}

#[test]
fn a_read_only_database_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("idlink.db");
    std::fs::write(&db, "").unwrap();
    let mut permissions = std::fs::metadata(&db).unwrap().permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&db, permissions).unwrap();
    let output = serve(&["--bind", "127.0.0.1:0", "--db", &sqlite(&db)]);
    assert_fails(
        &output,
        77,
        &["read-only", &db.display().to_string(), "chmod u+w"],
    );
}

#[test]
fn a_port_in_use_is_named() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = holder.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = serve(&[
        "--bind",
        &address,
        "--db",
        &sqlite(&dir.path().join("idlink.db")),
    ]);
    assert_fails(&output, 71, &[&address, "--bind", "already in use"]);
    // The metrics listener's address is checked the same way.
    let output = serve(&[
        "--bind",
        "127.0.0.1:0",
        "--metrics-bind",
        &address,
        "--db",
        &sqlite(&dir.path().join("idlink.db")),
    ]);
    assert_fails(&output, 71, &[&address, "--metrics-bind"]);
}

#[test]
fn a_bad_config_key_is_named_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("idlink.toml");
    std::fs::write(
        &config,
        "domain = \"t.example.com\"\n[[clients]]\nname = \"spa\"\nclient_id = \"spa\"\nnmae = \"typo\"\n",
    )
    .unwrap();
    let output = serve(&[
        "--bind",
        "127.0.0.1:0",
        "--db",
        &sqlite(&dir.path().join("idlink.db")),
        "--config",
        config.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    for needle in [
        config.display().to_string().as_str(),
        "clients[0].nmae",
        "line 5",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing from {stderr}");
    }
}

#[test]
fn unreachable_postgres_gives_up_within_its_bound_reporting_each_attempt() {
    // A port nothing listens on: every attempt is refused at once.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let url = format!("postgres://idlink:s3cret-pw@127.0.0.1:{port}/idlink");
    let started = Instant::now();
    let output = serve(&[
        "--bind",
        "127.0.0.1:0",
        "--db",
        &url,
        "--db-connect-timeout",
        "2",
    ]);
    let took = started.elapsed();
    assert_fails(
        &output,
        69,
        &[
            &format!("idlink:***@127.0.0.1:{port}"),
            "attempt 1 failed",
            "attempt 2 failed",
            "--db-connect-timeout",
        ],
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains("s3cret"));
    assert!(
        took >= Duration::from_millis(1_500) && took < Duration::from_secs(8),
        "gave up after {took:?}, bound 2 s"
    );
}

#[test]
fn help_lists_the_start_up_exit_codes() {
    let output = Command::new(env!("CARGO_BIN_EXE_idlink"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for code in ["69", "71", "73", "77", "78"] {
        assert!(help.contains(&format!(" {code}  ")), "{code} in\n{help}");
    }
}

#[test]
fn strict_config_refuses_short_secrets_and_non_url_public_urls() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir.path().join("idlink.db"));
    let output = serve(&[
        "--bind",
        "127.0.0.1:0",
        "--db",
        &db,
        "--admin-client-id",
        "admin",
        "--admin-client-secret",
        "short-secret",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("--admin-client-secret") && stderr.contains("32"),
        "{stderr}"
    );
    let output = serve(&[
        "--bind",
        "127.0.0.1:0",
        "--db",
        &db,
        "--public-url",
        "id.example.com",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("--public-url"), "{stderr}");
}
