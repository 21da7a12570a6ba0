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

/// `[events]`: what an event step consumes and how it treats failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Events {
    pub topics: crate::bus::Topics,
    /// Where the plugin's consumer group starts on its first deploy; later deploys
    /// resume from the committed offsets.
    pub start: crate::bus::StartFrom,
    /// Attempts after the first before a message goes to the dead-letter topic.
    pub retries: u32,
    /// Pause before the first retry; doubles on each next one.
    pub backoff: Duration,
    pub dead_letter: String,
    /// The consumer group: each plugin has its own, so two plugins on one topic each see
    /// every event.
    pub group: String,
    /// Consecutive events one instance may handle before a fresh one replaces it.
    pub batch: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawEvents {
    topics: Option<Vec<String>>,
    pattern: Option<String>,
    #[serde(default)]
    start: crate::bus::StartFrom,
    #[serde(default = "default_retries")]
    retries: u32,
    #[serde(default = "default_backoff", with = "humantime_serde")]
    backoff: Duration,
    dead_letter: Option<String>,
    #[serde(default = "default_batch")]
    batch: usize,
}

fn default_retries() -> u32 {
    3
}

fn default_backoff() -> Duration {
    Duration::from_millis(200)
}

fn default_batch() -> usize {
    1024
}

/// Per-plugin limits; each unset one falls back to the host's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Limits {
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
    pub memory_mb: Option<u64>,
    /// Entities one snapshot may have.
    pub max_entities: Option<u64>,
    /// Bytes (keys, kinds and properties) one snapshot may have.
    pub max_snapshot_kb: Option<u64>,
    /// Bytes one published message (payload, key and headers) may have.
    pub max_message_kb: Option<u64>,
    /// Fuel (roughly, wasm instructions) one call may burn; needs a host with
    /// `fuel-metering = true`.
    pub fuel: Option<u64>,
    /// Consecutive failed calls after which the plugin is quarantined.
    pub quarantine_after: Option<u32>,
    /// The longest pause between attempts of a failing plugin.
    #[serde(default, with = "humantime_serde")]
    pub max_backoff: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Raw {
    name: String,
    version: String,
    roles: Vec<Role>,
    component: Option<PathBuf>,
    schedule: Option<Schedule>,
    events: Option<RawEvents>,
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
    pub events: Option<Events>,
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
        let events = match (raw.roles.contains(&Role::EventStep), raw.events) {
            (false, None) => None,
            (false, Some(_)) => {
                return Err(fail(
                    "`[events]` is only for plugins with the event-step role".into(),
                ));
            }
            (true, None) => {
                return Err(fail(
                    "an event step needs an `[events]` with `topics` or `pattern`".into(),
                ));
            }
            (true, Some(events)) => {
                Some(events_of(&raw.name, events).map_err(|m| fail(format!("field `events.{m}")))?)
            }
        };
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
            events,
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

/// Validates `[events]`; errors start with the field name (after `events.`).
fn events_of(plugin: &str, raw: RawEvents) -> Result<Events, String> {
    let topics = match (raw.topics, raw.pattern) {
        (Some(_), Some(_)) => return Err("topics`: give `topics` or `pattern`, not both".into()),
        (None, None) => return Err("topics`: give `topics` or `pattern`".into()),
        (Some(topics), None) if topics.is_empty() || topics.iter().any(String::is_empty) => {
            return Err("topics`: list at least one topic, and no empty name".into());
        }
        (Some(topics), None) => crate::bus::Topics::Names(topics),
        (None, Some(pattern)) => {
            regex::Regex::new(&pattern)
                .map_err(|e| format!("pattern`: not a regular expression: {e}"))?;
            crate::bus::Topics::Pattern(pattern)
        }
    };
    if raw.batch == 0 {
        return Err("batch`: must be at least 1".into());
    }
    Ok(Events {
        topics,
        start: raw.start,
        retries: raw.retries,
        backoff: raw.backoff,
        dead_letter: raw
            .dead_letter
            .unwrap_or_else(|| format!("{plugin}.dead-letter")),
        group: format!("synchro.{plugin}"),
        batch: raw.batch,
    })
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

    const STEP: &str = r#"
        name = "people"
        version = "0.1.0"
        roles = ["event-step"]
        [events]
        topics = ["MyTopic"]
    "#;

    #[test]
    fn event_steps_get_their_own_group_and_a_dead_letter_topic() {
        let m = parse(STEP).unwrap();
        let events = m.events.unwrap();
        assert_eq!(
            events.topics,
            crate::bus::Topics::Names(vec!["MyTopic".into()])
        );
        assert_eq!(
            (events.group.as_str(), events.dead_letter.as_str()),
            ("synchro.people", "people.dead-letter")
        );
        assert_eq!(
            (events.retries, events.start),
            (3, crate::bus::StartFrom::Latest)
        );
        let cases = [
            (
                STEP.replace(
                    "topics = [\"MyTopic\"]",
                    "topics = [\"a\"]\npattern = \"b.*\"",
                ),
                "field `events.topics`: give `topics` or `pattern`, not both",
            ),
            (
                STEP.replace("topics = [\"MyTopic\"]", ""),
                "field `events.topics`: give `topics` or `pattern`",
            ),
            (
                STEP.replace("topics = [\"MyTopic\"]", "topics = []"),
                "list at least one topic",
            ),
            (
                STEP.replace("topics = [\"MyTopic\"]", "pattern = \"(\""),
                "field `events.pattern`: not a regular expression",
            ),
            (
                STEP.replace("[events]\n        topics = [\"MyTopic\"]", ""),
                "an event step needs an `[events]`",
            ),
            (
                STEP.replace(
                    "topics = [\"MyTopic\"]",
                    "topics = [\"a\"]\nstart = \"middle\"",
                ),
                "unknown variant `middle`",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err();
            assert!(
                error.contains(expected),
                "expected `{expected}` in: {error}"
            );
        }
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
