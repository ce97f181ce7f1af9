//! Passwords and client secrets: argon2id at rest, computed off the async threads, a
//! few at a time, in reused work areas.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// argon2id memory per hash, in KiB: OWASP's minimum (Password Storage Cheat Sheet:
/// m = 19 MiB, t = 2, p = 1), which is also the `argon2` crate's default.
pub const MEMORY_KIB: u32 = 19 * 1024;
/// argon2id passes.
pub const PASSES: u32 = 2;
/// argon2id lanes.
pub const LANES: u32 = 1;
/// Most argon2 computations at once: the machine's cores, at most 4. More wait in line
/// (first come, first served), so the memory in use is bounded however many requests
/// arrive: each computation needs `MEMORY_KIB` (19 MiB).
pub const MAX_CONCURRENT_CAP: usize = 4;
/// A stored hash asking for more memory than this (a foreign import) is not computed:
/// it would let one request take that much.
const MAX_MEMORY_KIB: u32 = 64 * 1024;

fn parameters() -> Result<Params> {
    Params::new(MEMORY_KIB, PASSES, LANES, None).map_err(|e| Error::internal(e.to_string()))
}

/// The queue in front of argon2.
fn permits() -> &'static Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS.get_or_init(|| Arc::new(Semaphore::new(max_concurrent())))
}

/// How many argon2 computations may run at once.
pub fn max_concurrent() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores.clamp(1, MAX_CONCURRENT_CAP)
}

/// argon2's work areas (19 MiB each), reused while computations overlap and given back
/// to the system when the last one ends.
///
/// Allocating an area per hash on whichever blocking thread ran it made glibc keep the
/// freed areas in per-thread arenas — 1.7 GB after a burst of failed sign-ins, never
/// returned — so areas are pooled: at most one per permit. An idle server holds none
/// (an idle emulator is ~16 MiB resident instead of ~35): each area is reserved at
/// [`ALWAYS_MAPPED_BYTES`] or more, above glibc's largest mmap threshold, so it always
/// comes from its own mapping and freeing it unmaps it, whatever sizes were freed
/// before. Only the blocks argon2 touches become resident.
#[derive(Debug, Default)]
struct WorkAreas {
    pool: Vec<Vec<Block>>,
    in_flight: usize,
}

/// glibc serves allocations at least this large with their own `mmap` (its dynamic
/// threshold never rises above 32 MiB on 64-bit systems), and `munmap`s them on free.
const ALWAYS_MAPPED_BYTES: usize = 33 * 1024 * 1024;

impl WorkAreas {
    /// An area of at least `blocks` blocks, from the pool or freshly reserved.
    fn take(&mut self, blocks: usize) -> Vec<Block> {
        self.in_flight += 1;
        let mut area = self.pool.pop().unwrap_or_else(|| {
            let reserved = blocks.max(ALWAYS_MAPPED_BYTES / std::mem::size_of::<Block>());
            Vec::with_capacity(reserved)
        });
        if area.len() < blocks {
            area.resize(blocks, Block::default());
        }
        area
    }

    /// Returns `area`: kept for a computation still running or queued, dropped (with
    /// the whole pool) when it was the last.
    fn give_back(&mut self, area: Vec<Block>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 {
            self.pool.clear();
        } else {
            self.pool.push(area);
        }
    }
}

fn work_areas() -> &'static Mutex<WorkAreas> {
    static AREAS: OnceLock<Mutex<WorkAreas>> = OnceLock::new();
    AREAS.get_or_init(|| Mutex::new(WorkAreas::default()))
}

/// Runs `work` with a work area of `blocks` blocks, on the blocking pool, after waiting
/// for a permit. The permit and the area go back when the work ends, even if the
/// request that asked for it has gone meanwhile.
async fn with_work_area<T: Send + 'static>(
    blocks: usize,
    work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
) -> Result<T> {
    let permit = permits()
        .clone()
        .acquire_owned()
        .await
        .map_err(Error::internal)?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let areas = work_areas();
        let lock = || {
            areas
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let mut area = lock().take(blocks);
        let result = work(&mut area[..blocks]);
        lock().give_back(area);
        result
    })
    .await
    .map_err(Error::internal)
}

/// Hashes a secret with argon2id ([`MEMORY_KIB`], [`PASSES`], [`LANES`]) into a PHC
/// string.
pub async fn hash(secret: String) -> Result<String> {
    let params = parameters()?;
    with_work_area(params.block_count(), move |area| {
        hash_into(&secret, &params, area)
    })
    .await?
}

/// The blocking form of [`hash`], for start-up (no queue: nothing else runs yet).
pub fn hash_blocking(secret: &str) -> Result<String> {
    let params = parameters()?;
    let mut areas = WorkAreas::default();
    let mut area = areas.take(params.block_count());
    let hashed = hash_into(secret, &params, &mut area);
    areas.give_back(area);
    hashed
}

fn hash_into(secret: &str, params: &Params, area: &mut [Block]) -> Result<String> {
    let failed = |e: &dyn std::fmt::Display| Error::internal(e.to_string());
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| failed(&e))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(secret.as_bytes(), salt_bytes, &mut out, area)
        .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

/// What verifying against a PHC string needs, parsed before queueing.
struct Stored {
    argon2: Argon2<'static>,
    salt: Vec<u8>,
    expected: Vec<u8>,
    blocks: usize,
}

impl Stored {
    fn parse(phc: &str) -> Option<Self> {
        let parsed = PasswordHash::new(phc).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).ok()?;
        if params.m_cost() > MAX_MEMORY_KIB {
            return None;
        }
        let mut salt = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt).ok()?.to_vec();
        let expected = parsed.hash?.as_bytes().to_vec();
        Some(Self {
            blocks: params.block_count(),
            argon2: Argon2::new(algorithm, version, params),
            salt,
            expected,
        })
    }

    fn matches(&self, secret: &str, area: &mut [Block]) -> bool {
        let mut out = vec![0u8; self.expected.len()];
        self.argon2
            .hash_password_into_with_memory(secret.as_bytes(), &self.salt, &mut out, area)
            .is_ok()
            && bool::from(out.ct_eq(&self.expected))
    }
}

/// The highest bcrypt cost verified (2^16 rounds, ~5 s): a costlier imported hash
/// would let one sign-in take minutes.
pub const MAX_BCRYPT_COST: u32 = 16;

/// The cost of a bcrypt hash in modular crypt form, `None` when `hash` is not one.
pub fn bcrypt_cost(hash: &str) -> Option<u32> {
    let rest = hash
        .strip_prefix("$2a$")
        .or_else(|| hash.strip_prefix("$2b$"))
        .or_else(|| hash.strip_prefix("$2y$"))
        .or_else(|| hash.strip_prefix("$2x$"))?;
    let (cost, body) = rest.split_once('$')?;
    let cost: u32 = cost.parse().ok().filter(|c| (4..=31).contains(c))?;
    // 22 characters of salt and 31 of hash, bcrypt's own base64 alphabet.
    let valid = body.len() == 53
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/');
    valid.then_some(cost)
}

/// Whether `hash` is a stored password hash idlink can check: an argon2 PHC string it
/// would compute, or a bcrypt hash.
pub fn is_verifiable_hash(hash: &str) -> bool {
    bcrypt_cost(hash).is_some_and(|cost| cost <= MAX_BCRYPT_COST) || Stored::parse(hash).is_some()
}

/// The hash an unknown user or client is checked against, so that it costs the same
/// time as a wrong password.
fn dummy() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_blocking("idlink-dummy").unwrap_or_default())
}

/// Checks `secret` against an argon2 PHC string. With `None` it checks against a fixed
/// dummy hash and fails, so that an unknown user costs the same time as a wrong password.
///
/// A bcrypt hash (`$2a$`/`$2b$`/`$2y$`, what Auth0's `custom_password_hash` imports
/// carry, e.g. from an emulator seed) is checked with bcrypt instead, in the same queue.
pub async fn verify(secret: String, phc: Option<String>) -> Result<bool> {
    // bcrypt hashes arrive with imported users (Auth0's bulk-import format) and keep
    // working as they are.
    if let Some(hash) = phc.as_deref().filter(|h| h.starts_with("$2")) {
        let hash = hash.to_owned();
        return tokio::task::spawn_blocking(move || bcrypt::verify(secret, &hash).unwrap_or(false))
            .await
            .map_err(Error::internal);
    }
    let known = phc.is_some();
    let phc = phc.unwrap_or_else(|| dummy().to_owned());
    if let Some(cost) = bcrypt_cost(&phc) {
        if cost > MAX_BCRYPT_COST {
            return Ok(false);
        }
        // bcrypt needs no work area; the permit still bounds the CPU spent at once.
        return with_work_area(0, move |_| bcrypt::verify(&secret, &phc).unwrap_or(false))
            .await
            .map(|matched| known && matched);
    }
    let Some(stored) = Stored::parse(&phc) else {
        return Ok(false);
    };
    let blocks = stored.blocks;
    let matched = with_work_area(blocks, move |area| stored.matches(&secret, area)).await?;
    Ok(known && matched)
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Remembers client secrets that verified, as SHA-256 digests, so that a client asking
/// for many tokens pays argon2 once. Client secrets are long random strings, for which a
/// fast hash is not a weakness; the argon2 hash stays the only thing at rest. An entry is
/// tied to the stored hash, so a rotated secret is verified afresh.
#[derive(Debug, Clone, Default)]
pub struct ClientSecretCache {
    verified: Arc<Mutex<HashMap<String, [u8; 32]>>>,
}

impl ClientSecretCache {
    /// Records `secret` as verified against `stored_hash`, for a secret this process
    /// already knows to be right (the admin secret it generated or was pinned with and
    /// has just checked), so its first token costs no argon2 work.
    pub fn remember(&self, client_id: &str, secret: &str, stored_hash: &str) {
        let fingerprint = sha256(&[secret.as_bytes(), stored_hash.as_bytes()]);
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(client_id.to_owned(), fingerprint);
    }

    /// Verifies a client's secret against its stored argon2 hash.
    pub async fn verify(&self, client_id: &str, secret: &str, stored_hash: &str) -> Result<bool> {
        let fingerprint = sha256(&[secret.as_bytes(), stored_hash.as_bytes()]);
        let known = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(client_id)
            .copied();
        if let Some(known) = known {
            if bool::from(known.ct_eq(&fingerprint)) {
                return Ok(true);
            }
        }
        let ok = verify(secret.to_owned(), Some(stored_hash.to_owned())).await?;
        if ok {
            let mut map = self
                .verified
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if map.len() >= 10_000 {
                map.clear();
            }
            map.insert(client_id.to_owned(), fingerprint);
        }
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bcrypt_hashes_verify() {
        // Cost 4: the lowest bcrypt allows, fast enough for a test.
        let hash = bcrypt::hash("hunter22", 4).unwrap();
        assert_eq!(bcrypt_cost(&hash), Some(4));
        assert!(is_verifiable_hash(&hash));
        assert!(verify("hunter22".into(), Some(hash.clone())).await.unwrap());
        assert!(!verify("hunter23".into(), Some(hash.clone())).await.unwrap());
        let costly = hash.replacen("$04$", "$20$", 1);
        assert!(!is_verifiable_hash(&costly));
        assert!(!verify("hunter22".into(), Some(costly)).await.unwrap());
        assert!(!is_verifiable_hash("$2b$10$short"));
        assert!(!is_verifiable_hash("plain text"));
        assert!(is_verifiable_hash(&hash_blocking("x").unwrap()));
    }

    #[tokio::test]
    async fn hashes_verify_and_wrong_secrets_do_not() {
        let phc = hash("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(
            verify("correct horse".into(), Some(phc.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong".into(), Some(phc.clone())).await.unwrap());
        assert!(!verify("anything".into(), None).await.unwrap());
        assert!(phc.contains("m=19456,t=2,p=1"), "{phc}");
        // Hashes made by the argon2 crate's own API still verify (existing databases).
        use argon2::password_hash::PasswordHasher;
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let foreign = Argon2::default()
            .hash_password(b"old", &salt)
            .unwrap()
            .to_string();
        assert!(verify("old".into(), Some(foreign.clone())).await.unwrap());
        assert!(!verify("new".into(), Some(foreign)).await.unwrap());
        assert!(!verify("x".into(), Some("not a hash".into())).await.unwrap());

        let cache = ClientSecretCache::default();
        assert!(cache.verify("c", "correct horse", &phc).await.unwrap());
        assert!(cache.verify("c", "correct horse", &phc).await.unwrap());
        assert!(!cache.verify("c", "wrong", &phc).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_verifications_queue_and_reuse_a_bounded_set_of_work_areas() {
        let phc = hash("secret".into()).await.unwrap();
        let attempts: Vec<_> = (0..32)
            .map(|i| {
                let phc = phc.clone();
                tokio::spawn(async move { verify(format!("wrong {i}"), Some(phc)).await })
            })
            .collect();
        for attempt in attempts {
            assert!(!attempt.await.unwrap().unwrap());
        }
        let areas = work_areas().lock().unwrap();
        assert!(
            areas.pool.len() <= max_concurrent(),
            "{} work areas for at most {} computations at once",
            areas.pool.len(),
            max_concurrent()
        );
        assert!(max_concurrent() <= MAX_CONCURRENT_CAP);
    }

    #[test]
    fn work_areas_are_reused_while_busy_and_released_when_idle() {
        let mut areas = WorkAreas::default();
        let first = areas.take(8);
        let second = areas.take(8);
        assert_eq!(first.len(), 8);
        assert!(first.capacity() * std::mem::size_of::<Block>() >= ALWAYS_MAPPED_BYTES);
        areas.give_back(first);
        assert_eq!(
            areas.pool.len(),
            1,
            "kept for the computation still running"
        );
        let third = areas.take(8);
        assert!(areas.pool.is_empty(), "the kept area is reused");
        areas.give_back(third);
        areas.give_back(second);
        assert!(areas.pool.is_empty(), "nothing is held once idle");
        assert_eq!(areas.in_flight, 0);
    }
}
