//! The same scenarios against the Firebase Auth Emulator's Identity Toolkit API, with the
//! emulator's admin bearer `owner`: link = `accounts:update` with
//! `linkProviderUserInfo`, unlink = `accounts:update` with `deleteProvider`, read =
//! `accounts:lookup`. (Firebase keeps a linked provider inside the user; there is no
//! secondary user to merge or recreate.)

use reqwest::Method;
use serde_json::json;

use crate::http::{self, CycleWorker, Request};
use crate::scenario::{Scenario, run_tag};
use crate::targets::FIREBASE_PROJECT;

const ADMIN_BEARER: &str = "owner";
const PROVIDER: &str = "google.com";

/// The emulator's API.
#[derive(Debug, Clone)]
pub struct FirebaseApi {
    /// `http://127.0.0.1:PORT/identitytoolkit.googleapis.com/v1/projects/demo-idlink`.
    project_url: String,
}

/// The users a run works on.
#[derive(Debug, Clone)]
pub struct FirebaseFixture {
    /// `(localId, google rawId)` per worker, unlinked.
    pub pairs: Vec<(String, String)>,
    /// Users with a google provider linked.
    pub readers: Vec<String>,
}

impl FirebaseApi {
    pub fn new(base_url: &str) -> Self {
        Self {
            project_url: format!(
                "{}/identitytoolkit.googleapis.com/v1/projects/{FIREBASE_PROJECT}",
                base_url.trim_end_matches('/')
            ),
        }
    }

    fn link(&self, local_id: &str, raw_id: &str) -> Request {
        Request::new(
            Method::POST,
            format!("{}/accounts:update", self.project_url),
            Some(&json!({
                "localId": local_id,
                "linkProviderUserInfo": {"providerId": PROVIDER, "rawId": raw_id},
            })),
            200,
        )
    }

    fn unlink(&self, local_id: &str) -> Request {
        Request::new(
            Method::POST,
            format!("{}/accounts:update", self.project_url),
            Some(&json!({"localId": local_id, "deleteProvider": [PROVIDER]})),
            200,
        )
    }

    async fn create(&self, client: &reqwest::Client, local_id: &str) -> Result<(), String> {
        http::expect(
            client,
            Method::POST,
            &format!("{}/accounts", self.project_url),
            Some(ADMIN_BEARER),
            Some(&json!({"localId": local_id})),
            200,
        )
        .await
        .map(drop)
    }

    /// Creates `pairs` users to link into and as many readers with a linked provider.
    pub async fn prepare(&self, pairs: usize) -> Result<FirebaseFixture, String> {
        let client = http::client();
        let tag = run_tag();
        let mut fixture = FirebaseFixture {
            pairs: Vec::new(),
            readers: Vec::new(),
        };
        for i in 0..pairs {
            let primary = format!("f{tag}p{i}");
            self.create(&client, &primary).await?;
            fixture.pairs.push((primary, format!("f{tag}s{i}")));

            let reader = format!("f{tag}r{i}");
            self.create(&client, &reader).await?;
            let link = self.link(&reader, &format!("f{tag}q{i}"));
            let body: serde_json::Value =
                serde_json::from_slice(link.body.as_deref().unwrap_or_default())
                    .map_err(|e| e.to_string())?;
            http::expect(
                &client,
                link.method,
                &link.url,
                Some(ADMIN_BEARER),
                Some(&body),
                200,
            )
            .await?;
            fixture.readers.push(reader);
        }
        Ok(fixture)
    }

    /// `concurrency` workers for `scenario`; `None` for `token`, which the emulator
    /// has no equivalent of.
    pub fn workers(
        &self,
        scenario: Scenario,
        fixture: &FirebaseFixture,
        concurrency: usize,
    ) -> Option<Vec<CycleWorker>> {
        let cycle = |i: usize| match scenario {
            Scenario::LinkUnlink => {
                let (local_id, raw_id) = &fixture.pairs[i % fixture.pairs.len()];
                Some(vec![self.link(local_id, raw_id), self.unlink(local_id)])
            }
            Scenario::Read => Some(vec![Request::new(
                Method::POST,
                format!("{}/accounts:lookup", self.project_url),
                Some(&json!({"localId": [fixture.readers[i % fixture.readers.len()]]})),
                200,
            )]),
            Scenario::Token => None,
        };
        (0..concurrency)
            .map(|i| cycle(i).map(|c| CycleWorker::new(Some(ADMIN_BEARER), c)))
            .collect()
    }
}
