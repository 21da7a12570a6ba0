//! The operator's writes of the model (`synchro model put | delete`, `PUT` and `DELETE
//! /v1/model/KIND/KEY`), made as the source [`API_WRITER`]: owned by the API, announced
//! on the change stream, policed and synced like any source's, and checked against the
//! graph (an edge needs its ends; a vertex with edges goes only with a cascade).

use std::sync::Arc;

use synchro_manifest::API_WRITER;
use synchro_model::{Change, Entity, EntityRef, Error, ErrorKind, Id, Operation};
use synchro_status::{ModelDeleted, ModelEntity, ModelRef, ModelWrite};
use synchro_store::{Cascaded, Db, GraphRefusal, Write};
use tokio::sync::oneshot;

use crate::model_view::{Work, answer, failed, not_found, view};

/// Writes `write` as the entity `wanted`, and answers `reply` with it as it is then.
pub fn put(
    db: &Arc<Db>,
    work: Work,
    wanted: ModelRef,
    write: ModelWrite,
    reply: oneshot::Sender<Result<ModelEntity, Error>>,
) {
    answer(db, reply, move |db| {
        let ModelRef { kind, key } = wanted;
        let end = |r: ModelRef| EntityRef {
            kind: r.kind,
            key: r.key,
        };
        let edge = write.edge.map(|ends| synchro_model::EdgeEnds {
            source: end(ends.source),
            target: end(ends.target),
        });
        let entity = Entity::new(
            key,
            kind,
            write.properties.get().to_owned(),
            write.schema_version,
            edge,
        )
        .map_err(|e| Error::new(ErrorKind::InvalidInput, e.to_string()))?;
        let transaction = synchro_model::new_transaction_id();
        let written = db
            .model_put_linked(API_WRITER, &entity, |operation, entity| {
                record(operation, entity, &transaction)
            })
            .map_err(failed)?
            .map_err(refused)?;
        let id = entity.id();
        if written == Write::Refused {
            return Err(owned_by_another(db, id, "replace"));
        }
        let stored = db.model_get(id).map_err(failed)?;
        view(db, stored.ok_or_else(|| not_found(id))?, &work)
    });
}

/// Deletes the entity `wanted` (with its edges if `cascade`), and answers `reply` with
/// what went.
pub fn delete(
    db: &Arc<Db>,
    wanted: ModelRef,
    cascade: bool,
    reply: oneshot::Sender<Result<ModelDeleted, Error>>,
) {
    answer(db, reply, move |db| {
        let id = Id::new(&wanted.kind, &wanted.key);
        let there = db.model_get(&id).map_err(failed)?;
        if there.is_none_or(|stored| stored.bookkeeping.deleted) {
            return Err(not_found(&id));
        }
        let transaction = synchro_model::new_transaction_id();
        let Cascaded {
            write,
            deleted: vertex_deleted,
            edges,
        } = db
            .model_delete_cascading(API_WRITER, &id, cascade, |operation, entity| {
                record(operation, entity, &transaction)
            })
            .map_err(failed)?
            .map_err(refused)?;
        if write == Write::Refused {
            return Err(owned_by_another(db, &id, "delete"));
        }
        let as_ref = |id: &Id| ModelRef {
            kind: id.kind().to_owned(),
            key: id.key().to_owned(),
        };
        let mut deleted: Vec<ModelRef> = edges.iter().map(as_ref).collect();
        // Not when the API is a ranked source of the kind and another still describes it:
        // its part is withdrawn, the entity stays.
        if vertex_deleted {
            deleted.push(as_ref(&id));
        }
        Ok(ModelDeleted { deleted })
    });
}

/// The change record of the API's write: one database transaction id for all the changes
/// of one request (a cascade's edges and their vertex), as Gizmo's bulk shares one.
fn record(operation: Operation, entity: &Entity, transaction: &str) -> Vec<u8> {
    synchro_bus::change_record(&Change {
        operation,
        entity: entity.clone(),
        timestamp: synchro_model::now_millis(),
        transaction_id: synchro_model::new_transaction_id(),
        database_transaction_id: Some(transaction.to_owned()),
        source: API_WRITER.to_owned(),
    })
}

fn refused(refusal: GraphRefusal) -> Error {
    let kind = match refusal {
        GraphRefusal::MissingEnd { .. } => ErrorKind::InvalidInput,
        GraphRefusal::HasEdges(_)
        | GraphRefusal::EdgeOwned { .. }
        | GraphRefusal::Described { .. } => ErrorKind::Conflict,
    };
    Error::new(kind, refusal.to_string())
}

/// The refusal of the API's write over an entity a plugin wrote: a plugin's data is
/// changed at its source, or by ranking the API above it for the kind (`[sources]`).
fn owned_by_another(db: &Db, id: &Id, doing: &str) -> Error {
    let owner = db
        .model_get(id)
        .ok()
        .flatten()
        .and_then(|stored| stored.owner)
        .unwrap_or_else(|| "another plugin".to_owned());
    Error::new(
        ErrorKind::Conflict,
        format!(
            "cannot {doing} {id}: {owner} wrote it, and only its writer may; change it at its \
             source, or rank `{API_WRITER}` for the kind in the host config's [sources]"
        ),
    )
}
