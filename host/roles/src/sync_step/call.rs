//! The sync step's calls into the engine: `sync-record` and `delete-record` on a session.

use synchro_capability::CallContext;
use synchro_engine::CallError;
use synchro_model::{Acting, Entity};
use synchro_wit::exports::synchro::plugin::sync_step::Guest;

use super::SyncStep;
use crate::session::Session as Instance;
use crate::{Linked, PluginEngine};

/// A sync step's instance, reused for consecutive entities.
pub struct Session(Instance<Guest>);

/// What a sync step is asked to do with an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enact {
    /// `sync-record`: make the outside system hold it.
    Sync,
    /// `delete-record`: remove it from the outside system.
    Delete,
}

impl Enact {
    /// The export's function, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Enact::Sync => "sync-record",
            Enact::Delete => "delete-record",
        }
    }
}

impl SyncStep {
    /// Instantiates `linked` for a session of calls; what they write to the model is the
    /// step's (it moves `changed-by-step`, and never causes a sync of its own).
    pub async fn session(
        &self,
        engine: &PluginEngine,
        linked: &Linked,
        call: CallContext,
    ) -> Result<Session, CallError> {
        let indices = &self.guest;
        let call = call.acting_as(Acting::Step);
        let session = Instance::start(engine, linked, call, |store, instance| {
            indices.load(store, instance)
        })
        .await?;
        Ok(Session(session))
    }
}

impl Session {
    pub async fn enact(
        &mut self,
        engine: &PluginEngine,
        enact: Enact,
        entity: Entity,
    ) -> Result<(), CallError> {
        let wit = synchro_wit::entity_to_wit(entity);
        let call = self.0.begin(engine);
        let returned = match enact {
            Enact::Sync => {
                tokio::time::timeout_at(
                    call.deadline,
                    call.guest.call_sync_record(call.store, &wit),
                )
                .await
            }
            Enact::Delete => {
                tokio::time::timeout_at(
                    call.deadline,
                    call.guest.call_delete_record(call.store, &wit),
                )
                .await
            }
        };
        self.0.outcome(returned)
    }
}
