//! What an operator can see of a running host: each plugin's health and counters, and
//! what became of the responses its plugins awaited.
//!
//! Counters are plain atomics bumped on the hot path; health changes only when a plugin
//! starts failing, is quarantined or released, so it sits behind a mutex. Both survive a
//! reload: they describe the plugin, not one version of it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// Monotonic counters of one plugin since the host started.
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
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

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        Counters::add(counter, 1);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Health and counters of one plugin, shared by its tasks and the admin API.
#[derive(Debug, Default)]
pub struct Status {
    pub counters: Counters,
    /// Bytes of linear memory the plugin's instance held at the end of its last call.
    pub memory_bytes: AtomicU64,
    /// Messages on the bus topics its event step reads not handed to it yet, as last
    /// measured (every [`LAG_EVERY`] messages, and every second while it waits).
    pub bus_lag: AtomicU64,
    health: Mutex<Health>,
    /// A collector's deletes held for an operator's approval.
    held_deletes: Mutex<Option<HeldDeletes>>,
    /// Its last runs, oldest first.
    runs: Mutex<std::collections::VecDeque<RunRecord>>,
    /// How long its collects took (the call, the diff and the commit).
    pub collect_seconds: Durations,
    /// How long its calls took, per role.
    pub call_seconds: CallDurations,
    /// The backoffs its model roles gave failed entities (by [`ModelRole`]).
    backoff_seconds: [Durations; 2],
    /// Why the last reload was refused, until one succeeds.
    reload_error: Mutex<Option<String>>,
    /// The work queues of its model roles, as their runners last left them.
    queues: Mutex<[Option<WorkQueue>; 2]>,
}

impl Status {
    /// Keeps what the plugin's instance held at the end of a call.
    pub fn set_memory_bytes(&self, bytes: usize) {
        self.memory_bytes.store(bytes as u64, Ordering::Relaxed);
    }

    pub fn health(&self) -> Health {
        self.health.lock().expect("status lock").clone()
    }

    pub fn set_health(&self, health: Health) {
        *self.health.lock().expect("status lock") = health;
    }

    /// `starting` becomes `ok`; any other state stays.
    pub fn started(&self) {
        let mut health = self.health.lock().expect("status lock");
        if *health == Health::Starting {
            *health = Health::Ok;
        }
    }

    /// Keeps `run`'s record, forgetting the oldest past [`RUNS_KEPT`].
    pub fn record_run(&self, run: RunRecord) {
        let mut runs = self.runs.lock().expect("status lock");
        if runs.len() == RUNS_KEPT {
            runs.pop_front();
        }
        runs.push_back(run);
    }

    /// The runs kept, oldest first.
    pub fn runs(&self) -> Vec<RunRecord> {
        self.runs
            .lock()
            .expect("status lock")
            .iter()
            .cloned()
            .collect()
    }

    pub fn last_run(&self) -> Option<RunRecord> {
        self.runs.lock().expect("status lock").back().cloned()
    }

    pub fn held_deletes(&self) -> Option<HeldDeletes> {
        self.held_deletes.lock().expect("status lock").clone()
    }

    pub fn set_held_deletes(&self, held: Option<HeldDeletes>) {
        *self.held_deletes.lock().expect("status lock") = held;
    }

    pub fn reload_error(&self) -> Option<String> {
        self.reload_error.lock().expect("status lock").clone()
    }

    pub fn set_reload_error(&self, error: Option<String>) {
        *self.reload_error.lock().expect("status lock") = error;
    }

    pub fn queue(&self, role: ModelRole) -> Option<WorkQueue> {
        self.queues.lock().expect("status lock")[role as usize]
    }

    pub fn set_queue(&self, role: ModelRole, queue: WorkQueue) {
        self.queues.lock().expect("status lock")[role as usize] = Some(queue);
    }

    /// The backoffs the model role `role` gave failed entities.
    pub fn backoffs(&self, role: ModelRole) -> &Durations {
        &self.backoff_seconds[role as usize]
    }
}

/// The roles that work through the model's entities from a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelRole {
    Policy = 0,
    Sync = 1,
}

impl ModelRole {
    pub const ALL: [ModelRole; 2] = [ModelRole::Policy, ModelRole::Sync];

    /// The role's name, as manifests spell it.
    pub fn name(self) -> &'static str {
        match self {
            ModelRole::Policy => "model-policy",
            ModelRole::Sync => "sync-step",
        }
    }
}

/// A model role's work queue: entities ready to handle, being handled, and backing off
/// after a failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WorkQueue {
    pub ready: usize,
    pub in_flight: usize,
    pub backing_off: usize,
    /// Held until another entity is handled (an edge until its ends are enacted).
    #[serde(default)]
    pub held: usize,
}

/// One plugin as the admin API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PluginReport {
    pub name: String,
    pub version: String,
    pub roles: Vec<String>,
    pub manifest: String,
    #[serde(flatten)]
    pub health: Health,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload_error: Option<String>,
    /// A collector's deletes held for an operator's approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_deletes: Option<HeldDeletes>,
    /// A collector's last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunRecord>,
    pub counters: CounterValues,
    /// Bytes of linear memory its instance held at the end of its last call.
    #[serde(default)]
    pub memory_bytes: u64,
    /// A sync step's work queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_queue: Option<WorkQueue>,
    /// A model policy's work queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_queue: Option<WorkQueue>,
}

/// The deletes of a collect that were more than the plugin's limits allow at once: the
/// entities stay in the model and the baseline until an operator approves their delete
/// (`synchro plugin approve-deletes`) or a snapshot shows them again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct HeldDeletes {
    /// Names this set of deletes: an approval naming it releases exactly these.
    pub id: String,
    pub count: u64,
    /// Entities in the baseline the collect was diffed against.
    pub baseline: u64,
    /// Which limit they exceed.
    pub reason: String,
    /// The first of them, as the log names entities.
    pub sample: Vec<String>,
    /// When they were first held (ms since the epoch).
    pub since: u64,
}

/// What one collect would do, from a dry run (`synchro plugin plan`): the changes it
/// would announce, in order, and what the safety rails would keep back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CollectPlan {
    /// Entities in the snapshot.
    pub entities: u64,
    pub changes: Vec<PlannedChange>,
    /// Entities of the snapshot another plugin owns: left as they are.
    pub refused: u64,
    /// Deletes kept back for their grace (`limits.delete-after-absent`).
    pub in_grace: u64,
    /// Deletes that would be held for an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_deletes: Option<HeldDeletes>,
}

/// What one collect did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CollectReport {
    /// Entities in the baseline after it.
    pub entities: u64,
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Entities of the snapshot left alone because another plugin owns them.
    pub refused: u64,
    /// Deletes kept back for their grace.
    pub in_grace: u64,
    /// Deletes held for an operator.
    pub held: u64,
}

/// The record of one run of a plugin: a collect, or a pass of a model policy or a sync
/// step over a batch of its work. A plugin's last [`RUNS_KEPT`] are kept (in memory) and
/// listed by the admin API, each with its `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RunRecord {
    Collect(CollectRun),
    Pass(PassRun),
}

impl RunRecord {
    /// When it started (ms since the epoch).
    pub fn started(&self) -> u64 {
        match self {
            RunRecord::Collect(run) => run.started,
            RunRecord::Pass(run) => run.started,
        }
    }
}

/// A pass of a model policy or a sync step over a batch of the entities it had to handle:
/// when, how long, and what became of them (those it had nothing to do for are not
/// counted; a failure's reason is on the entity, `synchro model list --failed`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PassRun {
    /// When it started (ms since the epoch).
    pub started: u64,
    /// `model-policy` or `sync-step`.
    pub role: String,
    /// The calls and the transaction that recorded their outcomes.
    pub ms: u64,
    /// The entities it called the plugin for, or held.
    pub entities: u64,
    /// Calls that succeeded.
    pub done: u64,
    /// Calls that failed (each entity backs off).
    pub failed: u64,
    /// Entities that wait for another to be handled first.
    pub held: u64,
}

/// The record of one collect: when, how long each part took, what it did or why it
/// failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CollectRun {
    /// When it started (ms since the epoch).
    pub started: u64,
    /// The plugin's call, with the diff of its snapshot (they run together).
    pub collect_ms: u64,
    /// The transaction that committed its changes with the baseline (their
    /// announcement follows from the outbox).
    pub commit_ms: u64,
    #[serde(flatten)]
    pub report: CollectReport,
    /// Why it failed (nothing was changed then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

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

/// How many messages an event step handles between two measures of its bus lag.
pub const LAG_EVERY: u64 = 1024;

/// Run records kept per plugin.
pub const RUNS_KEPT: usize = 100;

/// One change of a [`CollectPlan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PlannedChange {
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: String,
    pub kind: String,
    pub key: String,
}

/// A manifest in the plugin directory that did not load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Refused {
    pub manifest: String,
    pub error: String,
}

/// A manifest whose component is being compiled, off the host's loop: a new plugin, or
/// a new version of a running one, which runs meanwhile. A large component (an
/// interpreter of Python or JavaScript) takes seconds to compile the first time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Loading {
    pub manifest: String,
    /// The plugin's name, where its manifest could be read.
    pub name: Option<String>,
    /// Whether a version of it runs (until this one is in).
    pub replaces_running: bool,
    /// Since the load was asked for, waiting for a compile slot included.
    pub elapsed_ms: u64,
}

/// A version swapped in by a reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Reloaded {
    pub name: String,
    pub version: String,
    /// Whether the compiled component came from the cache.
    pub cached: bool,
    pub elapsed_ms: u64,
}

/// What happened to the responses that arrived on the host's response topics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Responses {
    /// Handed to a waiter (directly, or after being parked).
    pub delivered: u64,
    /// Arrived before their waiter and were parked for it.
    pub early: u64,
    /// Arrived after their waiter timed out.
    pub late: u64,
    /// Arrived for an id that was already answered.
    pub duplicate: u64,
    /// Parked and never claimed (counted when they expire, a minute after arriving).
    pub unknown: u64,
    /// Carried no correlation id where the topic's `correlation` says it is.
    pub malformed: u64,
    /// Waits that gave up before their response came.
    pub timed_out: u64,
}

/// Everything the admin API reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct HostReport {
    pub plugins: Vec<PluginReport>,
    pub refused: Vec<Refused>,
    /// The manifests whose components are being compiled.
    #[serde(default)]
    pub loading: Vec<Loading>,
    #[serde(default)]
    pub responses: Responses,
    #[serde(default)]
    pub outbox: Outbox,
}

/// The host's outbox of changes: the last sequence number committed, and the last one
/// each running reader (`printer`, the Kafka `relay`, an event step reading `changes` on
/// the embedded bus by its group) has handled — how far behind each is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Outbox {
    pub last: u64,
    pub readers: std::collections::BTreeMap<String, u64>,
}

/// An entity of the model, as `synchro model` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModelEntity {
    pub kind: String,
    pub key: String,
    /// The plugin that wrote it and alone may change it; absent while unclaimed (state
    /// migrated from before owners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Its canonical JSON, as it was hashed: kept as text, so that no number is rounded on
    /// its way to the operator.
    pub properties: Box<serde_json::value::RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    /// The ends of an edge; absent for a vertex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<ModelEdge>,
    /// The ends of an edge that are not in the model (yet): `source`, `target`. A
    /// collector may report an edge before another reports the vertex it points to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dangling: Vec<String>,
    /// For a kind whose sources the operator ranks, what each last wrote, by plugin: the
    /// merge above is made of them, the losing writes included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<ModelSource>,
    pub bookkeeping: ModelBookkeeping,
}

/// One source's last write of an entity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSource {
    pub plugin: String,
    pub properties: Box<serde_json::value::RawValue>,
}

/// XOS's bookkeeping of an entity. Versions are sequence numbers of the change stream:
/// they order every write, and never depend on a clock.
///
/// Each policy and sync step keeps its own progress (`policies`, `steps`); `policed`,
/// `enacted`, `policy` and `sync` sum them up for the role, as XOS showed its one value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModelBookkeeping {
    /// The last change by a source (a collector, an event step, the API).
    pub updated: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by_policy: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by_step: Option<u64>,
    /// What every model policy has handled; absent: one never did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policed: Option<u64>,
    /// What every sync step has enacted outside; absent: one never did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enacted: Option<u64>,
    /// Whether a deployed sync step has work on it.
    pub needs_sync: bool,
    /// Whether a deployed model policy has work on it.
    #[serde(default)]
    pub needs_policy: bool,
    /// The sync steps' last outcome (XOS's backend status): the worst of theirs.
    pub sync: RoleOutcome,
    /// The model policies' last outcome: the worst of theirs.
    pub policy: RoleOutcome,
    /// Each sync step's progress, by plugin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<ModelProgress>,
    /// Each model policy's progress, by plugin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<ModelProgress>,
    /// Deleted, and kept until every sync step has removed it outside and every model
    /// policy that handled it has seen it go.
    pub deleted: bool,
    /// Never pushed outward (observed data).
    pub no_sync: bool,
    /// No model policy runs for it.
    #[serde(default)]
    pub no_policy: bool,
    /// Policies and sync steps may not write it.
    #[serde(default)]
    pub write_protect: bool,
}

/// The operator's flags on an entity of the model (`synchro model flag`, `POST
/// /v1/model/KIND/KEY/flags`); an absent one is left as it is. (`no-sync` is the
/// writer's, set with each write; the operator's hold on syncs is a mode.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ModelFlags {
    /// No model policy runs for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_policy: Option<bool>,
    /// Policies and sync steps may not write it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_protect: Option<bool>,
}

/// An entity the operator writes into the model (`synchro model put`, `PUT
/// /v1/model/KIND/KEY`), owned by the API: its properties, and the ends of an edge, which
/// must both be in the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ModelWrite {
    pub properties: Box<serde_json::value::RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<ModelEdge>,
}

/// What the operator's deletion of an entity (`synchro model delete`, `DELETE
/// /v1/model/KIND/KEY`) deleted: the edges a cascade took with it, then the entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelDeleted {
    pub deleted: Vec<ModelRef>,
}

/// One model policy's or sync step's progress on an entity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModelProgress {
    pub plugin: String,
    /// The version it last handled (policed or enacted); absent: never, or removed
    /// outside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Whether it is deployed and has work on the entity.
    pub needs: bool,
    #[serde(flatten)]
    pub outcome: RoleOutcome,
}

impl ModelProgress {
    /// The version every one of `all` reached; `None` if one never did (or there are
    /// none).
    pub fn reached(all: &[ModelProgress]) -> Option<u64> {
        all.iter().map(|p| p.version).min().flatten()
    }

    /// The worst outcome of `all`: failed, then deferred, then pending, then done.
    pub fn worst(all: &[ModelProgress]) -> RoleOutcome {
        let rank = |state: &str| match state {
            "failed" => 0,
            "deferred" => 1,
            "pending" => 2,
            _ => 3,
        };
        all.iter()
            .min_by_key(|p| rank(&p.outcome.state))
            .map(|p| p.outcome.clone())
            .unwrap_or_else(|| RoleOutcome {
                state: "pending".into(),
                errors: Vec::new(),
            })
    }
}

/// A role's last outcome for an entity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleOutcome {
    /// `pending` (never run), `done`, `deferred` (try later) or `failed`.
    pub state: String,
    /// The last two distinct errors, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RoleError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleError {
    /// The error's kind (the WIT `error-code` names).
    pub kind: String,
    pub message: String,
}

/// Which entities a page of the model holds besides its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelFilter {
    /// Those a deployed sync step still has to handle.
    Dirty,
    /// Those whose last sync failed.
    Failed,
}

impl ModelFilter {
    /// Its name in the admin API's `only` parameter.
    pub fn name(self) -> &'static str {
        match self {
            ModelFilter::Dirty => "dirty",
            ModelFilter::Failed => "failed",
        }
    }
}

/// The ends of an edge of the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEdge {
    pub source: ModelRef,
    pub target: ModelRef,
}

/// An entity of the model by its identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    pub kind: String,
    pub key: String,
}

/// One entry of a collector's baseline: the entity of its last committed snapshot and the
/// hash the next snapshot is diffed against.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BaselineEntry {
    pub kind: String,
    pub key: String,
    /// The xxh3 hash of the entity's canonical form, in hexadecimal.
    pub hash: String,
    pub properties: Box<serde_json::value::RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<ModelEdge>,
}

/// One page of a collector's baseline, by kind, then key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselinePage {
    pub entries: Vec<BaselineEntry>,
    /// The last entry of a full page, after which the next page starts; absent on the
    /// last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<ModelRef>,
}

/// One page of the model's entities, by kind, then key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelPage {
    pub entities: Vec<ModelEntity>,
    /// The last entity of a full page, after which the next page starts; absent on the
    /// last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<ModelRef>,
}

#[cfg(test)]
mod tests {
    use super::Health;

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
