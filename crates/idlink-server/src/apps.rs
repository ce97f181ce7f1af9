//! The tenant's applications as sign-in sees them, its APIs (resource servers) and the
//! client grants between them — all from the config file, loaded once at start-up
//! (every instance applies the same file, as with connections).
//!
//! Pure data and rules: exact callback matching, logout URLs, CORS origins, which API
//! scopes a client may get.

use std::collections::{HashMap, HashSet};

use md5::{Digest, Md5};

use crate::config::{ClientConfig, Config};

/// Auth0's `app_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppType {
    Spa,
    RegularWeb,
    Native,
    NonInteractive,
}

impl AppType {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "spa" => Self::Spa,
            "regular_web" => Self::RegularWeb,
            "native" => Self::Native,
            "non_interactive" => Self::NonInteractive,
            _ => return None,
        })
    }

    /// The grant types Auth0 gives a new application of this type when none are set.
    pub fn default_grant_types(self) -> &'static [&'static str] {
        match self {
            Self::Spa | Self::Native => &["authorization_code", "implicit", "refresh_token"],
            Self::RegularWeb => &[
                "authorization_code",
                "implicit",
                "refresh_token",
                "client_credentials",
            ],
            Self::NonInteractive => &["client_credentials"],
        }
    }
}

/// Auth0's `token_endpoint_auth_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A public client (SPA, native app): it proves itself with PKCE, not a secret.
    None,
    ClientSecretPost,
    ClientSecretBasic,
}

/// What `/authorize`, `/v2/logout` and CORS need to know about one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSettings {
    pub app_type: Option<AppType>,
    pub callbacks: Vec<String>,
    pub allowed_logout_urls: Vec<String>,
    pub web_origins: Vec<String>,
    pub auth_method: Option<AuthMethod>,
}

impl AppSettings {
    /// A client that configures nothing (the admin client): no callbacks, no origins.
    pub const NONE: Self = Self {
        app_type: None,
        callbacks: Vec::new(),
        allowed_logout_urls: Vec::new(),
        web_origins: Vec::new(),
        auth_method: None,
    };

    /// Whether `redirect_uri` is one of the allowed callbacks. Exact string match, as
    /// Auth0 does without wildcards: no prefix, no case folding, no trailing-slash
    /// tolerance, so no open redirect through a look-alike URL.
    pub fn allows_callback(&self, redirect_uri: &str) -> bool {
        self.callbacks.iter().any(|c| c == redirect_uri)
    }

    /// Whether `return_to` is an allowed logout URL (exact match).
    pub fn allows_logout_url(&self, return_to: &str) -> bool {
        self.allowed_logout_urls.iter().any(|u| u == return_to)
    }

    /// Whether the token endpoint may be called without a secret.
    pub fn is_public(&self) -> bool {
        self.auth_method == Some(AuthMethod::None)
    }
}

/// An API whose tokens idlink issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceServer {
    /// 24 hex characters, derived from the identifier (stable across instances).
    pub id: String,
    pub name: String,
    pub identifier: String,
    /// `(value, description)`.
    pub scopes: Vec<(String, String)>,
    /// Seconds.
    pub token_lifetime: i64,
    pub allow_offline_access: bool,
}

impl ResourceServer {
    /// Whether `scope` is one of its permissions.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|(v, _)| v == scope)
    }
}

/// A client grant: `client_id` may get `scope` of `audience` by client credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientGrant {
    /// `cgr_` + 16 characters, derived from client and audience.
    pub id: String,
    pub client_id: String,
    pub audience: String,
    pub scope: Vec<String>,
}

/// Everything of the above, by id.
#[derive(Debug, Clone, Default)]
pub struct Apps {
    settings: HashMap<String, AppSettings>,
    pub resource_servers: Vec<ResourceServer>,
    pub grants: Vec<ClientGrant>,
    /// Connections (by name) whose sign-in is the emulated identity-provider page.
    emulated: HashSet<String>,
    /// Every social connection is emulated (the emulator mode).
    emulate_all: bool,
    /// Database connections (by name) without sign-up.
    signup_disabled: HashSet<String>,
    /// Database connections' password rules (by name), where the config sets one.
    password_rules: HashMap<String, crate::domain::password::PasswordRule>,
}

/// The first `len` hex characters of a digest of `input` (ids derived from config).
pub fn stable_hex(input: &str, len: usize) -> String {
    let digest = Md5::digest(input.as_bytes());
    hex::encode(digest)[..len].to_owned()
}

fn check_url(what: &str, client: &ClientConfig, url: &str) -> Result<(), String> {
    let ok = url.starts_with("https://")
        || url.starts_with("http://")
        // Native apps call back on a custom scheme (`com.example.app://callback`).
        || url.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && !rest.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'))
        });
    if ok && !url.contains('*') {
        Ok(())
    } else {
        Err(format!(
            "client {:?}: {what} {url:?} is not an absolute URL (wildcards are not supported)",
            client.client_id
        ))
    }
}

impl Apps {
    /// Reads and checks the config. `api_audience` is the Management API's identifier,
    /// which a configured API may not take over.
    pub fn from_config(config: &Config, api_audience: &str) -> Result<Self, String> {
        let tenant = &config.tenant;
        let mut settings = HashMap::new();
        for client in &tenant.clients {
            let app_type = match client.app_type.as_deref() {
                None => None,
                Some(t) => Some(AppType::parse(t).ok_or_else(|| {
                    format!(
                        "client {:?}: app_type {t:?} is not one of spa, regular_web, native, non_interactive",
                        client.client_id
                    )
                })?),
            };
            let auth_method = match client.token_endpoint_auth_method.as_deref() {
                None => None,
                Some("none") => Some(AuthMethod::None),
                Some("client_secret_post") => Some(AuthMethod::ClientSecretPost),
                Some("client_secret_basic") => Some(AuthMethod::ClientSecretBasic),
                Some(other) => {
                    return Err(format!(
                        "client {:?}: token_endpoint_auth_method {other:?} is not one of none, client_secret_post, client_secret_basic",
                        client.client_id
                    ));
                }
            };
            for url in &client.callbacks {
                check_url("callback", client, url)?;
            }
            for url in &client.allowed_logout_urls {
                check_url("allowed logout URL", client, url)?;
            }
            for origin in &client.web_origins {
                check_url("web origin", client, origin)?;
            }
            settings.insert(
                client.client_id.clone(),
                AppSettings {
                    app_type,
                    callbacks: client.callbacks.clone(),
                    allowed_logout_urls: client.allowed_logout_urls.clone(),
                    // An origin has no path: `http://localhost:3000/` means the same.
                    web_origins: client
                        .web_origins
                        .iter()
                        .map(|o| o.trim_end_matches('/').to_owned())
                        .collect(),
                    auth_method,
                },
            );
        }

        let mut resource_servers: Vec<ResourceServer> = Vec::new();
        for rs in &tenant.resource_servers {
            if rs.identifier.is_empty() {
                return Err("resource server: identifier must not be empty".into());
            }
            let api_http = api_audience.replacen("https://", "http://", 1);
            if rs.identifier == api_audience || rs.identifier == api_http {
                return Err(format!(
                    "resource server {:?}: that identifier is the Management API's",
                    rs.identifier
                ));
            }
            if resource_servers
                .iter()
                .any(|r| r.identifier == rs.identifier)
            {
                return Err(format!(
                    "resource server {:?} is configured twice",
                    rs.identifier
                ));
            }
            if let Some(alg) = rs.signing_alg.as_deref().filter(|a| *a != "RS256") {
                return Err(format!(
                    "resource server {:?}: signing_alg {alg:?} is not supported (only RS256)",
                    rs.identifier
                ));
            }
            let token_lifetime = rs
                .token_lifetime
                .unwrap_or(tenant.tokens.access_token_lifetime);
            if token_lifetime <= 0 || token_lifetime > 2_592_000 {
                return Err(format!(
                    "resource server {:?}: token_lifetime must be 1..=2592000 seconds",
                    rs.identifier
                ));
            }
            resource_servers.push(ResourceServer {
                id: stable_hex(&format!("rs:{}", rs.identifier), 24),
                name: rs.name.clone().unwrap_or_else(|| rs.identifier.clone()),
                identifier: rs.identifier.clone(),
                scopes: rs
                    .scopes
                    .iter()
                    .map(|s| (s.value().to_owned(), s.description().to_owned()))
                    .collect(),
                token_lifetime,
                allow_offline_access: rs.allow_offline_access,
            });
        }

        let mut grants: Vec<ClientGrant> = Vec::new();
        for grant in &tenant.client_grants {
            let rs = resource_servers
                .iter()
                .find(|r| r.identifier == grant.audience)
                .ok_or_else(|| {
                    format!(
                        "client grant for {:?}: audience {:?} is not a configured resource server",
                        grant.client_id, grant.audience
                    )
                })?;
            if let Some(unknown) = grant.scope.iter().find(|s| !rs.has_scope(s)) {
                return Err(format!(
                    "client grant for {:?}: scope {unknown:?} is not a scope of {:?}",
                    grant.client_id, grant.audience
                ));
            }
            if grants
                .iter()
                .any(|g| g.client_id == grant.client_id && g.audience == grant.audience)
            {
                return Err(format!(
                    "client grant for {:?} and {:?} is configured twice",
                    grant.client_id, grant.audience
                ));
            }
            grants.push(ClientGrant {
                id: format!(
                    "cgr_{}",
                    stable_hex(&format!("cgr:{}:{}", grant.client_id, grant.audience), 16)
                ),
                client_id: grant.client_id.clone(),
                audience: grant.audience.clone(),
                scope: grant.scope.clone(),
            });
        }

        Ok(Self {
            settings,
            resource_servers,
            grants,
            emulated: tenant
                .connections
                .iter()
                .filter(|c| c.emulated)
                .map(|c| c.name.clone())
                .collect(),
            emulate_all: config.emulate_identity_providers,
            signup_disabled: tenant
                .connections
                .iter()
                .filter(|c| c.disable_signup)
                .map(|c| c.name.clone())
                .collect(),
            password_rules: tenant
                .connections
                .iter()
                .map(|c| (c.name.clone(), c.password_rule()))
                .collect(),
        })
    }

    /// The settings of `client_id` ([`AppSettings::NONE`] when it configures none).
    pub fn app(&self, client_id: &str) -> &AppSettings {
        static NONE: AppSettings = AppSettings::NONE;
        self.settings.get(client_id).unwrap_or(&NONE)
    }

    /// The API whose identifier is `audience`.
    pub fn resource_server(&self, audience: &str) -> Option<&ResourceServer> {
        self.resource_servers
            .iter()
            .find(|r| r.identifier == audience)
    }

    /// The grant of `client_id` on `audience`.
    pub fn grant(&self, client_id: &str, audience: &str) -> Option<&ClientGrant> {
        self.grants
            .iter()
            .find(|g| g.client_id == client_id && g.audience == audience)
    }

    /// Whether the social connection `name` signs in through the emulated provider page.
    pub fn is_emulated(&self, name: &str) -> bool {
        self.emulate_all || self.emulated.contains(name)
    }

    /// The password rule of the database connection `name` (Auth0's default for a new
    /// tenant, `good`, when the config sets none).
    pub fn password_rule(&self, name: &str) -> crate::domain::password::PasswordRule {
        self.password_rules.get(name).copied().unwrap_or_default()
    }

    /// Whether the database connection `name` offers sign-up.
    pub fn signup_allowed(&self, name: &str) -> bool {
        !self.signup_disabled.contains(name)
    }

    /// The client that allows `origin` for CORS on `client_id`'s behalf, if any; with
    /// no client named, whether any client allows it.
    pub fn allows_origin(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        self.settings
            .values()
            .any(|s| s.web_origins.iter().any(|o| o == origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientGrantConfig, ResourceServerConfig, ScopeConfig};

    fn config() -> Config {
        let mut config = Config::default();
        config.tenant.clients.push(ClientConfig {
            name: "spa".into(),
            client_id: "spa".into(),
            app_type: Some("spa".into()),
            callbacks: vec!["http://localhost:3000/cb".into()],
            allowed_logout_urls: vec!["http://localhost:3000/".into()],
            web_origins: vec!["http://localhost:3000/".into()],
            token_endpoint_auth_method: Some("none".into()),
            ..ClientConfig::default()
        });
        config.tenant.resource_servers.push(ResourceServerConfig {
            name: None,
            identifier: "https://api.example.com/".into(),
            scopes: vec![ScopeConfig::Name("read:items".into())],
            token_lifetime: None,
            signing_alg: None,
            allow_offline_access: false,
        });
        config.tenant.client_grants.push(ClientGrantConfig {
            client_id: "m2m".into(),
            audience: "https://api.example.com/".into(),
            scope: vec!["read:items".into()],
        });
        config
    }

    #[test]
    fn callbacks_match_exactly() {
        let apps = Apps::from_config(&config(), "https://t/api/v2/").unwrap();
        let app = apps.app("spa");
        assert!(app.allows_callback("http://localhost:3000/cb"));
        for near in [
            "http://localhost:3000/cb/",
            "http://localhost:3000/CB",
            "http://localhost:3000/cb?x=1",
            "http://localhost:3000/cbx",
            "http://localhost:3000",
        ] {
            assert!(!app.allows_callback(near), "{near}");
        }
        assert!(app.is_public());
        assert!(apps.allows_origin("http://localhost:3000"));
        assert!(!apps.allows_origin("http://localhost:3001"));
        assert!(
            !apps
                .app("unknown")
                .allows_callback("http://localhost:3000/cb")
        );
    }

    #[test]
    fn grants_and_apis_are_checked() {
        let apps = Apps::from_config(&config(), "https://t/api/v2/").unwrap();
        let rs = apps.resource_server("https://api.example.com/").unwrap();
        assert_eq!(rs.token_lifetime, 86_400);
        assert_eq!(rs.id.len(), 24);
        assert!(apps.grant("m2m", "https://api.example.com/").is_some());
        assert!(apps.grant("spa", "https://api.example.com/").is_none());

        let mut bad = config();
        bad.tenant.client_grants[0].scope = vec!["write:items".into()];
        assert!(Apps::from_config(&bad, "https://t/api/v2/").is_err());
        let mut bad = config();
        bad.tenant.resource_servers[0].signing_alg = Some("HS256".into());
        assert!(Apps::from_config(&bad, "https://t/api/v2/").is_err());
        let mut bad = config();
        bad.tenant.resource_servers[0].identifier = "https://t/api/v2/".into();
        assert!(Apps::from_config(&bad, "https://t/api/v2/").is_err());
        let mut bad = config();
        bad.tenant.clients[0].callbacks = vec!["https://*.example.com/cb".into()];
        assert!(Apps::from_config(&bad, "https://t/api/v2/").is_err());
        let mut bad = config();
        bad.tenant.clients[0].app_type = Some("desktop".into());
        assert!(Apps::from_config(&bad, "https://t/api/v2/").is_err());
    }
}
