//! The plugin manifest: a TOML file beside each component that says what the plugin is,
//! when it runs, what it may do and what it may use.
//!
//! ```toml
//! name = "http-inventory"
//! version = "0.1.0"
//! roles = ["collector"]
//! component = "http-inventory.wasm"   # default: the manifest's file name with .wasm
//!
//! [schedule]
//! interval = "10s"
//! jitter = "1s"                       # default: a tenth of the interval
//!
//! [limits]
//! deadline = "5s"                     # wall clock per call
//! memory-mb = 64                      # linear memory cap
//!
//! [capabilities]                      # each host import is denied unless granted here
//! poll = { hosts = ["http://127.0.0.1:8181"] }
//!
//! [settings]                          # the plugin's own, read through `config`
//! url = "http://127.0.0.1:8181/inventory.json"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A manifest that could not be used, naming the file and what is wrong in it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ManifestError {
    pub path: PathBuf,
    pub message: String,
}

/// What a plugin does for the host; each role is one exported WIT interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Collector,
    EventStep,
    ModelPolicy,
    SyncStep,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Collector,
        Role::EventStep,
        Role::ModelPolicy,
        Role::SyncStep,
    ];

    /// The role's name in manifests and in the WIT package.
    pub fn name(self) -> &'static str {
        match self {
            Role::Collector => "collector",
            Role::EventStep => "event-step",
            Role::ModelPolicy => "model-policy",
            Role::SyncStep => "sync-step",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Schedule {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default, with = "humantime_serde")]
    pub jitter: Option<Duration>,
}

impl Schedule {
    /// The jitter to apply: as configured, else a tenth of the interval.
    pub fn jitter(&self) -> Duration {
        self.jitter.unwrap_or(self.interval / 10)
    }
}

/// Per-plugin limits; each unset one falls back to the host's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Limits {
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
    pub memory_mb: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Raw {
    name: String,
    version: String,
    roles: Vec<Role>,
    component: Option<PathBuf>,
    schedule: Option<Schedule>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    capabilities: toml::Table,
    #[serde(default)]
    settings: toml::Table,
}

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Where the manifest was read from.
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub roles: Vec<Role>,
    /// The component file, resolved against the manifest's directory.
    pub component: PathBuf,
    pub schedule: Option<Schedule>,
    pub limits: Limits,
    /// Raw capability grants; each capability parses its own entry.
    pub capabilities: toml::Table,
    pub settings: toml::Table,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            path: path.to_owned(),
            message: format!("cannot read: {e}"),
        })?;
        Manifest::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let fail = |message: String| ManifestError {
            path: path.to_owned(),
            message,
        };
        let raw: Raw = toml::from_str(text).map_err(|e| fail(toml_error(text, &e)))?;
        if !is_valid_name(&raw.name) {
            return Err(fail(format!(
                "field `name`: `{}` must be 1 to 64 characters of a-z, 0-9, `-` and `_`",
                raw.name
            )));
        }
        if raw.roles.is_empty() {
            return Err(fail(
                "field `roles`: a plugin needs at least one role".into(),
            ));
        }
        if raw.roles.contains(&Role::Collector) {
            match &raw.schedule {
                None => {
                    return Err(fail(
                        "a collector needs a `[schedule]` with an `interval`".into(),
                    ));
                }
                Some(s) if s.interval.is_zero() => {
                    return Err(fail(
                        "field `schedule.interval`: must be longer than zero".into(),
                    ));
                }
                Some(_) => {}
            }
        }
        if raw.limits.deadline.is_some_and(|d| d.is_zero()) {
            return Err(fail(
                "field `limits.deadline`: must be longer than zero".into(),
            ));
        }
        if raw.limits.memory_mb == Some(0) {
            return Err(fail("field `limits.memory-mb`: must be at least 1".into()));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let component = match raw.component {
            Some(file) => dir.join(file),
            None => path.with_extension("wasm"),
        };
        Ok(Manifest {
            path: path.to_owned(),
            name: raw.name,
            version: raw.version,
            roles: raw.roles,
            component,
            schedule: raw.schedule,
            limits: raw.limits,
            capabilities: raw.capabilities,
            settings: raw.settings,
        })
    }

    /// A [`ManifestError`] about this manifest.
    pub fn error(&self, message: impl Into<String>) -> ManifestError {
        ManifestError {
            path: self.path.clone(),
            message: message.into(),
        }
    }
}

/// A TOML error on one line, `line L, column C: message`, so that it reads well in logs.
pub fn toml_error(text: &str, error: &toml::de::Error) -> String {
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {}", error.message())
        }
        None => error.message().to_owned(),
    }
}

fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(Path::new("/p/inv.toml"), text).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
        name = "inv"
        version = "0.1.0"
        roles = ["collector"]
        [schedule]
        interval = "10s"
        [capabilities]
        poll = { hosts = ["http://127.0.0.1:8181"] }
        [settings]
        url = "http://127.0.0.1:8181/x.json"
    "#;

    #[test]
    fn a_good_manifest_resolves_its_component_and_defaults() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.component, Path::new("/p/inv.wasm"));
        assert_eq!(
            m.schedule.as_ref().unwrap().jitter(),
            Duration::from_secs(1)
        );
        assert_eq!(m.roles, [Role::Collector]);
        assert!(m.capabilities.contains_key("poll"));
    }

    #[test]
    fn errors_name_the_file_the_field_and_the_reason() {
        let cases = [
            (
                GOOD.replace("roles = [\"collector\"]", "roles = [\"collecter\"]"),
                "unknown variant `collecter`",
            ),
            (
                GOOD.replace("interval = \"10s\"", "interval = \"soon\""),
                "expected a duration",
            ),
            (
                GOOD.replace("interval = \"10s\"", "interval = \"0s\""),
                "field `schedule.interval`: must be longer than zero",
            ),
            (
                GOOD.replace("name = \"inv\"", "name = \"Bad Name\""),
                "field `name`",
            ),
            (
                GOOD.replace("version = \"0.1.0\"", ""),
                "missing field `version`",
            ),
            (
                format!("extra = 1\n{GOOD}"),
                "line 1, column 1: unknown field `extra`",
            ),
            (
                GOOD.replace("[schedule]\n        interval = \"10s\"", ""),
                "needs a `[schedule]`",
            ),
            ("name = ".into(), "/p/inv.toml: line 1, column 8: "),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err();
            assert!(error.starts_with("/p/inv.toml: "), "{error}");
            assert!(
                error.contains(expected),
                "expected `{expected}` in: {error}"
            );
        }
    }
}
