//! Passwords and client secrets: argon2id at rest, verified off the async threads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// Hashes a secret with argon2id (default parameters: 19 MiB, 2 passes).
pub async fn hash(secret: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&secret))
        .await
        .map_err(Error::internal)?
}

/// The blocking form of [`hash`], for start-up.
pub fn hash_blocking(secret: &str) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(e.to_string()))
}

fn verify_blocking(secret: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Checks `secret` against an argon2 PHC string. With `None` it checks against a fixed
/// dummy hash and fails, so that an unknown user costs the same time as a wrong password.
pub async fn verify(secret: String, phc: Option<String>) -> Result<bool> {
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify_blocking(&secret, &phc),
        None => {
            static DUMMY: OnceLock<String> = OnceLock::new();
            let dummy = DUMMY.get_or_init(|| hash_blocking("idlink-dummy").unwrap_or_default());
            verify_blocking(&secret, dummy);
            false
        }
    })
    .await
    .map_err(Error::internal)
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

        let cache = ClientSecretCache::default();
        assert!(cache.verify("c", "correct horse", &phc).await.unwrap());
        assert!(cache.verify("c", "correct horse", &phc).await.unwrap());
        assert!(!cache.verify("c", "wrong", &phc).await.unwrap());
    }
}
