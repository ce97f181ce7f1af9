//! `idlink logs [--user ID]`.

use idlink_client::ListLogsRequestParameters;

use super::CliError;
use super::output::OutputArgs;
use super::target::TargetArgs;

/// `idlink logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Only the events about this user (GET /api/v2/users/{id}/logs, scope read:logs_users);
    /// without it, the tenant's log (GET /api/v2/logs, scope read:logs).
    #[arg(long, value_name = "USER_ID")]
    user: Option<String>,
    /// A Lucene query on the tenant's log, e.g. type:fapi (not with --user).
    #[arg(long, short = 'q', conflicts_with = "user")]
    query: Option<String>,
    /// Oldest first instead of newest first.
    #[arg(long)]
    oldest_first: bool,
    /// Page index, from 0.
    #[arg(long, default_value_t = 0)]
    page: u32,
    /// Events per page (the API allows at most 100).
    #[arg(long, default_value_t = 50)]
    per_page: u32,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Prints one page of log events.
pub async fn run(args: LogsArgs) -> Result<(), CliError> {
    let client = args.target.client()?;
    let params = ListLogsRequestParameters {
        page: Some(args.page),
        per_page: Some(args.per_page),
        q: args.query,
        sort: Some(
            if args.oldest_first {
                "date:1"
            } else {
                "date:-1"
            }
            .to_owned(),
        ),
    };
    let events = match &args.user {
        Some(user) => client.logs().list_for_user(user, params, None).await?,
        None => client.logs().list(params, None).await?,
    };
    args.output.list(&events)
}
