//! HTTP workers: each owns one keep-alive connection and loops over a fixed cycle of
//! requests (link then unlink, or a single request).

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Client, Method};
use serde_json::Value;

use crate::load::Worker;

/// A client with one keep-alive connection to a local server.
pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(None)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// One request of a cycle.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: String,
    /// A JSON body, serialized once.
    pub body: Option<Vec<u8>>,
    /// The status that counts as success.
    pub expect: u16,
}

impl Request {
    pub fn new(method: Method, url: String, body: Option<&Value>, expect: u16) -> Self {
        Self {
            method,
            url,
            body: body.map(|b| serde_json::to_vec(b).expect("JSON body")),
            expect,
        }
    }
}

/// A worker that sends its cycle of requests over and over; every request is one op.
#[derive(Debug)]
pub struct CycleWorker {
    client: Client,
    authorization: Option<HeaderValue>,
    cycle: Vec<Request>,
    next: usize,
}

impl CycleWorker {
    /// `bearer`: the token sent with every request, if any.
    pub fn new(bearer: Option<&str>, cycle: Vec<Request>) -> Self {
        assert!(!cycle.is_empty(), "a cycle needs a request");
        Self {
            client: client(),
            authorization: bearer.map(|t| {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}")).expect("token header");
                v.set_sensitive(true);
                v
            }),
            cycle,
            next: 0,
        }
    }
}

/// The report key of a transport error.
pub fn error_key(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timeout".into()
    } else if err.is_connect() {
        "connect".into()
    } else {
        "io".into()
    }
}

impl Worker for CycleWorker {
    async fn op(&mut self) -> Result<(), String> {
        let request = &self.cycle[self.next];
        self.next = (self.next + 1) % self.cycle.len();
        let mut builder = self.client.request(request.method.clone(), &request.url);
        if let Some(auth) = &self.authorization {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        if let Some(body) = &request.body {
            builder = builder
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body.clone());
        }
        let response = builder.send().await.map_err(|e| error_key(&e))?;
        let status = response.status().as_u16();
        // Read the whole body so the connection is reused.
        response.bytes().await.map_err(|e| error_key(&e))?;
        if status == request.expect {
            Ok(())
        } else {
            Err(status.to_string())
        }
    }

    fn at_cycle_start(&self) -> bool {
        self.next == 0
    }
}

/// Sends one JSON request during set-up; returns the status and the JSON answer
/// (`null` when the body is empty or not JSON).
pub async fn send(
    client: &Client,
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let mut builder = client.request(method.clone(), url);
    if let Some(token) = bearer {
        builder = builder.bearer_auth(token);
    }
    if let Some(body) = body {
        builder = builder.json(body);
    }
    let response = builder
        .send()
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Like [`send`], failing unless the status is `expect`.
pub async fn expect(
    client: &Client,
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
    expect: u16,
) -> Result<Value, String> {
    let (status, json) = send(client, method.clone(), url, bearer, body).await?;
    if status == expect {
        Ok(json)
    } else {
        Err(format!(
            "{method} {url}: expected {expect}, got {status}: {json}"
        ))
    }
}

/// Waits until `url` answers 200, for at most `patience`.
pub async fn wait_ready(url: &str, patience: Duration) -> Result<(), String> {
    let client = client();
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match client.get(url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            _ if tokio::time::Instant::now() >= deadline => {
                return Err(format!("{url} did not answer within {patience:?}"));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
