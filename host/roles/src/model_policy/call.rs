//! The model policy's calls into the engine — `handle-create`, `handle-update` and
//! `handle-delete` on a session — and how the model-role runner uses them.

use synchro_capability::CallContext;
use synchro_engine::CallError;
use synchro_model::bookkeeping::Failure;
use synchro_model::{Acting, Bookkeeping, Entity, Handling, Id};
use synchro_status::ModelRole;
use synchro_store::{Db, DbError, Policed, Recorded, Stored};
use synchro_wit::exports::synchro::plugin::model_policy::Guest;
use tracing::Instrument;

use super::ModelPolicy;
use crate::model_work::{Handler, ModelWork, Plan};
use crate::session::Session as Instance;
use crate::{Plugin, PluginEngine};

/// A model policy's instance, reused for consecutive entities.
pub struct Session(Instance<Guest>);

/// An entity, and what the policy last handled of it.
pub struct Input {
    stored: Stored,
    previous: Option<Entity>,
}

/// What a policy is asked to handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum React {
    Create(Entity),
    /// The entity, and as the policy last handled it.
    Update(Entity, Entity),
    Delete(Entity),
}

impl Handler for ModelPolicy {
    const ROLE: ModelRole = ModelRole::Policy;
    const READER: &'static str = "model-policy";
    type Input = Input;
    type Call = React;
    type Outcome = Policed;
    type Session = Session;

    fn work(plugin: &Plugin) -> &ModelWork {
        &ModelPolicy::of(plugin).policy
    }

    /// What the policy last handled is the `previous` of a `handle-update`; an entity
    /// it policed without one (not kept by this host's versions before policies) is
    /// handled as new.
    fn read(
        db: &Db,
        policy: &str,
        _: &ModelWork,
        ids: &[Id],
    ) -> Result<Vec<Option<Input>>, DbError> {
        Ok(db
            .model_get_policed(policy, ids)?
            .into_iter()
            .map(|found| {
                let (stored, previous) = found?;
                let policed = stored.bookkeeping.policies.of(policy);
                let previous = previous.filter(|_| policed.is_some_and(|p| p.done.is_some()));
                Some(Input { stored, previous })
            })
            .collect())
    }

    fn books(input: &Input) -> &Bookkeeping {
        &input.stored.bookkeeping
    }

    fn needs(books: &Bookkeeping, policy: &str) -> bool {
        books.needs_policy(policy)
    }

    fn plan(_: &ModelWork, input: Input) -> Plan<React, Policed> {
        let Input { stored, previous } = input;
        let books = &stored.bookkeeping;
        if books.deleted {
            let seen = books.updated;
            return Plan::Call(React::Delete(stored.entity), Policed::Deleted { seen });
        }
        let seen = books.policy_target();
        let handled = Policed::Handled {
            seen,
            entity: stored.entity.clone(),
        };
        let react = match previous {
            Some(previous) => React::Update(stored.entity, previous),
            None => React::Create(stored.entity),
        };
        Plan::Call(react, handled)
    }

    fn failed(failure: Failure) -> Policed {
        Policed::Failed(failure)
    }

    fn record(db: &Db, policy: &str, outcomes: &[(Id, Policed)]) -> Result<Vec<Recorded>, DbError> {
        db.record_policies(policy, outcomes)
    }

    /// A policy that handled an entity purged while it ran sees it go.
    fn undo(_: &ModelWork, call: React) -> Option<React> {
        match call {
            React::Create(entity) | React::Update(entity, _) => Some(React::Delete(entity)),
            React::Delete(_) => None,
        }
    }

    fn name(call: &React) -> &'static str {
        match call {
            React::Create(_) => "handle-create",
            React::Update(..) => "handle-update",
            React::Delete(_) => "handle-delete",
        }
    }

    /// Instantiates the plugin for a session of calls; what they write to the model is
    /// the policy's (it moves `changed-by-policy`, and never runs a policy again).
    async fn session(
        plugin: &Plugin,
        engine: &PluginEngine,
        call: CallContext,
    ) -> Result<Session, CallError> {
        let indices = &ModelPolicy::of(plugin).guest;
        let call = call.acting_as(Acting::Policy);
        let session = Instance::start(
            engine,
            &plugin.linked,
            call,
            |d| &d.model_policy,
            |store, instance| indices.load(store, instance),
        )
        .await?;
        Ok(Session(session))
    }

    async fn invoke(
        session: &mut Session,
        engine: &PluginEngine,
        call: &React,
        handling: Option<Handling>,
    ) -> Result<(), CallError> {
        session.0.handling(handling);
        let call_of = session.0.begin(engine);
        let (guest, store, deadline) = (call_of.guest, call_of.store, call_of.deadline);
        let returned = async {
            match call {
                React::Create(entity) => {
                    let wit = synchro_wit::entity_to_wit(entity.clone());
                    tokio::time::timeout_at(deadline, guest.call_handle_create(store, &wit)).await
                }
                React::Update(entity, previous) => {
                    let wit = synchro_wit::entity_to_wit(entity.clone());
                    let previous = synchro_wit::entity_to_wit(previous.clone());
                    tokio::time::timeout_at(
                        deadline,
                        guest.call_handle_update(store, &wit, &previous),
                    )
                    .await
                }
                React::Delete(entity) => {
                    let wit = synchro_wit::entity_to_wit(entity.clone());
                    tokio::time::timeout_at(deadline, guest.call_handle_delete(store, &wit)).await
                }
            }
        }
        .instrument(call_of.span)
        .await;
        session.0.outcome(returned)
    }
}

impl ModelPolicy {
    fn of(plugin: &Plugin) -> &ModelPolicy {
        plugin
            .roles
            .model_policy
            .as_ref()
            .expect("a model-policy runner runs model policies")
    }
}
