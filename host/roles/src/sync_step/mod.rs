//! The sync-step role: pushes the model to an outside system (XOS sync steps).
//!
//! ```toml
//! [sync]
//! kinds = ["pserver"]     # the kinds it enacts
//! rate = 100              # calls a second at most, whatever fails (default 100)
//! backoff = "1s"          # an entity's first pause after a failure; doubles on each next one
//! max-backoff = "5m"      # the longest pause of an entity
//! ```
//!
//! An entity needs a sync when its data (or a policy's write) is newer than what was last
//! enacted, and it is not `no-sync`; see `synchro_model::bookkeeping`. `sync-record`
//! enacts it; a deleted entity stays in the model until `delete-record` succeeds.

mod call;
mod queue;
mod run;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use synchro_manifest::{Manifest, ManifestError};
use synchro_wit::exports::synchro::plugin::sync_step::GuestIndices;

pub use run::Runner;

use crate::Linked;

/// The sync step's manifest section.
pub(crate) const SECTION: &str = "sync";

/// `[sync]`: what a sync step enacts and how it paces itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Sync {
    pub kinds: BTreeSet<String>,
    /// Calls a second at most.
    pub rate: f64,
    /// An entity's first pause after a failure; doubles on each next one.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawSync {
    kinds: Vec<String>,
    #[serde(default = "default_rate")]
    rate: f64,
    #[serde(default = "default_backoff", with = "humantime_serde")]
    backoff: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    max_backoff: Duration,
}

fn default_rate() -> f64 {
    100.0
}

fn default_backoff() -> Duration {
    Duration::from_secs(1)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}

/// A plugin's sync-step role: what it enacts and, once linked, its export.
pub struct SyncStep {
    pub sync: Sync,
    guest: GuestIndices,
}

impl SyncStep {
    /// Reads the role's section of `manifest`.
    pub(crate) fn section(manifest: &Manifest) -> Result<Sync, ManifestError> {
        let Some(section) = manifest.sections.get(SECTION) else {
            return Err(manifest.error("a sync step needs a `[sync]` with the `kinds` it enacts"));
        };
        let raw: RawSync = section.clone().try_into().map_err(|e: toml::de::Error| {
            manifest.error(format!("field `sync`: {}", e.message()))
        })?;
        sync_of(raw).map_err(|m| manifest.error(format!("field `sync.{m}")))
    }

    /// The role of a component linked as `linked`, which must export its interface.
    pub(crate) fn link(sync: Sync, linked: &Linked) -> anyhow::Result<SyncStep> {
        Ok(SyncStep {
            sync,
            guest: guest(linked)?,
        })
    }
}

/// Validates `[sync]`; errors start with the field name (after `sync.`).
fn sync_of(raw: RawSync) -> Result<Sync, String> {
    if raw.kinds.is_empty() || raw.kinds.iter().any(|k| k.is_empty() || k.contains('\0')) {
        return Err("kinds`: list at least one kind, and no empty name".into());
    }
    if !(raw.rate.is_finite() && raw.rate >= 0.01 && raw.rate <= 1e6) {
        return Err(format!(
            "rate`: must be 0.01 to 1000000 calls a second, not {}",
            raw.rate
        ));
    }
    let day = Duration::from_secs(24 * 3600);
    if raw.backoff.is_zero() || raw.backoff > day {
        return Err("backoff`: must be longer than zero and at most a day".into());
    }
    if raw.max_backoff < raw.backoff || raw.max_backoff > day {
        return Err("max-backoff`: must be at least `backoff` and at most a day".into());
    }
    Ok(Sync {
        kinds: raw.kinds.into_iter().collect(),
        rate: raw.rate,
        backoff: raw.backoff,
        max_backoff: raw.max_backoff,
    })
}

/// Where the sync-step export's functions are in `linked`, if it has the export.
pub(crate) fn guest(linked: &Linked) -> anyhow::Result<GuestIndices> {
    GuestIndices::new(linked)
        .map_err(anyhow::Error::from)
        .context(
            "it does not export `synchro:plugin/sync-step@0.2.0` as the sync-step role requires",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: &str = r#"
        name = "push"
        version = "0.1.0"
        roles = ["sync-step"]
        [sync]
        kinds = ["pserver"]
    "#;

    #[test]
    fn a_sync_step_section_has_defaults_and_names_its_mistakes() {
        let manifest = crate::parse_manifest("push.toml", STEP).unwrap();
        let sync = SyncStep::section(&manifest).unwrap();
        assert_eq!(sync.kinds, BTreeSet::from(["pserver".to_owned()]));
        assert_eq!((sync.rate, sync.backoff), (100.0, Duration::from_secs(1)));
        let cases = [
            ("kinds = [\"pserver\"]", "", "a sync step needs a `[sync]`"),
            (
                "kinds = [\"pserver\"]",
                "kinds = []",
                "field `sync.kinds`: list at least one kind",
            ),
            (
                "kinds = [\"pserver\"]",
                "kinds = [\"a\"]\nrate = 0",
                "field `sync.rate`: must be 0.01",
            ),
            (
                "kinds = [\"pserver\"]",
                "kinds = [\"a\"]\nbackoff = \"0s\"",
                "field `sync.backoff`",
            ),
            (
                "kinds = [\"pserver\"]",
                "kinds = [\"a\"]\nbackoff = \"2s\"\nmax-backoff = \"1s\"",
                "field `sync.max-backoff`: must be at least `backoff`",
            ),
            (
                "kinds = [\"pserver\"]",
                "kinds = [\"a\"]\nretries = 3",
                "unknown field `retries`",
            ),
        ];
        for (from, to, expected) in cases {
            let mut text = STEP.replace(from, to);
            if to.is_empty() {
                text = text.replace("[sync]", "");
            }
            let error = crate::parse_manifest("push.toml", &text).unwrap_err();
            assert!(
                error.contains(expected),
                "expected `{expected}` in: {error}"
            );
        }
    }
}
