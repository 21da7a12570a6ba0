/*
 * {name}: a collector. The host calls `collect` on the manifest's `[schedule]`, diffs the
 * snapshot against the previous one and announces only what changed (CREATE, UPDATE,
 * DELETE).
 *
 * Replace the generated items with what your outside system has: fetch it with
 * `synchro_http_get_json(url, &json, err)` once the manifest grants
 * `poll = { hosts = ["https://..."] }`.
 */
#include "synchro_guest.h"

/* The setting `items`, a whole number. */
static bool items_setting(long *items, synchro_error_t *err) {
  char *setting;
  if (!synchro_config_require("items", &setting, err)) {
    return false;
  }
  char *end;
  *items = strtol(setting, &end, 10);
  bool number = *setting >= '0' && *setting <= '9' && *end == '\0';
  bool ok = number || synchro_fail(err, SYNCHRO_INVALID_INPUT, "setting `items`: %s is not a whole number", setting);
  free(setting);
  return ok;
}

bool exports_synchro_plugin_collector_collect(exports_synchro_plugin_collector_completeness_t *ret,
                                              synchro_error_t *err) {
  long items;
  if (!items_setting(&items, err)) {
    return false;
  }
  synchro_snapshot_t snapshot = {0};
  bool ok = true;
  for (long i = 1; ok && i <= items; i++) {
    char key[32], name[32];
    snprintf(key, sizeof key, "item-%ld", i);
    snprintf(name, sizeof name, "item %ld", i);
    cJSON *properties = cJSON_CreateObject();
    cJSON_AddStringToObject(properties, "name", name);
    cJSON_AddStringToObject(properties, "source", "{name}");
    ok = synchro_snapshot_add(&snapshot, synchro_vertex(key, "example", properties), err);
    cJSON_Delete(properties);
  }
  ok = ok && synchro_snapshot_flush(&snapshot, err);
  synchro_snapshot_free(&snapshot);
  if (ok) {
    synchro_log(SYNCHRO_DEBUG, "collected %ld items", items);
  }
  /* Complete: an item missing from the next snapshot is deleted. Say SYNCHRO_PARTIAL
   * for a sample that does not cover everything. */
  *ret = SYNCHRO_COMPLETE;
  return ok;
}
