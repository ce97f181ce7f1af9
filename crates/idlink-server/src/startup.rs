//! Why the server could not start, in words an operator can act on: what failed, where
//! (the database URL without its password, the file path, the address), what to do,
//! and a sysexits-style exit code per kind of failure (documented in `idlink --help`
//! and `docs/operations.md`).

use std::fmt;
use std::io;
use std::path::Path;

/// The kind of start-up failure; each has its own exit code (sysexits.h numbers, so
/// supervisors and scripts can tell a config mistake from a database outage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartKind {
    /// 78 EX_CONFIG: the config file, a flag value or the database URL is wrong.
    Config,
    /// 69 EX_UNAVAILABLE: the database did not answer within the connect bound.
    Unavailable,
    /// 73 EX_CANTCREAT: a file or directory could not be created.
    CantCreate,
    /// 77 EX_NOPERM: permission denied (read-only database file, refused login).
    NoPermission,
    /// 71 EX_OSERR: the address cannot be listened on (in use, not local).
    Listen,
    /// 65 EX_DATAERR: the database holds something this version cannot use.
    Data,
    /// 70 EX_SOFTWARE: anything else (a bug).
    Software,
}

impl StartKind {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Config => 78,
            Self::Unavailable => 69,
            Self::CantCreate => 73,
            Self::NoPermission => 77,
            Self::Listen => 71,
            Self::Data => 65,
            Self::Software => 70,
        }
    }
}

/// The exit codes of `idlink serve` (and `idlink keys rotate`), for `--help`.
pub const EXIT_CODES: &str = "\
Exit codes of serve and keys rotate:
  0  stopped cleanly (SIGTERM / Ctrl-C)
 65  the database holds data this version cannot use (e.g. a newer schema)
 69  the database did not answer within --db-connect-timeout
 70  internal error (a bug: please report it)
 71  cannot listen on --bind / --metrics-bind (address in use or not local)
 73  cannot create the database file or its directory
 77  permission denied (read-only database file, PostgreSQL refused the login)
 78  configuration error (config file key or value, flag value, database URL)";

/// A start-up failure: what, where and what to do.
#[derive(Debug)]
pub struct StartError {
    pub kind: StartKind,
    /// What failed and where.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl StartError {
    pub fn new(kind: StartKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds what the operator can do.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A config mistake.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(StartKind::Config, message)
    }

    /// Listening on `address` (named by `flag`) failed with `err`.
    pub fn listen(address: &str, flag: &str, err: &io::Error) -> Self {
        let what = format!("cannot listen on {address} ({flag}): {err}");
        match err.kind() {
            io::ErrorKind::AddrInUse => Self::new(StartKind::Listen, what).hint(format!(
                "another process (perhaps another idlink) holds that port: stop it, or choose another address with {flag} HOST:PORT"
            )),
            io::ErrorKind::AddrNotAvailable => Self::new(StartKind::Listen, what).hint(format!(
                "that address is not one of this machine's: use 127.0.0.1, 0.0.0.0 or a local interface's address in {flag}"
            )),
            io::ErrorKind::PermissionDenied => Self::new(StartKind::NoPermission, what).hint(
                "ports below 1024 need privileges: use a port above 1024 (e.g. 8080) behind a proxy",
            ),
            _ => Self::new(StartKind::Listen, what)
                .hint(format!("check the address in {flag} (HOST:PORT)")),
        }
    }

    /// A file operation on `path` failed with `err`.
    pub fn file(what: &str, path: &Path, err: &io::Error) -> Self {
        let message = format!("{what} {}: {err}", path.display());
        match err.kind() {
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                Self::new(StartKind::NoPermission, message).hint(format!(
                    "idlink must be able to write {} and create files beside it (the -wal and -shm files): fix the permissions or run idlink as the owner",
                    path.display()
                ))
            }
            _ => Self::new(StartKind::CantCreate, message),
        }
    }

    /// The error of a failed start that went through the store's error type: a
    /// [`StartError`] the store made, or a generic one.
    pub fn from_store(err: crate::error::Error, database: &str) -> Self {
        if let crate::error::Error::Internal(inner) = err {
            match inner.downcast::<StartError>() {
                Ok(start) => *start,
                Err(other) => Self::new(
                    StartKind::Software,
                    format!("cannot open the database {database}: {other}"),
                ),
            }
        } else {
            Self::new(
                StartKind::Software,
                format!("cannot open the database {database}: {err}"),
            )
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StartError {}

impl From<String> for StartError {
    /// Messages of the config checks.
    fn from(message: String) -> Self {
        Self::config(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_distinct_sysexits_codes() {
        use StartKind::*;
        let codes: std::collections::BTreeSet<u8> = [
            Config,
            Unavailable,
            CantCreate,
            NoPermission,
            Listen,
            Data,
            Software,
        ]
        .iter()
        .map(|k| k.exit_code())
        .collect();
        assert_eq!(codes.len(), 7);
        assert!(codes.iter().all(|c| (64..=78).contains(c)));
    }

    #[test]
    fn a_port_in_use_names_the_address_and_the_flag() {
        let err = StartError::listen(
            "127.0.0.1:8080",
            "--bind",
            &io::Error::from(io::ErrorKind::AddrInUse),
        );
        assert_eq!(err.kind, StartKind::Listen);
        let text = err.to_string();
        assert!(
            text.contains("127.0.0.1:8080") && text.contains("--bind"),
            "{text}"
        );
    }

    #[test]
    fn store_errors_keep_their_start_error() {
        let inner = StartError::config("bad URL");
        let err = StartError::from_store(crate::error::Error::internal(inner), "db");
        assert_eq!(err.kind, StartKind::Config);
        let other = StartError::from_store(crate::error::Error::internal("boom"), "db");
        assert_eq!(other.kind, StartKind::Software);
    }
}
