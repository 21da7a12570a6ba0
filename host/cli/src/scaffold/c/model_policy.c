/*
 * {name}: a model policy. The host calls it after each model write to an entity of the
 * manifest's `[policy] kinds`; an error is shown on the entity and retried after a
 * backoff, so calls must be idempotent. Each handler owns its entities and frees them.
 */
#include "synchro_guest.h"

bool exports_synchro_plugin_model_policy_handle_create(synchro_entity_t *entity, synchro_error_t *err) {
  (void)err;
  synchro_log(SYNCHRO_INFO, "handle-create %.*s/%.*s", SYNCHRO_TEXT(entity->kind), SYNCHRO_TEXT(entity->key));
  synchro_plugin_types_entity_free(entity);
  return true;
}

bool exports_synchro_plugin_model_policy_handle_update(synchro_entity_t *entity, synchro_entity_t *previous,
                                                       synchro_error_t *err) {
  (void)err;
  synchro_log(SYNCHRO_INFO, "handle-update %.*s/%.*s: %.*s -> %.*s", SYNCHRO_TEXT(entity->kind), SYNCHRO_TEXT(entity->key),
              SYNCHRO_TEXT(previous->properties), SYNCHRO_TEXT(entity->properties));
  synchro_plugin_types_entity_free(entity);
  synchro_plugin_types_entity_free(previous);
  return true;
}

bool exports_synchro_plugin_model_policy_handle_delete(synchro_entity_t *entity, synchro_error_t *err) {
  (void)err;
  synchro_log(SYNCHRO_INFO, "handle-delete %.*s/%.*s", SYNCHRO_TEXT(entity->kind), SYNCHRO_TEXT(entity->key));
  synchro_plugin_types_entity_free(entity);
  return true;
}
