//! The host's configuration: `synchro run --config FILE`, or the embedded defaults.
//!
//! Each section belongs to the crate that uses it (`[poll]` to the capabilities, `[bus]`
//! to the bus, `[admin]` to the admin API, `[limits]` and `[ceilings]` to the manifest's
//! limits); this file puts them together and validates the whole, so that a mistake
//! anywhere is named with its file and field before anything starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use synchro_admin::AdminSettings;
use synchro_bus::BusSettings;
use synchro_capability::PollSettings;
use synchro_gizmo::GizmoSettings;
use synchro_manifest::{LimitOverrides, Limits, toml_error};
use synchro_roles::LoadPolicy;

/// A host config that cannot be used, naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Where the state database and the compiled-component cache live.
    pub data_dir: PathBuf,
    /// Where plugin manifests (`*.toml`) and their components are.
    pub plugin_dir: PathBuf,
    /// Limits of every plugin whose manifest does not set them.
    pub limits: Limits,
    /// The most any plugin gets, whatever its manifest asks: the fields of a manifest's
    /// `[limits]`. A manifest asking for more is held to the ceiling (the log says so).
    pub ceilings: LimitOverrides,
    /// Whether calls count fuel, so that `limits.fuel` budgets can be set. Off by default:
    /// metering slows every guest, and the deadline already stops one that spins.
    pub fuel_metering: bool,
    /// The operator's grants, per plugin name: the same shape as a manifest's
    /// `[capabilities]`. A plugin with an entry gets only what both its manifest asks for
    /// and the entry allows.
    pub grants: BTreeMap<String, toml::Table>,
    /// Whether a plugin without a `[grants.NAME]` entry is granted nothing (`true`) or
    /// what its manifest asks for (`false`, the default).
    pub grants_required: bool,
    /// The shortest interval any collector is scheduled at; a manifest asking for less
    /// is held to it (the log says so).
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
    pub poll: PollSettings,
    pub bus: BusSettings,
    pub admin: AdminSettings,
    /// The Gizmo-compatible CRUD API over the model.
    pub gizmo: GizmoSettings,
    /// Whether changed, added and removed plugin files are picked up while running.
    pub watch: bool,
    /// How long calls in flight get to finish when the host is asked to stop; what is
    /// still running then is cut, uncommitted, and redone at the next start.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// The most changes the outbox keeps for an event step reading `changes` that has
    /// fallen behind (quarantined, or slow); beyond, it skips the oldest and the log says
    /// how many. Bounds the database whatever a plugin does.
    pub max_step_lag: u64,
    /// The last changes the outbox keeps even when every reader has passed them: a
    /// subscriber of the admin API's change feed whose connection dropped resumes with
    /// `Last-Event-ID` within them (the changes in flight when it dropped among them).
    pub feed_window: u64,
    /// How far sync steps manage kinds outward: `[modes.kinds]` and `[modes.plugins]`
    /// map a kind, or a sync step's name, to `managed` (the default), `observe-only`,
    /// `orphan-on-delete` or `paused`.
    pub modes: synchro_roles::Modes,
    /// The sources of kinds several plugins describe, ranked per kind, highest first
    /// (`pserver = ["cmdb", "discovery"]`): the model keeps each one's write and merges
    /// them, each property from the highest that has it.
    pub sources: BTreeMap<String, Vec<String>>,
    /// The file this config was read from; `None` for the embedded defaults.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(".synchro"),
            plugin_dir: PathBuf::from("plugins.d"),
            limits: Limits::default(),
            ceilings: LimitOverrides::default(),
            fuel_metering: false,
            grants: BTreeMap::new(),
            grants_required: false,
            min_interval: Duration::from_millis(100),
            poll: PollSettings::default(),
            bus: BusSettings::default(),
            admin: AdminSettings::default(),
            gizmo: GizmoSettings::default(),
            watch: true,
            shutdown_grace: crate::SHUTDOWN_GRACE,
            max_step_lag: 1_000_000,
            feed_window: 100_000,
            modes: synchro_roles::Modes::default(),
            sources: BTreeMap::new(),
            source: None,
        }
    }
}

impl Config {
    /// Reads `path` and validates it whole; relative directories in it are relative to
    /// the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |message: String| ConfigError {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read the host config: {e}")))?;
        let mut config = Config::parse(path, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.data_dir = base.join(&config.data_dir);
        config.plugin_dir = base.join(&config.plugin_dir);
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Reads and validates `text`, the host config at `path` (named in errors); its
    /// directories as they are written.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let fail = |message: String| ConfigError {
            path: path.to_owned(),
            message,
        };
        let config: Config = toml::from_str(text).map_err(|e| fail(toml_error(text, &e)))?;
        config.check().map_err(|m| fail(format!("field `{m}")))?;
        Ok(config)
    }

    /// The config at `path`, or the embedded defaults.
    pub fn load_or_default(path: Option<&Path>) -> Result<Config, ConfigError> {
        path.map_or_else(|| Ok(Config::default()), Config::load)
    }

    /// Every value on its own and against the others; errors start with the field.
    fn check(&self) -> Result<(), String> {
        self.limits.check().map_err(|m| format!("limits.{m}"))?;
        self.ceilings.check().map_err(|m| format!("ceilings.{m}"))?;
        self.limits
            .check_ceilings(&self.ceilings)
            .map_err(|m| format!("ceilings.{m}"))?;
        self.poll.check().map_err(|m| format!("poll.{m}"))?;
        self.gizmo.check().map_err(|m| format!("gizmo.{m}"))?;
        if self.min_interval > Duration::from_secs(3600) {
            return Err("min-interval`: must be at most an hour".into());
        }
        if self.shutdown_grace > Duration::from_secs(3600) {
            return Err("shutdown-grace`: must be at most an hour".into());
        }
        if self.max_step_lag < 1000 {
            return Err("max-step-lag`: must be at least 1000 changes".into());
        }
        match &self.bus {
            BusSettings::Embedded(embedded) => embedded.check(),
            BusSettings::Kafka(kafka) => kafka.check(),
        }
        .map_err(|m| format!("bus.{m}"))?;
        self.ranked_sources()
            .map_err(|m| format!("sources.{}", m.trim_start_matches('`')))?;
        Ok(())
    }

    /// `[sources]`, checked: each kind ranks at least one plugin, each once.
    pub fn ranked_sources(&self) -> Result<synchro_store::Sources, String> {
        synchro_store::Sources::new(self.sources.clone())
    }

    /// Checks that each `[grants.NAME]` names one of the plugins `names` (those of the
    /// plugin directory): a grant for no plugin is a typo that would leave the intended
    /// plugin with what its manifest asks for, or with nothing.
    pub fn check_grants<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ConfigError> {
        let names: Vec<&str> = names.into_iter().collect();
        let Some(orphan) = self.grants.keys().find(|g| !names.contains(&g.as_str())) else {
            return Ok(());
        };
        let listed = if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        };
        Err(ConfigError {
            path: self.source.clone().unwrap_or_default(),
            message: format!(
                "field `grants.{orphan}`: no plugin named `{orphan}` in {} (plugins there: {listed})",
                self.plugin_dir.display()
            ),
        })
    }

    /// What this config says about every plugin it loads.
    pub fn load_policy(&self) -> LoadPolicy<'_> {
        LoadPolicy {
            defaults: &self.limits,
            ceilings: &self.ceilings,
            grants: &self.grants,
            grants_required: self.grants_required,
            min_interval: self.min_interval,
            modes: &self.modes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synchro.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).map_err(|e| {
            let text = e.to_string();
            text.strip_prefix(&format!("{}: ", path.display()))
                .unwrap_or_else(|| panic!("the error names the file: {text}"))
                .to_owned()
        })
    }

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

    #[test]
    fn every_mistake_is_named_with_its_field() {
        let cases = [
            (
                "[limits]\ndeadline = \"0s\"",
                "field `limits.deadline`: must be longer than zero",
            ),
            (
                "[limits]\nmax-backoff = \"500years\"",
                "field `limits.max-backoff`: must be at most a year",
            ),
            (
                "[ceilings]\nquarantine-after = 0",
                "field `ceilings.quarantine-after`: must be at least 1",
            ),
            (
                "[ceilings]\nmemory-mb = 16",
                "field `ceilings.memory-mb` = 16 is below the default `limits.memory-mb` = 256",
            ),
            (
                "[poll]\ntimeout = \"0s\"",
                "field `poll.timeout`: must be longer than zero",
            ),
            ("[limits]\nmemory = 5", "unknown field `memory`"),
            ("[admin]\nport = 5", "unknown field `port`"),
            (
                "[modes.kinds]\nrack = \"watch\"",
                "unknown variant `watch`, expected one of `managed`, `observe-only`",
            ),
            ("[modes]\nrack = \"paused\"", "unknown field `rack`"),
            (
                "[sources]\npserver = [\"cmdb\", \"cmdb\"]",
                "field `sources.pserver`: plugin `cmdb` is listed twice",
            ),
            (
                "[sources]\npserver = []",
                "field `sources.pserver`: list at least one",
            ),
            (
                "[bus]\nbrokers = \"127.0.0.1:9092\"",
                "missing field `kind`",
            ),
            (
                "[bus]\nkind = \"embedded\"\nbrokers = \"127.0.0.1:9092\"",
                "unknown field `brokers`",
            ),
            (
                "[bus]\nkind = \"embedded\"\nmax-topic-mb = 0",
                "field `bus.max-topic-mb`: must be 1 to 1048576",
            ),
            (
                "[bus]\nkind = \"embedded\"\nmax-topic-mb = 512\nmax-total-mb = 256",
                "field `bus.max-total-mb`: must be at least max-topic-mb",
            ),
            (
                "min-interval = \"2h\"",
                "field `min-interval`: must be at most an hour",
            ),
            (
                "max-step-lag = 10",
                "field `max-step-lag`: must be at least 1000 changes",
            ),
            (
                "[bus]\nkind = \"kafka\"\nbrokers = \"\"",
                "field `bus.brokers`: name at least one broker",
            ),
            (
                "[bus]\nkind = \"kafka\"\nbrokers = \"b:1\"\ndelivery-timeout = \"0s\"",
                "field `bus.delivery-timeout`: must be longer than zero",
            ),
            (
                "[bus]\nkind = \"kafka\"\nbrokers = \"b:1\"\npartitions = 0",
                "field `bus.partitions`: must be at least 1",
            ),
        ];
        for (text, expected) in cases {
            let error = load(text).unwrap_err();
            assert!(
                error.contains(expected),
                "`{text}`: expected `{expected}` in: {error}"
            );
        }
        assert!(load("[ceilings]\nmemory-mb = 16\n[limits]\nmemory-mb = 16").is_ok());
    }

    #[test]
    fn a_grant_for_no_plugin_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synchro.toml");
        std::fs::write(&path, "[grants.inventry]\npoll = { hosts = [] }\n").unwrap();
        let config = Config::load(&path).unwrap();
        assert!(config.check_grants(["inventry"]).is_ok());
        let error = config
            .check_grants(["inventory", "people"])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!(
                "{}: field `grants.inventry`: no plugin named `inventry`",
                path.display()
            )),
            "{error}"
        );
        assert!(
            error.ends_with("(plugins there: inventory, people)"),
            "{error}"
        );
    }
}
