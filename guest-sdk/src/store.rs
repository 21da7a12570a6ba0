//! The host's entity store. Entities are identified by kind and key; a plugin reads and
//! writes the kinds its grant names, and replaces or deletes only entities it wrote.

use crate::__bindings::synchro::plugin::store;
use crate::{Entity, Error};

pub use store::Filter;

/// The entity of `kind` under `key`, if there is one.
///
/// ```no_run
/// if let Some(server) = synchro_guest::store::get("pserver", "srv-1")? {
///     synchro_guest::log::info(&server.properties);
/// }
/// # Ok::<(), synchro_guest::Error>(())
/// ```
pub fn get(kind: &str, key: &str) -> Result<Option<Entity>, Error> {
    store::get(kind, key)
}

/// A page of entities, by kind, then key; pass the last one's kind and key as
/// `after` for the next page.
pub fn query(filter: &Filter) -> Result<Vec<Entity>, Error> {
    store::query(filter)
}

/// Creates or replaces the entity with the same kind and key.
///
/// ```no_run
/// use synchro_guest::{store, vertex};
/// store::save(&vertex("srv-1", "pserver", serde_json::json!({ "status": "active" })))?;
/// # Ok::<(), synchro_guest::Error>(())
/// ```
pub fn save(entity: &Entity) -> Result<(), Error> {
    store::save(entity)
}

/// Deletes the entity of `kind` under `key`; an absent one is not an error.
pub fn delete(kind: &str, key: &str) -> Result<(), Error> {
    store::delete(kind, key)
}
