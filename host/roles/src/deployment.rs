//! A plugin as deployed: the version that runs, which a reload replaces without stopping
//! it, its health and counters, and the signal that ends its quarantine.
//!
//! Each call takes the version that is current when it starts and keeps it to the end:
//! a swap is one pointer store, in-flight calls finish on the old version, and the next
//! call runs the new one. Nothing else changes hands — baselines, consumer offsets and
//! counters belong to the plugin, not to a version.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{broadcast, watch};

use synchro_model::Id;
use synchro_status::{Health, Status, events};

use crate::Plugin;
use synchro_engine::CallError;

/// One plugin, deployed: what its runners and the registry share.
pub struct Deployment {
    version: watch::Sender<Arc<Plugin>>,
    /// Bumped by each release, waking every task of the plugin that is quarantined.
    releases: watch::Sender<u64>,
    /// Whether the health says other than `ok`: a plugin whose calls succeed then
    /// touches no lock.
    unsettled: AtomicBool,
    /// What the plugin's model roles must look at again, the change stream not saying
    /// so: an entity the operator flagged, or the whole model.
    rechecks: broadcast::Sender<Recheck>,
    /// An operator's requests to its collector.
    pub control: crate::collector::Control,
    pub status: Arc<Status>,
}

/// Rechecks a model role may fall behind on before it lists the model again instead.
const RECHECKS: usize = 1024;

/// What a model role must look at again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck {
    /// An entity whose bookkeeping the operator changed (a flag).
    Entity(Id),
    /// Every entity: the model gave progress from before several handlers per kind to
    /// the kinds' handlers, which may have work on them now.
    All,
}

/// A failed call, as the plugin's health tells it.
#[derive(Debug, Clone)]
pub struct CallFailure {
    pub message: String,
    /// Retrying as is cannot help (see [`CallError::needs_operator`]).
    pub permanent: bool,
}

impl CallFailure {
    /// A failure that may pass: an outside system out of reach, say.
    pub fn recoverable(message: String) -> CallFailure {
        CallFailure {
            message,
            permanent: false,
        }
    }

    pub fn of(error: &CallError) -> CallFailure {
        CallFailure {
            message: error.to_string(),
            permanent: error.needs_operator(),
        }
    }
}

/// Why a release was refused.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not quarantined")]
pub struct NotQuarantined(pub String);

impl Deployment {
    pub fn new(plugin: Arc<Plugin>) -> Arc<Deployment> {
        Arc::new(Deployment {
            version: watch::Sender::new(plugin),
            releases: watch::Sender::new(0),
            unsettled: AtomicBool::new(true),
            rechecks: broadcast::Sender::new(RECHECKS),
            control: Default::default(),
            status: Arc::default(),
        })
    }

    /// The version new calls go to.
    pub fn current(&self) -> Arc<Plugin> {
        self.version.borrow().clone()
    }

    /// Wakes on each swap after this call.
    pub fn versions(&self) -> watch::Receiver<Arc<Plugin>> {
        self.version.subscribe()
    }

    /// Asks the plugin's model roles to look at `what` again.
    pub fn recheck(&self, what: Recheck) {
        // Nobody listens while no model role runs: nothing to tell.
        let _ = self.rechecks.send(what);
    }

    /// What to look at again, from now on.
    pub fn rechecks(&self) -> broadcast::Receiver<Recheck> {
        self.rechecks.subscribe()
    }

    /// Makes `plugin` the version new calls go to. A new version also ends a quarantine:
    /// it deserves its own chance.
    pub fn swap(&self, plugin: Arc<Plugin>) {
        self.status.emit(events::Swapped {
            plugin: &plugin.name,
            version: &plugin.manifest.version,
        });
        self.version.send_replace(plugin);
    }

    /// Ends a quarantine: the plugin is called again on its normal schedule.
    pub fn release(&self) -> Result<(), NotQuarantined> {
        if !matches!(self.status.health(), Health::Quarantined { .. }) {
            return Err(NotQuarantined(self.current().name.to_string()));
        }
        self.releases.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Quarantines the plugin and waits until an operator releases it, a new version is
    /// swapped in, or `shutdown`; `false` on shutdown. A quarantined plugin costs nothing
    /// but this wait.
    pub async fn quarantine(
        &self,
        failures: u32,
        reason: String,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut releases = self.releases.subscribe();
        let mut versions = self.versions();
        let name = self.current().name.clone();
        self.status.emit(events::Quarantined {
            plugin: &name,
            failures,
            reason,
        });
        let resumed = tokio::select! {
            _ = releases.changed() => true,
            _ = versions.changed() => true,
            _ = shutdown.wait_for(|stop| *stop) => false,
        };
        if resumed {
            self.unsettled.store(false, Ordering::Relaxed);
            self.status.emit(events::Released { plugin: &name });
        }
        resumed
    }

    /// Says that a runner of the plugin has begun its work (an event step joined its
    /// topics, a model role reads its work): `starting` becomes `ok`.
    pub fn started(&self) {
        // `unsettled` stays: the next call that succeeds clears it.
        if self.unsettled.load(Ordering::Relaxed) {
            self.status.started();
        }
    }

    /// Records the outcome of one call in the plugin's health: `failure` is why it
    /// failed, if it did, and `consecutive` how many calls in a row have.
    pub fn record(&self, consecutive: u32, failure: Option<CallFailure>) {
        match failure {
            None => {
                if self.unsettled.swap(false, Ordering::Relaxed) {
                    self.status.set_health(Health::Ok);
                }
            }
            Some(CallFailure { message, permanent }) => {
                self.unsettled.store(true, Ordering::Relaxed);
                let (failures, last_error) = (consecutive, message);
                self.status.set_health(if permanent {
                    Health::PermanentError {
                        failures,
                        last_error,
                    }
                } else {
                    Health::RecoverableError {
                        failures,
                        last_error,
                    }
                });
            }
        }
    }
}
