//! The host's configuration: `synchro run --config FILE`, or the embedded defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

/// Limits every plugin gets unless its manifest asks for less.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct DefaultLimits {
    /// Wall-clock deadline of one plugin call.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Linear memory a plugin instance may grow to.
    pub memory_mb: u64,
    /// Entities one snapshot may have.
    pub max_entities: u64,
    /// Bytes (keys, kinds and properties) one snapshot may have.
    pub max_snapshot_kb: u64,
    /// Bytes one published message (payload, key and headers) may have.
    pub max_message_kb: u64,
    /// Fuel one call may burn (needs `fuel-metering`); unset: no budget.
    pub fuel: Option<u64>,
    /// Consecutive failed calls after which a plugin is quarantined.
    pub quarantine_after: u32,
    /// The longest pause between attempts of a failing plugin.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for DefaultLimits {
    fn default() -> Self {
        DefaultLimits {
            deadline: Duration::from_secs(30),
            memory_mb: 256,
            max_entities: 10_000_000,
            max_snapshot_kb: 4 << 20,
            max_message_kb: 1024,
            fuel: None,
            quarantine_after: 10,
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Host-side settings of the `poll` capability.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct PollSettings {
    /// Timeout of one request unless the plugin asks for less.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest response body handed to a plugin.
    pub max_body_bytes: usize,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            timeout: Duration::from_secs(10),
            max_body_bytes: 16 << 20,
        }
    }
}

/// Which bus the host uses: `[bus]` with `kind = "embedded"` (the default) or
/// `kind = "kafka"` and the Kafka settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BusSettings {
    #[default]
    Embedded,
    Kafka(crate::bus::kafka::KafkaSettings),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Where the state database and the compiled-component cache live.
    pub data_dir: PathBuf,
    /// Where plugin manifests (`*.toml`) and their components are.
    pub plugin_dir: PathBuf,
    pub limits: DefaultLimits,
    /// The most any plugin gets, whatever its manifest asks: the fields of a manifest's
    /// `[limits]`. A manifest asking for more is held to the ceiling (the log says so).
    pub ceilings: crate::manifest::Limits,
    /// Whether calls count fuel, so that `limits.fuel` budgets can be set. Off by default:
    /// metering slows every guest, and the deadline already stops one that spins.
    pub fuel_metering: bool,
    /// The operator's grants, per plugin name: the same shape as a manifest's
    /// `[capabilities]`. A plugin with an entry gets only what both its manifest asks for
    /// and the entry allows.
    pub grants: std::collections::BTreeMap<String, toml::Table>,
    /// Whether a plugin without a `[grants.NAME]` entry is granted nothing (`true`) or
    /// what its manifest asks for (`false`, the default).
    pub grants_required: bool,
    pub poll: PollSettings,
    pub bus: BusSettings,
    pub admin: crate::admin::AdminSettings,
    /// Whether changed, added and removed plugin files are picked up while running.
    pub watch: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(".synchro"),
            plugin_dir: PathBuf::from("plugins.d"),
            limits: DefaultLimits::default(),
            ceilings: Default::default(),
            fuel_metering: false,
            grants: Default::default(),
            grants_required: false,
            poll: PollSettings::default(),
            bus: BusSettings::default(),
            admin: crate::admin::AdminSettings::default(),
            watch: true,
        }
    }
}

impl Config {
    /// The operator's grants for plugin `name`: its `[grants.NAME]`, nothing when grants
    /// are required and it has none, or `None`: as the manifest asks.
    pub fn grants_for(&self, name: &str) -> Option<std::borrow::Cow<'_, toml::Table>> {
        match self.grants.get(name) {
            Some(table) => Some(std::borrow::Cow::Borrowed(table)),
            None if self.grants_required => Some(std::borrow::Cow::Owned(toml::Table::new())),
            None => None,
        }
    }

    /// Reads `path`; relative directories in it are relative to the file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut config: Config = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {}",
                path.display(),
                crate::manifest::toml_error(&text, &e)
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.data_dir = base.join(&config.data_dir);
        config.plugin_dir = base.join(&config.plugin_dir);
        Ok(config)
    }

    /// The config at `path`, or the embedded defaults.
    pub fn load_or_default(path: Option<&Path>) -> anyhow::Result<Config> {
        path.map_or_else(|| Ok(Config::default()), Config::load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files_are_relative_to_themselves_and_typos_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synchro.toml");
        std::fs::write(&path, "plugin-dir = \"p\"\n[limits]\ndeadline = \"2s\"\n").unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.plugin_dir, dir.path().join("p"));
        assert_eq!(config.data_dir, dir.path().join(".synchro"));
        assert_eq!(config.limits.deadline, Duration::from_secs(2));
        assert_eq!(config.limits.memory_mb, 256);

        std::fs::write(&path, "plugins-dir = \"p\"\n").unwrap();
        let error = format!("{:#}", Config::load(&path).unwrap_err());
        assert!(error.contains("unknown field `plugins-dir`"), "{error}");
    }
}
