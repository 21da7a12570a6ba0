//! {name}: a model policy. The host calls it after each model write to an entity of the
//! manifest's `[policy] kinds`; an error is shown on the entity and retried after a
//! backoff, so calls must be idempotent.

use synchro_guest::{Entity, Error, ModelPolicy, log};

struct Plugin;

impl ModelPolicy for Plugin {
    fn handle_create(entity: Entity) -> Result<(), Error> {
        log::info(&format!("handle-create {}/{}", entity.kind, entity.key));
        Ok(())
    }

    fn handle_update(entity: Entity, previous: Entity) -> Result<(), Error> {
        log::info(&format!(
            "handle-update {}/{}: {} -> {}",
            entity.kind, entity.key, previous.properties, entity.properties
        ));
        Ok(())
    }

    fn handle_delete(entity: Entity) -> Result<(), Error> {
        log::info(&format!("handle-delete {}/{}", entity.kind, entity.key));
        Ok(())
    }
}

synchro_guest::export_model_policy!(Plugin);
