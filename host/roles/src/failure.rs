//! What the host does about a plugin that keeps failing: back off exponentially, and past
//! a threshold quarantine it, so that a crash-looping plugin costs the host almost nothing.
//!
//! The policy is the plugin's limits: `quarantine-after` and `max-backoff`.

use std::time::Duration;

use synchro_manifest::Limits;

use crate::Backoff;

/// What to do after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on after the normal pause multiplied by this factor (1 after a success).
    Continue { pause: Duration },
    /// Stop calling the plugin until an operator releases it.
    Quarantine { failures: u32 },
}

/// Consecutive failures of one plugin.
#[derive(Debug, Default)]
pub struct Tracker {
    consecutive: u32,
}

impl Tracker {
    /// Failures since the last success.
    pub fn consecutive(&self) -> u32 {
        self.consecutive
    }

    /// Records the outcome of a call whose normal next attempt is after `pause`.
    pub fn record(&mut self, policy: &Limits, succeeded: bool, pause: Duration) -> Verdict {
        if succeeded {
            self.consecutive = 0;
            return Verdict::Continue { pause };
        }
        self.consecutive += 1;
        if self.consecutive >= policy.quarantine_after {
            return Verdict::Quarantine {
                failures: self.consecutive,
            };
        }
        Verdict::Continue {
            pause: Backoff::after(pause, self.consecutive, policy.max_backoff),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_exponentially_then_quarantine_and_a_success_resets() {
        let policy = Limits {
            quarantine_after: 5,
            max_backoff: Duration::from_secs(3),
            ..Limits::default()
        };
        let second = Duration::from_secs(1);
        let mut tracker = Tracker::default();
        let pauses: Vec<_> = (0..4)
            .map(|_| tracker.record(&policy, false, second))
            .collect();
        assert_eq!(
            pauses,
            [2, 3, 3, 3].map(|s| Verdict::Continue {
                pause: Duration::from_secs(s)
            }),
            "doubling, capped at max-backoff"
        );
        assert_eq!(
            tracker.record(&policy, false, second),
            Verdict::Quarantine { failures: 5 }
        );

        let mut tracker = Tracker::default();
        tracker.record(&policy, false, second);
        assert_eq!(
            tracker.record(&policy, true, second),
            Verdict::Continue { pause: second }
        );
        assert_eq!(
            tracker.record(&policy, false, second),
            Verdict::Continue { pause: 2 * second },
            "a success resets the count"
        );
    }

    #[test]
    fn a_cap_below_the_interval_never_shortens_it() {
        let policy = Limits {
            quarantine_after: 10,
            max_backoff: Duration::from_secs(1),
            ..Limits::default()
        };
        let pause = Duration::from_secs(60);
        assert_eq!(
            Tracker::default().record(&policy, false, pause),
            Verdict::Continue { pause }
        );
    }
}
