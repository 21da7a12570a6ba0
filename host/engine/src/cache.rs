//! Compiled components cached on disk, so a restart or a reload of an already-seen
//! version skips Cranelift (seconds for a large guest) and deserialises instead
//! (milliseconds).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct ComponentCache {
    dir: PathBuf,
    /// Identifies the wasmtime version and every setting that affects compiled code.
    engine_key: u64,
}

/// Where a component came from: the cache, or a fresh compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cache,
    Compiled,
}

impl ComponentCache {
    pub fn new(engine: &Engine, dir: PathBuf) -> ComponentCache {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache {
            dir,
            engine_key: hasher.finish(),
        }
    }

    fn entry(&self, bytes: &[u8]) -> PathBuf {
        let digest = Sha256::digest(bytes);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir
            .join(format!("{hex}-{:016x}.cwasm", self.engine_key))
    }

    /// The compiled form of `bytes`, from the cache when present; compiles and stores it
    /// otherwise. A cache that cannot be written only costs the next start a compile.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> anyhow::Result<(Component, Origin)> {
        let entry = self.entry(bytes);
        if entry.exists() {
            // SAFETY: entries are written only by `store` below from `Component::serialize`
            // of this same engine configuration (the key covers it); the file is not
            // user input.
            match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(component) => return Ok((component, Origin::Cache)),
                Err(e) => {
                    tracing::warn!(path = %entry.display(), "ignoring unusable cache entry: {e}")
                }
            }
        }
        let component = Component::from_binary(engine, bytes).map_err(anyhow::Error::from)?;
        if let Err(e) = self.store(&entry, &component) {
            tracing::warn!(dir = %self.dir.display(), "cannot cache a compiled component: {e:#}");
        }
        Ok((component, Origin::Compiled))
    }

    fn store(&self, entry: &Path, component: &Component) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let serialized = component.serialize().map_err(anyhow::Error::from)?;
        let tmp = entry.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, serialized).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, entry).with_context(|| format!("renaming {}", tmp.display()))?;
        Ok(())
    }
}
