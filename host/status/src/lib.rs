//! What an operator can see of a running host: each plugin's health and counters, and
//! what became of the responses its plugins awaited.
//!
//! Counters are plain atomics bumped on the hot path, and only by the [`events`] that
//! also log them; health changes only when a plugin starts failing, is quarantined or
//! released, so it sits behind a mutex. Both survive a reload: they describe the plugin,
//! not one version of it.

mod durations;
pub mod events;
mod health;
mod model;
mod report;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

pub use durations::{CallDurations, Durations};
pub use events::{CounterValues, Counters};
pub use health::Health;
pub use model::*;
pub use report::*;

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

    /// Sets the health the outcome of its calls gives it; the [`events`] that change it
    /// (a quarantine, a pause) set theirs.
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

    pub(crate) fn set_held_deletes(&self, held: Option<HeldDeletes>) {
        *self.held_deletes.lock().expect("status lock") = held;
    }

    pub fn reload_error(&self) -> Option<String> {
        self.reload_error.lock().expect("status lock").clone()
    }

    pub(crate) fn set_reload_error(&self, error: Option<String>) {
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

/// How many messages an event step handles between two measures of its bus lag.
pub const LAG_EVERY: u64 = 1024;

/// Run records kept per plugin.
pub const RUNS_KEPT: usize = 100;
