//! Exponential backoff, the one way the host waits longer after each failure: a failing
//! plugin's schedule, an event's retries, joining a consumer group, dead-lettering.

use std::time::Duration;

/// A pause that doubles after each failure, from `base` up to `max` (never below `base`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            failures: 0,
        }
    }

    /// The pause before the next attempt: `base` first, then twice the last one.
    pub fn next_pause(&mut self) -> Duration {
        let pause = Backoff::after(self.base, self.failures, self.max);
        self.failures = self.failures.saturating_add(1);
        pause
    }

    /// The pause after `failures` failures in a row: `base` × 2^`failures`, capped.
    pub fn after(base: Duration, failures: u32, max: Duration) -> Duration {
        base.saturating_mul(1 << failures.min(16))
            .min(max.max(base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_which_never_shortens_the_base() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(10), ms(50));
        let pauses: Vec<_> = (0..5).map(|_| backoff.next_pause()).collect();
        assert_eq!(pauses, [ms(10), ms(20), ms(40), ms(50), ms(50)]);
        assert_eq!(Backoff::after(ms(60), 3, ms(50)), ms(60));
        assert_eq!(
            Backoff::after(Duration::from_secs(1), u32::MAX, Duration::MAX),
            Duration::from_secs(1 << 16),
            "no overflow"
        );
    }
}
