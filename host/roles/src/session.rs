//! A session of calls on one instance: what the roles that call a plugin once per item
//! (an event step per message, a sync step per entity) share, so that an item costs a
//! call, not an instantiation.
//!
//! Each call gets its own deadline and fresh capability state; a failed call ends the
//! session (a trap may leave the instance unusable), and the caller starts a new one.
//!
//! Every call into a plugin runs in a [`plugin_span`]: the spans of the WIT bindings
//! (each export called, each host import the plugin calls back) nest under it, so a
//! trace and every log line of the call name the plugin.

use synchro_capability::{CallContext, Capabilities};
use synchro_engine::wasmtime::Store;
use synchro_engine::wasmtime::component::Instance;
use synchro_engine::{CallError, CallState, GuestOutput};
use synchro_model::Handling;
use synchro_status::{CallDurations, Durations};
use synchro_wit::WitError;

use crate::{Linked, PluginEngine};

/// A plugin's store for one session.
pub(crate) type PluginStore = Store<CallState<Capabilities>>;

/// An instance of a plugin and its export `G`, for consecutive calls.
pub struct Session<G> {
    store: PluginStore,
    guest: G,
    call: CallContext,
    /// The guest's stdout and stderr, logged as each call ends.
    output: GuestOutput,
    /// Where each call's duration goes, and when the current one began.
    durations: Durations,
    began: std::time::Instant,
}

/// One call's parts: the export, the store, when the call must end, and the span it
/// runs in.
pub(crate) struct Call<'s, G> {
    pub guest: &'s G,
    pub store: &'s mut PluginStore,
    pub deadline: tokio::time::Instant,
    pub span: tracing::Span,
}

/// The span of a call into the plugin `name` (the export's own span, inside it, names
/// the export). At DEBUG: the default filter (info) leaves it disabled, which costs a
/// branch per call.
pub(crate) fn plugin_span(plugin: &str) -> tracing::Span {
    tracing::debug_span!("plugin call", plugin)
}

impl<G> Session<G> {
    /// Instantiates `linked` and finds its export with `load`; each call's duration
    /// goes to the plugin's histogram of the role that `durations` picks.
    pub(crate) async fn start(
        engine: &PluginEngine,
        linked: &Linked,
        call: CallContext,
        durations: fn(&CallDurations) -> &Durations,
        load: impl FnOnce(&mut PluginStore, &Instance) -> synchro_engine::wasmtime::Result<G>,
    ) -> Result<Session<G>, CallError> {
        let durations = durations(&call.status.call_seconds).clone();
        let limits = call.limits;
        let output = synchro_capability::guest_output(&call);
        let mut store = engine.store(Capabilities::new(&call), &limits, &output);
        let instance = tokio::time::timeout(limits.deadline, linked.instantiate_async(&mut store))
            .await
            .map_err(|_| CallError::Deadline(limits.deadline))?
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        let guest =
            load(&mut store, &instance).map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        Ok(Session {
            store,
            guest,
            call,
            output,
            durations,
            began: std::time::Instant::now(),
        })
    }

    /// Lets the next calls write `handling` whoever owns it (see [`Handling`]).
    pub(crate) fn handling(&mut self, handling: Option<Handling>) {
        self.call.handling = handling;
    }

    /// Readies the next call: a fresh deadline, fuel and capability state.
    pub(crate) fn begin(&mut self, engine: &PluginEngine) -> Call<'_, G> {
        let call = self.call.restarted();
        engine.arm(&mut self.store, &call.limits);
        // The call's own deadline, which its host waits also keep to.
        let deadline = tokio::time::Instant::from_std(call.deadline);
        self.store.data_mut().caps = Capabilities::new(&call);
        // When the call began, from its deadline: one clock read fewer per call.
        self.began = call.deadline - call.limits.deadline;
        Call {
            guest: &self.guest,
            store: &mut self.store,
            deadline,
            span: plugin_span(&call.plugin),
        }
    }

    /// What a call that ran until its deadline returned, as the host reports it; what
    /// the guest printed in it is logged first.
    pub(crate) fn outcome<T>(
        &self,
        returned: Result<
            synchro_engine::wasmtime::Result<Result<T, WitError>>,
            tokio::time::error::Elapsed,
        >,
    ) -> Result<T, CallError> {
        self.output.end_call();
        self.durations.observe(self.began.elapsed());
        self.call
            .status
            .set_memory_bytes(self.store.data().memory_bytes());
        let limits = &self.call.limits;
        match returned {
            Err(_elapsed) => Err(CallError::Deadline(limits.deadline)),
            Ok(Err(e)) => Err(CallError::from_trap(e, limits)),
            Ok(Ok(Err(e))) => Err(CallError::Plugin {
                kind: synchro_wit::kind_of(e.code),
                message: e.message,
            }),
            Ok(Ok(Ok(value))) => Ok(value),
        }
    }
}
