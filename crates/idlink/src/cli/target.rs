//! Where a management command connects, and as whom: flags first, then environment.
//!
//! clap reads one variable per flag, and the issue asks for two families (Auth0's own
//! `AUTH0_*`, as the Auth0 tools read them, and idlink's `IDLINK_*`), so the fallback
//! chain is resolved here, in one place: a flag, else `IDLINK_*`, else `AUTH0_*`.

use idlink_client::ManagementClient;

use super::CliError;

/// The target flags every management command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TargetArgs {
    /// An Auth0 tenant domain, e.g. tenant.eu.auth0.com: the Management API is
    /// https://DOMAIN/api/v2 [env: AUTH0_DOMAIN]
    #[arg(long, global = true, conflicts_with = "url", value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// A server root, e.g. http://127.0.0.1:8080: the Management API is URL/api/v2
    /// [env: IDLINK_URL]
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// The client-credentials client id [env: IDLINK_CLIENT_ID, AUTH0_CLIENT_ID]
    #[arg(long, global = true, value_name = "ID")]
    pub client_id: Option<String>,
    /// The client secret [env: IDLINK_CLIENT_SECRET, AUTH0_CLIENT_SECRET]
    #[arg(long, global = true, value_name = "SECRET")]
    pub client_secret: Option<String>,
    /// Retries of a call answered 408, 429 or 5xx, after the delay the server asks
    /// (Retry-After) or a backoff [default: 2; apply-links: 8]
    #[arg(long, global = true, value_name = "N")]
    pub max_retries: Option<u32>,
}

/// The retries of one call unless `--max-retries` says otherwise (the client's default).
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// The retries of a bulk command's calls: it sends many in a row, so it meets a tenant's
/// rate limit often (Auth0 Free: 2 per second) and should wait it out, not fail.
pub const BULK_MAX_RETRIES: u32 = 8;

/// A server to talk to, resolved from flags and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    /// `--domain`/`AUTH0_DOMAIN`: a tenant domain.
    Domain(String),
    /// `--url`/`IDLINK_URL`: a server root.
    Url(String),
}

/// The first non-empty value of `flag`, then of each environment variable in turn.
fn resolve(flag: &Option<String>, vars: &[&str]) -> Option<String> {
    flag.clone()
        .into_iter()
        .chain(vars.iter().filter_map(|name| std::env::var(name).ok()))
        .find(|value| !value.trim().is_empty())
}

impl TargetArgs {
    fn endpoint(&self) -> Result<Endpoint, CliError> {
        // An explicit flag beats any variable; between variables idlink's own wins.
        if let Some(url) = &self.url {
            return Ok(Endpoint::Url(url.clone()));
        }
        if let Some(domain) = &self.domain {
            return Ok(Endpoint::Domain(domain.clone()));
        }
        if let Some(url) = resolve(&None, &["IDLINK_URL"]) {
            return Ok(Endpoint::Url(url));
        }
        if let Some(domain) = resolve(&None, &["AUTH0_DOMAIN"]) {
            return Ok(Endpoint::Domain(domain));
        }
        Err(CliError::Usage(
            "no target: pass --url URL or --domain DOMAIN (or set IDLINK_URL or AUTH0_DOMAIN)"
                .into(),
        ))
    }

    /// Builds the Management API client. The token audience is the builder's default,
    /// `https://<host>/api/v2/`, which is what both Auth0 and idlink expect.
    pub fn client(&self) -> Result<ManagementClient, CliError> {
        self.client_retrying(DEFAULT_MAX_RETRIES)
    }

    /// [`client`](Self::client), retrying each call `default_retries` times unless
    /// `--max-retries` is given.
    pub fn client_retrying(&self, default_retries: u32) -> Result<ManagementClient, CliError> {
        let builder = match self.endpoint()? {
            Endpoint::Domain(domain) => ManagementClient::builder().domain(domain),
            Endpoint::Url(url) => ManagementClient::builder()
                .base_url(format!("{}/api/v2", url.trim_end_matches('/'))),
        };
        let client_id = resolve(&self.client_id, &["IDLINK_CLIENT_ID", "AUTH0_CLIENT_ID"])
            .ok_or_else(|| {
                CliError::Usage(
                    "no client id: pass --client-id (or set IDLINK_CLIENT_ID or AUTH0_CLIENT_ID)"
                        .into(),
                )
            })?;
        let client_secret = resolve(
            &self.client_secret,
            &["IDLINK_CLIENT_SECRET", "AUTH0_CLIENT_SECRET"],
        )
        .ok_or_else(|| {
            CliError::Usage(
                "no client secret: pass --client-secret (or set IDLINK_CLIENT_SECRET or AUTH0_CLIENT_SECRET)"
                    .into(),
            )
        })?;
        Ok(builder
            .client_credentials(client_id, client_secret)
            .max_retries(self.max_retries.unwrap_or(default_retries))
            .build()?)
    }
}
