//! `idlink logs [--user ID]`.

use idlink_client::{ListLogsRequestParameters, LogEvent, ManagementClient};

use super::CliError;
use super::output::OutputArgs;
use super::paging::every_page;
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
    #[arg(long, default_value_t = 0, conflicts_with = "all")]
    page: u32,
    /// Events per page (the API allows at most 100).
    #[arg(long, default_value_t = 50, conflicts_with = "all")]
    per_page: u32,
    /// Every page, read 100 at a time (Auth0 answers only the first 1,000 events this way).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Prints one page of log events, or with `--all` every page.
pub async fn run(args: LogsArgs) -> Result<(), CliError> {
    let client = args.target.client()?;
    let events = if args.all {
        every_page(|page, per_page| events_page(&client, &args, page, per_page)).await?
    } else {
        events_page(&client, &args, args.page, args.per_page).await?
    };
    args.output.list(&events)
}

/// One page of the tenant's or the user's events.
async fn events_page(
    client: &ManagementClient,
    args: &LogsArgs,
    page: u32,
    per_page: u32,
) -> Result<Vec<LogEvent>, CliError> {
    let params = ListLogsRequestParameters {
        page: Some(page),
        per_page: Some(per_page),
        q: args.query.clone(),
        sort: Some(
            if args.oldest_first {
                "date:1"
            } else {
                "date:-1"
            }
            .to_owned(),
        ),
    };
    Ok(match &args.user {
        Some(user) => client.logs().list_for_user(user, params, None).await?,
        None => client.logs().list(params, None).await?,
    })
}
