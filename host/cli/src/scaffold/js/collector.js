// {name}: a collector. The host calls `collect` on the manifest's `[schedule]`, diffs the
// snapshot against the previous one and announces only what changed (CREATE, UPDATE,
// DELETE).
//
// Replace the generated items with what your outside system has: fetch it with
// `synchro.http.getJson(synchro.config.require('url'))` once the manifest grants
// `poll = { hosts = ["https://..."] }`.

import * as synchro from './synchro-guest.js';

export const collector = synchro.collector((snapshot) => {
  const setting = synchro.config.require('items');
  if (!/^[0-9]+$/.test(setting)) {
    throw new synchro.InvalidInput(`setting \`items\`: ${setting} is not a whole number`);
  }
  const items = Number(setting);
  for (let i = 1; i <= items; i++) {
    snapshot.add(synchro.vertex(`item-${i}`, 'example', { name: `item ${i}`, source: '{name}' }));
  }
  synchro.log.debug(`collected ${items} items`);
  // Complete: an item missing from the next snapshot is deleted. Say PARTIAL for a
  // sample that does not cover everything.
  return synchro.COMPLETE;
});
