//! The tenant's RS256 keys: generation, the signing key, verification keys by `kid`,
//! and the JWKS document.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use crate::domain::ids;
use crate::error::{Error, Result};
use crate::store::{SigningKey, Store};

/// Generates a fresh 2048-bit RSA signing key.
pub fn generate_signing_key(now: i64) -> Result<SigningKey> {
    let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(Error::internal)?;
    let pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(Error::internal)?;
    Ok(SigningKey {
        kid: ids::key_id(),
        private_key_pem: pem.to_string(),
        public_n: URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
        public_e: URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
        created_at: now,
        retired_at: None,
    })
}

/// A signing key from its PKCS#8 PEM (a seed's key, `--dev-signing-key`): checked to
/// be an RSA key of at least 2048 bits, its public half derived.
pub fn signing_key_from_pem(
    kid: &str,
    pem: &str,
    created_at: i64,
    retired_at: Option<i64>,
) -> Result<SigningKey> {
    use rsa::pkcs8::DecodePrivateKey;
    let private = RsaPrivateKey::from_pkcs8_pem(pem)
        .map_err(|e| Error::internal(format!("not a PKCS#8 PEM RSA private key: {e}")))?;
    if private.size() < 256 {
        return Err(Error::internal("RS256 keys must have at least 2048 bits"));
    }
    Ok(SigningKey {
        kid: kid.to_owned(),
        private_key_pem: pem.to_owned(),
        public_n: URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
        public_e: URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
        created_at,
        retired_at,
    })
}

/// The keys in use, derived once from the stored ones.
pub struct KeySet {
    signing_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
    jwks: Value,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("signing_kid", &self.signing_kid)
            .field("verifying", &self.verifying.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// Builds the set from stored keys (newest first). Keys retired longer ago than
    /// `max_token_lifetime` seconds can no longer have valid tokens and are left out.
    pub fn from_stored(keys: &[SigningKey], now: i64, max_token_lifetime: i64) -> Result<Self> {
        let current = keys
            .iter()
            .find(|k| k.retired_at.is_none())
            .ok_or_else(|| Error::internal("no active signing key"))?;
        let signing = EncodingKey::from_rsa_pem(current.private_key_pem.as_bytes())
            .map_err(Error::internal)?;
        let live: Vec<&SigningKey> = keys
            .iter()
            .filter(|k| k.retired_at.is_none_or(|at| at + max_token_lifetime >= now))
            .collect();
        let mut verifying = HashMap::new();
        for key in &live {
            let decoding = DecodingKey::from_rsa_components(&key.public_n, &key.public_e)
                .map_err(Error::internal)?;
            verifying.insert(key.kid.clone(), decoding);
        }
        let jwks = json!({
            "keys": live.iter().map(|k| json!({
                "kty": "RSA",
                "use": "sig",
                "alg": "RS256",
                "kid": k.kid,
                "n": k.public_n,
                "e": k.public_e,
            })).collect::<Vec<_>>()
        });
        Ok(Self {
            signing_kid: current.kid.clone(),
            signing,
            verifying,
            jwks,
        })
    }

    /// The key new tokens are signed with, and its `kid`.
    pub fn signing(&self) -> (&str, &EncodingKey) {
        (&self.signing_kid, &self.signing)
    }

    /// The verification key for `kid`.
    pub fn verifying(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifying.get(kid)
    }

    /// The JWKS document.
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }
}

/// The current [`KeySet`], replaceable when keys rotate (here or on another instance).
#[derive(Debug, Clone)]
pub struct KeyRing {
    current: Arc<RwLock<Arc<KeySet>>>,
    max_token_lifetime: i64,
    /// Reloads forced by an unknown `kid` run one at a time, at least
    /// [`FORCED_RELOAD_SPACING`] apart (so forged `kid`s cannot hammer the database); the
    /// lock holds when the last one finished.
    forced_reload: Arc<tokio::sync::Mutex<Option<tokio::time::Instant>>>,
    /// How many forced reloads have started: a caller that arrived before one started
    /// uses its result instead of reloading again.
    forced_reloads_started: Arc<AtomicU64>,
}

/// The least time between two reloads forced by unknown `kid`s.
const FORCED_RELOAD_SPACING: Duration = Duration::from_secs(1);

impl KeyRing {
    /// Loads the stored keys.
    pub async fn load(store: &dyn Store, max_token_lifetime: i64) -> Result<Self> {
        let set = KeySet::from_stored(
            &store.signing_keys().await?,
            crate::clock::unix_now(),
            max_token_lifetime,
        )?;
        Ok(Self {
            current: Arc::new(RwLock::new(Arc::new(set))),
            max_token_lifetime,
            forced_reload: Arc::new(tokio::sync::Mutex::new(None)),
            forced_reloads_started: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The keys now.
    pub fn get(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the stored keys (after a rotation, or when a token names an unknown
    /// `kid` that another instance may have just created).
    pub async fn reload(&self, store: &dyn Store) -> Result<Arc<KeySet>> {
        let set = Arc::new(KeySet::from_stored(
            &store.signing_keys().await?,
            crate::clock::unix_now(),
            self.max_token_lifetime,
        )?);
        match self.current.write() {
            Ok(mut guard) => *guard = set.clone(),
            Err(poisoned) => *poisoned.into_inner() = set.clone(),
        }
        Ok(set)
    }

    /// The verification key for `kid`, re-reading the stored keys when it is unknown:
    /// another instance may have just rotated. Such reloads are spaced
    /// [`FORCED_RELOAD_SPACING`] apart; a caller that comes sooner waits for the next one
    /// rather than being refused, so a token signed with a key that another instance has
    /// just added always verifies (at worst a second late), and concurrent callers share
    /// one reload.
    pub async fn verifying(&self, store: &dyn Store, kid: &str) -> Result<Option<DecodingKey>> {
        if let Some(key) = self.get().verifying(kid) {
            return Ok(Some(key.clone()));
        }
        let arrived_after = self.forced_reloads_started.load(Ordering::Acquire);
        let mut last_finished = self.forced_reload.lock().await;
        if self.forced_reloads_started.load(Ordering::Acquire) != arrived_after {
            // A reload started (and, since it holds this lock, finished) after this
            // caller arrived: its key set is as fresh as one this caller would load.
            return Ok(self.get().verifying(kid).cloned());
        }
        if let Some(at) = *last_finished {
            tokio::time::sleep_until(at + FORCED_RELOAD_SPACING).await;
        }
        self.forced_reloads_started.fetch_add(1, Ordering::AcqRel);
        let reloaded = self.reload(store).await;
        *last_finished = Some(tokio::time::Instant::now());
        Ok(reloaded?.verifying(kid).cloned())
    }
}
