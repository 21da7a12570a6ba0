//! The host's entity store.

use crate::__bindings::synchro::plugin::store;
use crate::{Entity, Error};

pub use store::Filter;

pub fn get(key: &str) -> Result<Option<Entity>, Error> {
    store::get(key)
}

pub fn query(filter: &Filter) -> Result<Vec<Entity>, Error> {
    store::query(filter)
}

pub fn save(entity: &Entity) -> Result<(), Error> {
    store::save(entity)
}

pub fn delete(key: &str) -> Result<(), Error> {
    store::delete(key)
}
