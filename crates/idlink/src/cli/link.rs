//! `idlink link PRIMARY PROVIDER USER_ID` and `idlink unlink PRIMARY PROVIDER USER_ID`.

use idlink_client::{LinkUserIdentityRequestContent, UserIdentityProviderEnum};

use super::CliError;
use super::output::OutputArgs;
use super::target::TargetArgs;

/// The account a link or unlink is about.
#[derive(Debug, clap::Args)]
struct IdentityArgs {
    /// The primary user's full id, e.g. auth0|5f7c8ec7c33c6c004bbafe82.
    primary: String,
    /// The secondary identity's provider, e.g. google-oauth2, github, auth0.
    provider: String,
    /// The secondary identity's id at the provider: the part after `PROVIDER|`.
    user_id: String,
}

impl IdentityArgs {
    fn provider(&self) -> UserIdentityProviderEnum {
        UserIdentityProviderEnum::from(self.provider.as_str())
    }
}

/// `idlink link`.
#[derive(Debug, clap::Args)]
pub struct LinkArgs {
    #[command(flatten)]
    identity: IdentityArgs,
    /// The secondary identity's connection id, when several connections share the provider.
    #[arg(long)]
    connection_id: Option<String>,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// `idlink unlink`.
#[derive(Debug, clap::Args)]
pub struct UnlinkArgs {
    #[command(flatten)]
    identity: IdentityArgs,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Links the identity and prints the primary's identities, primary first.
pub async fn run_link(args: LinkArgs) -> Result<(), CliError> {
    let client = args.target.client()?;
    let identity = &args.identity;
    let request = LinkUserIdentityRequestContent {
        connection_id: args.connection_id,
        ..LinkUserIdentityRequestContent::identity(identity.provider(), identity.user_id.as_str())
    };
    let identities = client
        .users()
        .identities()
        .link(&identity.primary, request, None)
        .await?;
    args.output.list(&identities)
}

/// Unlinks the identity and prints the identities that remain.
pub async fn run_unlink(args: UnlinkArgs) -> Result<(), CliError> {
    let client = args.target.client()?;
    let identity = &args.identity;
    let remaining = client
        .users()
        .identities()
        .delete(
            &identity.primary,
            identity.provider(),
            identity.user_id.as_str(),
            None,
        )
        .await?;
    args.output.list(&remaining)
}
