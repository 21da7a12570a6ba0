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
use tokio::sync::watch;

use synchro_capability::Services;
use synchro_engine::CallError;
use synchro_model::{Change, Hashes, OneLine, Operation, Outcome};
use synchro_status::Counters;
use synchro_store::{Db, DbError};

use super::Collected;
use crate::failure::{Tracker, Verdict};
use crate::{Deployment, Plugin, PluginEngine};

/// What one collect did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub entities: usize,
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    /// Entities of the snapshot left alone because another plugin owns them.
    pub refused: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("collect failed, nothing changed: {0}")]
    Call(#[from] CallError),
    #[error("state: {0}")]
    Db(#[from] DbError),
}

/// One collector and its in-memory copy of its baseline.
pub struct Runner {
    deployment: Arc<Deployment>,
    engine: Arc<PluginEngine>,
    services: Services,
    /// `None` until loaded, and after a failed commit (so it is reloaded from disk).
    baseline: Option<Hashes>,
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
            baseline: None,
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
        Counters::bump(&deployment.status.counters.calls);
        let result = self.collect_with(&plugin).await;
        if result.is_err() {
            Counters::bump(&deployment.status.counters.failures);
        }
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

    async fn collect_with(&mut self, plugin: &Plugin) -> Result<Report, CollectError> {
        let baseline = match self.baseline.take() {
            Some(baseline) => baseline,
            None => {
                let name = plugin.name.clone();
                self.blocking(move |s| s.load_baseline(&name)).await?
            }
        };
        let call = plugin.call_context(&self.deployment.status, &self.services);
        let collector = plugin
            .roles
            .collector
            .as_ref()
            .expect("a collector runner runs collectors");
        let outcome = match collector
            .collect(&self.engine, &plugin.linked, call, baseline)
            .await
        {
            Collected::Done(outcome) => outcome,
            Collected::Failed { error, baseline } => {
                self.baseline = Some(baseline);
                return Err(error.into());
            }
        };
        self.commit(plugin, outcome).await
    }

    async fn commit(&mut self, plugin: &Plugin, outcome: Outcome) -> Result<Report, CollectError> {
        let Outcome {
            upserts,
            deletes,
            mut next,
        } = outcome;
        if upserts.is_empty() && deletes.is_empty() {
            let entities = next.len();
            self.baseline = Some(next);
            return Ok(Report {
                entities,
                ..Report::default()
            });
        }
        let batch = synchro_model::new_transaction_id();
        let timestamp = synchro_model::now_millis();
        let source = plugin.name.to_string();
        let name = plugin.name.clone();
        let no_sync = !self.schedule(plugin).sync;
        // On failure `self.baseline` stays `None`: the next collect reloads the committed
        // baseline and finds these changes again.
        let (collected, upserts) = self
            .blocking(move |s| {
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
            .await?;
        let status = &self.deployment.status;
        Counters::add(&status.counters.changes, collected.announced);
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
                .count()
        };
        let (created, updated) = (written(Operation::Create), written(Operation::Update));
        let report = Report {
            entities: next.len(),
            created,
            updated,
            deleted: collected.announced as usize - created - updated,
            refused: collected.refused.len(),
        };
        if let Some(first) = collected.refused.first() {
            Counters::add(&status.counters.denials, report.refused as u64);
            tracing::warn!(
                plugin = %plugin.name,
                refused = report.refused,
                first = %first.id,
                owner = %OneLine(&first.owner),
                "denied: the snapshot reports entities another plugin owns; they are left as they are"
            );
        }
        self.baseline = Some(next);
        Ok(report)
    }

    /// Collects on the plugin's schedule until `shutdown` turns true. A collect in
    /// progress finishes (it has a deadline) before this returns. A new version is
    /// collected with at once, on its own schedule, with its failure count reset.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut versions = self.deployment.versions();
        let mut failures = Tracker::default();
        loop {
            let started = Instant::now();
            let result = self.collect().await;
            let plugin = self.deployment.current();
            match &result {
                Ok(report) if report.created + report.updated + report.deleted == 0 => {
                    tracing::debug!(plugin = %plugin.name, entities = report.entities, "collected: no change");
                }
                Ok(report) => tracing::info!(
                    plugin = %plugin.name,
                    entities = report.entities,
                    created = report.created,
                    updated = report.updated,
                    deleted = report.deleted,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "collected"
                ),
                Err(error) => tracing::warn!(plugin = %plugin.name, "{error}"),
            }
            let schedule = self.schedule(&plugin);
            let normal = jittered(schedule.interval, schedule.jitter());
            let error = result.err().map(|e| e.to_string());
            let pause = match failures.record(&plugin.limits, error.is_none(), normal) {
                Verdict::Continue { pause } => {
                    self.deployment.record(failures.consecutive(), error);
                    pause
                }
                Verdict::Quarantine { failures: count } => {
                    let reason = error.unwrap_or_default();
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
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = versions.changed() => failures = Default::default(),
                _ = shutdown.wait_for(|stop| *stop) => return,
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
