//! {name}: a sync step. The host calls it for each entity of the manifest's
//! `[sync] kinds` whose data is newer than what was last enacted; an error is retried
//! with backoff and shown on the entity. Return `ErrorCode::Unavailable` for "not now".
//!
//! Push to your outside system with `synchro_guest::http::send` once the manifest grants
//! `poll = { hosts = ["https://..."] }`.

use synchro_guest::{Entity, Error, SyncStep, log};

struct Plugin;

impl SyncStep for Plugin {
    fn sync_record(entity: Entity) -> Result<(), Error> {
        log::info(&format!(
            "sync-record {}/{}: {}",
            entity.kind, entity.key, entity.properties
        ));
        Ok(())
    }

    fn delete_record(entity: Entity) -> Result<(), Error> {
        log::info(&format!("delete-record {}/{}", entity.kind, entity.key));
        Ok(())
    }
}

synchro_guest::export_sync_step!(Plugin);
