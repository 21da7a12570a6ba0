//! The model as the admin API shows it (`synchro model get` / `list`): read on a blocking
//! thread, so that a large page never holds up the host's loop.

use std::sync::Arc;

use synchro_admin::PageRequest;
use synchro_model::{EntityRef, Error, ErrorKind, Id};
use synchro_status::{ModelEdge, ModelEntity, ModelPage, ModelRef};
use synchro_store::{Db, DbError, Stored};
use tokio::sync::oneshot;

/// Answers `reply` with the entity `wanted`.
pub fn entity(db: &Arc<Db>, wanted: ModelRef, reply: oneshot::Sender<Result<ModelEntity, Error>>) {
    answer(db, reply, move |db| {
        let id = Id::new(&wanted.kind, &wanted.key);
        db.model_get(&id).map_err(failed).and_then(|stored| {
            stored
                .ok_or_else(|| {
                    Error::new(ErrorKind::NotFound, format!("the model has no entity {id}"))
                })
                .and_then(view)
        })
    });
}

/// Answers `reply` with the page `page` asks for.
pub fn entities(db: &Arc<Db>, page: PageRequest, reply: oneshot::Sender<Result<ModelPage, Error>>) {
    answer(db, reply, move |db| {
        let after = page.after.map(|r| Id::new(&r.kind, &r.key));
        let stored = db
            .model_query(page.kind.as_deref(), after.as_ref(), page.limit)
            .map_err(failed)?;
        let entities = stored
            .into_iter()
            .map(view)
            .collect::<Result<Vec<_>, _>>()?;
        let next = (entities.len() == page.limit)
            .then(|| entities.last())
            .flatten()
            .map(|last| ModelRef {
                kind: last.kind.clone(),
                key: last.key.clone(),
            });
        Ok(ModelPage { entities, next })
    });
}

/// Answers `reply` with what `read` finds in `db`, read on a blocking thread.
fn answer<T: Send + 'static>(
    db: &Arc<Db>,
    reply: oneshot::Sender<Result<T, Error>>,
    read: impl FnOnce(&Db) -> Result<T, Error> + Send + 'static,
) {
    let db = db.clone();
    tokio::task::spawn_blocking(move || drop(reply.send(read(&db))));
}

fn failed(error: DbError) -> Error {
    Error::new(error.kind(), error.to_string())
}

/// What the API shows of a stored entity; an error if its properties are not JSON (a
/// damaged database), which the answer names.
fn view(stored: Stored) -> Result<ModelEntity, Error> {
    let (key, kind, properties, schema_version, edge) = stored.entity.into_parts();
    let end = |r: EntityRef| ModelRef {
        kind: r.kind,
        key: r.key,
    };
    let properties = serde_json::value::RawValue::from_string(properties).map_err(|e| {
        Error::new(
            ErrorKind::Failed,
            format!(
                "the stored properties of {} are damaged: {e}",
                Id::new(&kind, &key)
            ),
        )
    })?;
    Ok(ModelEntity {
        kind,
        key,
        owner: stored.owner,
        properties,
        schema_version,
        edge: edge.map(|ends| ModelEdge {
            source: end(ends.source),
            target: end(ends.target),
        }),
    })
}
