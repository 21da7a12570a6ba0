// {name}: an event step. The host hands it each message of the manifest's
// `[events] topics` (as generated, `changes`: every CREATE, UPDATE and DELETE the host
// announces, as a Gizmo-shaped JSON event); an error leaves the message to be retried
// (then dead-lettered), so handling must be idempotent.

import * as synchro from './synchro-guest.js';

export const eventStep = synchro.eventStep((message) => {
  // Not retried forever: after `[events] retries` it goes to the dead letters.
  const event = synchro.json(message.payload, `${message.topic}: the message`);
  // A change: {"operation": "CREATE", "vertex": {"key": ..., "type": ...}, ...}
  // (`edge` instead of `vertex` for an edge).
  const element = event.vertex ?? event.edge ?? {};
  synchro.log.info(`${message.topic}: ${event.operation ?? '?'} ${element.type ?? '?'}/${element.key ?? '?'}`);
});
