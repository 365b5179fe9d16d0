//! The on-disk cache of compiled components: `{data}/plugin-cache/{sha256}-{engine fingerprint}.cwasm`, each with a
//! `.sum` file holding the SHA-256 of the artifact's bytes.
//!
//! Compiling a JavaScript component takes seconds and hundreds of MB, so it happens once, on upload (or when an
//! artifact is missing); every later start maps the artifact with `Component::deserialize_file` (about 1 ms).
//! An artifact is loaded only when its checksum matches and wasmtime accepts its header for this engine's
//! configuration (the fingerprint covers the wasmtime version and every setting that changes code); anything else
//! is deleted and recompiled.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where an artifact came from, for the metric and the log line that tests watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Compiled,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Compiled => "compiled",
        }
    }
}

pub struct Artifacts {
    dir: PathBuf,
    fingerprint: String,
}

/// Feeds `Hash` output into SHA-256, so the fingerprint is stable across Rust releases.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl Artifacts {
    pub fn new(data_dir: &Path, engine: &Engine) -> std::io::Result<Artifacts> {
        let dir = data_dir.join("plugin-cache");
        std::fs::create_dir_all(&dir)?;
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let digest = hasher.0.finalize();
        let fingerprint = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Ok(Artifacts { dir, fingerprint })
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.fingerprint))
    }

    /// Compiles `bytes` and writes the artifact (atomically: temp file, then rename).
    pub fn compile(&self, engine: &Engine, sha256: &str, bytes: &[u8]) -> anyhow::Result<Component> {
        let component = Component::new(engine, bytes)?;
        let serialized = component.serialize()?;
        let path = self.path(sha256);
        if let Err(err) = write_atomically(&path, &serialized) {
            tracing::warn!(path = %path.display(), error = %err, "cannot write the plugin artifact; it will be compiled again next start");
        }
        Ok(component)
    }

    /// The artifact for `sha256` if a good one is on disk; `None` (after removing a bad one) otherwise.
    pub fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        let sum_path = sum_path(&path);
        let expected = std::fs::read_to_string(&sum_path).ok()?;
        let checked = std::fs::read(&path).ok().is_some_and(|bytes| hex(&Sha256::digest(&bytes)) == expected.trim());
        if !checked {
            tracing::warn!(path = %path.display(), "plugin artifact is missing or corrupt; compiling again");
            remove(&path);
            return None;
        }
        // SAFETY: the file was written by `compile` for this engine fingerprint and its bytes match the checksum
        // recorded beside it, so it is an artifact wasmtime produced; wasmtime checks its header against the
        // engine's configuration again.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %format!("{err:#}"), "plugin artifact refused; compiling again");
                remove(&path);
                None
            }
        }
    }
}

fn sum_path(path: &Path) -> PathBuf {
    path.with_extension("sum")
}

fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(sum_path(path));
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::write(sum_path(path), hex(&Sha256::digest(bytes)))
}
