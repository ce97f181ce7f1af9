//! `idlink import FILE` and `idlink export`: moving users with their linked identities
//! through the jobs API.
//!
//! Import reads Auth0's bulk-import JSON array, Auth0's export NDJSON (identities
//! included) or Firebase's `auth:export` JSON, and rewrites it as NDJSON records of
//! Auth0's import schema plus idlink's `identities`. Against idlink that file is
//! uploaded as one import job (users arrive linked). Against an Auth0 tenant
//! (`--domain`), whose import schema has no `identities`, the users are imported without
//! them and each further identity is then linked through the link endpoint.

use std::io::{BufRead, IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use idlink_client::{
    ExportField, ExportUsersParameters, ImportUsersParameters, Job, ManagementClient,
};
use idlink_server::jobs::split::{Piece, Splitter};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use super::CliError;
use super::firebase;
use super::target::TargetArgs;

/// The formats `import` reads and `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Auth0's bulk-import file: one JSON array of users.
    Auth0Json,
    /// Auth0's user export: one JSON user a line (identities included).
    Auth0Ndjson,
    /// Firebase's `firebase auth:export --format=json`: `{"users": [...]}`.
    Firebase,
}

/// `idlink import FILE`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The file to import.
    pub file: PathBuf,
    /// The file's format [default: detected from its content].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// The database connection for users that name none.
    #[arg(long, default_value = "Username-Password-Authentication")]
    pub connection: String,
    /// Read and check the whole file and say what would be imported; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Update users that exist instead of reporting them.
    #[arg(long, conflicts_with = "all_or_nothing")]
    pub upsert: bool,
    /// Import every user or none: a refused record undoes the whole import (idlink
    /// only; a malformed file is refused before anything is sent).
    #[arg(long)]
    pub all_or_nothing: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `idlink export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The format to write: Auth0's NDJSON (with identities) by default, Auth0's
    /// bulk-import JSON array, or Firebase's `auth:export` JSON.
    #[arg(long, value_enum, default_value = "auth0-ndjson")]
    pub format: Format,
    /// Where to write [default: standard output].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only the users of this connection.
    #[arg(long)]
    pub connection: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

/// The format of a file, from its first bytes.
pub fn detect(head: &[u8]) -> Format {
    let text = String::from_utf8_lossy(head);
    let text = text.trim_start_matches('\u{feff}').trim_start();
    if text.starts_with('[') {
        Format::Auth0Json
    } else if text.starts_with('{') && text[1..].trim_start().starts_with("\"users\"") {
        Format::Firebase
    } else {
        Format::Auth0Ndjson
    }
}

/// A record with the line it starts on, or why it is not one.
type Numbered = (u64, Result<Value, String>);

/// The file's records as JSON values with their line, streamed (Auth0 formats) or read
/// whole (Firebase's single document).
fn records(path: &Path, format: Format, connection: &str) -> Result<Vec<Numbered>, CliError> {
    let mut out = Vec::new();
    if format == Format::Firebase {
        let text = std::fs::read(path)
            .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
        let document: Value = serde_json::from_slice(&text)
            .map_err(|e| usage(format!("{} is not Firebase JSON: {e}", path.display())))?;
        let users = document["users"].as_array().cloned().unwrap_or_default();
        for (index, user) in users.iter().enumerate() {
            out.push((index as u64 + 1, firebase::record_of(user, connection)));
        }
        return Ok(out);
    }
    let file = std::fs::File::open(path)
        .map_err(|e| usage(format!("cannot open {}: {e}", path.display())))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut splitter = Splitter::new(idlink_server::jobs::MAX_RECORD_BYTES);
    let mut pieces = Vec::new();
    loop {
        let buffer = reader.fill_buf().map_err(|e| usage(e.to_string()))?;
        if buffer.is_empty() {
            splitter.finish(&mut pieces);
        } else {
            splitter.feed(buffer, &mut pieces);
        }
        let consumed = buffer.len();
        reader.consume(consumed);
        for piece in pieces.drain(..) {
            out.push(match piece {
                Piece::Record { line, text } => (
                    line,
                    serde_json::from_slice::<Value>(&text)
                        .map_err(|e| format!("not valid JSON: {e}")),
                ),
                Piece::Bad { line, message, .. } => (line, Err(message)),
            });
        }
        if consumed == 0 {
            break;
        }
    }
    Ok(out)
}

fn progress(total: u64, what: &str) -> ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{what} {{bar:40}} {{pos}}/{{len}} {{per_sec}} ETA {{eta}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    }
}

async fn connection_id(client: &ManagementClient, name: &str) -> Result<String, CliError> {
    let connections: Value = client
        .request(idlink_client::Method::GET, "/connections")
        .query("name", name)
        .await?;
    connections
        .as_array()
        .and_then(|list| list.iter().find(|c| c["name"] == name))
        .and_then(|c| c["id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| usage(format!("no connection named {name}")))
}

/// Where a run keeps its job id, so a rerun after Ctrl-C picks the same job up.
fn state_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".idlink-import");
    file.with_file_name(name)
}

/// Runs `idlink import`.
pub async fn run_import(args: ImportArgs) -> Result<(), CliError> {
    let format = match args.format {
        Some(format) => format,
        None => {
            let mut head = vec![0; 4096];
            let mut file = std::fs::File::open(&args.file)
                .map_err(|e| usage(format!("cannot open {}: {e}", args.file.display())))?;
            let n = file.read(&mut head).map_err(|e| usage(e.to_string()))?;
            detect(&head[..n])
        }
    };
    let auth0 = args.target.domain.is_some()
        || (args.target.url.is_none()
            && std::env::var("IDLINK_URL").is_err()
            && std::env::var("AUTH0_DOMAIN").is_ok());
    if auth0 && args.all_or_nothing {
        return Err(usage(
            "--all-or-nothing needs an idlink server: Auth0's import jobs have no such option",
        ));
    }
    let records = records(&args.file, format, &args.connection)?;
    let (mut valid, mut invalid) = (0u64, 0u64);
    let mut links = Vec::new();
    let staged = tempfile_path(&args.file);
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&staged)
            .map_err(|e| usage(format!("cannot write {}: {e}", staged.display())))?,
    );
    for (line, record) in &records {
        match record {
            Ok(Value::Object(object)) => {
                valid += 1;
                let mut object = object.clone();
                if auth0 {
                    // Auth0's schema has no identities: link them after the import.
                    if let Some(Value::Array(identities)) = object.remove("identities")
                        && let Some(user_id) = object.get("user_id").and_then(Value::as_str)
                    {
                        for identity in identities.iter().skip(1) {
                            links.push((user_id.to_owned(), identity.clone()));
                        }
                    }
                    if let Some(Value::String(id)) = object.get_mut("user_id") {
                        *id = id.strip_prefix("auth0|").unwrap_or(id).to_owned();
                    }
                }
                writeln!(out, "{}", Value::Object(object)).map_err(|e| usage(e.to_string()))?;
            }
            Ok(_) => {
                invalid += 1;
                eprintln!("line {line}: not a JSON object");
            }
            Err(message) => {
                invalid += 1;
                eprintln!("line {line}: {message}");
            }
        }
    }
    out.flush().map_err(|e| usage(e.to_string()))?;
    drop(out);
    if args.all_or_nothing && invalid > 0 && !args.dry_run {
        let _ = std::fs::remove_file(&staged);
        eprintln!("--all-or-nothing: {invalid} records refused, so nothing was sent");
        return Err(CliError::Partial {
            failed: invalid as usize,
            total: records.len(),
        });
    }
    if args.dry_run {
        let _ = std::fs::remove_file(&staged);
        println!(
            "{}: {valid} users would be imported ({} linked identities), {invalid} records refused; nothing was changed",
            args.file.display(),
            records
                .iter()
                .filter_map(|(_, r)| r.as_ref().ok())
                .map(|r| r["identities"]
                    .as_array()
                    .map_or(0, |i| i.len().saturating_sub(1)))
                .sum::<usize>()
        );
        return if invalid > 0 {
            Err(CliError::Partial {
                failed: invalid as usize,
                total: records.len(),
            })
        } else {
            Ok(())
        };
    }
    let client = args.target.client()?;
    let state = state_path(&args.file);
    // A rerun after Ctrl-C waits for the job it started instead of starting another.
    let previous = std::fs::read_to_string(&state)
        .ok()
        .map(|s| s.trim().to_owned());
    let job = match previous {
        Some(id) if !id.is_empty() => match client.jobs().get(&id, None).await {
            Ok(job) if job.status != "failed" => job,
            _ => start(&client, &args, &staged, &state).await?,
        },
        _ => start(&client, &args, &staged, &state).await?,
    };
    let _ = std::fs::remove_file(&staged);
    let job = wait(&client, &job, valid + invalid).await?;
    let summary = job.summary.unwrap_or_default();
    println!(
        "job {}: {} — {} inserted, {} updated, {} failed of {}",
        job.id, job.status, summary.inserted, summary.updated, summary.failed, summary.total
    );
    let mut failed = summary.failed as usize + invalid as usize;
    if summary.failed > 0 {
        for error in client.jobs().errors(&job.id, None).await? {
            eprintln!(
                "line {}: {}",
                error.line.map_or_else(|| "?".into(), |l| l.to_string()),
                error
                    .errors
                    .iter()
                    .map(|e| format!(
                        "{} {}",
                        e["code"].as_str().unwrap_or(""),
                        e["message"].as_str().unwrap_or("")
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
    }
    if job.status == "failed" && args.all_or_nothing && summary.failed > 0 {
        eprintln!("--all-or-nothing: the job was undone, no user was imported");
        return Err(CliError::Partial {
            failed,
            total: records.len(),
        });
    }
    if job.status == "failed" {
        return Err(usage(format!(
            "job {} failed: {}",
            job.id,
            job.extra
                .get("failure")
                .and_then(Value::as_str)
                .unwrap_or("see the server's log")
        )));
    }
    // Auth0: link the identities its import could not carry; an existing link is fine.
    for (primary, identity) in &links {
        let request = serde_json::from_value(
            json!({"provider": identity["provider"], "user_id": identity["user_id"]}),
        )
        .map_err(|e| usage(e.to_string()))?;
        match client
            .users()
            .identities()
            .link(primary, request, None)
            .await
        {
            Ok(_) => {}
            Err(e) if e.api_error().is_some_and(|a| a.status_code() == 409) => {}
            Err(e) => {
                failed += 1;
                eprintln!(
                    "link {primary} ← {}|{}: {e}",
                    identity["provider"], identity["user_id"]
                );
            }
        }
    }
    let _ = std::fs::remove_file(&state);
    if failed > 0 {
        Err(CliError::Partial {
            failed,
            total: records.len(),
        })
    } else {
        Ok(())
    }
}

fn tempfile_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".idlink-staged.ndjson");
    std::env::temp_dir().join(format!("{}-{}", std::process::id(), name.to_string_lossy()))
}

async fn start(
    client: &ManagementClient,
    args: &ImportArgs,
    staged: &Path,
    state: &Path,
) -> Result<Job, CliError> {
    let job = client
        .jobs()
        .import_users(
            staged,
            ImportUsersParameters {
                connection_id: connection_id(client, &args.connection).await?,
                upsert: args.upsert,
                all_or_nothing: args.all_or_nothing,
                ..Default::default()
            },
        )
        .await?;
    let _ = std::fs::write(state, &job.id);
    Ok(job)
}

async fn wait(client: &ManagementClient, job: &Job, total: u64) -> Result<Job, CliError> {
    let bar = progress(total, "importing");
    let plain = !std::io::stderr().is_terminal();
    let mut last_printed = u64::MAX;
    loop {
        let job = tokio::select! {
            job = client.jobs().get(&job.id, None) => job?,
            _ = tokio::signal::ctrl_c() => return Err(CliError::Interrupted),
        };
        let done = job.summary.map_or(0, |s| s.total);
        bar.set_position(done);
        if plain && done != last_printed {
            eprintln!("{} {}: {done}/{total}", job.id, job.status);
            last_printed = done;
        }
        if job.is_finished() {
            bar.finish_and_clear();
            return Ok(job);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every user of the target (of one connection when given) through an export job, as
/// Auth0's export NDJSON: the one way to read past Auth0's 1,000-result cap on lists.
/// `fields` narrows the export to those attributes (all, with identities, on idlink
/// when `None`).
pub async fn exported_users(
    client: &ManagementClient,
    connection_id: Option<String>,
    fields: Option<&[&str]>,
) -> Result<Vec<u8>, CliError> {
    let job = client
        .jobs()
        .export_users(
            &ExportUsersParameters {
                connection_id,
                format: Some("json".into()),
                fields: fields.map(|names| {
                    names
                        .iter()
                        .map(|name| ExportField {
                            name: (*name).to_owned(),
                            export_as: None,
                        })
                        .collect()
                }),
                ..Default::default()
            },
            None,
        )
        .await?;
    let job = client
        .jobs()
        .wait(&job.id, Duration::from_millis(200))
        .await?;
    let location = job
        .location
        .clone()
        .filter(|_| job.status == "completed")
        .ok_or_else(|| usage(format!("export job {} ended {}", job.id, job.status)))?;
    let gz = client.jobs().download(&location).await?;
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut text)
        .map_err(|e| usage(format!("the export file is not gzip: {e}")))?;
    Ok(text)
}

/// The users of an NDJSON export, one a line, as `T` (a JSON value or a typed user).
pub fn export_lines<T: serde::de::DeserializeOwned>(
    text: &[u8],
) -> impl Iterator<Item = Result<T, CliError>> + '_ {
    text.split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| {
            serde_json::from_slice(line).map_err(|e| {
                usage(format!(
                    "the export file has a line that is not a user: {e}"
                ))
            })
        })
}

/// An NDJSON export rewritten in `format`; with the number of identities left out
/// (Firebase cannot hold some).
fn convert_export(text: Vec<u8>, format: Format) -> Result<(Vec<u8>, usize), CliError> {
    match format {
        Format::Auth0Ndjson => Ok((text, 0)),
        Format::Auth0Json => {
            let users = export_lines::<Value>(&text).collect::<Result<Vec<_>, _>>()?;
            let mut out = serde_json::to_vec_pretty(&users).map_err(|e| usage(e.to_string()))?;
            out.push(b'\n');
            Ok((out, 0))
        }
        Format::Firebase => {
            let mut users = Vec::new();
            let mut left_out = 0;
            for user in export_lines::<Value>(&text) {
                let (user, missing) = firebase::user_of(&user?).map_err(usage)?;
                users.push(user);
                left_out += missing;
            }
            let mut out = serde_json::to_vec_pretty(&json!({"users": users}))
                .map_err(|e| usage(e.to_string()))?;
            out.push(b'\n');
            Ok((out, left_out))
        }
    }
}

/// Runs `idlink export`.
pub async fn run_export(args: ExportArgs) -> Result<(), CliError> {
    let client = args.target.client()?;
    let connection_id = match &args.connection {
        Some(name) => Some(connection_id(&client, name).await?),
        None => None,
    };
    let text = exported_users(&client, connection_id, None).await?;
    let (text, left_out) = convert_export(text, args.format)?;
    if left_out > 0 {
        eprintln!(
            "{left_out} identities were left out: Firebase holds one password per user and \
             only the providers it has ids for"
        );
    }
    match &args.out {
        Some(path) => std::fs::write(path, &text)
            .map_err(|e| usage(format!("cannot write {}: {e}", path.display())))?,
        None => std::io::stdout()
            .write_all(&text)
            .map_err(|e| usage(e.to_string()))?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_detected() {
        assert_eq!(detect(b"  [{\"email\": 1}]"), Format::Auth0Json);
        assert_eq!(detect(b"{ \"users\": []}"), Format::Firebase);
        assert_eq!(detect(b"{\"user_id\": \"a\"}\n"), Format::Auth0Ndjson);
    }
}
