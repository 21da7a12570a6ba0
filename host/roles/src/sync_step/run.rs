//! Runs a sync step: routes the model's changes to a work queue, and enacts the entities
//! it hands out, one at a time, at the plugin's rate.
//!
//! Where each entity stands lives in its bookkeeping, not here: at start (and when the
//! kinds change) the runner lists the entities that need a sync, then follows the change
//! stream for the rest. A restart therefore resumes exactly, with nothing to save. The
//! outbox reader is attached before the listing, so a change made meanwhile is both
//! listed and read; the queue collapses the two.
//!
//! Each outcome is recorded against the version the call saw, never "now": a write made
//! while `sync-record` ran stays newer than what was enacted, and is synced next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use synchro_capability::Services;
use synchro_engine::CallError;
use synchro_model::bookkeeping::Failure;
use synchro_model::{ErrorKind, Id};
use synchro_status::Counters;
use synchro_store::{Cursor, Db, DbError, Start};

use super::Sync;
use super::call::{Enact, Session};
use super::queue::Queue;
use crate::failure::{Tracker, Verdict};
use crate::{Deployment, Plugin, PluginEngine};

/// An instance idle this long is dropped; the next entity gets a fresh one.
const IDLE: Duration = Duration::from_millis(200);
/// Changes read from the outbox at once.
const BATCH: usize = 1024;
/// Entities listed at once at start.
const PAGE: usize = 1000;

pub struct Runner {
    deployment: Arc<Deployment>,
    engine: Arc<PluginEngine>,
    services: Services,
}

/// How handling one entity ended.
enum Handled {
    /// Enacted, removed, or nothing to do.
    Done,
    /// The call failed: the entity backs off. `Some` for a failure of the plugin itself
    /// (a trap, a deadline), which counts towards its quarantine.
    Failed(Option<CallError>),
}

impl Runner {
    pub fn new(
        deployment: Arc<Deployment>,
        engine: Arc<PluginEngine>,
        services: Services,
    ) -> Runner {
        Runner {
            deployment,
            engine,
            services,
        }
    }

    /// The running version, which a reload replaces between two entities.
    pub fn deployment(&self) -> &Arc<Deployment> {
        &self.deployment
    }

    /// Enacts until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let name = self.deployment.current().name.clone();
        let mut versions = self.deployment.versions();
        let mut settings = sync_of(&self.deployment.current()).clone();
        let (mut cursor, mut queue) = match self.start(&settings).await {
            Ok(started) => started,
            Err(error) => {
                tracing::error!(plugin = %name, "cannot read the model: {error}");
                return;
            }
        };
        let mut session: Option<(Session, Arc<Plugin>)> = None;
        let mut failures = Tracker::default();
        loop {
            if *shutdown.borrow() {
                return;
            }
            self.deployment.status.set_sync_queue(queue.depth());
            // New changes are routed first: that is cheap, and it keeps the queue's view
            // of what is dirty current.
            if cursor.has_more()
                && let Err(error) = self.route(&mut cursor, &mut queue, &settings).await
            {
                tracing::error!(plugin = %name, "cannot read the change stream: {error}");
                return;
            }
            if let Some(id) = queue.take(Instant::now()) {
                let handled = self.handle(&id, &mut session).await;
                let failed = match handled {
                    Handled::Done => None,
                    Handled::Failed(error) => Some(error),
                };
                queue.done(&id, failed.is_none(), Instant::now());
                let trap = failed.flatten();
                if trap.is_some() {
                    session = None;
                }
                let limits = self.deployment.current().limits;
                match failures.record(&limits, trap.is_none(), Duration::ZERO) {
                    Verdict::Continue { .. } => self
                        .deployment
                        .record(failures.consecutive(), trap.map(|e| e.to_string())),
                    Verdict::Quarantine { failures: count } => {
                        let reason = trap.map(|e| e.to_string()).unwrap_or_default();
                        if !self
                            .deployment
                            .quarantine(count, reason, &mut shutdown)
                            .await
                        {
                            return;
                        }
                        failures = Tracker::default();
                    }
                }
                continue;
            }
            let wake = queue
                .next_at(Instant::now())
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                // The guard is dropped at once: held across an await it makes this !Send.
                _ = async { drop(shutdown.wait_for(|stop| *stop).await) } => return,
                _ = versions.changed() => {
                    session = None;
                    let next = sync_of(&versions.borrow_and_update()).clone();
                    if next != settings {
                        tracing::info!(plugin = %name, "[sync] changed: listing the model again");
                        settings = next;
                        match self.start(&settings).await {
                            Ok(started) => (cursor, queue) = started,
                            Err(error) => {
                                tracing::error!(plugin = %name, "cannot read the model: {error}");
                                return;
                            }
                        }
                    }
                }
                _ = cursor.wait() => {}
                _ = async { tokio::time::sleep_until(wake.expect("guarded")).await }, if wake.is_some() => {}
                _ = tokio::time::sleep(IDLE), if session.is_some() => session = None,
            }
        }
    }

    /// Attaches to the change stream, then queues every entity of the kinds that needs a
    /// sync.
    async fn start(&self, settings: &Sync) -> Result<(Cursor, Queue), DbError> {
        let name = format!("sync-step.{}", self.deployment.current().name);
        let cursor = self.services.db.cursor(&name, Start::End)?;
        let mut queue = Queue::new(settings.rate, settings.backoff, settings.max_backoff);
        for kind in &settings.kinds {
            let mut after: Option<Id> = None;
            loop {
                let kind = kind.clone();
                let from = after.take();
                let page = blocking(&self.services.db, move |db| {
                    db.model_query(Some(&kind), from.as_ref(), |_, b| b.needs_sync(), PAGE)
                })
                .await?;
                let full = page.len() == PAGE;
                for stored in page {
                    after = Some(stored.entity.id().clone());
                    queue.add(stored.entity.into_id());
                }
                if !full {
                    break;
                }
            }
        }
        Ok((cursor, queue))
    }

    /// Queues the entities of the next changes that are of the kinds.
    async fn route(
        &self,
        cursor: &mut Cursor,
        queue: &mut Queue,
        settings: &Sync,
    ) -> Result<(), DbError> {
        let batch = cursor.next_batch(BATCH).await?;
        for (_, record) in &batch {
            match synchro_bus::record_id(record) {
                Ok(id) if settings.kinds.contains(id.kind()) => queue.add(id),
                Ok(_) => {}
                Err(error) => tracing::error!("{error}: skipped"),
            }
        }
        if let Some((last, _)) = batch.last() {
            cursor.handled(*last).await?;
        }
        Ok(())
    }

    /// Enacts `id` if it needs it, and records the outcome on it.
    async fn handle(&self, id: &Id, session: &mut Option<(Session, Arc<Plugin>)>) -> Handled {
        let db = &self.services.db;
        let name = self.deployment.current().name.clone();
        let wanted = id.clone();
        let stored = match blocking(db, move |db| db.model_get(&wanted)).await {
            Ok(Some(stored)) if stored.bookkeeping.needs_sync() => stored,
            Ok(_) => return Handled::Done,
            Err(error) => {
                tracing::error!(plugin = %name, "cannot read {id}: {error}");
                return Handled::Failed(None);
            }
        };
        let books = stored.bookkeeping;
        let enact = if books.deleted {
            Enact::Delete
        } else {
            Enact::Sync
        };
        let result = self.call(session, enact, stored.entity.clone()).await;
        let counters = &self.deployment.status.counters;
        let id = id.clone();
        let recorded = match result {
            Ok(()) if books.deleted => {
                let seen = books.updated;
                blocking(db, move |db| db.purge(&id, seen).map(drop)).await
            }
            Ok(()) => {
                let seen = books.sync_target();
                let recorded = blocking(db, move |db| db.record_sync(&id, |b| b.enacted(seen)));
                match recorded.await {
                    // Purged while it was being created outside (deleted before it was ever
                    // enacted): remove what was just created.
                    Ok(None) => {
                        tracing::info!(plugin = %name, "{} was deleted while it was synced: removing it", stored.entity.id());
                        if let Err(error) = self
                            .call(session, Enact::Delete, stored.entity.clone())
                            .await
                        {
                            tracing::warn!(plugin = %name, "{} may be left outside: {error}", stored.entity.id());
                        }
                        Ok(())
                    }
                    Ok(Some(_)) => Ok(()),
                    Err(error) => Err(error),
                }
            }
            Err(error) => {
                Counters::bump(&counters.failures);
                let failure = match &error {
                    CallError::Plugin { kind, message } => Failure {
                        kind: *kind,
                        message: message.clone(),
                    },
                    other => Failure {
                        kind: ErrorKind::Failed,
                        message: other.to_string(),
                    },
                };
                tracing::warn!(plugin = %name, "{} {}: {error}", enact_name(enact), stored.entity.id());
                let trap = (!matches!(error, CallError::Plugin { .. })).then_some(error);
                if let Err(error) = blocking(db, move |db| {
                    db.record_sync(&id, |b| b.backend.failed(failure))
                })
                .await
                {
                    tracing::error!(plugin = %name, "cannot record a failure: {error}");
                }
                return Handled::Failed(trap);
            }
        };
        match recorded {
            Ok(()) => {
                Counters::bump(&counters.enacted);
                Handled::Done
            }
            Err(error) => {
                tracing::error!(plugin = %name, "cannot record what was enacted: {error}");
                Handled::Failed(None)
            }
        }
    }

    /// Calls the current version with `entity`, on the session if it is of that version.
    async fn call(
        &self,
        session: &mut Option<(Session, Arc<Plugin>)>,
        enact: Enact,
        entity: synchro_model::Entity,
    ) -> Result<(), CallError> {
        let plugin = self.deployment.current();
        if !session
            .as_ref()
            .is_some_and(|(_, of)| Arc::ptr_eq(of, &plugin))
        {
            let call = plugin.call_context(&self.deployment.status, &self.services);
            let step = plugin
                .roles
                .sync_step
                .as_ref()
                .expect("a sync-step runner runs sync steps");
            *session = Some((
                step.session(&self.engine, &plugin.linked, call).await?,
                plugin.clone(),
            ));
        }
        let (instance, _) = session.as_mut().expect("just made");
        Counters::bump(&self.deployment.status.counters.calls);
        instance.enact(&self.engine, enact, entity).await
    }
}

fn enact_name(enact: Enact) -> &'static str {
    match enact {
        Enact::Sync => "sync-record",
        Enact::Delete => "delete-record",
    }
}

fn sync_of(plugin: &Plugin) -> &Sync {
    &plugin
        .roles
        .sync_step
        .as_ref()
        .expect("a sync-step runner runs sync steps")
        .sync
}

async fn blocking<T: Send + 'static>(
    db: &Arc<Db>,
    op: impl FnOnce(&Db) -> Result<T, DbError> + Send + 'static,
) -> Result<T, DbError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || op(&db))
        .await
        .expect("state operations do not panic")
}
