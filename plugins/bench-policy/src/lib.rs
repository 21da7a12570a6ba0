//! A trivial model policy for benchmarks: it looks at each entity and accepts it.

use synchro_guest::{Entity, Error, ErrorCode, ModelPolicy, error};

struct Bench;

fn look(entity: &Entity) -> Result<(), Error> {
    if entity.key.is_empty() {
        return Err(error(ErrorCode::InvalidInput, "an entity without a key"));
    }
    Ok(())
}

impl ModelPolicy for Bench {
    fn handle_create(entity: Entity) -> Result<(), Error> {
        look(&entity)
    }

    fn handle_update(entity: Entity, _previous: Entity) -> Result<(), Error> {
        look(&entity)
    }

    fn handle_delete(entity: Entity) -> Result<(), Error> {
        look(&entity)
    }
}

synchro_guest::export_model_policy!(Bench);
