/*
 * An event step: each message on `servers` is a server (`{"id": ..., ...}`). It asks the
 * owner service over the bus who owns it (publish on `requests`, await the response with
 * the same transaction id on `responses`), stores the server as a `pserver` with its
 * `owner`, and announces the owner as an `owner` vertex (emit-change, not stored). A
 * server stored already with the same data and owner is left alone, so redelivery is
 * harmless. Twins: plugins/py-owner-lookup, plugins/js-owner-lookup (the same fixtures).
 */
#include "synchro_guest.h"

/* Who owns `server_id`, asked over the bus, into `*owner` (to `free`). */
static bool owner_of(const char *server_id, char **owner, synchro_error_t *err) {
  char *requests = NULL, *responses = NULL, *timeout = synchro_config_get("timeout-ms");
  cJSON *request = cJSON_CreateObject(), *answer = NULL;
  size_t size = strlen(server_id) + sizeof "owner-";
  char *transaction = malloc(size), *payload = NULL;
  if (transaction != NULL && request != NULL) {
    snprintf(transaction, size, "owner-%s", server_id);
    cJSON_AddStringToObject(request, "transaction-id", transaction);
    cJSON_AddStringToObject(request, "server", server_id);
    payload = cJSON_PrintUnformatted(request);
  }
  bool ok = payload != NULL || synchro_fail(err, SYNCHRO_FAILED, "out of memory");
  ok = ok && synchro_config_require("requests", &requests, err) &&
       synchro_config_require("responses", &responses, err) &&
       synchro_publish(requests, server_id, payload, err) &&
       synchro_await_json(responses, transaction, timeout != NULL ? (uint32_t)strtoul(timeout, NULL, 10) : 2000,
                          &answer, err);
  if (ok) {
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(answer, "result");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(answer, "owner");
    if (cJSON_IsString(result) && strcmp(result->valuestring, "SUCCESS") == 0 && cJSON_IsString(name)) {
      *owner = strdup(name->valuestring);
    } else {
      const cJSON *why = cJSON_GetObjectItemCaseSensitive(answer, "error-message");
      ok = synchro_fail(err, SYNCHRO_FAILED, "no owner for %s: %s", server_id,
                        cJSON_IsString(why) ? why->valuestring : "no error-message");
    }
  }
  free(requests);
  free(responses);
  free(timeout);
  free(transaction);
  cJSON_free(payload);
  cJSON_Delete(request);
  cJSON_Delete(answer);
  return ok;
}

/* Whether the stored `pserver` of `server` holds its data already (whatever its owner). */
static bool known(const cJSON *server, const char *id, bool *same, synchro_error_t *err) {
  cJSON *stored;
  if (!synchro_store_get("pserver", id, &stored, err)) {
    return false;
  }
  *same = false;
  if (stored != NULL) {
    cJSON_DeleteItemFromObjectCaseSensitive(stored, "owner");
    *same = cJSON_Compare(stored, server, true);
    cJSON_Delete(stored);
  }
  return true;
}

static bool process(const synchro_message_t *message, synchro_error_t *err) {
  cJSON *server = cJSON_ParseWithLength((const char *)message->payload.ptr, message->payload.len);
  if (server == NULL) {
    return synchro_fail(err, SYNCHRO_INVALID_INPUT, "%.*s: not JSON", SYNCHRO_TEXT(message->topic));
  }
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(server, "id");
  bool ok, same = false;
  char *owner = NULL;
  if (!cJSON_IsObject(server) || !cJSON_IsString(id)) {
    ok = synchro_fail(err, SYNCHRO_INVALID_INPUT, "%.*s: a server needs a string `id`", SYNCHRO_TEXT(message->topic));
  } else {
    ok = known(server, id->valuestring, &same, err) && (same || owner_of(id->valuestring, &owner, err));
  }
  if (ok && !same) {
    cJSON *properties = cJSON_Duplicate(server, true);
    cJSON_DeleteItemFromObjectCaseSensitive(properties, "owner");
    cJSON_AddStringToObject(properties, "owner", owner);
    synchro_entity_t pserver = synchro_vertex(id->valuestring, "pserver", properties);
    cJSON_Delete(properties);
    ok = synchro_store_save(&pserver, err);
    synchro_plugin_types_entity_free(&pserver);
    if (ok) {
      cJSON *named = cJSON_CreateObject();
      cJSON_AddStringToObject(named, "name", owner);
      synchro_entity_t vertex = synchro_vertex(owner, "owner", named);
      cJSON_Delete(named);
      ok = synchro_emit(SYNCHRO_PLUGIN_TYPES_OPERATION_CREATE, &vertex, err);
      synchro_plugin_types_entity_free(&vertex);
    }
    if (ok) {
      synchro_log(SYNCHRO_INFO, "%s is owned by %s", id->valuestring, owner);
    }
  }
  free(owner);
  cJSON_Delete(server);
  return ok;
}

bool exports_synchro_plugin_event_step_process_event(synchro_message_t *message, synchro_error_t *err) {
  bool ok = process(message, err);
  synchro_plugin_types_message_free(message);
  return ok;
}
