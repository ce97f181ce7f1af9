//! How a management command ends: the error kinds and their exit codes.

use std::fmt;
use std::process::ExitCode;

/// The exit codes, as `--help` and `docs/cli.md` list them.
pub const EXIT_CODES_HELP: &str = "\
Exit codes of the management commands (users, link, unlink, logs, suggest-links,\
apply-links):
  0  success
  1  transport or other failure (server unreachable, timeout, unexpected answer)
  2  usage error (bad flag or argument, no target, bad --json/--field input)
  3  API error: the server answered with an error (its status, errorCode and message
     are printed on stderr)
  4  partial failure: some of several items failed (each failure is printed)
130  interrupted (Ctrl-C); apply-links resumes where it stopped when run again";

/// Why a management command failed.
#[derive(Debug)]
pub enum CliError {
    /// The command line is unusable (exit 2, as clap's own usage errors).
    Usage(String),
    /// The server answered with an error, or could not be reached (exit 3 or 1).
    Client(idlink_client::Error),
    /// Some of several items failed; the failures were already printed (exit 4).
    Partial {
        /// How many items failed.
        failed: usize,
        /// How many were attempted.
        total: usize,
    },
    /// Stopped by Ctrl-C before the end (exit 130, as a shell reports SIGINT).
    Interrupted,
}

impl CliError {
    /// The exit code of this failure.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Usage(_) => 2,
            Self::Client(e) if e.api_error().is_some() => 3,
            Self::Client(idlink_client::Error::Config(_)) => 2,
            Self::Client(_) => 1,
            Self::Partial { .. } => 4,
            Self::Interrupted => 130,
        })
    }
}

impl From<idlink_client::Error> for CliError {
    fn from(error: idlink_client::Error) -> Self {
        Self::Client(error)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(message) => f.write_str(message),
            Self::Client(e) => match e.api_error() {
                // The Auth0 error triple, so scripts can grep the errorCode.
                Some(api) => write!(
                    f,
                    "API error {} {}: {}",
                    api.status_code(),
                    api.error_code().unwrap_or("-"),
                    api.message()
                ),
                None => write!(f, "{e}"),
            },
            Self::Partial { failed, total } => write!(f, "{failed} of {total} failed"),
            Self::Interrupted => f.write_str("interrupted; run the same command again to resume"),
        }
    }
}
