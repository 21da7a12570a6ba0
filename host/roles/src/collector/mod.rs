//! The collector role: samples an outside system on a schedule (a Vitrage datasource
//! driver's "get all"); the host diffs each complete snapshot against its baseline.
//!
//! ```toml
//! [schedule]
//! interval = "10s"
//! jitter = "1s"                       # default: a tenth of the interval
//! sync = true                         # sync steps push what it reports (default: no)
//! ```
//!
//! What a collector reports is observed, not wanted: the model marks it `no-sync`, and
//! sync steps leave it alone, unless `sync = true` says the outside system it samples is
//! a source of truth to push elsewhere.

mod call;
mod control;
mod deletes;
mod run;

use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use synchro_manifest::{Manifest, ManifestError};
use synchro_wit::exports::synchro::plugin::collector::GuestIndices;

pub use call::Collected;
pub use control::{Command, Control};
pub use run::{CollectError, Report, Runner};

use crate::Linked;

/// The collector's manifest section.
pub(crate) const SECTION: &str = "schedule";

/// `[schedule]`: how often a collector samples.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Schedule {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default, with = "humantime_serde")]
    pub jitter: Option<Duration>,
    /// Whether sync steps push what this collector reports outward.
    #[serde(default)]
    pub sync: bool,
}

impl Schedule {
    /// The jitter to apply: as configured, else a tenth of the interval.
    pub fn jitter(&self) -> Duration {
        self.jitter.unwrap_or(self.interval / 10)
    }
}

/// A plugin's collector role: its schedule and, once linked, its export.
pub struct Collector {
    pub schedule: Schedule,
    guest: GuestIndices,
}

impl Collector {
    /// Reads the role's section of `manifest`.
    pub(crate) fn section(manifest: &Manifest) -> Result<Schedule, ManifestError> {
        let Some(section) = manifest.sections.get(SECTION) else {
            return Err(manifest.error("a collector needs a `[schedule]` with an `interval`"));
        };
        let schedule: Schedule = section.clone().try_into().map_err(|e: toml::de::Error| {
            manifest.error(format!("field `schedule`: {}", e.message()))
        })?;
        if schedule.interval.is_zero() {
            return Err(manifest.error("field `schedule.interval`: must be longer than zero"));
        }
        if schedule.interval > Duration::from_secs(365 * 24 * 3600) {
            return Err(manifest.error("field `schedule.interval`: must be at most a year"));
        }
        if schedule.jitter() > schedule.interval {
            return Err(manifest.error("field `schedule.jitter`: must be at most the interval"));
        }
        Ok(schedule)
    }

    /// The role of a component linked as `linked`, which must export its interface.
    pub(crate) fn link(schedule: Schedule, linked: &Linked) -> anyhow::Result<Collector> {
        Ok(Collector {
            schedule,
            guest: guest(linked)?,
        })
    }
}

/// Where the collector export's functions are in `linked`, if it has the export.
pub(crate) fn guest(linked: &Linked) -> anyhow::Result<GuestIndices> {
    GuestIndices::new(linked)
        .map_err(anyhow::Error::from)
        .context(
            "it does not export `synchro:plugin/collector@0.2.0` as the collector role requires",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        crate::parse_manifest("inv.toml", text)
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
    fn a_good_schedule_gets_a_tenth_of_its_interval_as_jitter() {
        let schedule = Collector::section(&parse(GOOD).unwrap()).unwrap();
        assert_eq!(schedule.jitter(), Duration::from_secs(1));
    }

    #[test]
    fn errors_name_the_file_the_field_and_the_reason() {
        let cases = [
            (
                GOOD.replace("interval = \"10s\"", "interval = \"soon\""),
                "expected a duration",
            ),
            (
                GOOD.replace("interval = \"10s\"", "interval = \"0s\""),
                "field `schedule.interval`: must be longer than zero",
            ),
            (
                GOOD.replace(
                    "interval = \"10s\"",
                    "interval = \"10s\"\njitter = \"584542046090years\"",
                ),
                "field `schedule.jitter`: must be at most the interval",
            ),
            (
                format!("extra = 1\n{GOOD}"),
                "line 1, column 1: unknown field `extra`",
            ),
            (
                GOOD.replace("[schedule]\n        interval = \"10s\"", ""),
                "needs a `[schedule]`",
            ),
            (
                format!("{GOOD}\n[events]\ntopics = [\"t\"]\n"),
                "`[events]` is only for plugins with the event-step role",
            ),
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
