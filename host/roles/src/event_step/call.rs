//! The event step's call into the engine: sessions of calls on one instance.

use synchro_capability::{CallContext, Capabilities};
use synchro_engine::wasmtime::Store;
use synchro_engine::{CallError, CallState};
use synchro_wit::exports::synchro::plugin::event_step::Guest;

use super::EventStep;
use crate::{Linked, PluginEngine};

/// An event step's instance, reused for consecutive events of one stream so that a
/// message costs a call, not an instantiation. Each call gets its own deadline and fresh
/// capability state; a failed call ends the session (a trap may leave the instance
/// unusable), and the caller starts a new one.
pub struct Session {
    store: Store<CallState<Capabilities>>,
    guest: Guest,
    call: CallContext,
}

impl EventStep {
    /// Instantiates `linked` for a session of calls.
    pub async fn session(
        &self,
        engine: &PluginEngine,
        linked: &Linked,
        call: CallContext,
    ) -> Result<Session, CallError> {
        let limits = call.limits;
        let indices = &self.guest;
        let mut store = engine.store(Capabilities::new(&call), &limits);
        let instance = tokio::time::timeout(limits.deadline, linked.instantiate_async(&mut store))
            .await
            .map_err(|_| CallError::Deadline(limits.deadline))?
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        let guest = indices
            .load(&mut store, &instance)
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        Ok(Session { store, guest, call })
    }
}

impl Session {
    /// Calls `process-event` with `message`.
    pub async fn process(
        &mut self,
        engine: &PluginEngine,
        message: &synchro_bus::Message,
    ) -> Result<(), CallError> {
        let limits = self.call.limits;
        let call = self.call.restarted();
        engine.arm(&mut self.store, &limits);
        let wit = synchro_wit::message_to_wit(message);
        // The call's own deadline, which its host waits also keep to.
        let deadline = tokio::time::Instant::from_std(call.deadline);
        self.store.data_mut().caps = Capabilities::new(&call);
        match tokio::time::timeout_at(
            deadline,
            self.guest.call_process_event(&mut self.store, &wit),
        )
        .await
        {
            Err(_elapsed) => Err(CallError::Deadline(limits.deadline)),
            Ok(Err(e)) => Err(CallError::from_trap(e, &limits)),
            Ok(Ok(Err(e))) => Err(CallError::Plugin {
                kind: synchro_wit::kind_of(e.code),
                message: e.message,
            }),
            Ok(Ok(Ok(()))) => Ok(()),
        }
    }
}
