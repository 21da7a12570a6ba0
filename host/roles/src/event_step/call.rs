//! The event step's call into the engine: sessions of calls on one instance.

use synchro_capability::CallContext;
use synchro_engine::CallError;
use synchro_wit::exports::synchro::plugin::event_step::Guest;
use tracing::Instrument;

use super::EventStep;
use crate::session::Session as Instance;
use crate::{Linked, PluginEngine};

/// An event step's instance, reused for consecutive events of one stream.
pub struct Session(Instance<Guest>);

impl EventStep {
    /// Instantiates `linked` for a session of calls.
    pub async fn session(
        &self,
        engine: &PluginEngine,
        linked: &Linked,
        call: CallContext,
    ) -> Result<Session, CallError> {
        let indices = &self.guest;
        let session = Instance::start(
            engine,
            linked,
            call,
            |d| &d.event_step,
            |store, instance| indices.load(store, instance),
        )
        .await?;
        Ok(Session(session))
    }
}

impl Session {
    /// Calls `process-event` with `message`.
    pub async fn process(
        &mut self,
        engine: &PluginEngine,
        message: &synchro_bus::Message,
    ) -> Result<(), CallError> {
        let wit = synchro_wit::message_to_wit(message);
        let call = self.0.begin(engine);
        let returned = tokio::time::timeout_at(
            call.deadline,
            call.guest.call_process_event(call.store, &wit),
        )
        .instrument(call.span)
        .await;
        self.0.outcome(returned)
    }
}
