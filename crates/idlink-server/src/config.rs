//! Server configuration: command-line flags and environment (parsed by the binary)
//! plus an optional TOML file for the tenant (domain, token lifetimes, connections,
//! clients, rate limits).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ratelimit::RateLimit;

/// The default database: a file beside the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://idlink.db";
/// The default listen address.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// The database connection every tenant starts with.
pub const DEFAULT_DATABASE_CONNECTION: &str = "Username-Password-Authentication";
/// The social connections every tenant starts with, named as their strategies.
pub const DEFAULT_SOCIAL_CONNECTIONS: &[&str] = &[
    "google-oauth2",
    "github",
    "facebook",
    "apple",
    "windowslive",
    "twitter",
    "linkedin",
];

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub bind: String,
    /// `sqlite://PATH` (created if missing).
    pub database_url: String,
    /// The URL clients reach this server at; the token issuer is `{public_url}/`.
    /// Defaults to `https://{domain}` when a domain is set, else `http://{bind}`.
    pub public_url: Option<String>,
    /// Pinned admin client credentials (`IDLINK_ADMIN_CLIENT_ID` / `_SECRET`).
    pub admin_client_id: Option<String>,
    pub admin_client_secret: Option<String>,
    /// Where generated admin credentials are written (mode 0600). Defaults to
    /// `idlink-credentials.json` beside a SQLite database file.
    pub credentials_file: Option<PathBuf>,
    /// Print generated admin credentials on start-up.
    pub print_credentials: bool,
    /// The tenant, from the config file.
    pub tenant: TenantConfig,
    /// Database pool size, statement timeout, connect retries.
    pub store: crate::store::StoreOptions,
    /// Serve HTTPS with this certificate (see [`crate::tls`]); plain HTTP when `None`.
    pub tls: Option<crate::tls::TlsSettings>,
    /// Emulator mode (`idlink emulate`): the control API under `/idlink/v1/`, a seed, a
    /// dev signing key. `None` (plain `serve`): no control API at all.
    pub emulator: Option<crate::emulator::EmulatorSettings>,
    /// Every social connection signs in through idlink's emulated identity-provider
    /// page (the emulator mode turns this on). Off, only the connections configured
    /// with `emulated = true` have that page: plain `serve` never pretends to be Google.
    pub emulate_identity_providers: bool,
    /// Serve `GET /metrics` (Prometheus) on this address of its own; off when `None`,
    /// so the API port answers exactly what Auth0 answers.
    pub metrics_bind: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: DEFAULT_BIND.to_owned(),
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            public_url: None,
            admin_client_id: None,
            admin_client_secret: None,
            credentials_file: None,
            print_credentials: true,
            tenant: TenantConfig::default(),
            store: crate::store::StoreOptions::default(),
            tls: None,
            emulator: None,
            emulate_identity_providers: false,
            metrics_bind: None,
        }
    }
}

/// The config file (TOML). Every key is optional.
///
/// ```toml
/// domain = "dev-tenant.example.com"
/// rate_limit = "enterprise"        # free | enterprise | off | "BURST/RATE_PER_SECOND"
/// client_rate_limit = "10/5"       # each client's own bucket (default: as rate_limit)
/// unauthenticated_rate_limit = "10/1" # per source address, requests without a valid token
///                                  # (default: as rate_limit)
/// token_rate_limit = "20/2"        # POST /oauth/token per client id (default: generous)
/// token_address_rate_limit = "20/2" # POST /oauth/token per source address (default: generous)
/// request_timeout = 30             # seconds before a request is abandoned (503)
/// header_read_timeout = 5          # seconds to send a whole request head
/// idle_timeout = 60                # seconds a keep-alive connection may sit unused
/// max_connections = 1024           # connections served at once (more wait unaccepted)
/// max_import_bytes = 1073741824    # largest jobs/users-imports file (413 beyond; 1 GiB)
/// job_lease = 30                   # seconds a dead runner's job waits to be taken over
///
/// [events]                         # link events, see docs/events.md
/// retention = 604800               # seconds delivered events are kept
///
/// [[webhooks]]
/// url = "https://hooks.example.com/idlink"
/// events = ["user.identity.linked"] # empty: every type
/// secret = "whsec_…"               # whsec_ + base64 of 24-64 bytes
///
/// [tokens]
/// access_token_lifetime = 86400    # seconds
/// id_token_lifetime = 36000
/// key_refresh_interval = 60        # seconds between re-reads of the signing keys
///
/// [[connections]]
/// name = "corp-users"
/// strategy = "auth0"
///
/// [[clients]]
/// name = "My SPA"
/// client_id = "spa-client"
/// client_secret = "…"              # omit for a public client
/// grant_types = ["password", "http://auth0.com/oauth/grant-type/password-realm"]
/// scopes = ["read:users"]
/// app_type = "spa"                 # spa | regular_web | native | non_interactive
/// callbacks = ["http://localhost:3000/callback"]
/// allowed_logout_urls = ["http://localhost:3000/"]
/// web_origins = ["http://localhost:3000"]
/// token_endpoint_auth_method = "none" # none | client_secret_post | client_secret_basic
///
/// [[resource_servers]]
/// name = "My API"
/// identifier = "https://api.example.com/"
/// scopes = ["read:items", "write:items"]
/// token_lifetime = 7200
/// signing_alg = "RS256"
/// allow_offline_access = true
///
/// [[client_grants]]
/// client_id = "back-office"
/// audience = "https://api.example.com/"
/// scope = ["read:items"]
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant's domain, e.g. `dev-tenant.example.com`; sets the API audience host.
    pub domain: Option<String>,
    #[serde(default)]
    pub tokens: TokenConfig,
    #[serde(default)]
    pub connections: Vec<ConnectionConfig>,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// The tenant's own APIs, whose access tokens idlink issues (RS256, same JWKS).
    #[serde(default)]
    pub resource_servers: Vec<ResourceServerConfig>,
    /// Which client may get which API's scopes by client credentials.
    #[serde(default)]
    pub client_grants: Vec<ClientGrantConfig>,
    /// Management API rate limit; see [`RateLimit`].
    pub rate_limit: Option<RateLimit>,
    /// Rate limit of each client's own bucket (default: the same shape as `rate_limit`).
    pub client_rate_limit: Option<RateLimit>,
    /// Rate limit of each source address's bucket of Management API requests that do not
    /// authenticate (default: the same shape as `rate_limit`); they never spend the
    /// tenant's or a client's bucket.
    pub unauthenticated_rate_limit: Option<RateLimit>,
    /// Rate limit of `POST /oauth/token` per client id named (default: generous).
    pub token_rate_limit: Option<RateLimit>,
    /// Rate limit of `POST /oauth/token` per source address (default: generous).
    pub token_address_rate_limit: Option<RateLimit>,
    /// Seconds a request may run before it is abandoned (default 30).
    pub request_timeout: Option<f64>,
    /// Seconds a client may take to send a whole request head (default 5).
    pub header_read_timeout: Option<f64>,
    /// Seconds a keep-alive connection may sit without a request (default 60).
    pub idle_timeout: Option<f64>,
    /// Connections served at once (default 1024); more wait in the listen backlog.
    pub max_connections: Option<usize>,
    /// idlink's linking extensions (`unlink = "restore"`, `merge = "primary-wins"`, …);
    /// the default is Auth0's behaviour. See `docs/reversible-linking.md` and
    /// `docs/merge-policies.md`.
    #[serde(default)]
    pub linking: crate::domain::linking::LinkingPolicy,
    /// How long `Idempotency-Key` answers are remembered; see `docs/idempotency.md`.
    #[serde(default)]
    pub idempotency: IdempotencyConfig,
    /// Largest import file of `POST /api/v2/jobs/users-imports` (default 1 GiB).
    pub max_import_bytes: Option<u64>,
    /// Seconds a runner's claim on a job lasts unrenewed (default 30): how soon a job
    /// whose instance died is resumed by another.
    pub job_lease: Option<f64>,
    /// Link events: the outbox, its retention and delivery (`docs/events.md`).
    #[serde(default)]
    pub events: EventsConfig,
    /// Where link events are sent, signed per Standard Webhooks (`docs/events.md`).
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

/// `[events]`: off unless enabled or a webhook is configured (then idlink answers
/// exactly as Auth0 and writes no outbox rows).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Write the outbox and serve `GET /idlink/v1/events` (default: true when
    /// `[[webhooks]]` are configured, else false).
    pub enabled: Option<bool>,
    /// Seconds an event is kept once no delivery waits for it (default 7 days).
    pub retention: Option<f64>,
    /// Attempts before a delivery is dead (default 10).
    pub max_attempts: Option<i64>,
    /// Seconds before the first retry, doubling each time (default 1).
    pub retry_initial: Option<f64>,
    /// Longest wait between retries, seconds (default 3600).
    pub retry_max: Option<f64>,
    /// Seconds a receiver has to answer (default 10); then the attempt failed.
    pub delivery_timeout: Option<f64>,
    /// Seconds between looks for due deliveries and new events from other instances
    /// (default 1; this instance's own events wake it at once).
    pub poll: Option<f64>,
}

/// One `[[webhooks]]` entry.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are POSTed (http or https); it also names the webhook in the
    /// deliveries API, so each URL appears once.
    pub url: String,
    /// The event types sent (empty: all).
    #[serde(default)]
    pub events: Vec<String>,
    /// `whsec_` + base64 of 24 to 64 random bytes (Standard Webhooks' secret format).
    pub secret: String,
}

/// Never prints the secret (configs are logged when debugging start-up).
impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl TenantConfig {
    /// The jobs API's settings, defaults filled in.
    pub fn job_settings(&self) -> Result<crate::jobs::JobSettings, String> {
        let mut settings = crate::jobs::JobSettings::default();
        if let Some(max) = self.max_import_bytes {
            settings.max_upload_bytes = max;
        }
        match self.job_lease {
            None => {}
            Some(s) if s > 0.0 && s.is_finite() => {
                settings.lease = std::time::Duration::try_from_secs_f64(s)
                    .map_err(|e| format!("invalid job_lease {s}: {e}"))?;
                settings.poll = settings.poll.min(settings.lease / 2);
            }
            Some(s) => {
                return Err(format!(
                    "invalid job_lease {s}: expected a positive number of seconds"
                ));
            }
        }
        Ok(settings)
    }

    /// The link events' settings, defaults filled in (the config was validated).
    pub fn event_settings(&self) -> Result<crate::events::EventSettings, String> {
        crate::events::EventSettings::from_config(&self.events, &self.webhooks)
    }

    /// The connection limits, defaults filled in.
    pub fn connection_limits(&self) -> Result<crate::connections::ConnectionLimits, String> {
        let defaults = crate::connections::ConnectionLimits::default();
        let seconds = |name: &str, value: Option<f64>, default: std::time::Duration| match value {
            None => Ok(default),
            Some(s) if s > 0.0 && s.is_finite() => std::time::Duration::try_from_secs_f64(s)
                .map_err(|e| format!("invalid {name} {s}: {e}")),
            Some(s) => Err(format!(
                "invalid {name} {s}: expected a positive number of seconds"
            )),
        };
        let max_connections = match self.max_connections {
            Some(0) => return Err("invalid max_connections 0: expected at least 1".into()),
            Some(n) => n,
            None => defaults.max_connections,
        };
        Ok(crate::connections::ConnectionLimits {
            header_read_timeout: seconds(
                "header_read_timeout",
                self.header_read_timeout,
                defaults.header_read_timeout,
            )?,
            idle_timeout: seconds("idle_timeout", self.idle_timeout, defaults.idle_timeout)?,
            max_connections,
        })
    }
}

/// `[idempotency]`: the keys of exactly-once calls.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// Seconds a key and its answer are kept (default 86400: 24 hours).
    pub ttl_seconds: Option<i64>,
}

impl IdempotencyConfig {
    /// The TTL in seconds, default filled in; a TTL below one second is refused.
    pub fn ttl_seconds(&self) -> Result<i64, String> {
        match self.ttl_seconds {
            None => Ok(crate::domain::idempotency::DEFAULT_TTL_SECONDS),
            Some(seconds) if seconds >= 1 => Ok(seconds),
            Some(seconds) => Err(format!(
                "invalid [idempotency] ttl_seconds {seconds}: expected a positive number of seconds"
            )),
        }
    }
}

/// Token lifetimes, in seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    #[serde(default = "default_access_lifetime")]
    pub access_token_lifetime: i64,
    #[serde(default = "default_id_lifetime")]
    pub id_token_lifetime: i64,
    /// How often every instance re-reads the signing keys from the database, so a key
    /// rotated elsewhere (`idlink keys rotate`, another instance) is picked up for
    /// signing and published in the JWKS.
    #[serde(default = "default_key_refresh_interval")]
    pub key_refresh_interval: u64,
    /// Absolute lifetime of a refresh token family (Auth0's default: 30 days).
    #[serde(default = "default_refresh_lifetime")]
    pub refresh_token_lifetime: i64,
    /// How long a sign-in session (the login page's cookie) lasts (Auth0: 3 days idle,
    /// here absolute).
    #[serde(default = "default_session_lifetime")]
    pub session_lifetime: i64,
}

fn default_refresh_lifetime() -> i64 {
    2_592_000
}

fn default_session_lifetime() -> i64 {
    259_200
}

fn default_key_refresh_interval() -> u64 {
    60
}

fn default_access_lifetime() -> i64 {
    86_400
}
fn default_id_lifetime() -> i64 {
    36_000
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            access_token_lifetime: default_access_lifetime(),
            id_token_lifetime: default_id_lifetime(),
            key_refresh_interval: default_key_refresh_interval(),
            refresh_token_lifetime: default_refresh_lifetime(),
            session_lifetime: default_session_lifetime(),
        }
    }
}

/// An extra connection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    pub name: String,
    /// `auth0` for a database connection, else the provider (`google-oauth2`, `oidc`, …).
    pub strategy: String,
    /// A social connection that signs in through idlink's emulated identity-provider
    /// page (the tester enters the provider-side identity).
    #[serde(default)]
    pub emulated: bool,
    /// A database connection whose login page offers no sign-up (Auth0's
    /// `disable_signup`).
    #[serde(default)]
    pub disable_signup: bool,
    /// A database connection's password strength (Auth0's `passwordPolicy`: `none`,
    /// `low`, `fair`, `good`, `excellent`); default `good`, as Auth0 gives a new tenant.
    pub password_policy: Option<crate::domain::password::PasswordPolicy>,
    /// Auth0's `password_complexity_options` (`min_length`, 1–72).
    pub password_complexity_options: Option<PasswordComplexityOptions>,
}

/// Auth0's `options.password_complexity_options` of a database connection.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordComplexityOptions {
    /// Shortest password accepted, replacing the policy level's own minimum.
    pub min_length: Option<u32>,
}

impl ConnectionConfig {
    /// The connection's password rule (only database connections have one).
    pub fn password_rule(&self) -> crate::domain::password::PasswordRule {
        crate::domain::password::PasswordRule {
            policy: self.password_policy.unwrap_or_default(),
            min_length: self.password_complexity_options.and_then(|o| o.min_length),
        }
    }
}

/// An extra client.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub name: String,
    pub client_id: String,
    /// Omit for a public client (no secret; password grants only).
    pub client_secret: Option<String>,
    #[serde(default)]
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `spa`, `regular_web`, `native` or `non_interactive` (Auth0's `app_type`).
    pub app_type: Option<String>,
    /// Allowed callback URLs of `/authorize` (exact match, as Auth0).
    #[serde(default)]
    pub callbacks: Vec<String>,
    /// Allowed `returnTo` URLs of `/v2/logout`.
    #[serde(default)]
    pub allowed_logout_urls: Vec<String>,
    /// Origins allowed to call `/oauth/token` and `/userinfo` from a browser (CORS).
    #[serde(default)]
    pub web_origins: Vec<String>,
    /// `none` (public: SPAs, native apps), `client_secret_post` or `client_secret_basic`.
    pub token_endpoint_auth_method: Option<String>,
}

/// An API (resource server) of the tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceServerConfig {
    /// Display name (default: the identifier).
    pub name: Option<String>,
    /// The `audience` apps ask tokens for, e.g. `https://api.example.com/`.
    pub identifier: String,
    /// Its permissions: `"read:items"` or `{ value = "read:items", description = "…" }`.
    #[serde(default)]
    pub scopes: Vec<ScopeConfig>,
    /// Seconds its access tokens live (default: `tokens.access_token_lifetime`).
    pub token_lifetime: Option<i64>,
    /// Only `RS256` (so its tokens verify with the tenant's JWKS).
    pub signing_alg: Option<String>,
    /// Whether `offline_access` gets a refresh token for it (Auth0's default: false).
    #[serde(default)]
    pub allow_offline_access: bool,
}

/// One permission of an API.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ScopeConfig {
    Name(String),
    Described {
        value: String,
        #[serde(default)]
        description: String,
    },
}

impl ScopeConfig {
    /// The scope's value.
    pub fn value(&self) -> &str {
        match self {
            Self::Name(v) | Self::Described { value: v, .. } => v,
        }
    }

    /// Its description (empty when none was given).
    pub fn description(&self) -> &str {
        match self {
            Self::Name(_) => "",
            Self::Described { description, .. } => description,
        }
    }
}

/// Lets a client get an API's scopes by client credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientGrantConfig {
    pub client_id: String,
    /// The API's identifier.
    pub audience: String,
    #[serde(default)]
    pub scope: Vec<String>,
}

/// The shortest client secret accepted: 32 characters, as Auth0's generated secrets
/// are far longer and a short one can be guessed offline from a token request.
pub const MIN_CLIENT_SECRET_LEN: usize = 32;

/// The grant types Auth0 knows for an application (`grant_types`); anything else is a
/// typo that would silently never work.
pub const KNOWN_GRANT_TYPES: &[&str] = &[
    "authorization_code",
    "implicit",
    "refresh_token",
    "client_credentials",
    "password",
    "http://auth0.com/oauth/grant-type/password-realm",
    "http://auth0.com/oauth/grant-type/passwordless/otp",
    "http://auth0.com/oauth/grant-type/mfa-oob",
    "http://auth0.com/oauth/grant-type/mfa-otp",
    "http://auth0.com/oauth/grant-type/mfa-recovery-code",
    "urn:ietf:params:oauth:grant-type:device_code",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:openid:params:grant-type:ciba",
];

/// Checks a client secret's length; `key` names where it came from.
pub fn check_client_secret(key: &str, secret: &str) -> Result<(), String> {
    let length = secret.chars().count();
    if length < MIN_CLIENT_SECRET_LEN {
        return Err(format!(
            "{key}: a client secret needs at least {MIN_CLIENT_SECRET_LEN} characters (this one has {length}); generate one with `openssl rand -hex 32`"
        ));
    }
    Ok(())
}

/// Checks that `url` is an absolute http(s) URL without query or fragment.
pub fn check_public_url(key: &str, url: &str) -> Result<(), String> {
    let refuse = |why: &str| {
        Err(format!(
            "{key}: {url:?} is not a URL clients can reach ({why}); expected e.g. https://id.example.com"
        ))
    };
    let Ok(uri) = url.parse::<http::Uri>() else {
        return refuse("it does not parse");
    };
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return refuse("the scheme must be http or https"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return refuse("it has no host");
    }
    if uri.query().is_some() || url.contains('#') {
        return refuse("it has a query or fragment");
    }
    Ok(())
}

impl TenantConfig {
    /// Refuses what Auth0 would refuse or what would silently never work, naming the
    /// key path: unknown grant types and Management scopes, short client secrets,
    /// duplicate client ids and connection names.
    pub fn validate(&self) -> Result<(), String> {
        let mut connection_names = std::collections::HashSet::new();
        for (i, connection) in self.connections.iter().enumerate() {
            if !connection_names.insert(connection.name.as_str()) {
                return Err(format!(
                    "connections[{i}].name: the connection name {:?} is used twice",
                    connection.name
                ));
            }
            let has_password_options = connection.password_policy.is_some()
                || connection.password_complexity_options.is_some();
            if has_password_options && connection.strategy != "auth0" {
                return Err(format!(
                    "connections[{i}].password_policy: only a database connection (strategy \"auth0\") has a password policy; {:?} is {:?}",
                    connection.name, connection.strategy
                ));
            }
            if let Some(min) = connection
                .password_complexity_options
                .and_then(|o| o.min_length)
                && !crate::domain::password::MIN_LENGTH_RANGE.contains(&min)
            {
                return Err(format!(
                    "connections[{i}].password_complexity_options.min_length: {min} is out of Auth0's range 1-72"
                ));
            }
        }
        crate::events::EventSettings::from_config(&self.events, &self.webhooks)?;
        let mut client_ids = std::collections::HashSet::new();
        for (i, client) in self.clients.iter().enumerate() {
            if !client_ids.insert(client.client_id.as_str()) {
                return Err(format!(
                    "clients[{i}].client_id: the client id {:?} is used twice",
                    client.client_id
                ));
            }
            if let Some(secret) = &client.client_secret {
                check_client_secret(&format!("clients[{i}].client_secret"), secret)?;
            }
            for (j, grant) in client.grant_types.iter().enumerate() {
                if !KNOWN_GRANT_TYPES.contains(&grant.as_str()) {
                    return Err(format!(
                        "clients[{i}].grant_types[{j}]: unknown grant type {grant:?}; expected one of {}",
                        KNOWN_GRANT_TYPES.join(", ")
                    ));
                }
            }
            for (j, scope) in client.scopes.iter().enumerate() {
                if !crate::auth::scopes::MANAGEMENT_SCOPES.contains(&scope.as_str()) {
                    return Err(format!(
                        "clients[{i}].scopes[{j}]: unknown Management API scope {scope:?}; expected one of {}",
                        crate::auth::scopes::MANAGEMENT_SCOPES.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }

    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        Self::parse(&text)
            .and_then(|config| config.validate().map(|()| config))
            .map_err(|e| format!("invalid config file {}: {e}", path.display()))
    }

    /// Parses a config file's text. An error names the key path (`clients[0].nmae`),
    /// so a typo is found without reading the whole file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let deserializer = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.message().trim_end().to_owned();
            let position = inner
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            if path == "." {
                format!("{message}{position}")
            } else {
                format!("at {path}: {message}{position}")
            }
        })
    }
}

impl Config {
    /// Checks what the flags set (the file's own checks ran when it was loaded, and
    /// run again here for configs built in code).
    pub fn validate(&self) -> Result<(), String> {
        self.tenant.validate()?;
        if let Some(url) = &self.public_url {
            check_public_url("--public-url", url)?;
        }
        if let Some(secret) = &self.admin_client_secret {
            check_client_secret("--admin-client-secret", secret)?;
        }
        Ok(())
    }

    /// The SQLite file behind `database_url`, if it is one.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self.database_url.strip_prefix("sqlite:")?;
        let rest = rest.trim_start_matches("//");
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }

    /// Where `--tls-self-signed` keeps its certificate: beside a SQLite database file,
    /// else the working directory.
    pub fn tls_dir(&self) -> PathBuf {
        self.sqlite_path()
            .and_then(|db| db.parent().map(Path::to_path_buf))
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Where generated credentials go.
    pub fn credentials_path(&self) -> Option<PathBuf> {
        self.credentials_file.clone().or_else(|| {
            let db = self.sqlite_path()?;
            Some(
                db.parent()
                    .unwrap_or_else(|| Path::new(""))
                    .join("idlink-credentials.json"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        let mut config = Config::default();
        assert_eq!(config.sqlite_path(), Some(PathBuf::from("idlink.db")));
        assert_eq!(
            config.credentials_path(),
            Some(PathBuf::from("idlink-credentials.json"))
        );
        config.database_url = "sqlite:///var/lib/idlink/data.db?mode=rwc".into();
        assert_eq!(
            config.sqlite_path(),
            Some(PathBuf::from("/var/lib/idlink/data.db"))
        );
        assert_eq!(
            config.credentials_path(),
            Some(PathBuf::from("/var/lib/idlink/idlink-credentials.json"))
        );
    }

    #[test]
    fn config_file_parses() {
        let file: TenantConfig = toml::from_str(
            r#"
            domain = "t.example.com"
            rate_limit = "free"
            [tokens]
            access_token_lifetime = 60
            [[connections]]
            name = "corp"
            strategy = "auth0"
            [[clients]]
            name = "spa"
            client_id = "spa"
            grant_types = ["password"]
            "#,
        )
        .unwrap();
        assert_eq!(file.tokens.access_token_lifetime, 60);
        assert_eq!(file.tokens.id_token_lifetime, 36_000);
        assert_eq!(file.connections[0].strategy, "auth0");
        assert!(file.clients[0].client_secret.is_none());
        assert!(toml::from_str::<TenantConfig>("bogus = 1").is_err());
    }

    fn refusal(toml: &str) -> String {
        match TenantConfig::parse(toml).and_then(|c| c.validate()) {
            Ok(()) => panic!("accepted: {toml}"),
            Err(e) => e,
        }
    }

    #[test]
    fn strict_config_refuses_with_the_key_path() {
        let client =
            |extra: &str| format!("[[clients]]\nname = \"a\"\nclient_id = \"a\"\n{extra}\n");
        let cases = [
            (client("nmae = 1"), "clients[0].nmae"),
            (client("grant_types = [\"client_credentials\", \"passwrd\"]"), "clients[0].grant_types[1]"),
            (client("scopes = [\"read:users\", \"read:user\"]"), "clients[0].scopes[1]"),
            (client("client_secret = \"too-short-0123456789\""), "clients[0].client_secret"),
            (client("") + &client(""), "clients[1].client_id"),
            (
                "[[connections]]\nname = \"c\"\nstrategy = \"auth0\"\n[[connections]]\nname = \"c\"\nstrategy = \"okta\"\n".to_owned(),
                "connections[1].name",
            ),
            ("[tokens]\naccess_token_lifetme = 5\n".to_owned(), "tokens.access_token_lifetme"),
            (
                "[[connections]]\nname = \"c\"\nstrategy = \"auth0\"\npassword_policy = \"strong\"\n".to_owned(),
                "connections[0].password_policy",
            ),
            (
                "[[connections]]\nname = \"g\"\nstrategy = \"okta\"\npassword_policy = \"low\"\n".to_owned(),
                "connections[0].password_policy",
            ),
            (
                "[[connections]]\nname = \"c\"\nstrategy = \"auth0\"\n[connections.password_complexity_options]\nmin_length = 73\n".to_owned(),
                "connections[0].password_complexity_options.min_length",
            ),
            (
                "[[connections]]\nname = \"c\"\nstrategy = \"auth0\"\n[connections.password_complexity_options]\nmin_lenght = 9\n".to_owned(),
                "connections[0].password_complexity_options.min_lenght",
            ),
        ];
        for (toml, path) in cases {
            let err = refusal(&toml);
            assert!(err.contains(path), "{path:?} not in {err:?}");
        }
        // What is valid stays valid.
        let connection = TenantConfig::parse(
            "[[connections]]\nname = \"c\"\nstrategy = \"auth0\"\npassword_policy = \"excellent\"\n[connections.password_complexity_options]\nmin_length = 12\n",
        )
        .unwrap();
        connection.validate().unwrap();
        assert_eq!(
            connection.connections[0].password_rule(),
            crate::domain::password::PasswordRule {
                policy: crate::domain::password::PasswordPolicy::Excellent,
                min_length: Some(12),
            }
        );
        TenantConfig::parse(&client(&format!(
            "client_secret = \"{}\"\ngrant_types = [\"client_credentials\", \"authorization_code\"]\nscopes = [\"read:users\", \"update:users\"]",
            "s".repeat(32)
        )))
        .unwrap()
        .validate()
        .unwrap();
    }

    #[test]
    fn linking_at_sign_in_is_off_unless_set_and_refuses_unknown_values() {
        use crate::domain::sign_in_linking::AtSignIn;
        let default = TenantConfig::parse("").unwrap();
        assert_eq!(default.linking.at_sign_in, AtSignIn::Off);
        let prompt = TenantConfig::parse("[linking]\nat_sign_in = \"prompt\"\n").unwrap();
        assert_eq!(prompt.linking.at_sign_in, AtSignIn::Prompt);
        let off = TenantConfig::parse("[linking]\nat_sign_in = \"off\"\n").unwrap();
        assert_eq!(off.linking.at_sign_in, AtSignIn::Off);
        for bad in ["\"auto\"", "\"Prompt\"", "true"] {
            let err = refusal(&format!("[linking]\nat_sign_in = {bad}\n"));
            assert!(err.contains("linking.at_sign_in"), "{err}");
        }
    }

    #[test]
    fn public_urls_must_be_reachable_urls() {
        for good in [
            "https://id.example.com",
            "http://127.0.0.1:8080",
            "https://h.example/base/",
        ] {
            check_public_url("--public-url", good).unwrap();
        }
        for bad in [
            "id.example.com",
            "ftp://h.example",
            "https://",
            "https://h?x=1",
            "not a url",
        ] {
            let err = check_public_url("--public-url", bad).unwrap_err();
            assert!(err.starts_with("--public-url"), "{err}");
        }
    }
}
