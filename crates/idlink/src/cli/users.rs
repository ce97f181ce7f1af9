//! `idlink users list|search|get|create|update|delete`.

use clap::Subcommand;
use idlink_client::{
    CreateUserRequestContent, ListUsersRequestParameters, ManagementClient,
    UpdateUserRequestContent, User,
};

use super::CliError;
use super::body::BodyArgs;
use super::output::OutputArgs;
use super::paging::every_page;
use super::target::TargetArgs;

/// `idlink users …`.
#[derive(Debug, clap::Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    command: UsersCommand,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// The page flags of `list` and `search`.
#[derive(Debug, Clone, Copy, clap::Args)]
struct PageArgs {
    /// Page index, from 0.
    #[arg(long, default_value_t = 0, conflicts_with = "all")]
    page: u32,
    /// Users per page (the API allows at most 100).
    #[arg(long, default_value_t = 50, conflicts_with = "all")]
    per_page: u32,
    /// Every page, read 100 at a time (Auth0 answers only the first 1,000 results).
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// One page of users (GET /api/v2/users).
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Users matching a Lucene query, e.g. 'email:"a@example.com"' (q, search_engine=v3).
    Search {
        /// The Lucene query.
        query: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// One user, with its identities.
    Get {
        /// The user's full id, e.g. auth0|5f7c8ec7c33c6c004bbafe82.
        id: String,
    },
    /// Create a user (POST /api/v2/users); `connection` is required.
    Create {
        #[command(flatten)]
        body: BodyArgs,
    },
    /// Update a user (PATCH /api/v2/users/{id}); metadata is merged at the top level.
    Update {
        /// The user's full id.
        id: String,
        #[command(flatten)]
        body: BodyArgs,
    },
    /// Delete users and every identity linked to them; exit 4 if only some succeed.
    Delete {
        /// The users' full ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// Runs `idlink users …`.
pub async fn run(args: UsersArgs) -> Result<(), CliError> {
    let client = args.target.client()?;
    let output = args.output;
    match args.command {
        UsersCommand::List { page } => output.list(&page.users(&client, None).await?),
        UsersCommand::Search { query, page } => {
            output.list(&page.users(&client, Some(query)).await?)
        }
        UsersCommand::Get { id } => output.one(&client.users().get(&id, None).await?),
        UsersCommand::Create { body } => {
            let request: CreateUserRequestContent = body.typed()?;
            output.one(&client.users().create(request, None).await?)
        }
        UsersCommand::Update { id, body } => {
            let request: UpdateUserRequestContent = body.typed()?;
            output.one(&client.users().update(&id, request, None).await?)
        }
        UsersCommand::Delete { ids } => delete(&client, &output, &ids).await,
    }
}

impl PageArgs {
    /// The page asked for, or with `--all` every page.
    async fn users(
        self,
        client: &ManagementClient,
        q: Option<String>,
    ) -> Result<Vec<User>, CliError> {
        if self.all {
            return all_users(client, q).await;
        }
        let params = users_page(self.page, self.per_page, q);
        Ok(client.users().list(params, None).await?.into_users())
    }
}

/// One page of `GET /api/v2/users`, searched with `q` when given.
fn users_page(page: u32, per_page: u32, q: Option<String>) -> ListUsersRequestParameters {
    ListUsersRequestParameters {
        page: Some(page),
        per_page: Some(per_page),
        include_totals: None,
        search_engine: q.is_some().then(|| "v3".to_owned()),
        q,
    }
}

/// Every user (matching `q` when given), page after page.
pub async fn all_users(
    client: &ManagementClient,
    q: Option<String>,
) -> Result<Vec<User>, CliError> {
    every_page(|page, per_page| {
        let request = client
            .users()
            .list(users_page(page, per_page, q.clone()), None);
        async move { Ok(request.await?.into_users()) }
    })
    .await
}

/// Deletes each user in turn; one failure does not stop the others.
async fn delete(
    client: &ManagementClient,
    output: &OutputArgs,
    ids: &[String],
) -> Result<(), CliError> {
    if let [id] = ids {
        client.users().delete(id, None).await?;
        output.note(&format!("deleted {id}"));
        return Ok(());
    }
    let mut failures = Vec::new();
    for id in ids {
        match client.users().delete(id, None).await {
            Ok(()) => output.note(&format!("deleted {id}")),
            Err(error) => {
                let error = CliError::from(error);
                eprintln!("idlink: {id:?}: {error}");
                failures.push(error);
            }
        }
    }
    match (failures.len(), ids.len()) {
        (0, _) => Ok(()),
        // Nothing succeeded: the run failed as its first item did.
        (failed, total) if failed == total => Err(failures.remove(0)),
        (failed, total) => Err(CliError::Partial { failed, total }),
    }
}
