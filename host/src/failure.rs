//! What the host does about a plugin that keeps failing: back off exponentially, and past
//! a threshold quarantine it, so that a crash-looping plugin costs the host almost nothing.

use std::time::Duration;

/// The failure policy of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Consecutive failures after which the plugin is quarantined.
    pub quarantine_after: u32,
    /// The longest pause between two attempts.
    pub max_backoff: Duration,
}

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
    pub fn record(&mut self, policy: &Policy, succeeded: bool, pause: Duration) -> Verdict {
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
        let factor = 1u32 << self.consecutive.min(16);
        Verdict::Continue {
            pause: pause
                .saturating_mul(factor)
                .min(policy.max_backoff.max(pause)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_exponentially_then_quarantine_and_a_success_resets() {
        let policy = Policy {
            quarantine_after: 5,
            max_backoff: Duration::from_secs(3),
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
        let policy = Policy {
            quarantine_after: 10,
            max_backoff: Duration::from_secs(1),
        };
        let pause = Duration::from_secs(60);
        assert_eq!(
            Tracker::default().record(&policy, false, pause),
            Verdict::Continue { pause }
        );
    }
}
