//! The collector's call into the engine: one fresh instance per collect, its snapshot
//! diffed while it runs.

use synchro_capability::{CallContext, Capabilities, SnapshotSink};
use synchro_engine::CallError;
use synchro_model::{Completeness, Hashes, Outcome};
use synchro_wit::exports::synchro::plugin::collector::Completeness as Wit;
use tracing::Instrument;

use super::Collector;
use crate::{Linked, PluginEngine};

/// The outcome of a collect call, with the baseline handed back either way.
pub enum Collected {
    Done(Outcome),
    Failed { error: CallError, baseline: Hashes },
}

impl Collector {
    /// Runs `collect` on a fresh instance of `linked` against `baseline`.
    pub async fn collect(
        &self,
        engine: &PluginEngine,
        linked: &Linked,
        call: CallContext,
        baseline: Hashes,
    ) -> Collected {
        let limits = call.limits;
        let guest = &self.guest;
        let mut caps = Capabilities::new(&call);
        caps.snapshot.begin(SnapshotSink::new(baseline, &limits));
        let output = synchro_capability::guest_output(&call);
        let mut store = engine.store(caps, &limits, &output);
        let began = std::time::Instant::now();
        let result = tokio::time::timeout(limits.deadline, async {
            let instance = linked
                .instantiate_async(&mut store)
                .await
                .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
            let collector = guest
                .load(&mut store, &instance)
                .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
            collector
                .call_collect(&mut store)
                .await
                .map_err(|e| CallError::from_trap(e, &limits))
        })
        .instrument(crate::session::plugin_span(&call.plugin))
        .await;
        call.status.call_seconds.collector.observe(began.elapsed());
        output.end_call();
        call.status.set_memory_bytes(store.data().memory_bytes());
        let (diff, refused) = store
            .data_mut()
            .caps
            .snapshot
            .finish()
            .expect("the sink stays for the whole call")
            .into_parts();
        let completeness = match (result, refused) {
            (Err(_elapsed), _) => Err(CallError::Deadline(limits.deadline)),
            (Ok(Err(error)), _) => Err(error),
            // A refused batch is the root cause, whatever the plugin made of it.
            (Ok(Ok(_)), Some(error)) => Err(CallError::InvalidOutput(error)),
            (Ok(Ok(Err(e))), None) => Err(CallError::Plugin {
                kind: synchro_wit::kind_of(e.code),
                message: e.message,
            }),
            (Ok(Ok(Ok(Wit::Complete))), None) => Ok(Completeness::Complete),
            (Ok(Ok(Ok(Wit::Partial))), None) => Ok(Completeness::Partial),
        };
        match completeness {
            Ok(completeness) => Collected::Done(diff.finish(completeness)),
            Err(error) => Collected::Failed {
                error,
                baseline: diff.abandon(),
            },
        }
    }
}
