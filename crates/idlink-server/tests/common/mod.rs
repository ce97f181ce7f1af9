//! Helpers for the end-to-end tests: a real server on 127.0.0.1:0, spoken to over HTTP.
#![allow(dead_code)]

use std::collections::BTreeMap;

use idlink_server::testing::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const DB: &str = "Username-Password-Authentication";
pub const PASSWORD: &str = "correct-Horse-battery-9";

/// A server and an HTTP client holding the admin token.
pub struct Api {
    pub server: TestServer,
    pub http: reqwest::Client,
    pub token: String,
}

/// A response: status, headers and JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts an Auth0 error body with this status and errorCode.
    #[track_caller]
    pub fn assert_error(&self, status: u16, error_code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["statusCode"], status, "body: {}", self.body);
        assert_eq!(self.body["errorCode"], error_code, "body: {}", self.body);
        assert!(
            self.body["error"].is_string() && self.body["message"].is_string(),
            "{}",
            self.body
        );
    }
}

impl Api {
    pub async fn start() -> Self {
        Self::with_server(TestServer::start().await).await
    }

    pub async fn with_server(server: TestServer) -> Self {
        let token = server.admin_token().await;
        Self {
            server,
            http: reqwest::Client::new(),
            token,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.base_url, path)
    }

    /// Sends a request with `token` (or none), a JSON body if given.
    pub async fn send_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let token = self.token.clone();
        self.send_as(Some(&token), method, path, body).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }

    /// Creates a database user; returns its user_id.
    pub async fn db_user(&self, email: &str) -> String {
        let reply = self
            .post(
                "/api/v2/users",
                json!({"connection": DB, "email": email, "password": PASSWORD, "email_verified": true}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.body["user_id"].as_str().unwrap().to_owned()
    }

    /// Creates a social user with an explicit provider-side id; returns its user_id.
    pub async fn social_user(&self, connection: &str, id: Value, email: &str) -> String {
        let reply = self
            .post(
                "/api/v2/users",
                json!({"connection": connection, "user_id": id, "email": email, "name": format!("Name of {email}")}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.body["user_id"].as_str().unwrap().to_owned()
    }

    pub async fn link(&self, primary: &str, body: Value) -> Reply {
        self.post(&format!("/api/v2/users/{}/identities", enc(primary)), body)
            .await
    }

    pub async fn unlink(&self, primary: &str, provider: &str, id: &str) -> Reply {
        self.delete(&format!(
            "/api/v2/users/{}/identities/{provider}/{}",
            enc(primary),
            enc(id)
        ))
        .await
    }

    pub async fn user(&self, user_id: &str) -> Reply {
        self.get(&format!("/api/v2/users/{}", enc(user_id))).await
    }

    /// Password-realm grant for a database user, asking for a Management API token with
    /// `update:current_user_identities` and an ID token.
    pub async fn sign_in(&self, email: &str) -> Value {
        self.server
            .token(json!({
                "grant_type": "http://auth0.com/oauth/grant-type/password-realm",
                "realm": DB,
                "username": email,
                "password": PASSWORD,
                "client_id": self.server.admin_client_id,
                "client_secret": self.server.admin_client_secret,
                "audience": self.server.audience(),
                "scope": "openid profile email update:current_user_identities read:current_user",
            }))
            .await
    }

    /// The two tokens of a user-initiated link (mode A): `primary_email`'s access token
    /// (the bearer) and `secondary_email`'s ID token (the `link_with`), both signed in
    /// with [`sign_in`](Self::sign_in).
    pub async fn mode_a_tokens(
        &self,
        primary_email: &str,
        secondary_email: &str,
    ) -> (String, String) {
        let bearer = self.sign_in(primary_email).await["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned();
        let id_token = self.sign_in(secondary_email).await["id_token"]
            .as_str()
            .expect("id_token")
            .to_owned();
        (bearer, id_token)
    }

    /// Every user with its identities, by user_id: what the API says is stored.
    pub async fn snapshot(&self) -> BTreeMap<String, Value> {
        let mut all = BTreeMap::new();
        for page in 0.. {
            let reply = self
                .get(&format!("/api/v2/users?per_page=100&page={page}"))
                .await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            let users = reply.body.as_array().unwrap().clone();
            if users.is_empty() {
                break;
            }
            for mut user in users {
                // updated_at moves on reads of last_login etc.; compare the substance.
                user.as_object_mut().unwrap().remove("updated_at");
                all.insert(user["user_id"].as_str().unwrap().to_owned(), user);
            }
        }
        all
    }

    /// The snapshot without the login counters, which signing in moves: what a refused
    /// link or unlink must leave exactly as it was.
    pub async fn snapshot_without_logins(&self) -> BTreeMap<String, Value> {
        let mut all = self.snapshot().await;
        for user in all.values_mut() {
            let user = user.as_object_mut().unwrap();
            user.remove("last_login");
            user.remove("logins_count");
        }
        all
    }

    /// Checks the ownership invariant over the snapshot: every identity belongs to
    /// exactly one user, and every user has its main identity first. Returns the number
    /// of identities.
    pub async fn assert_invariants(&self) -> usize {
        let snapshot = self.snapshot().await;
        let mut seen = BTreeMap::new();
        for (user_id, user) in &snapshot {
            let identities = user["identities"].as_array().unwrap();
            assert!(!identities.is_empty(), "{user_id} has no identity");
            let main = &identities[0];
            let main_id = format!(
                "{}|{}",
                main["provider"].as_str().unwrap(),
                id_string(&main["user_id"])
            );
            assert_eq!(&main_id, user_id, "main identity first");
            for identity in identities {
                let key = format!(
                    "{}|{}",
                    identity["provider"].as_str().unwrap(),
                    id_string(&identity["user_id"])
                );
                if let Some(other) = seen.insert(key.clone(), user_id.clone()) {
                    panic!("{key} belongs to both {other} and {user_id}");
                }
            }
        }
        seen.len()
    }
}

pub fn id_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Percent-encodes a path segment.
pub fn enc(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The payload of a JWT, without verifying it.
pub fn decode_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}
