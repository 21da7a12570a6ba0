// {name}: a model policy. The host calls it after each model write to an entity of the
// manifest's `[policy] kinds`; an error is shown on the entity and retried after a
// backoff, so calls must be idempotent.

import * as synchro from './synchro-guest.js';

export const modelPolicy = synchro.modelPolicy({
  onCreate(entity) {
    synchro.log.info(`handle-create ${entity.kind}/${entity.key}`);
  },
  onUpdate(entity, previous) {
    synchro.log.info(`handle-update ${entity.kind}/${entity.key}: ${previous.properties} -> ${entity.properties}`);
  },
  onDelete(entity) {
    synchro.log.info(`handle-delete ${entity.kind}/${entity.key}`);
  },
});
