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
    ///
    /// A fresh compile is used through its cache entry too, as a cached start would: the
    /// entry is mapped from the file, whose pages the system shares and reclaims, where
    /// the compiled code held in memory (35 MB for a Python plugin) would stay resident.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        precompile: impl FnOnce() -> anyhow::Result<Vec<u8>>,
    ) -> anyhow::Result<(Component, Origin)> {
        let entry = self.entry(bytes);
        if entry.exists() {
            match Self::mapped(engine, &entry) {
                Ok(component) => return Ok((component, Origin::Cache)),
                Err(e) => {
                    tracing::warn!(path = %entry.display(), "ignoring unusable cache entry: {e}")
                }
            }
        }
        let compiled = precompile()?;
        let stored = self.store(&entry, &compiled);
        let component = match stored.and_then(|()| Self::mapped(engine, &entry)) {
            Ok(component) => component,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "cannot cache a compiled component: {e:#}");
                // SAFETY: `compiled` was made just now, for this engine.
                unsafe { Component::deserialize(engine, &compiled) }.map_err(anyhow::Error::from)?
            }
        };
        Ok((component, Origin::Compiled))
    }

    fn mapped(engine: &Engine, entry: &Path) -> anyhow::Result<Component> {
        // SAFETY: entries are written only by `store` below, compiled for this same
        // engine configuration (the key covers it); the file is not user input.
        unsafe { Component::deserialize_file(engine, entry) }.map_err(anyhow::Error::from)
    }

    fn store(&self, entry: &Path, compiled: &[u8]) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        // Two loads of one component at once (two manifests naming it) each write their own.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = entry.with_extension(format!("tmp{}-{write}", std::process::id()));
        std::fs::write(&tmp, compiled).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, entry).with_context(|| format!("renaming {}", tmp.display()))?;
        Ok(())
    }
}
