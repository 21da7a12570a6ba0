//! The model as the admin API shows it (`synchro model get` / `list`): read on a blocking
//! thread, so that a large page never holds up the host's loop.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use synchro_admin::PageRequest;
use synchro_model::bookkeeping::{Bookkeeping, Handlers, RoleStatus};
use synchro_model::{EntityRef, Error, ErrorKind, Id};
use synchro_roles::{Deployment, Recheck};
use synchro_status::{
    BaselineEntry, BaselinePage, ModelBookkeeping, ModelEdge, ModelEntity, ModelFilter, ModelFlags,
    ModelPage, ModelProgress, ModelRef, ModelSource, RoleError, RoleOutcome,
};
use synchro_store::{Db, DbError, Stored};
use tokio::sync::oneshot;

/// The deployed plugins of one role (policies or sync steps) by the kind they handle.
pub type Deployed = BTreeMap<String, BTreeSet<String>>;

/// What the deployed plugins do with the model: the kinds their policies police and their
/// sync steps enact, and which plugins. An entity has work pending only if a deployed
/// plugin would do it: data no sync step enacts is not "dirty", however its bookkeeping
/// reads.
#[derive(Debug, Clone, Default)]
pub struct Work {
    pub synced: Deployed,
    pub policed: Deployed,
}

impl Work {
    fn needs_sync(&self, id: &Id, b: &Bookkeeping) -> bool {
        deployed(&self.synced, id).any(|step| b.needs_sync(step))
    }

    fn needs_policy(&self, id: &Id, b: &Bookkeeping) -> bool {
        deployed(&self.policed, id).any(|policy| b.needs_policy(policy))
    }
}

/// The plugins of `handlers` deployed for `id`'s kind.
fn deployed<'w>(handlers: &'w Deployed, id: &Id) -> impl Iterator<Item = &'w str> {
    handlers
        .get(id.kind())
        .into_iter()
        .flatten()
        .map(String::as_str)
}

/// Answers `reply` with the entity `wanted`.
pub fn entity(
    db: &Arc<Db>,
    work: Work,
    wanted: ModelRef,
    reply: oneshot::Sender<Result<ModelEntity, Error>>,
) {
    answer(db, reply, move |db| {
        let id = Id::new(&wanted.kind, &wanted.key);
        db.model_get(&id).map_err(failed).and_then(|stored| {
            stored
                .ok_or_else(|| not_found(&id))
                .and_then(|stored| view(db, stored, &work))
        })
    });
}

/// Sets the operator's `flags` on the entity `wanted`, then asks `handlers` (the
/// deployments of the kind's policies and steps) to look at it again, and answers `reply`
/// with the entity as it is then.
pub fn flag(
    db: &Arc<Db>,
    work: Work,
    wanted: ModelRef,
    flags: ModelFlags,
    handlers: Vec<Arc<Deployment>>,
    reply: oneshot::Sender<Result<ModelEntity, Error>>,
) {
    answer(db, reply, move |db| {
        let id = Id::new(&wanted.kind, &wanted.key);
        let set = |b: &mut Bookkeeping| {
            let ModelFlags {
                no_policy,
                write_protect,
            } = flags;
            b.no_policy = no_policy.unwrap_or(b.no_policy);
            b.write_protect = write_protect.unwrap_or(b.write_protect);
        };
        if !db.model_set_flags(&id, set).map_err(failed)? {
            return Err(not_found(&id));
        }
        for handler in handlers {
            handler.recheck(Recheck::Entity(id.clone()));
        }
        match db.model_get(&id).map_err(failed)? {
            Some(stored) => view(db, stored, &work),
            // A deleted entity made no-policy may have waited for nothing else.
            None => Err(Error::new(
                ErrorKind::NotFound,
                format!("{id} was deleted, and nothing waits for it any more: it is purged"),
            )),
        }
    });
}

pub(crate) fn not_found(id: &Id) -> Error {
    Error::new(ErrorKind::NotFound, format!("the model has no entity {id}"))
}

/// Answers `reply` with the page `page` asks for.
pub fn entities(
    db: &Arc<Db>,
    work: Work,
    page: PageRequest,
    reply: oneshot::Sender<Result<ModelPage, Error>>,
) {
    answer(db, reply, move |db| {
        use synchro_model::bookkeeping::State;
        let after = page.after.map(|r| Id::new(&r.kind, &r.key));
        let select = |id: &Id, b: &Bookkeeping| match page.only {
            None => true,
            Some(ModelFilter::Dirty) => work.needs_sync(id, b) || work.needs_policy(id, b),
            Some(ModelFilter::Failed) => [&b.steps, &b.policies].iter().any(|handlers| {
                handlers
                    .iter()
                    .any(|(_, p)| p.status.state == State::Failed)
            }),
        };
        let stored = db
            .model_query(
                page.kind.as_deref(),
                page.owner.as_deref(),
                after.as_ref(),
                select,
                page.limit,
            )
            .map_err(failed)?;
        let entities = stored
            .into_iter()
            .map(|stored| view(db, stored, &work))
            .collect::<Result<Vec<_>, _>>()?;
        let next = next_page(&entities, page.limit, |e| (&e.kind, &e.key));
        Ok(ModelPage { entities, next })
    });
}

/// Answers `reply` with a page of the baseline of the collector `name`; not found, naming
/// those that have one, when it has none.
pub fn baseline(
    db: &Arc<Db>,
    name: String,
    page: PageRequest,
    reply: oneshot::Sender<Result<BaselinePage, Error>>,
) {
    answer(db, reply, move |db| {
        let known = db.baselines().map_err(failed)?;
        if !known.contains(&name) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "no baseline for `{name}` (no collector of that name has committed a collect here); plugins with one: {}",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
        let after = page.after.map(|r| Id::new(&r.kind, &r.key));
        let entries = db
            .baseline_page(&name, page.kind.as_deref(), after.as_ref(), page.limit)
            .map_err(failed)?
            .into_iter()
            .map(|entry| {
                let (key, kind, properties, _, edge) = entry.entity.into_parts();
                let properties = serde_json::value::RawValue::from_string(properties)
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::Failed,
                            format!("the baseline of {name} holds damaged properties for {kind} {key}: {e}"),
                        )
                    })?;
                Ok(BaselineEntry {
                    hash: format!("{:016x}", entry.hash),
                    edge: edge.map(|ends| ModelEdge {
                        source: model_ref(ends.source),
                        target: model_ref(ends.target),
                    }),
                    kind,
                    key,
                    properties,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let next = next_page(&entries, page.limit, |e| (&e.kind, &e.key));
        Ok(BaselinePage { entries, next })
    });
}

/// Where the page after `page` starts: after its last item (whose kind and key `id`
/// gives), when it is full.
fn next_page<T>(
    page: &[T],
    limit: usize,
    id: impl Fn(&T) -> (&String, &String),
) -> Option<ModelRef> {
    let last = page.last().filter(|_| page.len() == limit)?;
    let (kind, key) = id(last);
    Some(ModelRef {
        kind: kind.clone(),
        key: key.clone(),
    })
}

fn model_ref(entity: EntityRef) -> ModelRef {
    ModelRef {
        kind: entity.kind,
        key: entity.key,
    }
}

/// Answers `reply` with what `read` finds in `db`, read on a blocking thread.
pub(crate) fn answer<T: Send + 'static>(
    db: &Arc<Db>,
    reply: oneshot::Sender<Result<T, Error>>,
    read: impl FnOnce(&Db) -> Result<T, Error> + Send + 'static,
) {
    let db = db.clone();
    tokio::task::spawn_blocking(move || drop(reply.send(read(&db))));
}

pub(crate) fn failed(error: DbError) -> Error {
    Error::new(error.kind(), error.to_string())
}

/// What the API shows of a stored entity; an error if its properties are not JSON (a
/// damaged database), which the answer names.
pub(crate) fn view(db: &Db, stored: Stored, work: &Work) -> Result<ModelEntity, Error> {
    let id = stored.entity.id().clone();
    let sources = db
        .model_sources(&id)
        .map_err(failed)?
        .into_iter()
        .map(|(plugin, entity)| {
            let properties =
                serde_json::value::RawValue::from_string(entity.properties().to_owned())
                    .map_err(|e| Error::new(ErrorKind::Failed, format!("{id}: {e}")))?;
            Ok(ModelSource { plugin, properties })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut dangling = Vec::new();
    if let Some(ends) = stored.entity.edge() {
        for (role, end) in [("source", &ends.source), ("target", &ends.target)] {
            let there = db
                .model_get(&Id::new(&end.kind, &end.key))
                .map_err(failed)?;
            if there.is_none_or(|end| end.bookkeeping.deleted) {
                dangling.push(role.to_owned());
            }
        }
    }
    let (key, kind, properties, schema_version, edge) = stored.entity.into_parts();
    let properties = serde_json::value::RawValue::from_string(properties).map_err(|e| {
        Error::new(
            ErrorKind::Failed,
            format!("the stored properties of {id} are damaged: {e}"),
        )
    })?;
    Ok(ModelEntity {
        kind,
        key,
        owner: stored.owner,
        properties,
        schema_version,
        edge: edge.map(|ends| ModelEdge {
            source: model_ref(ends.source),
            target: model_ref(ends.target),
        }),
        dangling,
        sources,
        bookkeeping: bookkeeping(&stored.bookkeeping, &id, work),
    })
}

fn bookkeeping(b: &Bookkeeping, id: &Id, work: &Work) -> ModelBookkeeping {
    let steps = progress(&b.steps, deployed(&work.synced, id), |step| {
        b.needs_sync(step)
    });
    let policies = progress(&b.policies, deployed(&work.policed, id), |policy| {
        b.needs_policy(policy)
    });
    ModelBookkeeping {
        updated: b.updated,
        changed_by_policy: b.changed_by_policy,
        changed_by_step: b.changed_by_step,
        policed: ModelProgress::reached(&policies),
        enacted: ModelProgress::reached(&steps),
        needs_sync: steps.iter().any(|p| p.needs),
        needs_policy: policies.iter().any(|p| p.needs),
        sync: ModelProgress::worst(&steps),
        policy: ModelProgress::worst(&policies),
        steps,
        policies,
        deleted: b.deleted,
        no_sync: b.no_sync,
        no_policy: b.no_policy,
        write_protect: b.write_protect,
    }
}

/// The progress of every plugin of a role that recorded some on the entity or is
/// deployed for its kind (an empty name: progress from before several per kind, which no
/// handler could be given yet); `needs` says whether a deployed one has work on it.
fn progress<'w>(
    recorded: &Handlers,
    deployed: impl Iterator<Item = &'w str>,
    needs: impl Fn(&str) -> bool,
) -> Vec<ModelProgress> {
    let deployed: BTreeSet<&str> = deployed.collect();
    let mut names: BTreeSet<&str> = deployed.clone();
    names.extend(recorded.iter().map(|(plugin, _)| plugin));
    names
        .into_iter()
        .map(|plugin| {
            let of = recorded.of(plugin).cloned().unwrap_or_default();
            ModelProgress {
                plugin: plugin.to_owned(),
                version: of.done,
                needs: deployed.contains(plugin) && needs(plugin),
                outcome: outcome(&of.status),
            }
        })
        .collect()
}

fn outcome(s: &RoleStatus) -> RoleOutcome {
    RoleOutcome {
        state: s.state.label().to_owned(),
        errors: s
            .errors
            .iter()
            .map(|e| RoleError {
                kind: e.kind.label().to_owned(),
                message: e.message.clone(),
            })
            .collect(),
    }
}
