/*
 * {name}: an event step. The host hands it each message of the manifest's
 * `[events] topics` (as generated, `changes`: every CREATE, UPDATE and DELETE the host
 * announces, as a Gizmo-shaped JSON event); an error leaves the message to be retried
 * (then dead-lettered), so handling must be idempotent.
 */
#include "synchro_guest.h"

/* The string `name` of `object`, or "?". */
static const char *text(const cJSON *object, const char *name) {
  const cJSON *value = cJSON_GetObjectItemCaseSensitive(object, name);
  return cJSON_IsString(value) ? value->valuestring : "?";
}

bool exports_synchro_plugin_event_step_process_event(synchro_message_t *message, synchro_error_t *err) {
  cJSON *event = cJSON_ParseWithLength((const char *)message->payload.ptr, message->payload.len);
  bool ok;
  if (event == NULL) {
    /* Not retried forever: after `[events] retries` it goes to the dead letters. */
    ok = synchro_fail(err, SYNCHRO_INVALID_INPUT, "%.*s: the message is not JSON",
                      SYNCHRO_TEXT(message->topic));
  } else {
    /* A change: {"operation": "CREATE", "vertex": {"key": ..., "type": ...}, ...}
     * (`edge` instead of `vertex` for an edge). */
    const cJSON *element = cJSON_GetObjectItemCaseSensitive(event, "vertex");
    if (element == NULL) {
      element = cJSON_GetObjectItemCaseSensitive(event, "edge");
    }
    synchro_log(SYNCHRO_INFO, "%.*s: %s %s/%s", SYNCHRO_TEXT(message->topic),
                text(event, "operation"), text(element, "type"), text(element, "key"));
    cJSON_Delete(event);
    ok = true;
  }
  /* The message is the plugin's: freed here. */
  synchro_plugin_types_message_free(message);
  return ok;
}
