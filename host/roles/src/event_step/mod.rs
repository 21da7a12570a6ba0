//! The event-step role: consumes bus topics (XOS event steps), each plugin in its own
//! consumer group.
//!
//! ```toml
//! [events]
//! topics = ["MyTopic"]                # or pattern = "people\\..*"
//! start = "earliest"                  # where a new consumer group starts (default latest)
//! retries = 3                         # attempts after the first, then the dead-letter topic
//! backoff = "200ms"                   # before the first retry; doubles on each next one
//! dead-letter = "people.dead-letter"  # default: NAME.dead-letter
//! batch = 1024                        # events one instance handles before a fresh one
//! ```

mod call;
mod input;
mod run;

use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use synchro_manifest::{Manifest, ManifestError};
use synchro_wit::exports::synchro::plugin::event_step::GuestIndices;

pub use call::Session;
pub use run::Runner;

use crate::Linked;

/// The event step's manifest section.
pub(crate) const SECTION: &str = "events";

/// `[events]`: what an event step consumes and how it treats failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Events {
    pub topics: synchro_bus::Topics,
    /// Where the plugin's consumer group starts on its first deploy; later deploys
    /// resume from the committed offsets.
    pub start: synchro_bus::StartFrom,
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
    start: synchro_bus::StartFrom,
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

/// A plugin's event-step role: what it consumes and, once linked, its export.
pub struct EventStep {
    pub events: Events,
    guest: GuestIndices,
}

impl EventStep {
    /// Readies what the step reads before its runner starts: its place in the change
    /// stream (see [`input::reserve`]).
    pub(crate) fn reserve(
        &self,
        services: &synchro_capability::Services,
    ) -> Result<(), synchro_store::DbError> {
        input::reserve(&services.bus, &services.db, &self.events)
    }

    /// Reads the role's section of `manifest`.
    pub(crate) fn section(manifest: &Manifest) -> Result<Events, ManifestError> {
        let Some(section) = manifest.sections.get(SECTION) else {
            return Err(
                manifest.error("an event step needs an `[events]` with `topics` or `pattern`")
            );
        };
        let raw: RawEvents = section.clone().try_into().map_err(|e: toml::de::Error| {
            manifest.error(format!("field `events`: {}", e.message()))
        })?;
        let events = events_of(&manifest.name, raw)
            .map_err(|m| manifest.error(format!("field `events.{m}")))?;
        Ok(events)
    }

    /// The role of a component linked as `linked`, which must export its interface.
    pub(crate) fn link(events: Events, linked: &Linked) -> anyhow::Result<EventStep> {
        Ok(EventStep {
            events,
            guest: guest(linked)?,
        })
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
        (Some(topics), None) => synchro_bus::Topics::Names(topics),
        (None, Some(pattern)) => {
            regex::Regex::new(&pattern)
                .map_err(|e| format!("pattern`: not a regular expression: {e}"))?;
            synchro_bus::Topics::Pattern(pattern)
        }
    };
    if raw.batch == 0 {
        return Err("batch`: must be at least 1".into());
    }
    if raw.backoff.is_zero() || raw.backoff > Duration::from_secs(24 * 3600) {
        return Err("backoff`: must be longer than zero and at most a day".into());
    }
    if let Some(topic) = raw.dead_letter.as_deref()
        && synchro_bus::is_host_topic(topic)
    {
        return Err(format!(
            "dead-letter`: `{topic}` is the host's own topic; dead letters cannot go there"
        ));
    }
    Ok(Events {
        topics,
        start: raw.start,
        retries: raw.retries,
        backoff: raw.backoff,
        dead_letter: raw.dead_letter.unwrap_or_else(|| own_dead_letter(plugin)),
        group: format!("synchro.{plugin}"),
        batch: raw.batch,
    })
}

/// The dead-letter topic of plugin `name` unless its `[events]` names another: its own,
/// needing no grant.
pub(crate) fn own_dead_letter(name: &str) -> String {
    format!("{name}.dead-letter")
}

/// Where the event-step export's functions are in `linked`, if it has the export.
pub(crate) fn guest(linked: &Linked) -> anyhow::Result<GuestIndices> {
    GuestIndices::new(linked)
        .map_err(anyhow::Error::from)
        .context(
            "it does not export `synchro:plugin/event-step@0.2.0` as the event-step role requires",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        crate::parse_manifest("people.toml", text)
    }

    fn events(manifest: &Manifest) -> Events {
        EventStep::section(manifest).unwrap()
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
        let events = events(&m);
        assert_eq!(
            events.topics,
            synchro_bus::Topics::Names(vec!["MyTopic".into()])
        );
        assert_eq!(
            (events.group.as_str(), events.dead_letter.as_str()),
            ("synchro.people", "people.dead-letter")
        );
        assert_eq!(
            (events.retries, events.start),
            (3, synchro_bus::StartFrom::Latest)
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
            (
                STEP.replace(
                    "topics = [\"MyTopic\"]",
                    "topics = [\"a\"]\ndead-letter = \"changes\"",
                ),
                "field `events.dead-letter`: `changes` is the host's own topic; dead letters cannot go there",
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
}
