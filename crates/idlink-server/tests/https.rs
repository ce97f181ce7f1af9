//! HTTPS serving: a self-signed certificate made beside the database and reused on
//! restart, trusted by a client that adds it as a root, with the issuer and the API
//! audience following the `https://` URL.

use idlink_server::tls::{SELF_SIGNED_CERT_FILE, TlsSettings};
use idlink_server::{Config, Server};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const ADMIN_ID: &str = "https-test-admin";
const ADMIN_SECRET: &str = "https-test-admin-secret-0123456789abcdef";

struct Running {
    base_url: String,
    audience: String,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(dir: &std::path::Path, bind: &str) -> Running {
    let config = Config {
        bind: bind.into(),
        database_url: format!("sqlite://{}", dir.join("idlink.db").display()),
        admin_client_id: Some(ADMIN_ID.into()),
        admin_client_secret: Some(ADMIN_SECRET.into()),
        print_credentials: false,
        tls: Some(TlsSettings::SelfSigned {
            dir: dir.to_owned(),
        }),
        ..Config::default()
    };
    assert_eq!(config.tls_dir(), dir);
    let server = Server::bind(config).await.expect("server starts");
    assert_eq!(
        server.tls_cert_path(),
        Some(dir.join(SELF_SIGNED_CERT_FILE).as_path())
    );
    let base_url = server.public_url().to_owned();
    let audience = server.audience().to_owned();
    let (shutdown, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async {
        let _ = rx.await;
    }));
    Running {
        base_url,
        audience,
        shutdown,
        task,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.shutdown.send(());
        self.task.await.expect("join").expect("serve");
    }
}

fn client_trusting(cert_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem).expect("PEM"))
        .build()
        .expect("client")
}

#[tokio::test]
async fn self_signed_https_serves_the_api_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), "127.0.0.1:0").await;
    assert!(
        running.base_url.starts_with("https://127.0.0.1:"),
        "{}",
        running.base_url
    );
    let port = running.base_url.rsplit(':').next().unwrap().to_owned();
    let cert = std::fs::read(dir.path().join(SELF_SIGNED_CERT_FILE)).unwrap();
    let client = client_trusting(&cert);

    let health: Value = client
        .get(format!("{}/health", running.base_url))
        .send()
        .await
        .expect("https request")
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");

    // The name `localhost` is on the certificate too.
    let status = client
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await
        .expect("https via localhost")
        .status();
    assert_eq!(status, 200);

    // A client that does not trust the certificate is refused.
    let untrusting = reqwest::Client::new()
        .get(format!("{}/health", running.base_url))
        .send()
        .await;
    assert!(untrusting.is_err(), "untrusted certificate accepted");

    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health"))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered on the TLS port");

    // Tokens over HTTPS: issuer is the https URL, and the Management API works.
    let token: Value = client
        .post(format!("{}/oauth/token", running.base_url))
        .json(&json!({
            "grant_type": "client_credentials",
            "client_id": ADMIN_ID,
            "client_secret": ADMIN_SECRET,
            "audience": running.audience,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = token["access_token"].as_str().expect("access_token");
    let discovery: Value = client
        .get(format!(
            "{}/.well-known/openid-configuration",
            running.base_url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], format!("{}/", running.base_url));
    let users = client
        .get(format!("{}/api/v2/users", running.base_url))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), 200);
    running.stop().await;

    // Restart on the same port: the same certificate is reused.
    let again = start(dir.path(), &format!("127.0.0.1:{port}")).await;
    assert_eq!(
        std::fs::read(dir.path().join(SELF_SIGNED_CERT_FILE)).unwrap(),
        cert
    );
    let status = client
        .get(format!("{}/health", again.base_url))
        .send()
        .await
        .expect("https after restart")
        .status();
    assert_eq!(status, 200);
    again.stop().await;
}
