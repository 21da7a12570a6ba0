//! How a plugin is doing, as the admin API, `/metrics` and the dashboard name it.

use serde::{Deserialize, Serialize};

/// How a plugin is doing: the states of OpenTelemetry's component status, with synchro's
/// own (quarantined, paused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Health {
    /// Deployed; its runner has not begun its work yet (a collector's first collect, an
    /// event step's join to its topics).
    #[default]
    Starting,
    /// Working: its last call succeeded, or it waits for work.
    Ok,
    /// The last calls failed for a reason that may pass (a source out of reach, a
    /// deadline, a trap on some input): retried, each time later.
    RecoverableError { failures: u32, last_error: String },
    /// The last calls failed for a reason retrying cannot fix: the plugin is denied what
    /// it needs (its grants) or cannot be instantiated (its limits). Still retried, each
    /// time later, but an operator must act.
    PermanentError { failures: u32, last_error: String },
    /// Too many consecutive failures: not called again until released or reloaded.
    Quarantined { failures: u32, reason: String },
    /// An operator paused it: a collector is not called on its schedule until resumed
    /// (its baseline stays).
    Paused,
    /// Its runner stopped on an error of the host's own (a panic): not called again until
    /// reloaded, which starts it afresh.
    Stopped { reason: String },
}

impl Health {
    /// Every state's name, as `state` says it.
    pub const NAMES: [&'static str; 7] = [
        "starting",
        "ok",
        "recoverable-error",
        "permanent-error",
        "quarantined",
        "paused",
        "stopped",
    ];

    /// The name of this state (`state` in the JSON, the label on `/metrics`).
    pub fn name(&self) -> &'static str {
        Self::NAMES[match self {
            Health::Starting => 0,
            Health::Ok => 1,
            Health::RecoverableError { .. } => 2,
            Health::PermanentError { .. } => 3,
            Health::Quarantined { .. } => 4,
            Health::Paused => 5,
            Health::Stopped { .. } => 6,
        }]
    }

    /// Whether the plugin works as it should: starting or ok.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Starting | Health::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::Health;

    #[test]
    fn each_state_is_named_as_its_json_says() {
        let failed = || (1, "x".to_owned());
        let all = [
            Health::Starting,
            Health::Ok,
            Health::RecoverableError {
                failures: failed().0,
                last_error: failed().1,
            },
            Health::PermanentError {
                failures: failed().0,
                last_error: failed().1,
            },
            Health::Quarantined {
                failures: failed().0,
                reason: failed().1,
            },
            Health::Paused,
            Health::Stopped { reason: failed().1 },
        ];
        for health in all {
            let json = serde_json::to_value(&health).unwrap();
            assert_eq!(json["state"], health.name(), "{health:?}");
        }
    }
}
