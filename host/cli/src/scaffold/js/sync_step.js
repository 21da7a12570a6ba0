// {name}: a sync step. The host calls it for each entity of the manifest's
// `[sync] kinds` whose data is newer than what was last enacted; an error is retried
// with backoff and shown on the entity. Throw `synchro.Unavailable` for "not now".
//
// Push to your outside system with `synchro.http.send` once the manifest grants
// `poll = { hosts = ["https://..."] }`.

import * as synchro from './synchro-guest.js';

export const syncStep = synchro.syncStep({
  sync(entity) {
    synchro.log.info(`sync-record ${entity.kind}/${entity.key}: ${entity.properties}`);
  },
  delete(entity) {
    synchro.log.info(`delete-record ${entity.kind}/${entity.key}`);
  },
});
