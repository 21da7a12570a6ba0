//! Histograms of durations, lock-free since every call into a plugin records one.

use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram of durations, for `/metrics`: from 1 ms to about 4 minutes, each bucket
/// four times the last. Lock-free — an observation is two relaxed atomic additions —
/// since every call into a plugin records one. Clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct Durations(std::sync::Arc<DurationCounts>);

/// Each bucket's upper bound in nanoseconds: 1 ms × 4^i.
const BUCKET_NANOS: [u64; 10] = {
    let mut bounds = [1_000_000; 10];
    let mut i = 1;
    while i < bounds.len() {
        bounds[i] = bounds[i - 1] * 4;
        i += 1;
    }
    bounds
};

#[derive(Debug, Default)]
struct DurationCounts {
    /// Observations per bucket (not cumulative); the last past every bound.
    buckets: [AtomicU64; BUCKET_NANOS.len() + 1],
    nanos: AtomicU64,
}

impl Durations {
    pub fn observe(&self, elapsed: std::time::Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BUCKET_NANOS
            .iter()
            .position(|bound| nanos <= *bound)
            .unwrap_or(BUCKET_NANOS.len());
        self.0.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.0.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// How many durations were observed.
    pub fn count(&self) -> u64 {
        self.0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

impl prometheus_client::encoding::EncodeMetric for Durations {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        let counts = self.0.buckets.iter().map(|b| b.load(Ordering::Relaxed));
        let bounds = BUCKET_NANOS
            .iter()
            .map(|n| *n as f64 / 1e9)
            .chain([f64::MAX]);
        let buckets: Vec<(f64, u64)> = bounds.zip(counts).collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let seconds = self.0.nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            seconds, count, &buckets, None,
        )
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

/// How long a plugin's calls took, per role: from a call's start (a collector's
/// instantiation included) to its end, whatever the outcome.
#[derive(Debug, Default)]
pub struct CallDurations {
    pub collector: Durations,
    pub event_step: Durations,
    pub model_policy: Durations,
    pub sync_step: Durations,
}

impl CallDurations {
    /// The histogram of the role `role` names (as manifests do), if it is one.
    pub fn of(&self, role: &str) -> Option<&Durations> {
        match role {
            "collector" => Some(&self.collector),
            "event-step" => Some(&self.event_step),
            "model-policy" => Some(&self.model_policy),
            "sync-step" => Some(&self.sync_step),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_fall_in_buckets_of_four_times_the_last() {
        use prometheus_client::encoding::text::encode;
        use std::time::Duration;
        let durations = super::Durations::default();
        for ms in [0, 1, 2, 5, 300_000] {
            durations.observe(Duration::from_millis(ms));
        }
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("call", "calls", durations.clone());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "call_sum 300.008",
            "call_count 5",
            "call_bucket{le=\"0.001\"} 2",
            "call_bucket{le=\"0.004\"} 3",
            "call_bucket{le=\"0.016\"} 4",
            "call_bucket{le=\"262.144\"} 4",
            "call_bucket{le=\"+Inf\"} 5",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
        }
        assert_eq!(durations.count(), 5);
    }
}
