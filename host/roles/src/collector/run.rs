//! Runs a collector: schedule, collect, diff, commit.
//!
//! One transaction moves the plugin's baseline, the model and the outbox together: the
//! changes are announced (by the outbox's readers) exactly when the baseline records
//! them. A crash before the commit leaves the old baseline, so the next collect finds the
//! same changes again; a crash after it leaves them in the outbox. Nothing is lost either
//! way, and nothing is announced twice by the collector.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch};

use synchro_capability::Services;
use synchro_engine::CallError;
use synchro_model::{Change, Error, ErrorKind, Hashes, Id, OneLine, Operation, Outcome};
use synchro_status::{CollectPlan, CollectReport, CollectRun, PlannedChange, events};
use synchro_store::{Db, DbError};

use super::Collected;
use super::control::Command;
use super::deletes::{self, Rails};
use crate::failure::{Tracker, Verdict};
use crate::{CallFailure, Deployment, Plugin, PluginEngine};

/// What one collect did.
pub type Report = CollectReport;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("collect failed, nothing changed: {0}")]
    Call(#[from] CallError),
    #[error("state: {0}")]
    Db(#[from] DbError),
}

impl CollectError {
    /// The failure as the plugin's health tells it: an error of the state database may
    /// pass; the plugin's own says whether it needs an operator.
    fn failure(&self) -> CallFailure {
        CallFailure {
            message: self.to_string(),
            permanent: matches!(self, CollectError::Call(error) if error.needs_operator()),
        }
    }
}

/// One collector and its in-memory copy of its baseline.
pub struct Runner {
    deployment: Arc<Deployment>,
    engine: Arc<PluginEngine>,
    services: Services,
    /// `None` until loaded, and after a failed commit (so it is reloaded from disk).
    baseline: Option<Hashes>,
    rails: Rails,
    /// An operator's requests; `None` for a second runner of one deployment (tests).
    commands: Option<mpsc::Receiver<Command>>,
    paused: bool,
    /// Operators waiting for the next collect's report.
    waiting: Vec<oneshot::Sender<Result<CollectReport, Error>>>,
}

impl Runner {
    pub fn new(
        deployment: Arc<Deployment>,
        engine: Arc<PluginEngine>,
        services: Services,
    ) -> Runner {
        let commands = deployment.control.take();
        Runner {
            deployment,
            engine,
            services,
            baseline: None,
            rails: Rails::default(),
            commands,
            paused: false,
            waiting: Vec::new(),
        }
    }

    /// The running version, which a reload replaces; the baseline stays, so the next
    /// collect diffs against what the previous version reported.
    pub fn deployment(&self) -> &Arc<Deployment> {
        &self.deployment
    }

    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Db) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, CollectError> {
        crate::blocking(&self.services.db, op)
            .await
            .map_err(CollectError::from)
    }

    /// Collects once with the current version: a failure changes nothing.
    pub async fn collect(&mut self) -> Result<Report, CollectError> {
        let deployment = self.deployment.clone();
        let plugin = deployment.current();
        deployment.status.emit(events::Called);
        let mut run = CollectRun {
            started: synchro_model::now_millis(),
            ..CollectRun::default()
        };
        let started = Instant::now();
        let result = self.collect_with(&plugin, &mut run).await;
        match &result {
            Ok(report) => run.report = *report,
            Err(error) => run.error = Some(error.to_string()),
        }
        deployment.status.emit(events::Collected {
            plugin: &plugin.name,
            run,
            elapsed: started.elapsed(),
        });
        result
    }

    fn schedule<'p>(&self, plugin: &'p Plugin) -> &'p super::Schedule {
        &plugin
            .roles
            .collector
            .as_ref()
            .expect("a collector runner runs collectors")
            .schedule
    }

    /// The baseline, loaded from disk when this runner has none in memory.
    async fn take_baseline(&mut self, plugin: &Plugin) -> Result<Hashes, CollectError> {
        match self.baseline.take() {
            Some(baseline) => Ok(baseline),
            None => {
                let name = plugin.name.clone();
                self.blocking(move |s| s.load_baseline(&name)).await
            }
        }
    }

    /// Calls the plugin's collect against `baseline` and diffs its snapshot.
    async fn sample(&mut self, plugin: &Plugin, baseline: Hashes) -> Result<Outcome, CollectError> {
        let call = plugin.call_context(&self.deployment.status, &self.services);
        let collector = plugin
            .roles
            .collector
            .as_ref()
            .expect("a collector runner runs collectors");
        match collector
            .collect(&self.engine, &plugin.linked, call, baseline)
            .await
        {
            Collected::Done(outcome) => Ok(outcome),
            Collected::Failed { error, baseline } => {
                self.baseline = Some(baseline);
                Err(error.into())
            }
        }
    }

    /// Collects with `plugin`, timing its parts in `run`.
    async fn collect_with(
        &mut self,
        plugin: &Plugin,
        run: &mut CollectRun,
    ) -> Result<Report, CollectError> {
        let baseline = self.take_baseline(plugin).await?;
        let started = Instant::now();
        let sampled = self.sample(plugin, baseline).await;
        run.collect_ms = started.elapsed().as_millis() as u64;
        let mut outcome = sampled?;
        let decision = self.rails.apply(&mut outcome, &plugin.limits);
        let held = self.hold(plugin, &outcome, decision.held);
        let started = Instant::now();
        let committed = self.commit(plugin, outcome).await;
        run.commit_ms = started.elapsed().as_millis() as u64;
        let mut report = committed?;
        report.in_grace = decision.in_grace as u64;
        report.held = held as u64;
        Ok(report)
    }

    /// Shows the held deletes of this collect (none ends a hold), says so in the log
    /// when the held set changes, and answers how many are held.
    fn hold(&self, plugin: &Plugin, outcome: &Outcome, held: Option<(Vec<Id>, String)>) -> usize {
        let status = &self.deployment.status;
        let before = status.held_deletes();
        let Some((ids, reason)) = held else {
            if before.is_some() {
                status.emit(events::DeletesDropped {
                    plugin: &plugin.name,
                });
            }
            return 0;
        };
        let id = deletes::set_id(&ids);
        if before.as_ref().is_some_and(|b| b.id == id) {
            return ids.len();
        }
        let since = synchro_model::now_millis();
        status.emit(events::DeletesHeld {
            plugin: &plugin.name,
            held: deletes::status(&ids, outcome.previous, &reason, since),
        });
        ids.len()
    }

    async fn commit(&mut self, plugin: &Plugin, outcome: Outcome) -> Result<Report, CollectError> {
        let Outcome {
            upserts,
            deletes,
            mut next,
            ..
        } = outcome;
        if upserts.is_empty() && deletes.is_empty() {
            let entities = next.len() as u64;
            self.baseline = Some(next);
            return Ok(Report {
                entities,
                ..Report::default()
            });
        }
        // On failure `self.baseline` stays `None`: the next collect reloads the committed
        // baseline and finds these changes again.
        let (collected, upserts) = self.write(plugin, upserts, deletes).await?;
        let status = &self.deployment.status;
        status.emit(events::ChangesCommitted(collected.announced));
        // Refused entities are not in the committed baseline: the next snapshot reports
        // them again.
        for refused in &collected.refused {
            next.remove(&refused.id);
        }
        let written = |op| {
            let refused = |id| collected.refused.iter().any(|r| &r.id == id);
            upserts
                .iter()
                .filter(|u| u.operation == op && !refused(u.entity.id()))
                .count() as u64
        };
        let (created, updated) = (written(Operation::Create), written(Operation::Update));
        let report = Report {
            entities: next.len() as u64,
            created,
            updated,
            deleted: collected.announced - created - updated,
            refused: collected.refused.len() as u64,
            ..Report::default()
        };
        if let Some(first) = collected.refused.first() {
            status.emit(events::SnapshotRefused {
                plugin: &plugin.name,
                refused: report.refused,
                first: &first.id,
                owner: &OneLine(&first.owner),
            });
        }
        self.baseline = Some(next);
        Ok(report)
    }

    /// Commits `upserts` and `deletes` with the baseline, the model and the outbox, as
    /// one transaction of changes; hands `upserts` back.
    async fn write(
        &self,
        plugin: &Plugin,
        upserts: Vec<synchro_model::Upsert>,
        deletes: Vec<Id>,
    ) -> Result<(synchro_store::Collected, Vec<synchro_model::Upsert>), CollectError> {
        let batch = synchro_model::new_transaction_id();
        let timestamp = synchro_model::now_millis();
        let source = plugin.name.to_string();
        let name = plugin.name.clone();
        let no_sync = !self.schedule(plugin).sync;
        self.blocking(move |s| {
            let collected =
                s.commit_collect(&name, &upserts, &deletes, no_sync, |operation, entity| {
                    synchro_bus::change_record(&Change {
                        operation,
                        entity: entity.clone(),
                        timestamp,
                        transaction_id: synchro_model::new_transaction_id(),
                        database_transaction_id: Some(batch.clone()),
                        source: source.clone(),
                    })
                })?;
            Ok((collected, upserts))
        })
        .await
    }

    /// Deletes the held set, if it is the one `named` (when named): exactly the
    /// entities the status shows, without collecting again.
    async fn approve(&mut self, named: Option<String>) -> Result<u64, Error> {
        let plugin = self.deployment.current();
        let held = self.rails.held().to_vec();
        if held.is_empty() {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("`{}` holds no deletes", plugin.name),
            ));
        }
        let id = deletes::set_id(&held);
        if let Some(named) = named
            && named != id
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "the held deletes changed since `{named}` was shown: `{}` now holds `{id}` ({} deletes); look again",
                    plugin.name,
                    held.len()
                ),
            ));
        }
        let failed = |e: CollectError| Error::new(ErrorKind::Failed, e.to_string());
        let mut baseline = self.take_baseline(&plugin).await.map_err(failed)?;
        let (collected, _) = self
            .write(&plugin, Vec::new(), held.clone())
            .await
            .map_err(failed)?;
        for id in &held {
            baseline.remove(id);
        }
        self.baseline = Some(baseline);
        self.rails.approved();
        self.deployment.status.emit(events::DeletesApproved {
            plugin: &plugin.name,
            deleted: collected.announced,
        });
        Ok(collected.announced)
    }

    /// What a collect would do now: the plugin's collect and the diff as for a real
    /// one, the rails' decision, then the commit's own code in a transaction dropped
    /// at its end. Nothing is published or kept.
    async fn plan(&mut self) -> Result<CollectPlan, Error> {
        let plugin = self.deployment.current();
        let failed = |e: CollectError| Error::new(ErrorKind::Failed, e.to_string());
        let baseline = self.take_baseline(&plugin).await.map_err(failed)?;
        self.baseline = Some(baseline.clone());
        let mut outcome = self.sample(&plugin, baseline).await.map_err(failed)?;
        let decision = self.rails.plan(&mut outcome, &plugin.limits);
        let held_deletes = decision.held.map(|(ids, reason)| {
            let since = synchro_model::now_millis();
            deletes::status(&ids, outcome.previous, &reason, since)
        });
        let entities = outcome.next.len() as u64;
        let name = plugin.name.clone();
        let synchro_store::Planned { changes, refused } = self
            .blocking(move |s| s.plan_collect(&name, &outcome.upserts, &outcome.deletes))
            .await
            .map_err(failed)?;
        Ok(CollectPlan {
            entities,
            changes: changes
                .into_iter()
                .map(|(operation, entity)| PlannedChange {
                    operation: operation.as_str().to_owned(),
                    kind: entity.kind().to_owned(),
                    key: entity.key().to_owned(),
                })
                .collect(),
            refused: refused.len() as u64,
            in_grace: decision.in_grace as u64,
            held_deletes,
        })
    }

    /// Forgets the baseline, in the database and here, with what the rails counted and
    /// held of it: the model keeps the entities, and the next collect announces each
    /// one it finds as CREATE.
    async fn reset_baseline(&mut self) -> Result<u64, Error> {
        let name = self.deployment.current().name.clone();
        let forgotten = {
            let name = name.clone();
            self.blocking(move |s| s.reset_baseline(&name))
                .await
                .map_err(|e: CollectError| Error::new(ErrorKind::Failed, e.to_string()))?
        };
        self.baseline = None;
        self.rails = Rails::default();
        self.deployment.status.emit(events::BaselineReset {
            plugin: &name,
            forgotten,
        });
        Ok(forgotten)
    }

    /// Serves an operator's request; `true` when a collect is due now.
    async fn serve(&mut self, command: Command) -> bool {
        match command {
            Command::ApproveDeletes { held, reply } => {
                let _ = reply.send(self.approve(held).await);
                false
            }
            Command::Plan(reply) => {
                let _ = reply.send(self.plan().await);
                false
            }
            Command::ResetBaseline(reply) => {
                let _ = reply.send(self.reset_baseline().await);
                false
            }
            Command::CollectNow(reply) => {
                self.waiting.push(reply);
                true
            }
            Command::Pause(pause, reply) => {
                let name = self.deployment.current().name.clone();
                let resumed = self.paused && !pause;
                self.paused = pause;
                if pause {
                    self.deployment
                        .status
                        .emit(events::Paused { plugin: &name });
                } else if resumed {
                    self.deployment
                        .status
                        .emit(events::Resumed { plugin: &name });
                }
                let _ = reply.send(Ok(()));
                resumed
            }
        }
    }

    /// The next request of an operator; never, when this runner has none to serve.
    async fn command(&mut self) -> Command {
        match &mut self.commands {
            Some(commands) => match commands.recv().await {
                Some(command) => command,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// Collects on the plugin's schedule until `shutdown` turns true. A collect in
    /// progress finishes (it has a deadline) before this returns. A new version is
    /// collected with at once, on its own schedule, with its failure count reset.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut versions = self.deployment.versions();
        let mut failures = Tracker::default();
        loop {
            let result = self.collect().await;
            let plugin = self.deployment.current();
            for reply in self.waiting.drain(..) {
                let answer = match &result {
                    Ok(report) => Ok(*report),
                    Err(error) => Err(Error::new(ErrorKind::Failed, error.to_string())),
                };
                let _ = reply.send(answer);
            }
            let schedule = self.schedule(&plugin);
            let normal = jittered(schedule.interval, schedule.jitter());
            let failure = result.err().map(|e| e.failure());
            let pause = match failures.record(&plugin.limits, failure.is_none(), normal) {
                Verdict::Continue { pause } => {
                    self.deployment.record(failures.consecutive(), failure);
                    pause
                }
                Verdict::Quarantine { failures: count } => {
                    let reason = failure.map(|f| f.message).unwrap_or_default();
                    if !self
                        .deployment
                        .quarantine(count, reason, &mut shutdown)
                        .await
                    {
                        return;
                    }
                    failures = Default::default();
                    versions.borrow_and_update();
                    continue;
                }
            };
            // Until the next collect is due, an operator's requests are served.
            let due = tokio::time::Instant::now() + pause;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(due), if !self.paused => break,
                    _ = versions.changed() => {
                        failures = Default::default();
                        if !self.paused {
                            break;
                        }
                    }
                    command = self.command() => if self.serve(command).await {
                        break;
                    },
                    // Dropped at once: a `watch::Ref` held across `serve`'s awaits would
                    // make this future !Send.
                    _ = async { drop(shutdown.wait_for(|stop| *stop).await) } => return,
                }
            }
        }
    }
}

/// `interval` ± up to `jitter`, so collectors started together spread out.
fn jittered(interval: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return interval;
    }
    let offset = rand::rng().random_range(0..=jitter.as_micros() as u64 * 2);
    (interval + Duration::from_micros(offset)).saturating_sub(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_bounds() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(10), Duration::from_secs(1));
            assert!(
                d >= Duration::from_secs(9) && d <= Duration::from_secs(11),
                "{d:?}"
            );
        }
        assert_eq!(
            jittered(Duration::from_secs(3), Duration::ZERO),
            Duration::from_secs(3)
        );
    }
}
