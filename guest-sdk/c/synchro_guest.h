/*
 * synchro_guest.h: write synchro plugins in C.
 *
 * `synchro plugin build DIR` compiles the `.c` files of DIR with clang for wasm32-wasi against
 * bindings wit-bindgen generates from the host's WIT for the plugin's role (`synchro.h`,
 * every type and function of the contract: `synchro_plugin_poll_poll`, ...), with this
 * header and cJSON (https://github.com/DaveGamble/cJSON, vendored beside it) on the
 * include path. The role is the export `app.c` defines:
 *
 *     #include "synchro_guest.h"
 *
 *     bool exports_synchro_plugin_collector_collect(
 *         exports_synchro_plugin_collector_completeness_t *ret, synchro_error_t *err) {
 *       synchro_snapshot_t snapshot = {0};
 *       cJSON *properties = cJSON_CreateObject();
 *       cJSON_AddStringToObject(properties, "hostname", "alpha");
 *       bool ok = synchro_snapshot_add(&snapshot, synchro_vertex("srv-1", "pserver", properties), err)
 *              && synchro_snapshot_flush(&snapshot, err);
 *       synchro_snapshot_free(&snapshot);
 *       cJSON_Delete(properties);
 *       *ret = SYNCHRO_COMPLETE;
 *       return ok;
 *     }
 *
 * Ownership, as the canonical ABI has it: what a plugin passes to a host function stays
 * the plugin's; what a host function returns (a response, an error) becomes the
 * plugin's to free (`synchro_plugin_poll_response_free`, `synchro_error_free`); an
 * error an export returns is freed by the host's side after the call, so its message
 * must be allocated: `synchro_fail` does that.
 *
 * Every helper that can fail returns false and fills `err`, so an export can return
 * what its last step returned.
 */
#ifndef SYNCHRO_GUEST_H
#define SYNCHRO_GUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cJSON.h"
#include "synchro.h"

typedef synchro_plugin_types_entity_t synchro_entity_t;
typedef synchro_plugin_types_message_t synchro_message_t;
typedef synchro_plugin_types_error_t synchro_error_t;
typedef synchro_plugin_types_error_code_t synchro_error_code_t;

#define SYNCHRO_DENIED SYNCHRO_PLUGIN_TYPES_ERROR_CODE_DENIED
#define SYNCHRO_TIMED_OUT SYNCHRO_PLUGIN_TYPES_ERROR_CODE_TIMED_OUT
/* The input is wrong: trying again with it fails again (an event goes to the dead letters). */
#define SYNCHRO_INVALID_INPUT SYNCHRO_PLUGIN_TYPES_ERROR_CODE_INVALID_INPUT
#define SYNCHRO_NOT_FOUND SYNCHRO_PLUGIN_TYPES_ERROR_CODE_NOT_FOUND
/* Not now: an outside system cannot be reached; the host tries again later. */
#define SYNCHRO_UNAVAILABLE SYNCHRO_PLUGIN_TYPES_ERROR_CODE_UNAVAILABLE
#define SYNCHRO_FAILED SYNCHRO_PLUGIN_TYPES_ERROR_CODE_FAILED

#define SYNCHRO_TRACE SYNCHRO_PLUGIN_LOG_LEVEL_TRACE
#define SYNCHRO_DEBUG SYNCHRO_PLUGIN_LOG_LEVEL_DEBUG
#define SYNCHRO_INFO SYNCHRO_PLUGIN_LOG_LEVEL_INFO
#define SYNCHRO_WARN SYNCHRO_PLUGIN_LOG_LEVEL_WARN
#define SYNCHRO_ERROR SYNCHRO_PLUGIN_LOG_LEVEL_ERROR

#ifdef SYNCHRO_ROLE_COLLECTOR
/* A snapshot that covers the whole outside system: absent entities are deleted. */
#define SYNCHRO_COMPLETE EXPORTS_SYNCHRO_PLUGIN_COLLECTOR_COMPLETENESS_COMPLETE
/* A snapshot of only part of the outside system: nothing is deleted. */
#define SYNCHRO_PARTIAL EXPORTS_SYNCHRO_PLUGIN_COLLECTOR_COMPLETENESS_PARTIAL
#endif

/* Text ----------------------------------------------------------------------------- */

/* A WIT string borrowing `s` (for arguments: the host copies what it keeps). */
static inline synchro_string_t synchro_str(const char *s) {
  synchro_string_t string;
  synchro_string_set(&string, s);
  return string;
}

/* The printf arguments of a WIT string for `%.*s`: printf("%.*s", SYNCHRO_TEXT(s)). */
#define SYNCHRO_TEXT(s) (int)(s).len, (const char *)(s).ptr

/* A NUL-terminated copy of `s` (for results), to `free`. */
static inline char *synchro_cstr(const synchro_string_t *s) {
  char *copy = malloc(s->len + 1);
  if (copy != NULL) {
    memcpy(copy, s->ptr, s->len);
    copy[s->len] = '\0';
  }
  return copy;
}

/* A NUL-terminated copy of the bytes `bytes` (a body, a payload), to `free`. */
static inline char *synchro_bytes_cstr(const synchro_list_u8_t *bytes) {
  synchro_string_t view = {bytes->ptr, bytes->len};
  return synchro_cstr(&view);
}

/* Errors --------------------------------------------------------------------------- */

/* Fills `err` with `code` and a printf-style message (allocated: the host side frees
 * it); returns false, so that an export can `return synchro_fail(err, ...)`. */
static inline bool synchro_fail(synchro_error_t *err, synchro_error_code_t code,
                                const char *format, ...) {
  va_list args;
  va_start(args, format);
  int len = vsnprintf(NULL, 0, format, args);
  va_end(args);
  /* The host's side frees a message only when it is not empty: an empty one is none. */
  char *message = len > 0 ? malloc((size_t)len + 1) : NULL;
  if (message != NULL) {
    va_start(args, format);
    vsnprintf(message, (size_t)len + 1, format, args);
    va_end(args);
  }
  err->code = code;
  err->message.ptr = (uint8_t *)message;
  err->message.len = message != NULL ? (size_t)len : 0;
  return false;
}

/* Frees an error a host function returned, when the plugin handles it itself. */
static inline void synchro_error_free(synchro_error_t *err) {
  synchro_plugin_types_error_free(err);
}

/* Logging -------------------------------------------------------------------------- */

/* A printf-style line in the host's log at `level` (SYNCHRO_INFO, ...), attributed to
 * the plugin. stdout and stderr go to the log too. */
static inline void synchro_log(synchro_plugin_log_level_t level, const char *format, ...) {
  va_list args;
  va_start(args, format);
  int len = vsnprintf(NULL, 0, format, args);
  va_end(args);
  char *line = malloc(len > 0 ? (size_t)len + 1 : 1);
  if (line == NULL) {
    return;
  }
  va_start(args, format);
  vsnprintf(line, (size_t)len + 1, format, args);
  va_end(args);
  synchro_string_t message = {(uint8_t *)line, len > 0 ? (size_t)len : 0};
  synchro_list_tuple2_string_string_t fields = {NULL, 0};
  synchro_plugin_log_log(level, &message, &fields);
  free(line);
}

/* Settings ------------------------------------------------------------------------- */

/* The setting `name` of the manifest's `[settings]` (strings as they are, other values
 * as JSON text), to `free`; NULL when it is not set. */
static inline char *synchro_config_get(const char *name) {
  synchro_string_t key = synchro_str(name);
  synchro_string_t value;
  if (!synchro_plugin_config_get(&key, &value)) {
    return NULL;
  }
  char *copy = synchro_cstr(&value);
  synchro_string_free(&value);
  return copy;
}

/* The setting `name` into `*value` (to `free`); a missing one is an `invalid-input` error. */
static inline bool synchro_config_require(const char *name, char **value, synchro_error_t *err) {
  *value = synchro_config_get(name);
  if (*value == NULL) {
    return synchro_fail(err, SYNCHRO_INVALID_INPUT, "setting `%s` is missing from the manifest", name);
  }
  return true;
}

/* HTTP through the host ------------------------------------------------------------ */

/* GET `url` through the host (only to the hosts the manifest allows): its body as JSON
 * into `*json` (to `cJSON_Delete`; NULL after an error). A non-2xx status is `failed`, a body that is not
 * JSON `invalid-input`. */
static inline bool synchro_http_get_json(const char *url, cJSON **json, synchro_error_t *err) {
  *json = NULL;
  synchro_plugin_poll_request_t request = {0};
  request.method = synchro_str("GET");
  request.url = synchro_str(url);
  synchro_plugin_poll_response_t response;
  if (!synchro_plugin_poll_poll(&request, &response, err)) {
    return false;
  }
  bool ok;
  if (response.status < 200 || response.status >= 300) {
    ok = synchro_fail(err, SYNCHRO_FAILED, "GET %s: HTTP status %u", url, (unsigned)response.status);
  } else {
    *json = cJSON_ParseWithLength((const char *)response.body.ptr, response.body.len);
    ok = *json != NULL || synchro_fail(err, SYNCHRO_INVALID_INPUT, "GET %s: the body is not JSON", url);
  }
  synchro_plugin_poll_response_free(&response);
  return ok;
}

/* Entities ------------------------------------------------------------------------- */

static inline synchro_string_t synchro_owned_str(const char *s) {
  synchro_string_t string;
  synchro_string_dup(&string, s);
  return string;
}

static inline synchro_string_t synchro_owned_json(const cJSON *properties) {
  char *text = properties != NULL ? cJSON_PrintUnformatted(properties) : NULL;
  synchro_string_t string = synchro_owned_str(text != NULL ? text : "{}");
  cJSON_free(text);
  return string;
}

/* A vertex of `kind` identified by `key`, `properties` a JSON object (NULL: none); it
 * owns copies of all three (`synchro_plugin_types_entity_free`, or give it to a snapshot). */
static inline synchro_entity_t synchro_vertex(const char *key, const char *kind, const cJSON *properties) {
  synchro_entity_t entity = {0};
  entity.key = synchro_owned_str(key);
  entity.kind = synchro_owned_str(kind);
  entity.properties = synchro_owned_json(properties);
  return entity;
}

/* An edge of `kind` from the vertex (`source_key`, `source_kind`) to (`target_key`,
 * `target_kind`); owned as a vertex is. */
static inline synchro_entity_t synchro_edge(const char *key, const char *kind,
                                            const char *source_key, const char *source_kind,
                                            const char *target_key, const char *target_kind,
                                            const cJSON *properties) {
  synchro_entity_t entity = synchro_vertex(key, kind, properties);
  entity.edge.is_some = true;
  entity.edge.val.source.key = synchro_owned_str(source_key);
  entity.edge.val.source.kind = synchro_owned_str(source_kind);
  entity.edge.val.target.key = synchro_owned_str(target_key);
  entity.edge.val.target.kind = synchro_owned_str(target_kind);
  return entity;
}

#ifdef SYNCHRO_ROLE_COLLECTOR
/* The snapshot being collected: entities go to the host in batches as they are added.
 * Start it as `synchro_snapshot_t snapshot = {0};`, send the last batch with
 * `synchro_snapshot_flush`, and always end it with `synchro_snapshot_free` (after an
 * error too): it frees what was not sent and the batch's buffer. */
typedef struct synchro_snapshot_t {
  synchro_entity_t *entities;
  size_t len;
  size_t capacity;
} synchro_snapshot_t;

#define SYNCHRO_SNAPSHOT_BATCH 1024

/* Frees the entities not sent yet. */
static inline void synchro_snapshot_free(synchro_snapshot_t *snapshot) {
  for (size_t i = 0; i < snapshot->len; i++) {
    synchro_plugin_types_entity_free(&snapshot->entities[i]);
  }
  free(snapshot->entities);
  *snapshot = (synchro_snapshot_t){0};
}

/* Sends the entities added since the last batch to the host. */
static inline bool synchro_snapshot_flush(synchro_snapshot_t *snapshot, synchro_error_t *err) {
  if (snapshot->len == 0) {
    return true;
  }
  synchro_plugin_snapshot_list_entity_t batch = {snapshot->entities, snapshot->len};
  bool ok = synchro_plugin_snapshot_add(&batch, err);
  for (size_t i = 0; i < snapshot->len; i++) {
    synchro_plugin_types_entity_free(&snapshot->entities[i]);
  }
  snapshot->len = 0;
  return ok;
}

/* Adds `entity` (taking it over) to the snapshot; every SYNCHRO_SNAPSHOT_BATCH entities,
 * sends a batch. */
static inline bool synchro_snapshot_add(synchro_snapshot_t *snapshot, synchro_entity_t entity,
                                        synchro_error_t *err) {
  if (snapshot->len == snapshot->capacity) {
    size_t capacity = snapshot->capacity == 0 ? 64 : snapshot->capacity * 2;
    synchro_entity_t *grown = realloc(snapshot->entities, capacity * sizeof *grown);
    if (grown == NULL) {
      synchro_plugin_types_entity_free(&entity);
      return synchro_fail(err, SYNCHRO_FAILED, "out of memory for the snapshot");
    }
    snapshot->entities = grown;
    snapshot->capacity = capacity;
  }
  snapshot->entities[snapshot->len++] = entity;
  return snapshot->len < SYNCHRO_SNAPSHOT_BATCH || synchro_snapshot_flush(snapshot, err);
}
#endif /* SYNCHRO_ROLE_COLLECTOR */

/* The bus, the store and changes ----------------------------------------------------- */

/* Puts the text `payload` on `topic` (granted by the manifest's `publish`), with the
 * partitioning key `key` (NULL: none). */
static inline bool synchro_publish(const char *topic, const char *key, const char *payload, synchro_error_t *err) {
  synchro_string_t name = synchro_str(topic);
  synchro_list_u8_t key_bytes = {(uint8_t *)key, key != NULL ? strlen(key) : 0};
  synchro_list_u8_t bytes = {(uint8_t *)payload, strlen(payload)};
  synchro_plugin_bus_message_headers_t headers = {NULL, 0};
  return synchro_plugin_bus_publish(&name, key != NULL ? &key_bytes : NULL, &bytes, &headers, err);
}

/* The response on `topic` whose correlation id is `correlation_id` (granted by the
 * manifest's `await`), its payload as JSON into `*json` (to `cJSON_Delete`; NULL after
 * an error); not JSON is `invalid-input`. */
static inline bool synchro_await_json(const char *topic, const char *correlation_id, uint32_t timeout_ms,
                                      cJSON **json, synchro_error_t *err) {
  synchro_string_t name = synchro_str(topic);
  synchro_string_t id = synchro_str(correlation_id);
  synchro_message_t response;
  *json = NULL;
  if (!synchro_plugin_bus_await_response(&name, &id, timeout_ms, &response, err)) {
    return false;
  }
  *json = cJSON_ParseWithLength((const char *)response.payload.ptr, response.payload.len);
  synchro_plugin_types_message_free(&response);
  return *json != NULL || synchro_fail(err, SYNCHRO_INVALID_INPUT, "the response on %s is not JSON", topic);
}

/* The properties of the stored entity of `kind` under `key` into `*properties` (to
 * `cJSON_Delete`), NULL when there is none (granted by the manifest's `store.read`). */
static inline bool synchro_store_get(const char *kind, const char *key, cJSON **properties, synchro_error_t *err) {
  synchro_string_t kind_string = synchro_str(kind);
  synchro_string_t key_string = synchro_str(key);
  synchro_plugin_store_option_entity_t found;
  *properties = NULL;
  if (!synchro_plugin_store_get(&kind_string, &key_string, &found, err)) {
    return false;
  }
  if (!found.is_some) {
    return true;
  }
  *properties = cJSON_ParseWithLength((const char *)found.val.properties.ptr, found.val.properties.len);
  synchro_plugin_types_entity_free(&found.val);
  /* The host stores JSON objects only: what cJSON cannot read (too deep, out of memory) is
   * no absent entity. */
  return *properties != NULL ||
         synchro_fail(err, SYNCHRO_FAILED, "%s/%s: its properties could not be read", kind, key);
}

/* Saves `entity` in the model (granted by the manifest's `store = { write = [...] }`). */
static inline bool synchro_store_save(synchro_entity_t *entity, synchro_error_t *err) {
  return synchro_plugin_store_save(entity, err);
}

/* Announces a change (SYNCHRO_PLUGIN_TYPES_OPERATION_CREATE, ...) to `entity` that the
 * plugin learned of itself; the host stamps its time and transaction id. */
static inline bool synchro_emit(synchro_plugin_types_operation_t operation, const synchro_entity_t *entity,
                                synchro_error_t *err) {
  synchro_plugin_types_change_t change = {0};
  change.operation = operation;
  change.entity = *entity;
  return synchro_plugin_emit_emit_change(&change, err);
}

#endif /* SYNCHRO_GUEST_H */
