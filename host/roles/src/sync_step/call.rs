//! The sync step's calls into the engine — `sync-record` and `delete-record` on a
//! session — and how the model-role runner uses them.

use synchro_capability::CallContext;
use synchro_engine::CallError;
use synchro_model::bookkeeping::Failure;
use synchro_model::{Acting, Bookkeeping, Entity, Handling, Id, Version};
use synchro_status::{Counters, ModelRole};
use synchro_store::{Db, DbError, Enacted, Recorded, Stored};
use synchro_wit::exports::synchro::plugin::sync_step::Guest;

use super::SyncStep;
use crate::model_work::{Handler, Mode, ModelWork, Plan};
use crate::session::Session as Instance;
use crate::{Plugin, PluginEngine};

/// A sync step's instance, reused for consecutive entities.
pub struct Session(Instance<Guest>);

/// What a sync step is asked to do with an entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enact {
    /// `sync-record`: make the outside system hold it.
    Sync(Entity),
    /// `delete-record`: remove it from the outside system.
    Delete(Entity),
}

impl Handler for SyncStep {
    const ROLE: ModelRole = ModelRole::Sync;
    const READER: &'static str = "sync-step";
    type Input = Stored;
    type Call = Enact;
    type Outcome = Enacted;
    type Session = Session;

    fn work(plugin: &Plugin) -> &ModelWork {
        &SyncStep::of(plugin).sync
    }

    fn read(db: &Db, ids: &[Id]) -> Result<Vec<Option<Stored>>, DbError> {
        db.model_get_many(ids)
    }

    fn books(input: &Stored) -> &Bookkeeping {
        &input.bookkeeping
    }

    fn needs(books: &Bookkeeping) -> bool {
        books.needs_sync()
    }

    fn target(books: &Bookkeeping) -> Version {
        books.sync_target()
    }

    /// The operator's mode may hold the call, or, for a deletion, make it needless.
    fn plan(work: &ModelWork, input: Stored) -> Plan<Enact, Enacted> {
        let books = &input.bookkeeping;
        let mode = work.mode(input.entity.kind());
        match (mode, books.deleted) {
            (Mode::Paused, _) | (Mode::ObserveOnly, false) => Plan::Skip,
            (Mode::ObserveOnly | Mode::OrphanOnDelete, true) => Plan::Record(Enacted::Removed {
                seen: books.updated,
            }),
            (Mode::Managed, true) => Plan::Call(
                Enact::Delete(input.entity),
                Enacted::Removed {
                    seen: books.updated,
                },
            ),
            (Mode::Managed | Mode::OrphanOnDelete, false) => {
                let seen = books.sync_target();
                Plan::Call(Enact::Sync(input.entity), Enacted::Synced { seen })
            }
        }
    }

    fn failed(failure: Failure) -> Enacted {
        Enacted::Failed(failure)
    }

    fn record(db: &Db, outcomes: &[(Id, Enacted)]) -> Result<Vec<Recorded>, DbError> {
        db.record_syncs(outcomes)
    }

    /// An entity created outside while it was purged from the model is removed again.
    fn undo(call: Enact) -> Option<Enact> {
        match call {
            Enact::Sync(entity) => Some(Enact::Delete(entity)),
            Enact::Delete(_) => None,
        }
    }

    fn name(call: &Enact) -> &'static str {
        match call {
            Enact::Sync(_) => "sync-record",
            Enact::Delete(_) => "delete-record",
        }
    }

    fn done_counter(counters: &Counters) -> &std::sync::atomic::AtomicU64 {
        &counters.enacted
    }

    /// Instantiates the plugin for a session of calls; what they write to the model is
    /// the step's (it moves `changed-by-step`, and never causes a sync of its own).
    async fn session(
        plugin: &Plugin,
        engine: &PluginEngine,
        call: CallContext,
    ) -> Result<Session, CallError> {
        let step = SyncStep::of(plugin);
        let indices = &step.guest;
        let call = call.acting_as(Acting::Step);
        let session = Instance::start(engine, &plugin.linked, call, |store, instance| {
            indices.load(store, instance)
        })
        .await?;
        Ok(Session(session))
    }

    async fn invoke(
        session: &mut Session,
        engine: &PluginEngine,
        call: &Enact,
        handling: Option<Handling>,
    ) -> Result<(), CallError> {
        session.0.handling(handling);
        let call_of = session.0.begin(engine);
        let returned = match call {
            Enact::Sync(entity) => {
                let wit = synchro_wit::entity_to_wit(entity.clone());
                tokio::time::timeout_at(
                    call_of.deadline,
                    call_of.guest.call_sync_record(call_of.store, &wit),
                )
                .await
            }
            Enact::Delete(entity) => {
                let wit = synchro_wit::entity_to_wit(entity.clone());
                tokio::time::timeout_at(
                    call_of.deadline,
                    call_of.guest.call_delete_record(call_of.store, &wit),
                )
                .await
            }
        };
        session.0.outcome(returned)
    }
}

impl SyncStep {
    fn of(plugin: &Plugin) -> &SyncStep {
        plugin
            .roles
            .sync_step
            .as_ref()
            .expect("a sync-step runner runs sync steps")
    }
}
