/*
 * The C twin of plugins/http-inventory: polls a JSON inventory over HTTP and maps it to
 * `pserver` and `vserver` vertices and a `tosca.relationships.HostedOn` edge per VM,
 * every field of an item a property. tests/languages.rs checks that both announce the
 * same changes for the same inventory.
 */
#include "synchro_guest.h"

/* The array `inventory.field` into `*items` (NULL when absent). */
static bool items(const cJSON *inventory, const char *field, const cJSON **items, synchro_error_t *err) {
  *items = cJSON_GetObjectItemCaseSensitive(inventory, field);
  if (*items != NULL && !cJSON_IsArray(*items)) {
    return synchro_fail(err, SYNCHRO_INVALID_INPUT, "inventory field `%s` is not an array", field);
  }
  return true;
}

/* The string `id` of the `index`th item of `field`. */
static bool id_of(const cJSON *item, const char *field, int index, const char **id, synchro_error_t *err) {
  const cJSON *value = cJSON_GetObjectItemCaseSensitive(item, "id");
  if (!cJSON_IsObject(item) || !cJSON_IsString(value)) {
    return synchro_fail(err, SYNCHRO_INVALID_INPUT, "%s[%d] has no string `id`", field, index);
  }
  *id = value->valuestring;
  return true;
}

static bool collect_into(const cJSON *inventory, synchro_snapshot_t *snapshot, synchro_error_t *err) {
  const cJSON *servers, *vms, *item;
  if (!items(inventory, "servers", &servers, err) || !items(inventory, "vms", &vms, err)) {
    return false;
  }
  int index = 0;
  cJSON_ArrayForEach(item, servers) {
    const char *id;
    if (!id_of(item, "servers", index++, &id, err) ||
        !synchro_snapshot_add(snapshot, synchro_vertex(id, "pserver", item), err)) {
      return false;
    }
  }
  index = 0;
  cJSON_ArrayForEach(item, vms) {
    const char *id;
    if (!id_of(item, "vms", index++, &id, err) ||
        !synchro_snapshot_add(snapshot, synchro_vertex(id, "vserver", item), err)) {
      return false;
    }
    const cJSON *server = cJSON_GetObjectItemCaseSensitive(item, "server");
    if (cJSON_IsString(server)) {
      size_t size = strlen(id) + sizeof "/hosted-on";
      char *key = malloc(size);
      if (key == NULL) {
        return synchro_fail(err, SYNCHRO_FAILED, "out of memory");
      }
      snprintf(key, size, "%s/hosted-on", id);
      synchro_entity_t edge = synchro_edge(key, "tosca.relationships.HostedOn", id, "vserver",
                                           server->valuestring, "pserver", NULL);
      free(key);
      if (!synchro_snapshot_add(snapshot, edge, err)) {
        return false;
      }
    }
  }
  return synchro_snapshot_flush(snapshot, err);
}

bool exports_synchro_plugin_collector_collect(exports_synchro_plugin_collector_completeness_t *ret,
                                              synchro_error_t *err) {
  char *url;
  if (!synchro_config_require("url", &url, err)) {
    return false;
  }
  cJSON *inventory;
  bool ok = synchro_http_get_json(url, &inventory, err);
  free(url);
  if (!ok) {
    return false;
  }
  synchro_snapshot_t snapshot = {0};
  ok = collect_into(inventory, &snapshot, err);
  synchro_snapshot_free(&snapshot);
  cJSON_Delete(inventory);
  *ret = SYNCHRO_COMPLETE;
  return ok;
}
