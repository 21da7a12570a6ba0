/*
 * {name}: a sync step. The host calls it for each entity of the manifest's
 * `[sync] kinds` whose data is newer than what was last enacted; an error is retried
 * with backoff and shown on the entity. Fail with SYNCHRO_UNAVAILABLE for "not now".
 * Each call owns its entity and frees it.
 *
 * Push to your outside system with `synchro_plugin_poll_poll` once the manifest grants
 * `poll = { hosts = ["https://..."] }`.
 */
#include "synchro_guest.h"

bool exports_synchro_plugin_sync_step_sync_record(synchro_entity_t *entity, synchro_error_t *err) {
  (void)err;
  synchro_log(SYNCHRO_INFO, "sync-record %.*s/%.*s: %.*s", SYNCHRO_TEXT(entity->kind), SYNCHRO_TEXT(entity->key),
              SYNCHRO_TEXT(entity->properties));
  synchro_plugin_types_entity_free(entity);
  return true;
}

bool exports_synchro_plugin_sync_step_delete_record(synchro_entity_t *entity, synchro_error_t *err) {
  (void)err;
  synchro_log(SYNCHRO_INFO, "delete-record %.*s/%.*s", SYNCHRO_TEXT(entity->kind), SYNCHRO_TEXT(entity->key));
  synchro_plugin_types_entity_free(entity);
  return true;
}
