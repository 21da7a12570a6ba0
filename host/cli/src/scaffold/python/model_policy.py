"""{name}: a model policy. The host calls it after each model write to an entity of the
manifest's `[policy] kinds`; an error is shown on the entity and retried after a
backoff, so calls must be idempotent.
"""

import synchro_guest as synchro


class ModelPolicy(synchro.ModelPolicy):
    def on_create(self, entity):
        synchro.log.info(f"handle-create {entity.kind}/{entity.key}")

    def on_update(self, entity, previous):
        synchro.log.info(f"handle-update {entity.kind}/{entity.key}: "
                         f"{previous.properties} -> {entity.properties}")

    def on_delete(self, entity):
        synchro.log.info(f"handle-delete {entity.kind}/{entity.key}")
