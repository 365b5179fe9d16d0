//! Master key, sealed secrets, token hashing and password hashing.
//!
//! Invariants:
//! - Secrets at rest are sealed with AES-256-GCM under the master key, bound to a context string (the AAD) so a
//!   sealed value cannot be moved to another field or tenant.
//! - API tokens, session ids and other random bearer values are stored as SHA-256 only.
//! - Passwords are argon2id; hashing runs on a dedicated pool of one thread per CPU fed by a queue, so a login
//!   flood queues there instead of starving the async workers, and a finished hash starts the next one at once.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{PasswordParams, Secret};
use crate::error::{Error, Result};

const SEAL_PREFIX: &str = "v1.";
const KEY_CHECK_PLAINTEXT: &[u8] = b"gatehouse master key check";
const KEY_CHECK_CONTEXT: &str = "key-check";

/// The 256-bit key that seals secrets at rest. `Debug` never prints it.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self { cipher: Aes256Gcm::new(bytes.into()) }
    }

    /// The configured key, else `{data_dir}/master.key`, else a new random key written there with mode 0600.
    pub fn load_or_create(data_dir: &Path, configured: Option<[u8; 32]>) -> anyhow::Result<Self> {
        if let Some(bytes) = configured {
            return Ok(Self::from_bytes(&bytes));
        }
        let path = data_dir.join("master.key");
        match fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = B64
                    .decode(text.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| anyhow::anyhow!("{} is not base64 of 32 bytes", path.display()))?;
                let mode = fs::metadata(&path)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "master.key is readable by others; chmod 600 it");
                }
                Ok(Self::from_bytes(&bytes))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
                file.write_all(B64.encode(bytes).as_bytes())?;
                file.write_all(b"\n")?;
                file.sync_all()?;
                tracing::info!(path = %path.display(), "generated a new master key; back it up with the data");
                Ok(Self::from_bytes(&bytes))
            }
            Err(err) => Err(anyhow::anyhow!("cannot read {}: {err}", path.display())),
        }
    }

    /// Encrypts `plaintext` for storage; `context` (e.g. `smtp-password:acme`) must be given again to open it.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: context.as_bytes() })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        format!("{SEAL_PREFIX}{}", B64.encode(out))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>> {
        let fail = || Error::internal(format!("sealed secret for {context} cannot be opened with this master key"));
        let raw = sealed.strip_prefix(SEAL_PREFIX).and_then(|b| B64.decode(b).ok()).ok_or_else(fail)?;
        if raw.len() < 12 + 16 {
            return Err(fail());
        }
        let (nonce, ciphertext) = raw.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: context.as_bytes() })
            .map_err(|_| fail())
    }

    /// A value stored once per data dir that proves later starts use the same key.
    pub fn key_check(&self) -> String {
        self.seal(KEY_CHECK_PLAINTEXT, KEY_CHECK_CONTEXT)
    }

    pub fn verify_key_check(&self, stored: &str) -> bool {
        self.open(stored, KEY_CHECK_CONTEXT).is_ok_and(|p| p == KEY_CHECK_PLAINTEXT)
    }
}

/// A 256-bit random bearer value, base64url, with a prefix that says what it is (`gha_` for API tokens).
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", B64URL.encode(bytes))
}

/// SHA-256 of a bearer value, hex: what the database stores instead of the value.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

type HashJob = Box<dyn FnOnce(&Argon2<'static>) + Send>;

/// argon2id hashing on its own threads (one per CPU) that take jobs from one queue: at most one hash per CPU at
/// a time, and no hand-off through the async runtime between two hashes. The threads end with the last clone.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    jobs: std::sync::mpsc::Sender<HashJob>,
    /// A hash of a random password with the current parameters, verified against for unknown accounts so that
    /// the answer takes as long as for a known one.
    dummy_hash: Arc<String>,
}

impl PasswordHasher {
    pub fn new(params: PasswordParams) -> anyhow::Result<Self> {
        let params = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let dummy = hash_with(&argon2, &random_token(""))?;
        let (jobs, queue) = std::sync::mpsc::channel::<HashJob>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for i in 0..cpus {
            let (queue, argon2) = (queue.clone(), argon2.clone());
            std::thread::Builder::new().name(format!("gatehouse-argon2-{i}")).spawn(move || {
                loop {
                    let next = queue.lock().map_err(|_| ()).and_then(|q| q.recv().map_err(|_| ()));
                    match next {
                        // A panicking job drops its reply channel (the caller gets an error); the thread lives on.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&argon2)));
                        }
                        Err(()) => break,
                    }
                }
            })?;
        }
        Ok(Self { argon2, jobs, dummy_hash: Arc::new(dummy) })
    }

    pub async fn hash(&self, password: &Secret) -> Result<String> {
        let password = password.clone();
        self.run(move |argon2| hash_with(argon2, password.expose()).map_err(Error::internal)).await
    }

    /// Verifies `password` against `hash`, or against a dummy hash when there is no account, so that both
    /// cases cost the same. Returns false for `None`.
    pub async fn verify(&self, hash: Option<String>, password: &Secret) -> Result<bool> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.as_ref().clone());
        let password = password.clone();
        let ok = self
            .run(move |argon2| {
                let parsed = PasswordHash::new(&hash).map_err(Error::internal)?;
                Ok(argon2.verify_password(password.expose().as_bytes(), &parsed).is_ok())
            })
            .await?;
        Ok(ok && known)
    }

    /// Whether `hash` was made with other parameters than the configured ones (it is rehashed at next sign-in).
    pub fn needs_rehash(&self, hash: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(hash) else { return true };
        let Ok(params) = Params::try_from(&parsed) else { return true };
        let current = self.argon2.params();
        parsed.algorithm != argon2::ARGON2ID_IDENT
            || params.m_cost() != current.m_cost()
            || params.t_cost() != current.t_cost()
            || params.p_cost() != current.p_cost()
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Argon2<'static>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move |argon2| {
            let _ = done.send(job(argon2));
        });
        self.jobs.send(job).map_err(|_| Error::internal("the password hashing threads are gone"))?;
        result.await.map_err(|_| Error::internal("a password hashing job was dropped"))?
    }
}

fn hash_with(argon2: &Argon2<'static>, password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(argon2.hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("argon2: {e}"))?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_round_trip_and_bind_their_context() {
        let key = MasterKey::from_bytes(&[7u8; 32]);
        let sealed = key.seal(b"smtp-pass", "smtp:acme");
        assert!(!sealed.contains("smtp-pass"));
        assert_eq!(key.open(&sealed, "smtp:acme").unwrap(), b"smtp-pass");
        assert!(key.open(&sealed, "smtp:other").is_err());
        assert!(MasterKey::from_bytes(&[8u8; 32]).open(&sealed, "smtp:acme").is_err());
        assert!(key.open("v1.garbage", "smtp:acme").is_err());
    }

    #[test]
    fn key_check_detects_the_wrong_key() {
        let check = MasterKey::from_bytes(&[1u8; 32]).key_check();
        assert!(MasterKey::from_bytes(&[1u8; 32]).verify_key_check(&check));
        assert!(!MasterKey::from_bytes(&[2u8; 32]).verify_key_check(&check));
    }

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let a = random_token("gha_");
        assert!(a.starts_with("gha_") && a.len() == 4 + 43);
        assert_ne!(a, random_token("gha_"));
        assert_eq!(hash_token("x"), hash_token("x"));
        assert_eq!(hash_token("x").len(), 64);
    }

    #[tokio::test]
    async fn passwords_verify() {
        let hasher = PasswordHasher::new(PasswordParams { memory_kib: 64, iterations: 1, parallelism: 1 }).unwrap();
        let hash = hasher.hash(&Secret::new("correct horse")).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher.verify(Some(hash.clone()), &Secret::new("correct horse")).await.unwrap());
        assert!(!hasher.verify(Some(hash), &Secret::new("wrong")).await.unwrap());
        assert!(!hasher.verify(None, &Secret::new("correct horse")).await.unwrap());
        let hash = hasher.hash(&Secret::new("x")).await.unwrap();
        assert!(!hasher.needs_rehash(&hash));
        let stronger = PasswordHasher::new(PasswordParams { memory_kib: 128, iterations: 1, parallelism: 1 }).unwrap();
        assert!(stronger.needs_rehash(&hash));
    }
}
