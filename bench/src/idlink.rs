//! The scenarios against an idlink server, over its real HTTP API.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde_json::json;

use crate::http::{self, CycleWorker, Request};
use crate::scenario::{Scenario, run_tag};

/// Where an idlink server is and how to get a Management token from it.
#[derive(Debug, Clone)]
pub struct IdlinkApi {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base_url: String,
    /// The Management API audience, `https://HOST:PORT/api/v2/`.
    pub audience: String,
    pub client_id: String,
    pub client_secret: String,
}

/// The users a run works on.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// A Management token with every scope, fetched once.
    pub token: String,
    /// `(primary user_id, secondary google-oauth2 id)`: one pair per worker, unlinked.
    pub pairs: Vec<(String, String)>,
    /// Users with a second identity linked, for `read`.
    pub readers: Vec<String>,
}

const PROVIDER: &str = "google-oauth2";

fn segment(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

impl IdlinkApi {
    /// The API at `base_url`, with the audience idlink derives from it.
    pub fn new(base_url: &str, client_id: &str, client_secret: &str) -> Self {
        let base_url = base_url.trim_end_matches('/').to_owned();
        let host = base_url
            .split_once("://")
            .map_or(base_url.as_str(), |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        Self {
            audience: format!("https://{host}/api/v2/"),
            base_url,
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
        }
    }

    fn token_body(&self) -> serde_json::Value {
        json!({
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "audience": self.audience,
        })
    }

    /// A client-credentials token.
    pub async fn token(&self) -> Result<String, String> {
        let answer = http::expect(
            &http::client(),
            Method::POST,
            &format!("{}/oauth/token", self.base_url),
            None,
            Some(&self.token_body()),
            200,
        )
        .await?;
        answer["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no access_token in {answer}"))
    }

    async fn create_social(
        &self,
        client: &reqwest::Client,
        token: &str,
        id: &str,
    ) -> Result<String, String> {
        let user = http::expect(
            client,
            Method::POST,
            &format!("{}/api/v2/users", self.base_url),
            Some(token),
            Some(&json!({"connection": PROVIDER, "user_id": id})),
            201,
        )
        .await?;
        user["user_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no user_id in {user}"))
    }

    fn link_request(&self, primary: &str, secondary: &str) -> Request {
        Request::new(
            Method::POST,
            format!(
                "{}/api/v2/users/{}/identities",
                self.base_url,
                segment(primary)
            ),
            Some(&json!({"provider": PROVIDER, "user_id": secondary})),
            201,
        )
    }

    fn unlink_request(&self, primary: &str, secondary: &str) -> Request {
        Request::new(
            Method::DELETE,
            format!(
                "{}/api/v2/users/{}/identities/{PROVIDER}/{}",
                self.base_url,
                segment(primary),
                segment(secondary)
            ),
            None,
            200,
        )
    }

    /// Creates `pairs` primary/secondary pairs (cheap social users) and as many readers,
    /// and fetches the token the workers share.
    pub async fn prepare(&self, pairs: usize) -> Result<Fixture, String> {
        let token = self.token().await?;
        let client = http::client();
        let tag = run_tag();
        let mut fixture = Fixture {
            token: token.clone(),
            pairs: Vec::new(),
            readers: Vec::new(),
        };
        for i in 0..pairs {
            let primary = self
                .create_social(&client, &token, &format!("b{tag}p{i}"))
                .await?;
            let secondary = format!("b{tag}s{i}");
            self.create_social(&client, &token, &secondary).await?;
            fixture.pairs.push((primary, secondary));

            let reader = self
                .create_social(&client, &token, &format!("b{tag}r{i}"))
                .await?;
            let linked = format!("b{tag}q{i}");
            self.create_social(&client, &token, &linked).await?;
            let link = self.link_request(&reader, &linked);
            http::expect(
                &client,
                link.method,
                &link.url,
                Some(&token),
                Some(&json!({"provider": PROVIDER, "user_id": linked})),
                201,
            )
            .await?;
            fixture.readers.push(reader);
        }
        Ok(fixture)
    }

    /// `concurrency` workers for `scenario`, worker `i` on pair/reader `i % len`.
    pub fn workers(
        &self,
        scenario: Scenario,
        fixture: &Fixture,
        concurrency: usize,
    ) -> Vec<CycleWorker> {
        (0..concurrency)
            .map(|i| match scenario {
                Scenario::LinkUnlink => {
                    let (primary, secondary) = &fixture.pairs[i % fixture.pairs.len()];
                    CycleWorker::new(
                        Some(&fixture.token),
                        vec![
                            self.link_request(primary, secondary),
                            self.unlink_request(primary, secondary),
                        ],
                    )
                }
                Scenario::Token => CycleWorker::new(
                    None,
                    vec![Request::new(
                        Method::POST,
                        format!("{}/oauth/token", self.base_url),
                        Some(&self.token_body()),
                        200,
                    )],
                ),
                Scenario::Read => {
                    let reader = &fixture.readers[i % fixture.readers.len()];
                    CycleWorker::new(
                        Some(&fixture.token),
                        vec![Request::new(
                            Method::GET,
                            format!("{}/api/v2/users/{}", self.base_url, segment(reader)),
                            None,
                            200,
                        )],
                    )
                }
            })
            .collect()
    }
}
