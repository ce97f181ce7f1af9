//! The operator CLI's management commands: `idlink users …`, `link`, `unlink`, `logs`,
//! `suggest-links` and `apply-links`.
//!
//! Every command talks to a server (idlink or a real Auth0 tenant) through
//! `idlink-client`, never to a store, so retries, 429 handling and token caching are the
//! client's. One module per command group; [`target`] says where to connect, [`output`]
//! how to print, [`body`] how request bodies are read, [`outcome`] how a run ends.

pub mod body;
pub mod firebase;
pub mod link;
pub mod links;
pub mod logs;
pub mod outcome;
pub mod output;
pub mod paging;
pub mod plan;
pub mod suggest;
pub mod target;
pub mod transfer;
pub mod users;

use std::process::ExitCode;

use clap::Subcommand;

pub use outcome::{CliError, EXIT_CODES_HELP};

/// The management commands, flattened into `idlink`'s top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// List, search, read, create, update and delete users.
    Users(users::UsersArgs),
    /// Link the account PROVIDER|USER_ID into the user PRIMARY (Management API mode B).
    Link(link::LinkArgs),
    /// Unlink the identity PROVIDER|USER_ID from the user PRIMARY; it becomes a user again.
    Unlink(link::UnlinkArgs),
    /// Read the tenant's log, or one user's events.
    Logs(logs::LogsArgs),
    /// Find users sharing a verified email and write a plan to link them (nothing changes).
    SuggestLinks(links::SuggestLinksArgs),
    /// Carry out a plan from suggest-links: re-checked link by link, resumable.
    ApplyLinks(links::ApplyLinksArgs),
    /// Import users with their linked identities (Auth0 JSON or NDJSON, Firebase JSON).
    Import(transfer::ImportArgs),
    /// Export every user with its identities (Auth0's NDJSON) through an export job.
    Export(transfer::ExportArgs),
}

impl RemoteCommand {
    /// Runs the command on `runtime` and maps its outcome to the documented exit code.
    pub fn run(self, runtime: &tokio::runtime::Runtime) -> ExitCode {
        let result = runtime.block_on(async {
            match self {
                Self::Users(args) => users::run(args).await,
                Self::Link(args) => link::run_link(args).await,
                Self::Unlink(args) => link::run_unlink(args).await,
                Self::Logs(args) => logs::run(args).await,
                Self::SuggestLinks(args) => links::run_suggest(args).await,
                Self::ApplyLinks(args) => links::run_apply(args).await,
                Self::Import(args) => transfer::run_import(args).await,
                Self::Export(args) => transfer::run_export(args).await,
            }
        });
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("idlink: {error}");
                error.exit_code()
            }
        }
    }
}
