//! The tenant's RS256 keys: generation, the signing key, verification keys by `kid`,
//! and the JWKS document.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

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
    /// Unix second of the last reload forced by an unknown `kid`: such reloads happen at
    /// most once a second, so forged `kid`s cannot hammer the database.
    last_forced_reload: Arc<AtomicI64>,
}

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
            last_forced_reload: Arc::new(AtomicI64::new(0)),
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

    /// The verification key for `kid`, re-reading the stored keys (at most once a
    /// second) when it is unknown: another instance may have rotated.
    pub async fn verifying(&self, store: &dyn Store, kid: &str) -> Result<Option<DecodingKey>> {
        if let Some(key) = self.get().verifying(kid) {
            return Ok(Some(key.clone()));
        }
        let now = crate::clock::unix_now();
        let last = self.last_forced_reload.load(Ordering::Relaxed);
        if now <= last
            || self
                .last_forced_reload
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(None);
        }
        Ok(self.reload(store).await?.verifying(kid).cloned())
    }
}
