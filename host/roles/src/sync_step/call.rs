//! The sync step's calls into the engine — `sync-record` and `delete-record` on a
//! session — and how the model-role runner uses them.

use synchro_capability::CallContext;
use synchro_engine::CallError;
use synchro_model::bookkeeping::Failure;
use synchro_model::{Acting, Bookkeeping, Entity, ErrorKind, Handling, Id};
use synchro_status::ModelRole;
use synchro_store::{Db, DbError, Enacted, Recorded, Stored};
use synchro_wit::exports::synchro::plugin::sync_step::Guest;
use tracing::Instrument;

use super::SyncStep;
use crate::model_work::{Handler, Mode, ModelWork, Plan};
use crate::session::Session as Instance;
use crate::{Plugin, PluginEngine};

/// A sync step's instance, reused for consecutive entities.
pub struct Session(Instance<Guest>);

/// An entity, and what holds back its sync, if anything.
pub struct Input {
    stored: Stored,
    held: Option<Held>,
}

/// Another entity to handle first, and why, for the held one's status.
struct Held {
    blocker: Id,
    why: String,
}

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
    type Input = Input;
    type Call = Enact;
    type Outcome = Enacted;
    type Session = Session;

    fn work(plugin: &Plugin) -> &ModelWork {
        &SyncStep::of(plugin).sync
    }

    fn read(
        db: &Db,
        step: &str,
        work: &ModelWork,
        ids: &[Id],
    ) -> Result<Vec<Option<Input>>, DbError> {
        db.model_get_many(ids)?
            .into_iter()
            .map(|stored| {
                let Some(stored) = stored.filter(|s| s.bookkeeping.needs_sync(step)) else {
                    return Ok(None);
                };
                // What the operator's mode keeps from a call waits for nothing.
                let mode = work.mode(stored.entity.kind());
                let calls = match mode {
                    Mode::Managed => true,
                    Mode::OrphanOnDelete => !stored.bookkeeping.deleted,
                    Mode::ObserveOnly | Mode::Paused => false,
                };
                let held = match calls {
                    true => held(db, step, work, &stored)?,
                    false => None,
                };
                Ok(Some(Input { stored, held }))
            })
            .collect()
    }

    fn books(input: &Input) -> &Bookkeeping {
        &input.stored.bookkeeping
    }

    fn needs(books: &Bookkeeping, step: &str) -> bool {
        books.needs_sync(step)
    }

    /// The operator's mode may hold the call, or, for a deletion, make it needless; what
    /// the entity depends on may hold it.
    fn plan(work: &ModelWork, input: Input) -> Plan<Enact, Enacted> {
        let Input { stored, held } = input;
        let books = &stored.bookkeeping;
        let mode = work.mode(stored.entity.kind());
        match (mode, books.deleted) {
            (Mode::Paused, _) | (Mode::ObserveOnly, false) => return Plan::Skip,
            (Mode::ObserveOnly | Mode::OrphanOnDelete, true) => {
                return Plan::Record(Enacted::Removed {
                    seen: books.updated,
                });
            }
            _ => {}
        }
        if let Some(Held { blocker, why }) = held {
            let failure = Failure {
                kind: ErrorKind::Unavailable,
                message: why,
            };
            return Plan::Hold {
                blocker,
                outcome: Enacted::Failed(failure),
            };
        }
        if books.deleted {
            let seen = books.updated;
            Plan::Call(Enact::Delete(stored.entity), Enacted::Removed { seen })
        } else {
            let seen = books.sync_target();
            Plan::Call(Enact::Sync(stored.entity), Enacted::Synced { seen })
        }
    }

    fn failed(failure: Failure) -> Enacted {
        Enacted::Failed(failure)
    }

    fn record(db: &Db, step: &str, outcomes: &[(Id, Enacted)]) -> Result<Vec<Recorded>, DbError> {
        db.record_syncs(step, outcomes)
    }

    /// An entity created outside while it was purged from the model is removed again,
    /// unless the operator orphans what is deleted.
    fn undo(work: &ModelWork, call: Enact) -> Option<Enact> {
        match call {
            Enact::Sync(entity) if work.mode(entity.kind()) == Mode::Managed => {
                Some(Enact::Delete(entity))
            }
            _ => None,
        }
    }

    fn name(call: &Enact) -> &'static str {
        match call {
            Enact::Sync(_) => "sync-record",
            Enact::Delete(_) => "delete-record",
        }
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
        let session = Instance::start(
            engine,
            &plugin.linked,
            call,
            |d| &d.sync_step,
            |store, instance| indices.load(store, instance),
        )
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
        let returned = async {
            match call {
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
            }
        }
        .instrument(call_of.span)
        .await;
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

/// What the step `step` must handle before `stored` (XOS's dependency order): an edge
/// goes outside after its ends, and an entity after the ones its declared dependencies
/// name (`[sync.depends-on]`); a deleted vertex is removed after the edges that hang on
/// it, and a deleted entity after those that depend on it. Only what this step enacts,
/// and manages, can hold it back; an end missing from the model (a dangling edge, or a
/// property naming what no source reported yet) holds it until the end appears.
fn held(db: &Db, step: &str, work: &ModelWork, stored: &Stored) -> Result<Option<Held>, DbError> {
    let books = &stored.bookkeeping;
    let entity = &stored.entity;
    if !books.deleted {
        let mut ends = Vec::new();
        if let Some(edge) = entity.edge() {
            for (role, end) in [("source", &edge.source), ("target", &edge.target)] {
                ends.push((role.to_owned(), Id::new(&end.kind, &end.key)));
            }
        }
        ends.extend(declared(work, entity));
        for (role, end) in ends {
            if let Some(held) = first(db, step, work, &role, end)? {
                return Ok(Some(held));
            }
        }
        return Ok(None);
    }
    let mut dependents = Vec::new();
    if entity.edge().is_none() {
        dependents.extend(db.edges_of(entity.id())?.into_iter().map(|e| ("edge", e)));
    }
    dependents.extend(
        dependents_of(db, step, work, entity)?
            .into_iter()
            .map(|d| ("dependent", d)),
    );
    for (what, dependent) in dependents {
        let Some(of) = db.model_get(&dependent)? else {
            continue;
        };
        if managed(work, &dependent) && of.bookkeeping.is_outside_for(step) {
            let why = format!("waiting for its {what} {dependent} to be removed first");
            return Ok(Some(Held {
                blocker: dependent,
                why,
            }));
        }
    }
    Ok(None)
}

/// Whether the step enacts `id`'s kind and the operator lets it.
fn managed(work: &ModelWork, id: &Id) -> bool {
    work.kinds.contains(id.kind()) && work.mode(id.kind()) != Mode::ObserveOnly
}

/// What holds back an entity whose `role` (an edge's end, a declared dependency) is
/// `end`: that it is missing, deleted, or not enacted yet by this step.
fn first(
    db: &Db,
    step: &str,
    work: &ModelWork,
    role: &str,
    end: Id,
) -> Result<Option<Held>, DbError> {
    let why = match db.model_get(&end)? {
        Some(of) if of.bookkeeping.deleted => format!("its {role} {end} is deleted"),
        None => format!("its {role} {end} is not in the model (dangling)"),
        Some(of) if managed(work, &end) && of.bookkeeping.needs_sync(step) => {
            let mut why = format!("waiting for its {role} {end} to be enacted first");
            let progress = of.bookkeeping.steps.of(step);
            if let Some(error) = progress.and_then(|p| p.status.errors.first()) {
                why.push_str(&format!(", which failed: {}", error.message));
            }
            why
        }
        Some(_) => return Ok(None),
    };
    Ok(Some(Held { blocker: end, why }))
}

/// The entities `entity` depends on by the step's declared dependencies: for each
/// property its kind declares that holds a non-empty string, the entity of the declared
/// kind with that key, and the property's name for the status. An entity that names
/// itself depends on nothing: it would wait for itself forever.
fn declared(work: &ModelWork, entity: &Entity) -> Vec<(String, Id)> {
    let Some(declared) = work.depends_on.get(entity.kind()) else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Object(properties)) =
        serde_json::from_str::<serde_json::Value>(entity.properties())
    else {
        return Vec::new();
    };
    declared
        .iter()
        .filter_map(|(property, kind)| {
            let key = properties
                .get(property)?
                .as_str()
                .filter(|k| !k.is_empty())?;
            let on = Id::new(kind, key);
            (on != *entity.id()).then(|| (format!("`{property}`"), on))
        })
        .collect()
}

/// Entities scanned at once for dependents.
const PAGE: usize = 1000;

/// The entities of the step's kinds that declare a dependency on the deleted `entity`
/// and are still outside: a scan of each such kind's entities this step has outside
/// (there is no index of properties).
fn dependents_of(
    db: &Db,
    step: &str,
    work: &ModelWork,
    entity: &Entity,
) -> Result<Vec<Id>, DbError> {
    let mut found = Vec::new();
    for (kind, on) in &work.depends_on {
        if !on.values().any(|k| k == entity.kind()) {
            continue;
        }
        let mut after: Option<Id> = None;
        loop {
            let outside = |_: &Id, b: &Bookkeeping| b.is_outside_for(step);
            let page = db.model_query(Some(kind), None, after.as_ref(), outside, PAGE)?;
            let full = page.len() == PAGE;
            for stored in page {
                let depends = declared(work, &stored.entity)
                    .iter()
                    .any(|(_, on)| on == entity.id());
                if depends {
                    found.push(stored.entity.id().clone());
                }
                after = Some(stored.entity.into_id());
            }
            if !full {
                break;
            }
        }
    }
    Ok(found)
}
