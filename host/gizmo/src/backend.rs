//! Where the API's writes go: into the model (sync mode), or onto the bus as Gizmo's
//! requests, answered by whoever applies them (async mode).

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use synchro_model::{EdgeEnds, Entity, EntityRef, Id};
use synchro_store::{ApiRefusal, ApiWrite, Db, GraphRefusal};

use crate::answer::Failure;
use crate::remote::Remote;
use crate::writer::Writer;

/// A vertex or an edge: what a route serves, and what Gizmo's messages name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Vertex,
    Edge,
}

impl Subject {
    pub fn of(entity: &Entity) -> Subject {
        match entity.edge() {
            Some(_) => Subject::Edge,
            None => Subject::Vertex,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Subject::Vertex => "vertex",
            Subject::Edge => "edge",
        }
    }

    /// Gizmo's capitalised name, in its payload messages.
    pub fn title(self) -> &'static str {
        match self {
            Subject::Vertex => "Vertex",
            Subject::Edge => "Edge",
        }
    }
}

/// What a write does, in Gizmo's messages.
fn verb(write: &ApiWrite) -> &'static str {
    match write {
        ApiWrite::Create(_) => "create",
        ApiWrite::Replace(_) | ApiWrite::Patch { .. } => "update",
        ApiWrite::Delete(_) => "delete",
    }
}

/// The answer to a refused write, in Gizmo's words where Gizmo has them.
pub fn refused(subject: Subject, write: &ApiWrite, refusal: &ApiRefusal) -> Failure {
    let failed = format!("Failed to {} {}", verb(write), subject.name());
    match refusal {
        ApiRefusal::Absent(id) => Failure::not_found(format!("{failed}: {} not found", id.key())),
        ApiRefusal::Graph(GraphRefusal::HasEdges(_)) => Failure::bad_request(format!(
            "{failed}: Attempt to delete vertex with id {} which has incident edges.",
            write.id().key()
        )),
        ApiRefusal::Graph(missing @ GraphRefusal::MissingEnd { .. }) => {
            Failure::not_found(format!("{failed}: {missing}"))
        }
        ApiRefusal::Invalid(error) => Failure::bad_request(format!("{failed}: {error}")),
        ApiRefusal::Exists(_) | ApiRefusal::Graph(_) | ApiRefusal::Owned { .. } => {
            Failure::new(StatusCode::CONFLICT, format!("{failed}: {refusal}"))
        }
    }
}

/// How writes are made.
#[derive(Clone)]
pub enum Backend {
    /// Into the model, by this host.
    Sync(Writer),
    /// As Gizmo's requests on the bus, answered by a responder; the model is read for
    /// what a bulk's rollback restores.
    Async(Remote, Arc<Db>),
}

impl Backend {
    /// Makes `write` of a `subject` under the transaction id `transaction`; answers the
    /// entity as written (a deleted one as it was).
    pub async fn write(
        &self,
        subject: Subject,
        write: ApiWrite,
        transaction: &str,
    ) -> Result<Entity, Failure> {
        match self {
            Backend::Sync(writer) => {
                match writer.one(write.clone(), transaction.to_owned()).await? {
                    Ok(applied) => Ok(applied.entity),
                    Err(refusal) => Err(refused(subject, &write, &refusal)),
                }
            }
            Backend::Async(remote, _) => remote.write(subject, &write, None).await,
        }
    }

    /// Makes all of `writes` or none, their changes sharing the database transaction id
    /// `transaction`; answers each entity as written.
    pub async fn bulk(
        &self,
        writes: Vec<(Subject, ApiWrite)>,
        transaction: &str,
    ) -> Result<Vec<Entity>, Failure> {
        match self {
            Backend::Sync(writer) => {
                let plain = writes.iter().map(|(_, w)| w.clone()).collect();
                match writer.all(plain, transaction.to_owned()).await? {
                    Ok(applied) => Ok(applied.into_iter().map(|a| a.entity).collect()),
                    Err((index, refusal)) => {
                        let (subject, write) = &writes[index];
                        Err(refused(*subject, write, &refusal))
                    }
                }
            }
            Backend::Async(remote, db) => bulk_async(remote, db, writes, transaction).await,
        }
    }
}

/// Gizmo's async bulk: one request per write, in order, each awaited; the first failure
/// undoes the writes made before it, newest first (a create deleted, a replace or delete
/// restored as the model held it before), and is the answer. A vertex a create got its
/// key for from the responder is named by that key in the edges after it.
async fn bulk_async(
    remote: &Remote,
    db: &Db,
    writes: Vec<(Subject, ApiWrite)>,
    transaction: &str,
) -> Result<Vec<Entity>, Failure> {
    let mut done: Vec<(Subject, ApiWrite)> = Vec::new();
    let mut written = Vec::with_capacity(writes.len());
    let mut renamed: HashMap<Id, EntityRef> = HashMap::new();
    for (subject, write) in writes {
        let write = rename_ends(write, &renamed);
        let before = match &write {
            ApiWrite::Create(_) => None,
            other => db
                .api_get(other.id())
                .map_err(Failure::from)?
                .map(|(entity, _)| entity),
        };
        match remote.write(subject, &write, Some(transaction)).await {
            Ok(entity) => {
                let undo = match (&write, before) {
                    (ApiWrite::Create(asked), _) => {
                        if asked.key() != entity.key() {
                            let end = EntityRef {
                                kind: entity.kind().to_owned(),
                                key: entity.key().to_owned(),
                            };
                            renamed.insert(asked.id().clone(), end);
                        }
                        Some(ApiWrite::Delete(entity.id().clone()))
                    }
                    (ApiWrite::Delete(_), Some(before)) => Some(ApiWrite::Create(before)),
                    (_, Some(before)) => Some(ApiWrite::Replace(before)),
                    (_, None) => None,
                };
                done.extend(undo.map(|undo| (subject, undo)));
                written.push(entity);
            }
            Err(failure) => {
                let mut failure = failure;
                for (subject, undo) in done.iter().rev() {
                    if let Err(error) = remote.write(*subject, undo, Some(transaction)).await {
                        tracing::error!(
                            transaction,
                            "Gizmo bulk: could not roll back a write of {}: {}",
                            undo.id(),
                            error.message
                        );
                        failure.message.push_str(&format!(
                            " (and rolling back the write of {} failed: {})",
                            undo.id(),
                            error.message
                        ));
                    }
                }
                return Err(failure);
            }
        }
    }
    Ok(written)
}

/// `write` with the ends of an edge that name a renamed vertex renamed.
fn rename_ends(write: ApiWrite, renamed: &HashMap<Id, EntityRef>) -> ApiWrite {
    let rename = |entity: Entity| -> Entity {
        let Some(ends) = entity.edge() else {
            return entity;
        };
        let moved = |end: &EntityRef| renamed.get(&Id::new(&end.kind, &end.key)).cloned();
        let (source, target) = (moved(&ends.source), moved(&ends.target));
        if source.is_none() && target.is_none() {
            return entity;
        }
        let ends = EdgeEnds {
            source: source.unwrap_or_else(|| ends.source.clone()),
            target: target.unwrap_or_else(|| ends.target.clone()),
        };
        let (key, kind, properties, version, _) = entity.into_parts();
        Entity::new(key, kind, properties, version, Some(ends))
            .expect("renaming an end keeps an entity valid")
    };
    match write {
        ApiWrite::Create(entity) => ApiWrite::Create(rename(entity)),
        ApiWrite::Replace(entity) => ApiWrite::Replace(rename(entity)),
        other => other,
    }
}
