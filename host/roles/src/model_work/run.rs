//! Runs a model role: routes the model's changes to a work queue, and calls the plugin for
//! the entities it hands out, one at a time, at the plugin's rate.
//!
//! Where each entity stands lives in its bookkeeping, not here: at start (and when the
//! kinds change) the runner lists the entities with work for the role, then follows the change
//! stream for the rest. A restart therefore resumes exactly, with nothing to save. The
//! outbox reader is attached before the listing, so a change made meanwhile is both
//! listed and read; the queue collapses the two. An operator's flag on an entity is no
//! change on the stream: the registry asks the runner to look at it again
//! ([`Deployment::recheck`]).
//!
//! Each outcome is recorded against the version the call saw, never "now": a write made
//! while the call ran stays newer than what it handled, and is handled next.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;

use synchro_capability::Services;
use synchro_engine::CallError;
use synchro_model::bookkeeping::Failure;
use synchro_model::{ErrorKind, Handling, Id};
use synchro_status::{PassRun, RunRecord, events};
use synchro_store::{Cursor, DbError, Recorded, Start};

use super::queue::Queue;
use super::{Handler, ModelWork, Plan};
use crate::failure::{Tracker, Verdict};
use crate::{CallFailure, Deployment, Plugin, PluginEngine, Recheck};

/// An instance idle this long is dropped; the next entity gets a fresh one.
const IDLE: Duration = Duration::from_millis(200);
/// Changes read from the outbox at once.
const BATCH: usize = 1024;
/// Entities listed at once at start.
const PAGE: usize = 1000;
/// Entities handled between two visits of the store: one read before their calls, one
/// write of their outcomes after. A thread hop costs more than a small call.
const BATCH_ENTITIES: usize = 64;

pub struct Runner<H> {
    deployment: Arc<Deployment>,
    engine: Arc<PluginEngine>,
    services: Services,
    role: PhantomData<fn() -> H>,
}

/// How handling one entity ended.
enum Handled {
    /// Nothing to do: no call was made.
    Nothing,
    /// The call succeeded.
    Done,
    /// No call: the entity waits for another to be handled or to change.
    Held(Id),
    /// The call failed: the entity backs off. `Some` for a failure of the plugin itself
    /// (a trap, a deadline), which counts towards its quarantine.
    Failed(Option<CallError>),
}

/// A session of the plugin, and the version it is of.
type Current<H> = Option<(<H as Handler>::Session, Arc<Plugin>)>;

impl<H: Handler> Runner<H> {
    pub fn new(
        deployment: Arc<Deployment>,
        engine: Arc<PluginEngine>,
        services: Services,
    ) -> Runner<H> {
        Runner {
            deployment,
            engine,
            services,
            role: PhantomData,
        }
    }

    /// The running version, which a reload replaces between two entities.
    pub fn deployment(&self) -> &Arc<Deployment> {
        &self.deployment
    }

    /// Works until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let name = self.deployment.current().name.clone();
        let mut versions = self.deployment.versions();
        let mut settings = H::work(&self.deployment.current()).clone();
        let mut rechecks = self.deployment.rechecks();
        let Some((mut cursor, mut queue)) = self.start(&settings).await else {
            return;
        };
        self.deployment.started();
        let mut session: Current<H> = None;
        let mut failures = Tracker::default();
        // A recheck that asked for the model to be listed again.
        let mut relist = false;
        loop {
            if *shutdown.borrow() {
                return;
            }
            // The rechecks first, whatever the stream brings: the operator waits on them.
            loop {
                let got = match rechecks.try_recv() {
                    Ok(recheck) => Ok(recheck),
                    Err(TryRecvError::Lagged(missed)) => Err(missed),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                };
                relist |= apply::<H>(&name, got, &settings, &mut queue);
            }
            if std::mem::take(&mut relist) {
                drop(cursor);
                let Some(started) = self.start(&settings).await else {
                    return;
                };
                (cursor, queue) = started;
            }
            // A new version is acted on before the next batch, even under a backlog: it
            // may enact other kinds, or no longer be granted these.
            if matches!(versions.has_changed(), Ok(true)) {
                session = None;
                let next = H::work(&versions.borrow_and_update()).clone();
                if next != settings {
                    tracing::info!(plugin = %name, "{}: its section changed: listing the model again", H::READER);
                    settings = next;
                    // The old reader goes first: two would hold the outbox for nothing.
                    drop(cursor);
                    let Some(started) = self.start(&settings).await else {
                        return;
                    };
                    (cursor, queue) = started;
                }
            }
            self.deployment.status.set_queue(H::ROLE, queue.depth());
            // New changes are routed first: that is cheap, and it keeps the queue's view
            // of what is dirty current.
            if cursor.has_more()
                && let Err(error) = self.route(&mut cursor, &mut queue, &settings).await
            {
                tracing::error!(plugin = %name, "cannot read the change stream: {error}");
                return;
            }
            let batch = queue.take_batch(Instant::now(), BATCH_ENTITIES);
            if !batch.is_empty() {
                let mut quarantine = None;
                let (started, clock) = (synchro_model::now_millis(), Instant::now());
                let handled = self.handle(batch, &mut session, &shutdown).await;
                self.record_pass(started, clock, &handled);
                // Held entities first, so that one whose blocker was handled in the same
                // batch goes again.
                for (id, handled) in &handled {
                    if let Handled::Held(blocker) = handled {
                        queue.done(id, true, Instant::now());
                        queue.refund();
                        queue.hold(id.clone(), blocker.clone());
                    }
                }
                for (id, handled) in handled {
                    let trap = match handled {
                        Handled::Nothing => {
                            queue.done(&id, true, Instant::now());
                            queue.refund();
                            continue;
                        }
                        Handled::Held(_) => continue,
                        Handled::Done => {
                            queue.done(&id, true, Instant::now());
                            queue.release(&id);
                            None
                        }
                        Handled::Failed(trap) => {
                            if let Some(pause) = queue.done(&id, false, Instant::now()) {
                                self.deployment.status.backoffs(H::ROLE).observe(pause);
                            }
                            trap
                        }
                    };
                    let limits = self.deployment.current().limits;
                    match failures.record(&limits, trap.is_none(), Duration::ZERO) {
                        Verdict::Continue { .. } => self
                            .deployment
                            .record(failures.consecutive(), trap.as_ref().map(CallFailure::of)),
                        Verdict::Quarantine { failures: count } => {
                            let reason = trap.map(|e| e.to_string()).unwrap_or_default();
                            quarantine.get_or_insert((count, reason));
                        }
                    }
                }
                if let Some((count, reason)) = quarantine {
                    // Quarantined, the runner lets go of the change stream, which would
                    // otherwise be kept for it however long the quarantine lasts; released,
                    // it lists the model again for what it missed.
                    session = None;
                    drop(cursor);
                    if !self
                        .deployment
                        .quarantine(count, reason, &mut shutdown)
                        .await
                    {
                        return;
                    }
                    failures = Tracker::default();
                    let Some(started) = self.start(&settings).await else {
                        return;
                    };
                    (cursor, queue) = started;
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
                // Marked unseen again, so that the check above acts on it.
                _ = versions.changed() => versions.mark_changed(),
                _ = cursor.wait() => {}
                got = rechecks.recv() => {
                    let got = match got {
                        Ok(recheck) => Ok(recheck),
                        Err(RecvError::Lagged(missed)) => Err(missed),
                        Err(RecvError::Closed) => return,
                    };
                    relist |= apply::<H>(&name, got, &settings, &mut queue);
                }
                _ = async { tokio::time::sleep_until(wake.expect("guarded")).await }, if wake.is_some() => {}
                _ = tokio::time::sleep(IDLE), if session.is_some() => session = None,
            }
        }
    }

    /// Attaches to the change stream, then queues every entity of the kinds that has work
    /// for the role; `None` (said in the log) when the state cannot be read.
    async fn start(&self, settings: &ModelWork) -> Option<(Cursor, Queue)> {
        match self.list(settings).await {
            Ok(started) => Some(started),
            Err(error) => {
                let name = self.deployment.current().name.clone();
                tracing::error!(plugin = %name, "cannot read the model: {error}");
                None
            }
        }
    }

    async fn list(&self, settings: &ModelWork) -> Result<(Cursor, Queue), DbError> {
        let plugin = self.deployment.current().name.clone();
        let name = format!("{}.{plugin}", H::READER);
        let cursor = self.services.db.cursor(&name, Start::End)?;
        let mut queue = Queue::new(settings.rate, settings.backoff, settings.max_backoff);
        for kind in &settings.kinds {
            let mut after: Option<Id> = None;
            loop {
                let (kind, plugin) = (kind.clone(), plugin.clone());
                let from = after.take();
                let page = crate::blocking(&self.services.db, move |db| {
                    db.model_ids(&kind, from.as_ref(), |_, b| H::needs(b, &plugin), PAGE)
                })
                .await?;
                let full = page.len() == PAGE;
                after = page.last().cloned();
                for id in page {
                    queue.add(id);
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
        settings: &ModelWork,
    ) -> Result<(), DbError> {
        let batch = cursor.next_batch(BATCH).await?;
        for (_, record) in &batch {
            match synchro_bus::record_id(record) {
                Ok(id) => {
                    // What waits for it (an edge for a missing end) may go now.
                    queue.release(&id);
                    if settings.kinds.contains(id.kind()) {
                        queue.add(id);
                    }
                }
                Err(error) => tracing::error!("{error}: skipped"),
            }
        }
        if let Some((last, _)) = batch.last() {
            cursor.handled(*last).await?;
        }
        Ok(())
    }

    /// Keeps the record of a pass that `handled` what it did (one with nothing to do for
    /// any entity is not one).
    fn record_pass(&self, started: u64, clock: Instant, handled: &[(Id, Handled)]) {
        let mut pass = PassRun {
            started,
            role: H::ROLE.name().to_owned(),
            ms: clock.elapsed().as_millis() as u64,
            ..PassRun::default()
        };
        for (_, handled) in handled {
            match handled {
                Handled::Nothing => continue,
                Handled::Done => pass.done += 1,
                Handled::Held(_) => pass.held += 1,
                Handled::Failed(_) => pass.failed += 1,
            }
            pass.entities += 1;
        }
        if pass.entities > 0 {
            self.deployment.status.record_run(RunRecord::Pass(pass));
        }
    }

    /// Calls the plugin for those of `ids` that need it, and records the outcomes on
    /// them: one read and one write of the store for the batch, the calls in order
    /// between.
    ///
    /// Stopping, it makes no more calls: what it did not call stays dirty in the store,
    /// and is handled at the next start.
    async fn handle(
        &self,
        ids: Vec<Id>,
        session: &mut Current<H>,
        shutdown: &watch::Receiver<bool>,
    ) -> Vec<(Id, Handled)> {
        let db = &self.services.db;
        let plugin = self.deployment.current();
        let (name, work) = (plugin.name.clone(), H::work(&plugin));
        let wanted = ids.clone();
        let (reader, read_work) = (name.clone(), work.clone());
        let read = move |db: &synchro_store::Db| H::read(db, &reader, &read_work, &wanted);
        let inputs = match crate::blocking(db, read).await {
            Ok(inputs) => inputs,
            Err(error) => {
                tracing::error!(plugin = %name, "cannot read the model: {error}");
                return ids
                    .into_iter()
                    .map(|id| (id, Handled::Failed(None)))
                    .collect();
            }
        };
        let mut handled = Vec::with_capacity(ids.len());
        let mut outcomes = Vec::new();
        // The successful calls, by outcome, in case an entity was purged meanwhile.
        let mut succeeded = Vec::new();
        for (id, input) in ids.into_iter().zip(inputs) {
            let Some(input) = input.filter(|i| H::needs(H::books(i), &name)) else {
                handled.push((id, Handled::Nothing));
                continue;
            };
            if *shutdown.borrow() {
                handled.push((id, Handled::Nothing));
                continue;
            }
            let handling = Handling {
                id: id.clone(),
                seen: H::books(&input).last_write(),
            };
            let (call, success) = match H::plan(work, input) {
                Plan::Call(call, success) => (call, success),
                Plan::Record(outcome) => {
                    handled.push((id.clone(), Handled::Done));
                    outcomes.push((id, outcome));
                    succeeded.push(None);
                    continue;
                }
                Plan::Hold { blocker, outcome } => {
                    handled.push((id.clone(), Handled::Held(blocker)));
                    outcomes.push((id, outcome));
                    succeeded.push(None);
                    continue;
                }
                Plan::Skip => {
                    handled.push((id, Handled::Nothing));
                    continue;
                }
            };
            match self.call(session, &call, Some(handling)).await {
                Ok(()) => {
                    handled.push((id.clone(), Handled::Done));
                    outcomes.push((id.clone(), success));
                    succeeded.push(Some((id, call)));
                }
                Err(error) => {
                    self.deployment.status.emit(events::EntityFailed {
                        plugin: &name,
                        call: H::name(&call),
                        id: &id,
                        error: &error,
                    });
                    let (failure, trap) = match error {
                        CallError::Plugin { kind, message } => (Failure { kind, message }, None),
                        other => {
                            // A trap may leave the instance unusable.
                            *session = None;
                            let failure = Failure {
                                kind: ErrorKind::Failed,
                                message: other.to_string(),
                            };
                            (failure, Some(other))
                        }
                    };
                    handled.push((id.clone(), Handled::Failed(trap)));
                    outcomes.push((id, H::failed(failure)));
                    succeeded.push(None);
                }
            }
        }
        if outcomes.is_empty() {
            return handled;
        }
        let recorder = name.clone();
        let record = move |db: &synchro_store::Db| H::record(db, &recorder, &outcomes);
        let recorded = match crate::blocking(db, record).await {
            Ok(recorded) => recorded,
            Err(error) => {
                tracing::error!(plugin = %name, "cannot record the outcomes of its calls: {error}");
                // Called again once the store takes it: the calls are idempotent.
                return handled
                    .into_iter()
                    .map(|(id, _)| (id, Handled::Failed(None)))
                    .collect();
            }
        };
        for (recorded, call) in recorded.into_iter().zip(succeeded) {
            // Purged while the call ran (deleted before anything held its deletion).
            let Some((id, undo)) = call
                .filter(|_| recorded == Recorded::Gone)
                .and_then(|(id, call)| Some((id, H::undo(work, call)?)))
            else {
                continue;
            };
            tracing::info!(plugin = %name, "{id} was deleted while it was handled: {}", H::name(&undo));
            if let Err(error) = self.call(session, &undo, None).await {
                tracing::warn!(plugin = %name, "{id} may be left outside: {error}");
            }
        }
        let done = handled
            .iter()
            .filter(|(_, h)| matches!(h, Handled::Done))
            .count();
        self.deployment.status.emit(events::EntitiesDone {
            role: H::ROLE,
            count: done as u64,
        });
        handled
    }

    /// Calls the current version, on the session if it is of that version.
    async fn call(
        &self,
        session: &mut Current<H>,
        call: &H::Call,
        handling: Option<Handling>,
    ) -> Result<(), CallError> {
        let plugin = self.deployment.current();
        if !session
            .as_ref()
            .is_some_and(|(_, of)| Arc::ptr_eq(of, &plugin))
        {
            let context = plugin.call_context(&self.deployment.status, &self.services);
            *session = Some((
                H::session(&plugin, &self.engine, context).await?,
                plugin.clone(),
            ));
        }
        let (instance, _) = session.as_mut().expect("just made");
        self.deployment.status.emit(events::Called);
        H::invoke(instance, &self.engine, call, handling).await
    }
}

/// Applies what the plugin `name` got to recheck to `queue`, under the role's section
/// `settings` (`Err`: it missed that many); whether the model must be listed again
/// instead.
fn apply<H: Handler>(
    name: &str,
    got: Result<Recheck, u64>,
    settings: &ModelWork,
    queue: &mut Queue,
) -> bool {
    match got {
        Ok(Recheck::Entity(id)) => {
            if settings.kinds.contains(id.kind()) {
                queue.release(&id);
                queue.forgive(id);
            }
            false
        }
        Ok(Recheck::All) => true,
        Err(missed) => {
            tracing::warn!(plugin = %name, missed, "{}: fell behind on rechecks: listing the model again", H::READER);
            true
        }
    }
}
