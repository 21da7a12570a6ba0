//! A trivial sync step for benchmarks: it looks at each entity and accepts it.

use synchro_guest::{Entity, Error, ErrorCode, SyncStep, error};

struct Bench;

fn look(entity: &Entity) -> Result<(), Error> {
    if entity.key.is_empty() {
        return Err(error(ErrorCode::InvalidInput, "an entity without a key"));
    }
    Ok(())
}

impl SyncStep for Bench {
    fn sync_record(entity: Entity) -> Result<(), Error> {
        look(&entity)
    }

    fn delete_record(entity: Entity) -> Result<(), Error> {
        look(&entity)
    }
}

synchro_guest::export_sync_step!(Bench);
