//! Event-step calls: sessions of calls on one instance.

use std::time::Instant;

use super::bindings::event_step::EventStepPlugin;
use super::{
    CallError, CallLimits, PluginState, Prepared, Runtime, convert, epoch_ticks, refuel, trap,
};
use crate::capability::{CallContext, Capabilities};
use wasmtime::Store;

/// An event step's instance, reused for consecutive events of one stream so that a
/// message costs a call, not an instantiation. Each call gets its own deadline and fresh
/// capability state; a failed call ends the session (a trap may leave the instance
/// unusable), and the caller starts a new one.
pub struct EventSession {
    store: Store<PluginState>,
    instance: EventStepPlugin,
    limits: CallLimits,
    call: CallContext,
    fuel_metering: bool,
}

impl Runtime {
    /// Instantiates an event step for a session of calls.
    pub async fn event_session(
        &self,
        prepared: &Prepared,
        call: CallContext,
    ) -> Result<EventSession, CallError> {
        let limits = call.limits;
        let pre = prepared
            .event_step
            .as_ref()
            .expect("sessions are only opened for event steps");
        let mut store = self.store(call.clone(), None);
        let instance = tokio::time::timeout(limits.deadline, pre.instantiate_async(&mut store))
            .await
            .map_err(|_| CallError::Deadline(limits.deadline))?
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        Ok(EventSession {
            store,
            instance,
            limits,
            call,
            fuel_metering: self.fuel_metering,
        })
    }
}

impl EventSession {
    /// Calls `process-event` with `message`.
    pub async fn process(&mut self, message: &crate::bus::Message) -> Result<(), CallError> {
        let deadline = self.limits.deadline;
        let call = CallContext {
            deadline: Instant::now() + deadline,
            ..self.call.clone()
        };
        self.store.data_mut().caps = Capabilities::new(&call);
        refuel(&mut self.store, self.fuel_metering, &self.limits);
        self.store.set_epoch_deadline(epoch_ticks(deadline));
        let wit = convert::message_to_wit(message);
        let step = self.instance.synchro_plugin_event_step();
        match tokio::time::timeout(deadline, step.call_process_event(&mut self.store, &wit)).await {
            Err(_elapsed) => Err(CallError::Deadline(deadline)),
            Ok(Err(e)) => Err(trap(e, &self.limits)),
            Ok(Ok(Err(e))) => Err(CallError::Plugin {
                code: e.code,
                message: e.message,
            }),
            Ok(Ok(Ok(()))) => Ok(()),
        }
    }
}
