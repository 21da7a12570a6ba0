"""{name}: a sync step. The host calls it for each entity of the manifest's
`[sync] kinds` whose data is newer than what was last enacted; an error is retried
with backoff and shown on the entity. Raise `synchro.Unavailable` for "not now".

Push to your outside system with `synchro.http.send` once the manifest grants
`poll = { hosts = ["https://..."] }`.
"""

import synchro_guest as synchro


class SyncStep(synchro.SyncStep):
    def sync(self, entity):
        synchro.log.info(f"sync-record {entity.kind}/{entity.key}: {entity.properties}")

    def delete(self, entity):
        synchro.log.info(f"delete-record {entity.kind}/{entity.key}")
