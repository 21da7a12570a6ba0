//! The events of a plugin's life an operator sees, each emitted in one place: its log
//! line, its counter and, where it changes them, the plugin's health or held deletes move
//! together, as vector's internal events do. [`Counters`]' fields are private to this
//! module, so a count cannot move without the event that explains it, and the log and
//! `/metrics` cannot drift apart; a new event is one type here, with its level and what
//! it counts.
//!
//! Events on the hot path (a call, an event processed, a change committed) count without
//! a log line: one relaxed atomic addition.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{CollectRun, Health, HeldDeletes, ModelRole, RunRecord, Status};

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// Monotonic counters of one plugin since the host started.
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[doc = $doc])* $name: AtomicU64,)*
        }

        /// A copy of [`Counters`] at one instant.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub struct CounterValues {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl Counters {
            pub fn values(&self) -> CounterValues {
                CounterValues {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }

        impl CounterValues {
            /// Each counter's name, what it counts (its doc) and value: what metrics
            /// export, without a list of their own to keep in step.
            pub fn each(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($name), concat!($($doc),*), self.$name),)*]
            }
        }
    };
}

counters! {
    /// Calls into the plugin (collects, events handled, including retries).
    calls,
    /// Calls that failed: traps, deadlines, limits, errors, invalid output.
    failures,
    /// Host imports refused because the grants do not allow them.
    denials,
    /// Changes the plugin committed to the outbox: its collects' diffs, its store writes
    /// and its `emit-change` calls (those once queued: durable a moment later).
    changes,
    /// Events handled successfully and committed.
    processed,
    /// Failed event attempts that were retried.
    retried,
    /// Events sent to the dead-letter topic.
    dead_lettered,
    /// Entities a sync step enacted, or removed outside.
    enacted,
    /// Entities a model policy handled (created, updated or deleted).
    policed,
    /// Times the plugin was quarantined.
    quarantines,
    /// New versions swapped in while running.
    reloads,
    /// Reloads refused (the running version stayed).
    failed_reloads,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Something that happened to a plugin: [`Status::emit`] logs it, counts it and records
/// what it changes of the plugin's status.
pub trait Event {
    fn emit(self, status: &Status);
}

impl Status {
    pub fn emit(&self, event: impl Event) {
        event.emit(self);
    }
}

/// A call into the plugin began (a collect, an event's attempt, an entity handled).
pub struct Called;

impl Event for Called {
    fn emit(self, status: &Status) {
        add(&status.counters.calls, 1);
    }
}

/// The plugin committed `0` changes to the outbox.
pub struct ChangesCommitted(pub u64);

impl Event for ChangesCommitted {
    fn emit(self, status: &Status) {
        add(&status.counters.changes, self.0);
    }
}

/// A collect ended, committed or failed: its record is kept, its duration observed.
pub struct Collected<'a> {
    pub plugin: &'a str,
    pub run: CollectRun,
    pub elapsed: Duration,
}

impl Event for Collected<'_> {
    fn emit(self, status: &Status) {
        let Collected {
            plugin,
            run,
            elapsed,
        } = self;
        status.collect_seconds.observe(elapsed);
        let report = &run.report;
        let elapsed_ms = elapsed.as_millis() as u64;
        match &run.error {
            Some(error) => {
                add(&status.counters.failures, 1);
                tracing::warn!(plugin = %plugin, "{error}");
            }
            None if report.created + report.updated + report.deleted == 0 => {
                tracing::debug!(plugin = %plugin, entities = report.entities, "collected: no change");
            }
            None => tracing::info!(
                plugin = %plugin,
                entities = report.entities,
                created = report.created,
                updated = report.updated,
                deleted = report.deleted,
                elapsed_ms,
                "collected"
            ),
        }
        status.record_run(RunRecord::Collect(run));
    }
}

/// A snapshot reported `refused` entities other plugins own (the first, `first`, is
/// owned by `owner`): they are left as they are, each counted as a denial.
pub struct SnapshotRefused<'a> {
    pub plugin: &'a str,
    pub refused: u64,
    pub first: &'a dyn Display,
    pub owner: &'a dyn Display,
}

impl Event for SnapshotRefused<'_> {
    fn emit(self, status: &Status) {
        add(&status.counters.denials, self.refused);
        tracing::warn!(
            plugin = %self.plugin,
            refused = self.refused,
            first = %self.first,
            owner = %self.owner,
            "denied: the snapshot reports entities another plugin owns; they are left as they are"
        );
    }
}

/// A collect's deletes exceed the plugin's limits (`held.reason` says which): they are
/// held for an operator.
pub struct DeletesHeld<'a> {
    pub plugin: &'a str,
    pub held: HeldDeletes,
}

impl Event for DeletesHeld<'_> {
    fn emit(self, status: &Status) {
        let plugin = self.plugin;
        tracing::warn!(
            plugin = %plugin,
            held = self.held.count,
            first = %self.held.sample.first().map(String::as_str).unwrap_or_default(),
            "deletes held: {}. The entities stay; after checking the source, \
             `synchro plugin approve-deletes {plugin}` deletes them",
            self.held.reason,
        );
        status.set_held_deletes(Some(self.held));
    }
}

/// The held deletes are no longer held: a snapshot did not ask for them.
pub struct DeletesDropped<'a> {
    pub plugin: &'a str,
}

impl Event for DeletesDropped<'_> {
    fn emit(self, status: &Status) {
        tracing::info!(
            plugin = %self.plugin,
            "the held deletes are no longer held: the last snapshot did not ask for them"
        );
        status.set_held_deletes(None);
    }
}

/// An operator approved the held deletes, and the `deleted` were made.
pub struct DeletesApproved<'a> {
    pub plugin: &'a str,
    pub deleted: u64,
}

impl Event for DeletesApproved<'_> {
    fn emit(self, status: &Status) {
        status.set_held_deletes(None);
        add(&status.counters.changes, self.deleted);
        tracing::info!(
            plugin = %self.plugin,
            deleted = self.deleted,
            "held deletes approved by the operator and made"
        );
    }
}

/// An operator reset the collector's baseline, which had `forgotten` entities.
pub struct BaselineReset<'a> {
    pub plugin: &'a str,
    pub forgotten: u64,
}

impl Event for BaselineReset<'_> {
    fn emit(self, status: &Status) {
        status.set_held_deletes(None);
        tracing::info!(
            plugin = %self.plugin,
            forgotten = self.forgotten,
            "baseline reset by the operator: the next collect announces everything it finds"
        );
    }
}

/// An operator paused the collector.
pub struct Paused<'a> {
    pub plugin: &'a str,
}

impl Event for Paused<'_> {
    fn emit(self, status: &Status) {
        status.set_health(Health::Paused);
        tracing::info!(
            plugin = %self.plugin,
            "paused by the operator: no collect until resumed"
        );
    }
}

/// An operator resumed the paused collector.
pub struct Resumed<'a> {
    pub plugin: &'a str,
}

impl Event for Resumed<'_> {
    fn emit(self, status: &Status) {
        status.set_health(Health::Ok);
        tracing::info!(plugin = %self.plugin, "resumed by the operator");
    }
}

/// A host import was refused: the grants do not allow `capability` (`why` says no more
/// than the plugin may know).
pub struct Denied<'a> {
    pub plugin: &'a str,
    pub capability: &'a str,
    pub why: &'a dyn Display,
}

impl Event for Denied<'_> {
    fn emit(self, status: &Status) {
        add(&status.counters.denials, 1);
        tracing::warn!(
            plugin = %self.plugin,
            capability = self.capability,
            "denied: {}",
            self.why
        );
    }
}

/// An event step handled an event, and it is committed.
pub struct Processed;

impl Event for Processed {
    fn emit(self, status: &Status) {
        add(&status.counters.processed, 1);
    }
}

/// Where an event step's failed event came from.
pub struct Delivered<'a> {
    pub topic: &'a str,
    pub offset: i64,
    /// Its attempts so far.
    pub attempt: u32,
}

/// An event step failed an event and tries again after `pause`.
pub struct EventRetried<'a> {
    pub plugin: &'a str,
    pub event: Delivered<'a>,
    pub error: &'a dyn Display,
    pub pause: Duration,
}

impl Event for EventRetried<'_> {
    fn emit(self, status: &Status) {
        add(&status.counters.failures, 1);
        add(&status.counters.retried, 1);
        let Delivered {
            topic,
            offset,
            attempt,
        } = self.event;
        tracing::info!(
            plugin = %self.plugin,
            topic = %topic,
            offset,
            attempt,
            "{}; retrying in {:?}",
            self.error,
            self.pause
        );
    }
}

/// An event step failed an event its last time: it goes to the dead-letter topic.
pub struct EventGivenUp<'a> {
    pub plugin: &'a str,
    pub event: Delivered<'a>,
    pub error: &'a dyn Display,
}

impl Event for EventGivenUp<'_> {
    fn emit(self, status: &Status) {
        add(&status.counters.failures, 1);
        let Delivered {
            topic,
            offset,
            attempt,
        } = self.event;
        tracing::warn!(
            plugin = %self.plugin,
            topic = %topic,
            offset,
            attempt,
            "giving up: {}",
            self.error
        );
    }
}

/// An event the step gave up on is on the dead-letter topic `topic`.
pub struct DeadLettered<'a> {
    pub plugin: &'a str,
    pub topic: &'a str,
}

impl Event for DeadLettered<'_> {
    fn emit(self, status: &Status) {
        add(&status.counters.dead_lettered, 1);
        tracing::debug!(plugin = %self.plugin, topic = %self.topic, "dead-lettered");
    }
}

/// A model policy or sync step failed `call` of entity `id`: it backs off.
pub struct EntityFailed<'a> {
    pub plugin: &'a str,
    pub call: &'a str,
    pub id: &'a dyn Display,
    pub error: &'a dyn Display,
}

impl Event for EntityFailed<'_> {
    fn emit(self, status: &Status) {
        add(&status.counters.failures, 1);
        tracing::warn!(
            plugin = %self.plugin,
            "{} {}: {}",
            self.call,
            self.id,
            self.error
        );
    }
}

/// A model policy handled, or a sync step enacted, `count` entities.
pub struct EntitiesDone {
    pub role: ModelRole,
    pub count: u64,
}

impl Event for EntitiesDone {
    fn emit(self, status: &Status) {
        let counter = match self.role {
            ModelRole::Policy => &status.counters.policed,
            ModelRole::Sync => &status.counters.enacted,
        };
        add(counter, self.count);
    }
}

/// Too many consecutive failures: the plugin is not called until released or reloaded.
pub struct Quarantined<'a> {
    pub plugin: &'a str,
    pub failures: u32,
    pub reason: String,
}

impl Event for Quarantined<'_> {
    fn emit(self, status: &Status) {
        let Quarantined {
            plugin,
            failures,
            reason,
        } = self;
        tracing::error!(
            plugin = %plugin,
            "quarantined after {failures} consecutive failures (limits.quarantine-after); the last: {reason}. \
             It is not called again until `synchro plugin release {plugin}` or a new version"
        );
        add(&status.counters.quarantines, 1);
        status.set_health(Health::Quarantined { failures, reason });
    }
}

/// The quarantined plugin is called again: an operator released it, or a new version
/// came.
pub struct Released<'a> {
    pub plugin: &'a str,
}

impl Event for Released<'_> {
    fn emit(self, status: &Status) {
        tracing::info!(plugin = %self.plugin, "released from quarantine");
        status.set_health(Health::Ok);
    }
}

/// A new version of the plugin took over from the running one.
pub struct Swapped<'a> {
    pub plugin: &'a str,
    pub version: &'a str,
}

impl Event for Swapped<'_> {
    fn emit(self, status: &Status) {
        add(&status.counters.reloads, 1);
        status.set_reload_error(None);
        tracing::info!(
            plugin = %self.plugin,
            version = self.version,
            "swapped in: new calls go to this version"
        );
    }
}

/// A new version of the plugin was refused (`error`): the running one stays.
pub struct ReloadRefused<'a> {
    pub plugin: &'a str,
    pub error: String,
}

impl Event for ReloadRefused<'_> {
    fn emit(self, status: &Status) {
        tracing::error!(
            plugin = %self.plugin,
            "new version refused, the running one stays: {}",
            self.error
        );
        add(&status.counters.failed_reloads, 1);
        status.set_reload_error(Some(self.error));
    }
}

/// A runner of the plugin panicked (an error of the host's own) and stopped.
pub struct Stopped<'a> {
    pub plugin: &'a str,
    pub panic: &'a str,
}

impl Event for Stopped<'_> {
    fn emit(self, status: &Status) {
        tracing::error!(
            plugin = %self.plugin,
            "its runner panicked and stopped: {}",
            self.panic
        );
        status.set_health(Health::Stopped {
            reason: format!("its runner panicked: {}", self.panic),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::CounterValues;

    /// What `emit` logged, every level, one line per event.
    fn logged(emit: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(lines.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn each_event_logs_what_it_counts() {
        let status = Status::default();
        let failed = |error: &str| CollectRun {
            error: Some(error.into()),
            ..CollectRun::default()
        };
        let event = |attempt| Delivered {
            topic: "orders",
            offset: 7,
            attempt,
        };
        let log = logged(|| {
            status.emit(Called);
            status.emit(ChangesCommitted(3));
            status.emit(Collected {
                plugin: "p",
                run: failed("the source is out of reach"),
                elapsed: Duration::from_millis(2),
            });
            status.emit(SnapshotRefused {
                plugin: "p",
                refused: 2,
                first: &"host/a",
                owner: &"q",
            });
            status.emit(Denied {
                plugin: "p",
                capability: "poll",
                why: &"http://x is not granted by the manifest",
            });
            status.emit(Processed);
            status.emit(EventRetried {
                plugin: "p",
                event: event(1),
                error: &"trap",
                pause: Duration::from_millis(100),
            });
            status.emit(EventGivenUp {
                plugin: "p",
                event: event(2),
                error: &"trap",
            });
            status.emit(DeadLettered {
                plugin: "p",
                topic: "dead",
            });
            status.emit(EntityFailed {
                plugin: "p",
                call: "sync-record",
                id: &"host/a",
                error: &"refused",
            });
            status.emit(EntitiesDone {
                role: ModelRole::Sync,
                count: 4,
            });
            status.emit(EntitiesDone {
                role: ModelRole::Policy,
                count: 5,
            });
            status.emit(ReloadRefused {
                plugin: "p",
                error: "no such export".into(),
            });
        });
        assert_eq!(status.reload_error().as_deref(), Some("no such export"));
        let quarantine = logged(|| {
            status.emit(Quarantined {
                plugin: "p",
                failures: 3,
                reason: "trap".into(),
            });
        });
        assert_eq!(status.health().name(), "quarantined");
        let swap = logged(|| {
            status.emit(Swapped {
                plugin: "p",
                version: "2.0.0",
            });
            status.emit(Released { plugin: "p" });
        });
        assert_eq!(status.health(), Health::Ok);
        let pause = logged(|| status.emit(Paused { plugin: "p" }));
        assert_eq!(status.health(), Health::Paused);
        assert!(pause.contains("paused by the operator"), "{pause}");
        status.emit(Resumed { plugin: "p" });
        assert_eq!(status.health(), Health::Ok);
        let stop = logged(|| {
            status.emit(Stopped {
                plugin: "p",
                panic: "boom",
            })
        });
        assert!(
            stop.contains("ERROR synchro_status::events: its runner panicked and stopped: boom"),
            "{stop}"
        );
        assert_eq!(
            status.health(),
            Health::Stopped {
                reason: "its runner panicked: boom".into()
            }
        );
        assert_eq!(status.reload_error(), None);
        assert_eq!(
            status.counters.values(),
            CounterValues {
                calls: 1,
                failures: 4,
                denials: 3,
                changes: 3,
                processed: 1,
                retried: 1,
                dead_lettered: 1,
                enacted: 4,
                policed: 5,
                quarantines: 1,
                reloads: 1,
                failed_reloads: 1,
            }
        );
        assert_eq!(status.collect_seconds.count(), 1);
        assert_eq!(status.runs().len(), 1);
        for line in [
            " WARN synchro_status::events: the source is out of reach plugin=p",
            " WARN synchro_status::events: denied: the snapshot reports entities another plugin owns; they are left as they are plugin=p refused=2 first=host/a owner=q",
            " WARN synchro_status::events: denied: http://x is not granted by the manifest plugin=p capability=\"poll\"",
            " INFO synchro_status::events: trap; retrying in 100ms plugin=p topic=orders offset=7 attempt=1",
            " WARN synchro_status::events: giving up: trap plugin=p topic=orders offset=7 attempt=2",
            "DEBUG synchro_status::events: dead-lettered plugin=p topic=dead",
            " WARN synchro_status::events: sync-record host/a: refused plugin=p",
            "ERROR synchro_status::events: new version refused, the running one stays: no such export plugin=p",
        ] {
            assert!(log.contains(&format!("{line}\n")), "{line}\nin\n{log}");
        }
        assert!(quarantine.contains("quarantined after 3 consecutive failures"));
        assert!(quarantine.contains("`synchro plugin release p`"));
        assert!(swap.contains("swapped in: new calls go to this version"));
        assert!(swap.contains("released from quarantine"));
    }

    #[test]
    fn held_deletes_are_shown_until_approved_dropped_or_reset() {
        let status = Status::default();
        let held = HeldDeletes {
            id: "1f".into(),
            count: 300,
            baseline: 300,
            reason: "300 deletes are more than limits.max-deletes (100)".into(),
            sample: vec!["host/a".into()],
            since: 1,
        };
        let log = logged(|| {
            status.emit(DeletesHeld {
                plugin: "p",
                held: held.clone(),
            })
        });
        assert!(log.contains("deletes held: 300 deletes are more than limits.max-deletes (100)"));
        assert!(log.contains("`synchro plugin approve-deletes p` deletes them"));
        assert!(log.contains("held=300 first=host/a"), "{log}");
        assert_eq!(status.held_deletes(), Some(held.clone()));
        let log = logged(|| {
            status.emit(DeletesApproved {
                plugin: "p",
                deleted: 300,
            })
        });
        assert!(log.contains("held deletes approved by the operator and made"));
        assert_eq!(status.held_deletes(), None);
        assert_eq!(status.counters.values().changes, 300);
        let hold = || {
            status.emit(DeletesHeld {
                plugin: "p",
                held: held.clone(),
            })
        };
        hold();
        status.emit(DeletesDropped { plugin: "p" });
        assert_eq!(status.held_deletes(), None);
        hold();
        status.emit(BaselineReset {
            plugin: "p",
            forgotten: 3,
        });
        assert_eq!(status.held_deletes(), None);
    }
}
