//! Auth0's jobs API behind the HTTP surface: import and export jobs, run in the
//! background by a [`runner`] in every server instance. All of a job's state is in the
//! database (`jobs`, `job_chunks`, `job_errors`): any instance answers for any job, and
//! a job outlives the instance that started it.

pub mod record;
pub mod runner;
pub mod split;

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, OnceCell};

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::jobs::Jobs;

/// Largest import file accepted when the configuration says nothing: 1 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 1024 * 1024 * 1024;
/// Size of one stored chunk of a job's file.
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// Largest single record of an import file.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Records written per transaction.
pub const BATCH_RECORDS: usize = 500;
/// How long a download link of an export file stays valid.
pub const LINK_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// The tenant setting holding the key that signs download links.
const LINK_KEY_SETTING: &str = "jobs_link_key";

/// Tuning of the jobs API.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Largest import file (413 beyond).
    pub max_upload_bytes: u64,
    /// How long a runner's claim on a job lasts without renewal; a job whose runner
    /// died is taken over by another once it has passed.
    pub lease: Duration,
    /// How often an idle runner looks for work (it is also woken by new jobs of its
    /// own instance).
    pub poll: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
        }
    }
}

/// What the handlers and the runner of one instance share.
#[derive(Debug)]
pub struct JobsState {
    pub settings: JobSettings,
    /// Wakes this instance's runner when a job is created here.
    pub wake: Notify,
    /// This instance's name as a lease owner.
    pub instance: String,
    link_key: OnceCell<Vec<u8>>,
}

impl JobsState {
    pub fn new(settings: JobSettings) -> Self {
        Self {
            settings,
            wake: Notify::new(),
            instance: format!("runner_{}", crate::domain::ids::client_id()),
            link_key: OnceCell::new(),
        }
    }

    /// The key signing download links, shared by every instance through the database
    /// (the first instance to need one creates it).
    async fn link_key(&self, store: &dyn Store) -> Result<&[u8]> {
        let key = self
            .link_key
            .get_or_try_init(|| async {
                let fresh = hex::encode(rand::random::<[u8; 32]>());
                let stored = Jobs(store).ensure_setting(LINK_KEY_SETTING, &fresh).await?;
                hex::decode(stored).map_err(Error::internal)
            })
            .await?;
        Ok(key)
    }

    /// `expires` (unix seconds) and the signature of a download link of `job_id`.
    pub async fn sign(&self, store: &dyn Store, job_id: &str, expires: i64) -> Result<String> {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.link_key(store).await?);
        let tag = ring::hmac::sign(&key, format!("{job_id}\n{expires}").as_bytes());
        Ok(hex::encode(tag.as_ref()))
    }

    /// Checks a download link: signed by this tenant and not expired.
    pub async fn verify(
        &self,
        store: &dyn Store,
        job_id: &str,
        expires: i64,
        signature: &str,
    ) -> Result<()> {
        if expires < crate::clock::unix_now() {
            return Err(Error::InvalidDownloadLink);
        }
        let tag = hex::decode(signature).map_err(|_| Error::InvalidDownloadLink)?;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.link_key(store).await?);
        ring::hmac::verify(&key, format!("{job_id}\n{expires}").as_bytes(), &tag)
            .map_err(|_| Error::InvalidDownloadLink)
    }
}

/// Auth0's shape of one error of a record: `{code, message, path}`.
pub fn record_error(code: &str, message: &str, path: &str) -> Value {
    json!({"code": code, "message": message, "path": path})
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}
