//! Where the API's writes go: into the model (sync mode), or onto the bus as Gizmo's
//! requests, answered by whoever applies them (async mode).

use axum::http::StatusCode;
use synchro_model::Entity;
use synchro_store::{ApiRefusal, ApiWrite, GraphRefusal};

use crate::answer::Failure;
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
        }
    }
}
