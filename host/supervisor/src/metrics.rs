//! `GET /metrics`: the host's state in the OpenMetrics text format (Prometheus scrapes
//! it), read at each scrape from what the host keeps anyway — each plugin's counters,
//! health, held deletes, queues and collect durations, the outbox and its readers, the
//! responses — so nothing is counted in two places and the hot path pays nothing more.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use synchro_status::{Durations, Health, HostReport, ModelRole, Status};

/// What one scrape reads: each running plugin's status, the host's report, and how long
/// its `await-response` waits waited.
#[derive(Debug)]
struct Scrape {
    statuses: Vec<(String, Arc<Status>)>,
    report: HostReport,
    waits: Durations,
}

/// The metrics text of a host whose plugins have `statuses`, whose report is `report`
/// and whose answered waits for responses took `waits`.
pub fn render(
    statuses: Vec<(String, Arc<Status>)>,
    report: HostReport,
    waits: Durations,
) -> String {
    let mut registry = Registry::with_prefix("synchro");
    registry.register_collector(Box::new(Scrape {
        statuses,
        report,
        waits,
    }));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String does not fail");
    text
}

impl Scrape {
    fn status_of(&self, plugin: &str) -> Option<&Status> {
        let (_, status) = self.statuses.iter().find(|(name, _)| name == plugin)?;
        Some(status)
    }

    /// The histogram family `name`: for each plugin, one per role it plays that `pick`
    /// keeps a histogram of.
    fn per_role(
        &self,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        pick: impl for<'s> Fn(&'s Status, &str) -> Option<&'s Durations>,
    ) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for plugin in &self.report.plugins {
            let Some(status) = self.status_of(&plugin.name) else {
                continue;
            };
            for role in &plugin.roles {
                if let Some(durations) = pick(status, role) {
                    let labels = [("plugin", plugin.name.as_str()), ("role", role.as_str())];
                    durations.encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let plugins = &self.report.plugins;
        // Every counter of every plugin, named and described by the counters themselves.
        if let Some(first) = plugins.first() {
            for (index, (name, help, _)) in first.counters.each().into_iter().enumerate() {
                let metric = format!("plugin_{name}");
                let mut family =
                    encoder.encode_descriptor(&metric, help.trim(), None, MetricType::Counter)?;
                for plugin in plugins {
                    let value = plugin.counters.each()[index].2;
                    let labels = [("plugin", plugin.name.as_str())];
                    ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "plugin_state",
            "1 for the plugin's health state, 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for plugin in plugins {
            for candidate in Health::NAMES {
                let labels = [("plugin", plugin.name.as_str()), ("state", candidate)];
                let on = i64::from(plugin.health.name() == candidate);
                ConstGauge::new(on).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "plugin_memory_bytes",
            "Linear memory the plugin's instance held at the end of its last call",
            None,
            MetricType::Gauge,
        )?;
        for plugin in plugins {
            let labels = [("plugin", plugin.name.as_str())];
            ConstGauge::new(plugin.memory_bytes as i64).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "event_step_bus_lag",
            "Messages on the bus topics an event step reads not handed to it yet (measured every 1 024 messages, and every second while it waits; `changes` read from the outbox: outbox_reader_lag)",
            None,
            MetricType::Gauge,
        )?;
        for plugin in plugins
            .iter()
            .filter(|p| p.roles.iter().any(|r| r == "event-step"))
        {
            let Some(status) = self.status_of(&plugin.name) else {
                continue;
            };
            let labels = [("plugin", plugin.name.as_str())];
            let lag = status.bus_lag.load(std::sync::atomic::Ordering::Relaxed);
            ConstGauge::new(lag as i64).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "plugin_held_deletes",
            "A collector's deletes held for an operator's approval",
            None,
            MetricType::Gauge,
        )?;
        for plugin in plugins
            .iter()
            .filter(|p| p.roles.iter().any(|r| r == "collector"))
        {
            let held = plugin.held_deletes.as_ref().map_or(0, |h| h.count as i64);
            let labels = [("plugin", plugin.name.as_str())];
            ConstGauge::new(held).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "work_queue",
            "Entities in a model policy's or a sync step's queue, by state",
            None,
            MetricType::Gauge,
        )?;
        for plugin in plugins {
            let queues = [
                ("policy", &plugin.policy_queue),
                ("sync", &plugin.sync_queue),
            ];
            for (role, queue) in queues {
                let Some(q) = queue else { continue };
                let states = [
                    ("ready", q.ready),
                    ("in-flight", q.in_flight),
                    ("backing-off", q.backing_off),
                    ("held", q.held),
                ];
                for (name, count) in states {
                    let labels = [
                        ("plugin", plugin.name.as_str()),
                        ("role", role),
                        ("state", name),
                    ];
                    ConstGauge::new(count as i64).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "collect_duration_seconds",
            "How long a collector's collects took: the call, the diff and the commit",
            None,
            MetricType::Histogram,
        )?;
        for (name, status) in &self.statuses {
            let labels = [("plugin", name.as_str())];
            status
                .collect_seconds
                .encode(family.encode_family(&labels)?)?;
        }
        self.per_role(
            &mut encoder,
            "plugin_call_duration_seconds",
            "How long a plugin's calls took, per role, whatever their outcome",
            |status, role| status.call_seconds.of(role),
        )?;
        self.per_role(
            &mut encoder,
            "work_backoff_seconds",
            "The backoffs a model policy or sync step gave its failed entities",
            |status, role| {
                let role = ModelRole::ALL.into_iter().find(|r| r.name() == role)?;
                Some(status.backoffs(role))
            },
        )?;
        let outbox = &self.report.outbox;
        let family = encoder.encode_descriptor(
            "outbox_last_change",
            "The sequence number of the last change committed",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(outbox.last as i64).encode(family)?;
        let mut family = encoder.encode_descriptor(
            "outbox_reader_lag",
            "Changes committed that a reader of the change stream has not handled",
            None,
            MetricType::Gauge,
        )?;
        for (reader, at) in &outbox.readers {
            let labels = [("reader", reader.as_str())];
            let lag = outbox.last.saturating_sub(*at) as i64;
            ConstGauge::new(lag).encode(family.encode_family(&labels)?)?;
        }
        let r = &self.report.responses;
        let mut family = encoder.encode_descriptor(
            "responses",
            "Responses seen on response topics, by what became of them",
            None,
            MetricType::Counter,
        )?;
        let outcomes = [
            ("delivered", r.delivered),
            ("early", r.early),
            ("late", r.late),
            ("duplicate", r.duplicate),
            ("unknown", r.unknown),
            ("malformed", r.malformed),
            ("timed-out", r.timed_out),
        ];
        for (outcome, count) in outcomes {
            let labels = [("outcome", outcome)];
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
        let family = encoder.encode_descriptor(
            "await_response_seconds",
            "How long answered await-response waits waited for their response",
            None,
            MetricType::Histogram,
        )?;
        self.waits.encode(family)?;
        for (name, help, count) in [
            (
                "plugins_refused",
                "Manifests in the plugin directory that did not load",
                self.report.refused.len(),
            ),
            (
                "plugins_loading",
                "Manifests being compiled",
                self.report.loading.len(),
            ),
        ] {
            let family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(count as i64).encode(family)?;
        }
        Ok(())
    }
}
