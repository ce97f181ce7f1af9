//! `idlink suggest-links` (find users sharing a verified email, write a plan) and
//! `idlink apply-links` (carry a plan out, safely and resumably).
//!
//! Applying never forces: each link is re-checked against the data as it is now (both
//! accounts still there, same email, still verified, not linked already), and anything
//! that changed since the plan is skipped with the reason. Every outcome is appended to a
//! result file as it happens, so an interrupted run is resumed by running it again.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use idlink_client::{
    LinkUserIdentityRequestContent, ManagementClient, User, UserIdentityProviderEnum,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::CliError;
use super::output::OutputArgs;
use super::plan::{EmailNormalization, LinkGroup, Member, Plan, PrimaryRule};
use super::suggest::{normalize_email, suggest};
use super::target::{BULK_MAX_RETRIES, TargetArgs};
use super::transfer::{export_lines, exported_users};

/// `idlink suggest-links`.
#[derive(Debug, clap::Args)]
pub struct SuggestLinksArgs {
    /// Where to write the plan (JSON; review it, then `idlink apply-links PLAN`).
    #[arg(long, value_name = "PLAN")]
    out: PathBuf,
    /// How each group's primary account is chosen.
    #[arg(long, value_enum, default_value_t = PrimaryRule::DatabaseFirst)]
    primary: PrimaryRule,
    /// Also treat Gmail addresses that differ only in dots (or gmail.com/googlemail.com)
    /// as the same email.
    #[arg(long)]
    gmail_dots: bool,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// `idlink apply-links`.
#[derive(Debug, clap::Args)]
pub struct ApplyLinksArgs {
    /// The plan written by `idlink suggest-links`.
    plan: PathBuf,
    /// Where each link's outcome is appended (NDJSON); a rerun skips what it records.
    /// Default: PLAN.results.ndjson.
    #[arg(long, value_name = "FILE")]
    results: Option<PathBuf>,
    /// Groups worked on at once (the links of one group run in order).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Check every link against the current data and report what would happen; change
    /// nothing and write no result file.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// What became of one secondary account of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Linked,
    /// The primary already holds the identity (an earlier run, or someone else).
    AlreadyLinked,
    /// The data changed since the plan; nothing was done.
    Skipped,
    /// The link was refused or could not be sent; a rerun tries again.
    Failed,
    /// `--dry-run`: the link would be made.
    WouldLink,
}

/// One line of the result file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub email: String,
    pub primary: String,
    pub secondary: String,
    pub outcome: OutcomeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl OutcomeKind {
    /// Whether a rerun leaves the link alone (everything but a failure is settled).
    fn is_settled(self) -> bool {
        !matches!(self, Self::Failed | Self::WouldLink)
    }
}

/// Runs `idlink suggest-links`.
pub async fn run_suggest(args: SuggestLinksArgs) -> Result<(), CliError> {
    let client = args.target.client_retrying(BULK_MAX_RETRIES)?;
    let users = every_user(&client).await?;
    let normalization = EmailNormalization {
        gmail_dots: args.gmail_dots,
    };
    let plan = suggest(&users, args.primary, normalization);
    let text = serde_json::to_string_pretty(&plan).expect("a plan serializes") + "\n";
    write_atomically(&args.out, &text)
        .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", args.out.display())))?;
    let to_link: usize = plan.groups.iter().map(|g| g.secondaries.len()).sum();
    let summary = serde_json::json!({
        "users": users.len(),
        "groups": plan.groups.len(),
        "links": to_link,
        "needs_confirmation": plan.needs_confirmation.len(),
        "plan": args.out.display().to_string(),
    });
    if args.output.json || args.output.ndjson {
        println!("{summary}");
    } else {
        println!(
            "{} users read: {} groups to link ({to_link} links), {} groups need the user's \
             confirmation (unverified email). Plan written to {}.",
            users.len(),
            plan.groups.len(),
            plan.needs_confirmation.len(),
            args.out.display()
        );
    }
    Ok(())
}

/// What suggest-links reads of each user: an export job is asked for these only.
const SUGGEST_FIELDS: &[&str] = &[
    "user_id",
    "email",
    "email_verified",
    "created_at",
    "logins_count",
    "identities",
];

/// Every user, read through an export job: Auth0 answers lists and searches only up to
/// their first 1,000 results, and a duplicate beyond them would go unseen.
async fn every_user(client: &ManagementClient) -> Result<Vec<User>, CliError> {
    let text = exported_users(client, None, Some(SUGGEST_FIELDS)).await?;
    export_lines(&text).collect()
}

/// Writes `text` to `path` through a temporary file beside it, so that a reader never
/// sees half a plan.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    fs::write(&temp, text)?;
    fs::rename(&temp, path)
}

/// Where the outcomes go: the result file (unless dry-running) and the person watching.
#[derive(Debug)]
struct Recorder {
    file: Option<Mutex<File>>,
    progress: ProgressBar,
    /// One line per outcome on stdout (`--ndjson`), else plain lines on stderr when no
    /// progress bar is drawn.
    ndjson: bool,
    plain: bool,
    counts: Mutex<Vec<OutcomeKind>>,
}

impl Recorder {
    fn record(&self, outcome: Outcome) -> Result<(), CliError> {
        let line = serde_json::to_string(&outcome).expect("an outcome serializes");
        if let Some(file) = &self.file {
            let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
            writeln!(file, "{line}")
                .and_then(|()| file.flush())
                .map_err(|e| CliError::Usage(format!("cannot write the result file: {e}")))?;
        }
        if self.ndjson {
            println!("{line}");
        } else if self.plain {
            let reason = outcome.reason.as_deref().map(|r| format!(": {r}"));
            eprintln!(
                "{:?} {} into {}{}",
                outcome.outcome,
                outcome.secondary,
                outcome.primary,
                reason.unwrap_or_default()
            );
        }
        self.progress.inc(1);
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(outcome.outcome);
        Ok(())
    }
}

/// The `(primary, secondary)` pairs a result file records as settled.
fn settled_pairs(path: &Path) -> Result<HashSet<(String, String)>, CliError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => {
            return Err(CliError::Usage(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let mut settled = HashSet::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
        // A run killed mid-write leaves at most a torn last line: that link is re-checked.
        let Ok(outcome) = serde_json::from_str::<Outcome>(&line) else {
            eprintln!(
                "idlink: {}:{}: unreadable line ignored",
                path.display(),
                number + 1
            );
            continue;
        };
        if outcome.outcome.is_settled() {
            settled.insert((outcome.primary, outcome.secondary));
        }
    }
    Ok(settled)
}

/// Runs `idlink apply-links`.
pub async fn run_apply(args: ApplyLinksArgs) -> Result<(), CliError> {
    let text = fs::read_to_string(&args.plan)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", args.plan.display())))?;
    let plan = Plan::from_json(&text)
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.plan.display())))?;
    let client = args.target.client_retrying(BULK_MAX_RETRIES)?;
    let results = args.results.clone().unwrap_or_else(|| {
        let mut path = args.plan.as_os_str().to_owned();
        path.push(".results.ndjson");
        PathBuf::from(path)
    });
    let settled = if args.dry_run {
        HashSet::new()
    } else {
        settled_pairs(&results)?
    };
    let file = if args.dry_run {
        None
    } else {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&results)
            .map_err(|e| CliError::Usage(format!("cannot open {}: {e}", results.display())))?;
        Some(Mutex::new(file))
    };
    let total: usize = plan.groups.iter().map(|g| g.secondaries.len()).sum();
    let already = plan
        .groups
        .iter()
        .flat_map(|g| g.secondaries.iter().map(move |s| (&g.primary, s)))
        .filter(|(p, s)| settled.contains(&(p.user_id.clone(), s.user_id.clone())))
        .count();
    let draw = std::io::stderr().is_terminal() && !args.output.ndjson;
    let progress = if draw {
        let bar = ProgressBar::with_draw_target(
            Some((total - already) as u64),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} links  {per_sec}  ETA {eta}")
                .expect("a valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let recorder = Recorder {
        file,
        progress,
        ndjson: args.output.ndjson,
        plain: !draw && !args.output.ndjson && !args.output.json,
        counts: Mutex::new(Vec::new()),
    };
    let context = GroupContext {
        client: &client,
        patience: if args.target.max_retries == Some(0) {
            Duration::ZERO
        } else {
            RATE_LIMIT_PATIENCE
        },
        normalization: plan.normalization,
        settled: &settled,
        dry_run: args.dry_run,
        recorder: &recorder,
    };
    let mut groups = futures_util::stream::iter(&plan.groups)
        .map(|group| context.apply(group))
        .buffer_unordered(usize::from(args.concurrency));
    let interrupted = loop {
        tokio::select! {
            next = groups.next() => match next {
                Some(result) => result?,
                None => break false,
            },
            _ = tokio::signal::ctrl_c() => break true,
        }
    };
    drop(groups);
    recorder.progress.finish_and_clear();
    let counts = recorder
        .counts
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let count = |kind| counts.iter().filter(|k| **k == kind).count();
    let summary = serde_json::json!({
        "links": total,
        "settled_before": already,
        "linked": count(OutcomeKind::Linked),
        "already_linked": count(OutcomeKind::AlreadyLinked),
        "skipped": count(OutcomeKind::Skipped),
        "failed": count(OutcomeKind::Failed),
        "would_link": count(OutcomeKind::WouldLink),
        "interrupted": interrupted,
        "results": (!args.dry_run).then(|| results.display().to_string()),
    });
    if args.output.json {
        println!("{summary}");
    } else {
        eprintln!("idlink: {summary}");
    }
    if interrupted {
        return Err(CliError::Interrupted);
    }
    match count(OutcomeKind::Failed) {
        0 => Ok(()),
        failed => Err(CliError::Partial {
            failed,
            total: counts.len(),
        }),
    }
}

/// What every group of one run shares.
struct GroupContext<'a> {
    client: &'a ManagementClient,
    /// How long a call the tenant keeps answering 429 is tried again, beyond the
    /// client's own retries (zero with `--max-retries 0`).
    patience: Duration,
    normalization: EmailNormalization,
    settled: &'a HashSet<(String, String)>,
    dry_run: bool,
    recorder: &'a Recorder,
}

/// How long apply-links keeps at a call refused with 429 after the client's retries.
/// Many workers share one tenant limit (Auth0 Free: 2 requests a second), and when the
/// limit resets they wake together: one wins and the rest are refused again, so a
/// worker can lose far more often than its retries allow. A rate limit is a reason to
/// go slower, not to fail a link.
const RATE_LIMIT_PATIENCE: Duration = Duration::from_secs(600);

/// Calls `call` until it is answered otherwise than 429 or `patience` has passed,
/// waiting between tries with exponential backoff (0.5 s doubling to 8 s) and full
/// jitter, so waiting workers spread out instead of waking together.
async fn patiently<T, F, Fut>(patience: Duration, mut call: F) -> Result<T, idlink_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::IntoFuture<Output = Result<T, idlink_client::Error>>,
{
    let started = Instant::now();
    let mut backoff = Duration::from_millis(500);
    loop {
        match call().into_future().await {
            Err(e) if e.status_code() == Some(429) && started.elapsed() < patience => {
                let jittered = backoff.mul_f64(0.5 + rand::random::<f64>());
                tokio::time::sleep(jittered).await;
                backoff = (backoff * 2).min(Duration::from_secs(8));
            }
            other => return other,
        }
    }
}

impl GroupContext<'_> {
    /// Links the group's secondaries into its primary, one after the other, each after
    /// checking the situation is still the one the plan saw.
    async fn apply(&self, group: &LinkGroup) -> Result<(), CliError> {
        let pending: Vec<&Member> = group
            .secondaries
            .iter()
            .filter(|s| {
                !self
                    .settled
                    .contains(&(group.primary.user_id.clone(), s.user_id.clone()))
            })
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let outcome = |secondary: &Member, outcome, reason: Option<String>| Outcome {
            email: group.email.clone(),
            primary: group.primary.user_id.clone(),
            secondary: secondary.user_id.clone(),
            outcome,
            reason,
        };
        let mut read = match self.read_group(group, &pending).await {
            Ok(read) => read,
            Err(e) => {
                let reason = format!("reading the group's accounts: {e}");
                return self.all(&pending, |s| {
                    outcome(s, OutcomeKind::Failed, Some(reason.clone()))
                });
            }
        };
        let primary = match read.remove(&group.primary.user_id) {
            Some(user) => Ok(Some(user)),
            None => self.current(&group.primary.user_id).await,
        };
        let mut primary = match primary {
            Ok(Some(user)) => match self.changed(&user, group) {
                None => user,
                Some(reason) => {
                    return self.all(&pending, |s| {
                        outcome(s, OutcomeKind::Skipped, Some(reason.clone()))
                    });
                }
            },
            Ok(None) => {
                let reason = "the primary no longer exists".to_owned();
                return self.all(&pending, |s| {
                    outcome(s, OutcomeKind::Skipped, Some(reason.clone()))
                });
            }
            Err(e) => {
                let reason = format!("reading the primary: {e}");
                return self.all(&pending, |s| {
                    outcome(s, OutcomeKind::Failed, Some(reason.clone()))
                });
            }
        };
        for secondary in pending {
            let read_before = read.remove(&secondary.user_id);
            let (kind, reason) = self
                .link_one(&mut primary, group, secondary, read_before)
                .await;
            self.recorder.record(outcome(secondary, kind, reason))?;
        }
        Ok(())
    }

    /// The group's accounts as they are now, by user id, read with one
    /// `users-by-email` call per distinct stored email (one for nearly every group)
    /// instead of one read per account: a link then costs two calls, not three. An
    /// account not found this way (deleted, or its email changed) is read on its own
    /// later, so its outcome says which.
    async fn read_group(
        &self,
        group: &LinkGroup,
        pending: &[&Member],
    ) -> Result<HashMap<String, User>, CliError> {
        let emails: BTreeSet<&str> = std::iter::once(&group.primary)
            .chain(pending.iter().copied())
            .map(|member| member.email.as_str())
            .collect();
        let mut read = HashMap::new();
        for email in emails {
            let users = patiently(self.patience, || {
                self.client.users().list_by_email(email, None)
            })
            .await?;
            read.extend(users.into_iter().map(|user| (user.user_id.clone(), user)));
        }
        Ok(read)
    }

    fn all(
        &self,
        members: &[&Member],
        outcome: impl Fn(&Member) -> Outcome,
    ) -> Result<(), CliError> {
        members
            .iter()
            .try_for_each(|member| self.recorder.record(outcome(member)))
    }

    /// The user `id` as it is now; `None` when there is no such user.
    async fn current(&self, id: &str) -> Result<Option<User>, CliError> {
        match patiently(self.patience, || self.client.users().get(id, None)).await {
            Ok(user) => Ok(Some(user)),
            Err(e) if e.status_code() == Some(404) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Why `user` no longer fits the group's email, if it does not.
    fn changed(&self, user: &User, group: &LinkGroup) -> Option<String> {
        let email = user.email.as_deref().unwrap_or("");
        if normalize_email(email, self.normalization) != group.email {
            return Some(format!(
                "changed since the plan: {} now has the email {email:?}",
                user.user_id
            ));
        }
        (user.email_verified != Some(true)).then(|| {
            format!(
                "changed since the plan: {}'s email is no longer verified",
                user.user_id
            )
        })
    }

    async fn link_one(
        &self,
        primary: &mut User,
        group: &LinkGroup,
        secondary: &Member,
        read_before: Option<User>,
    ) -> (OutcomeKind, Option<String>) {
        let holds = |user: &User| {
            user.identities.iter().any(|i| {
                i.provider == secondary.provider
                    && i.user_id.as_string() == secondary.identity_user_id
            })
        };
        if holds(primary) {
            return (OutcomeKind::AlreadyLinked, None);
        }
        let current = match read_before {
            Some(user) => Ok(Some(user)),
            None => self.current(&secondary.user_id).await,
        };
        let user = match current {
            Ok(Some(user)) => user,
            Ok(None) => {
                return (
                    OutcomeKind::Skipped,
                    Some(
                        "the secondary no longer exists as a user (deleted or linked elsewhere)"
                            .into(),
                    ),
                );
            }
            Err(e) => {
                return (
                    OutcomeKind::Failed,
                    Some(format!("reading the secondary: {e}")),
                );
            }
        };
        if let Some(reason) = self.changed(&user, group) {
            return (OutcomeKind::Skipped, Some(reason));
        }
        if user.identities.len() > 1 {
            return (
                OutcomeKind::Skipped,
                Some(format!(
                    "the secondary has {} identities of its own: unlink them first",
                    user.identities.len()
                )),
            );
        }
        if self.dry_run {
            return (OutcomeKind::WouldLink, None);
        }
        let request = || {
            LinkUserIdentityRequestContent::identity(
                UserIdentityProviderEnum::from(secondary.provider.as_str()),
                secondary.identity_user_id.as_str(),
            )
        };
        // Refused with 429, a link did not happen: trying it again is safe.
        let linked = patiently(self.patience, || {
            self.client
                .users()
                .identities()
                .link(&primary.user_id, request(), None)
        });
        match linked.await {
            Ok(identities) => {
                primary.identities = identities;
                (OutcomeKind::Linked, None)
            }
            Err(e) => (OutcomeKind::Failed, Some(CliError::from(e).to_string())),
        }
    }
}
