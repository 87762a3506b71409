//! Password hashing: Argon2id with the argon2 crate's default parameters (19 MiB, 2 passes,
//! 1 lane — OWASP's minimum recommendation), on the blocking thread pool so a login never stalls
//! the async runtime.
//!
//! A login for an unknown e-mail still verifies a password, against [`PasswordHasher::dummy_hash`]
//! made with the same parameters at start, so "no such account" and "wrong password" take the
//! same time and cannot be told apart by a stopwatch.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};

/// Argon2id cost; the defaults are the crate's (and OWASP's). Tests lower them for speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        HashCost {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
        }
    }
}

impl HashCost {
    pub fn validate(&self) -> Result<(), String> {
        Params::new(self.memory_kib, self.iterations, 1, None)
            .map(|_| ())
            .map_err(|error| format!("password_hash_cost: {error}"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the password hashing task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Hashes and verifies passwords off the async runtime.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Arc<Argon2<'static>>,
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Builds the hasher and its dummy hash (one hash on the blocking pool).
    pub async fn new(cost: HashCost) -> Result<PasswordHasher, HashError> {
        let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
            .map_err(|error| HashError::Hash(error.to_string()))?;
        let argon2 = Arc::new(Argon2::new(Algorithm::Argon2id, Version::V0x13, params));
        let for_dummy = Arc::clone(&argon2);
        let dummy_hash = tokio::task::spawn_blocking(move || {
            hash_with(&for_dummy, "pillivery-dummy-password-1!")
        })
        .await??;
        Ok(PasswordHasher {
            argon2,
            dummy_hash: dummy_hash.into(),
        })
    }

    /// The PHC string (`$argon2id$v=19$…`) of `password` with a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let argon2 = Arc::clone(&self.argon2);
        tokio::task::spawn_blocking(move || hash_with(&argon2, &password)).await?
    }

    /// Whether `password` matches `hash`. `None` (an unknown account, or one without a
    /// password) verifies against the dummy hash and answers false, taking the same time.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, HashError> {
        let argon2 = Arc::clone(&self.argon2);
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = tokio::task::spawn_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&hash) else {
                // A stored hash we cannot read: refuse, after the same amount of work.
                let _ = hash_with(&argon2, &password);
                return false;
            };
            argon2.verify_password(password.as_bytes(), &parsed).is_ok()
        })
        .await?;
        Ok(known && matches)
    }
}

fn hash_with(argon2: &Argon2<'_>, password: &str) -> Result<String, HashError> {
    argon2
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| HashError::Hash(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> HashCost {
        HashCost {
            memory_kib: 64,
            iterations: 1,
        }
    }

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let hasher = PasswordHasher::new(cheap()).await.unwrap();
        let first = hasher.hash("secret12!".into()).await.unwrap();
        let second = hasher.hash("secret12!".into()).await.unwrap();
        assert!(first.starts_with("$argon2id$v=19$"), "{first}");
        assert_ne!(first, second);
        assert!(
            hasher
                .verify("secret12!".into(), Some(first.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("secret12?".into(), Some(first))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("secret12!".into(), None).await.unwrap());
        assert!(
            !hasher
                .verify("pillivery-dummy-password-1!".into(), None)
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("x".into(), Some("garbage".into()))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn default_cost_is_argon2id_default() {
        let cost = HashCost::default();
        assert_eq!((cost.memory_kib, cost.iterations), (19 * 1024, 2));
        assert!(cost.validate().is_ok());
        let started = std::time::Instant::now();
        let hasher = PasswordHasher::new(cost).await.unwrap();
        let hash = hasher.hash("secret12!".into()).await.unwrap();
        assert!(hash.contains("m=19456,t=2,p=1"), "{hash}");
        eprintln!("two default hashes: {:?}", started.elapsed());
    }
}
