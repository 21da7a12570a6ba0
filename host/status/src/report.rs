//! What the admin API reports of the host and its plugins.

use serde::{Deserialize, Serialize};

use crate::events::CounterValues;
use crate::{Health, WorkQueue};

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
