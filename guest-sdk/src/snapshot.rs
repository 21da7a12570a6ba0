//! The batching buffer between a collector and the host's `snapshot.add`.

use crate::__bindings::collector::synchro::plugin::snapshot;
use crate::{Entity, Error};

/// Entities per batch. Large enough that the per-call cost of crossing into the host
/// vanishes, small enough that a batch stays a few hundred kilobytes.
const BATCH_ENTITIES: usize = 1024;
/// Property bytes per batch, so a few huge entities are not held a thousand at a time.
const BATCH_BYTES: usize = 1 << 20;

/// The snapshot being collected. Entities are handed to the host in batches as they are
/// added, so the plugin never holds the whole snapshot.
pub struct Snapshot {
    batch: Vec<Entity>,
    bytes: usize,
}

impl Snapshot {
    pub(crate) fn new() -> Self {
        Snapshot {
            batch: Vec::with_capacity(BATCH_ENTITIES),
            bytes: 0,
        }
    }

    /// Adds an entity. The host validates it when its batch is delivered: an error here
    /// (invalid JSON, a duplicate key) means the collect has failed; return it.
    pub fn add(&mut self, entity: Entity) -> Result<(), Error> {
        self.bytes += entity.properties.len();
        self.batch.push(entity);
        if self.batch.len() >= BATCH_ENTITIES || self.bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Adds every entity of `entities`.
    pub fn extend(&mut self, entities: impl IntoIterator<Item = Entity>) -> Result<(), Error> {
        entities.into_iter().try_for_each(|e| self.add(e))
    }

    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        let result = snapshot::add(&self.batch);
        self.batch.clear();
        result
    }
}
