//! Collector calls: the `snapshot.add` sink that diffs while `collect` runs, and the call.

use super::bindings::exports::synchro::plugin::collector::Completeness as Wit;
use super::{CallError, CallLimits, Prepared, Runtime, bindings, convert, trap};
use crate::capability::CallContext;
use crate::diff::{Completeness, Diff, DiffError, Hashes, Outcome};

/// The host side of `snapshot.add`: feeds a [`Diff`] and remembers the first error, so
/// a guest that ignores a refused batch still fails its collect.
pub struct SnapshotSink {
    diff: Diff,
    /// The first reason the snapshot is invalid; it fails the collect.
    error: Option<String>,
    /// Bytes of keys, kinds and properties so far, against `limits.max_snapshot_bytes`.
    bytes: u64,
    limits: CallLimits,
}

/// `None` outside a collect: a plugin that calls `snapshot.add` then gets an error.
impl bindings::synchro::plugin::snapshot::Host for Option<SnapshotSink> {
    async fn add(
        &mut self,
        batch: Vec<bindings::synchro::plugin::types::Entity>,
    ) -> Result<(), convert::WitError> {
        let Some(sink) = self else {
            return Err(convert::error(
                convert::ErrorCode::Denied,
                "snapshot.add is only available while `collect` runs",
            ));
        };
        sink.add(batch)
    }
}

impl SnapshotSink {
    fn add(
        &mut self,
        batch: Vec<bindings::synchro::plugin::types::Entity>,
    ) -> Result<(), convert::WitError> {
        if let Some(error) = &self.error {
            return Err(convert::error(
                convert::ErrorCode::InvalidInput,
                format!("the snapshot already failed: {error}"),
            ));
        }
        for entity in batch {
            self.bytes += (entity.key.len() + entity.kind.len() + entity.properties.len()) as u64;
            let added = if self.diff.len() as u64 >= self.limits.max_entities {
                Err(format!(
                    "the snapshot has more than {} entities (limits.max-entities)",
                    self.limits.max_entities
                ))
            } else if self.bytes > self.limits.max_snapshot_bytes {
                Err(format!(
                    "the snapshot is larger than {} KiB (limits.max-snapshot-kb)",
                    self.limits.max_snapshot_bytes >> 10
                ))
            } else {
                convert::entity_from_wit(entity)
                    .map_err(DiffError::from)
                    .and_then(|e| self.diff.add(e))
                    .map_err(|e| e.to_string())
            };
            if let Err(message) = added {
                self.error = Some(message.clone());
                return Err(convert::error(convert::ErrorCode::InvalidInput, message));
            }
        }
        Ok(())
    }
}

/// The outcome of a collect call, with the baseline handed back either way.
pub enum Collected {
    Done(Outcome),
    Failed { error: CallError, baseline: Hashes },
}

impl Runtime {
    /// Runs a collector's `collect` against `baseline`.
    pub async fn collect(
        &self,
        prepared: &Prepared,
        call: CallContext,
        baseline: Hashes,
    ) -> Collected {
        let limits = call.limits;
        let pre = prepared
            .collector
            .as_ref()
            .expect("collect is only scheduled for collectors");
        let sink = SnapshotSink {
            diff: Diff::new(baseline),
            error: None,
            bytes: 0,
            limits,
        };
        let mut store = self.store(call, Some(sink));
        let result = tokio::time::timeout(limits.deadline, async {
            let instance = pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
            instance
                .synchro_plugin_collector()
                .call_collect(&mut store)
                .await
                .map_err(|e| trap(e, &limits))
        })
        .await;
        let mut sink = store
            .data_mut()
            .snapshot
            .take()
            .expect("the sink stays for the whole call");
        let completeness = match (result, sink.error.take()) {
            (Err(_elapsed), _) => Err(CallError::Deadline(limits.deadline)),
            (Ok(Err(error)), _) => Err(error),
            // A refused batch is the root cause, whatever the plugin made of it.
            (Ok(Ok(_)), Some(error)) => Err(CallError::InvalidOutput(error)),
            (Ok(Ok(Err(e))), None) => Err(CallError::Plugin {
                code: e.code,
                message: e.message,
            }),
            (Ok(Ok(Ok(Wit::Complete))), None) => Ok(Completeness::Complete),
            (Ok(Ok(Ok(Wit::Partial))), None) => Ok(Completeness::Partial),
        };
        match completeness {
            Ok(completeness) => Collected::Done(sink.diff.finish(completeness)),
            Err(error) => Collected::Failed {
                error,
                baseline: sink.diff.abandon(),
            },
        }
    }
}
