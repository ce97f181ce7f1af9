//! Link and unlink two accounts against a running idlink (or Auth0) server.
//!
//! ```sh
//! idlink serve &                         # prints the admin credentials on first start
//! IDLINK_URL=http://127.0.0.1:8080 \
//! IDLINK_ADMIN_CLIENT_ID=… IDLINK_ADMIN_CLIENT_SECRET=… \
//!     cargo run -p idlink-client --example link_accounts
//! ```
//!
//! Creates a database user and a GitHub user (idlink accepts social users with an
//! explicit id; on Auth0, point it at users that exist and skip the creation), links the
//! GitHub identity to the database user, shows the result, unlinks it again and cleans up.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use idlink_client::{
    CreateUserRequestContent, Error, LinkUserIdentityRequestContent, ManagementClient,
    RequestOptions, UserId, UserIdentityProviderEnum as Provider,
};

fn env(name: &str) -> Result<String, Box<dyn std::error::Error>> {
    std::env::var(name).map_err(|_| format!("set {name}").into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = env("IDLINK_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let client = ManagementClient::builder()
        .base_url(format!("{}/api/v2", url.trim_end_matches('/')))
        .client_credentials(
            env("IDLINK_ADMIN_CLIENT_ID")?,
            env("IDLINK_ADMIN_CLIENT_SECRET")?,
        )
        .build()?;

    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let primary = client
        .users()
        .create(
            CreateUserRequestContent {
                connection: "Username-Password-Authentication".into(),
                email: Some(format!("example-{stamp}@example.com")),
                password: Some(format!("Example-password-{stamp}")),
                ..Default::default()
            },
            None,
        )
        .await?;
    let github = client
        .users()
        .create(
            CreateUserRequestContent {
                connection: "github".into(),
                user_id: Some(UserId::from(stamp)),
                email: Some(format!("octo-{stamp}@example.com")),
                ..Default::default()
            },
            None,
        )
        .await?;
    println!("created {} and {}", primary.user_id, github.user_id);

    let linked = client
        .users()
        .identities()
        .link(
            &primary.user_id,
            LinkUserIdentityRequestContent::identity(Provider::Github, stamp),
            None,
        )
        .with_raw_response()
        .await?;
    println!(
        "linked: HTTP {} ({} calls left in the rate-limit bucket)",
        linked.raw_response.status_code,
        linked
            .raw_response
            .headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?"),
    );
    for identity in &linked.data {
        println!(
            "  {}|{} ({})",
            identity.provider, identity.user_id, identity.connection
        );
    }

    // Linking it again is a conflict: a typed error with Auth0's errorCode.
    match client
        .users()
        .identities()
        .link(
            &primary.user_id,
            LinkUserIdentityRequestContent::identity(Provider::Github, stamp),
            None,
        )
        .await
    {
        Err(Error::Conflict(e)) => println!("linking twice: 409 {:?}", e.error_code()),
        other => println!("linking twice: unexpected {other:?}"),
    }

    let remaining = client
        .users()
        .identities()
        .delete(
            &primary.user_id,
            Provider::Github,
            stamp,
            Some(
                RequestOptions::new()
                    .max_retries(5)
                    .timeout(Duration::from_secs(10)),
            ),
        )
        .await?;
    println!(
        "unlinked: {} identity left on {}",
        remaining.len(),
        primary.user_id
    );

    for id in [&primary.user_id, &github.user_id] {
        client.users().delete(id, None).await?;
    }
    println!("cleaned up");
    Ok(())
}
