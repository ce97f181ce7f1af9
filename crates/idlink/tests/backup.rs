//! `idlink backup` of a live SQLite database under write load: the copy passes
//! `integrity_check`, is consistent (every identity has its owner, every user its
//! main identity) and serves again when a server is started on it.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{AUDIENCE, Instance, TEST_ADMIN_CLIENT_ID, TEST_ADMIN_CLIENT_SECRET};
use serde_json::{Value, json};
use sqlx::{Connection, SqliteConnection};

async fn token(http: &reqwest::Client, base: &str) -> String {
    let reply: Value = http
        .post(format!("{base}/oauth/token"))
        .json(
            &json!({"grant_type": "client_credentials", "client_id": TEST_ADMIN_CLIENT_ID,
            "client_secret": TEST_ADMIN_CLIENT_SECRET, "audience": AUDIENCE}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["access_token"].as_str().unwrap().to_owned()
}

async fn count(conn: &mut SqliteConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_to_a_consistent_state() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let server = Instance::spawn(&format!("sqlite://{}", db.display()), &[]);
    let base = server.base_url.clone();
    let http = reqwest::Client::new();
    let token = token(&http, &base).await;

    // Writers: create pairs of users and link them, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for worker in 0..4 {
        let (http, base, token, stop, written) = (
            http.clone(),
            base.clone(),
            token.clone(),
            stop.clone(),
            written.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = |side: &str| format!("{worker}-{n}-{side}");
                for side in ["a", "b"] {
                    let created = http
                        .post(format!("{base}/api/v2/users"))
                        .bearer_auth(&token)
                        .json(&json!({"connection": "github", "user_id": id(side), "email": format!("{}@example.com", id(side))}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(created.status(), 201);
                }
                let linked = http
                    .post(format!("{base}/api/v2/users/github%7C{}/identities", id("a")))
                    .bearer_auth(&token)
                    .json(&json!({"provider": "github", "user_id": id("b")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(linked.status(), 201);
                written.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    while written.load(Ordering::Relaxed) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let copy = dir.path().join("backups/copy.db");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_idlink"))
        .args(["backup", "--db", &format!("sqlite://{}", db.display())])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let during = written.load(Ordering::Relaxed);
    // Never overwrites.
    let again = Command::new(env!("CARGO_BIN_EXE_idlink"))
        .args(["backup", "--db", &format!("sqlite://{}", db.display())])
        .arg(&copy)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(73));

    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    drop(server);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the copy holds the keys: private");
    }
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}?mode=ro", copy.display()))
        .await
        .unwrap();
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    let orphans = count(
        &mut conn,
        "SELECT count(*) FROM identities i LEFT JOIN users u ON u.user_id = i.owner_user_id WHERE u.user_id IS NULL",
    )
    .await;
    assert_eq!(orphans, 0, "every identity's owner is in the copy");
    let bare = count(
        &mut conn,
        "SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM identities i WHERE i.owner_user_id = u.user_id)",
    )
    .await;
    assert_eq!(bare, 0, "every user has its identity");
    let users = count(&mut conn, "SELECT count(*) FROM users").await;
    let identities = count(&mut conn, "SELECT count(*) FROM identities").await;
    assert!(
        users >= 20,
        "the copy has the writes made before it: {users}"
    );
    // Links are atomic: a pair is either two users or one user with two identities,
    // never half of a link.
    let linked = count(
        &mut conn,
        "SELECT count(*) FROM users u WHERE (SELECT count(*) FROM identities i WHERE i.owner_user_id = u.user_id) = 2",
    )
    .await;
    assert_eq!(identities, users + linked);
    assert!(
        linked as usize >= 20 && linked as usize <= during + 4,
        "{linked} links in the copy"
    );
    conn.close().await.unwrap();

    // The copy serves: a server started on it answers with the same users.
    let restored = Instance::spawn(&format!("sqlite://{}", copy.display()), &[]);
    let token = self::token(&http, &restored.base_url).await;
    let page: Value = http
        .get(format!(
            "{}/api/v2/users?include_totals=true&per_page=1",
            restored.base_url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], users, "{page}");
}
