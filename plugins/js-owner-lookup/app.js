// An event step: each message on `servers` is a server (`{"id": ..., ...}`). It asks the
// owner service over the bus who owns it (publish on `requests`, await the response with
// the same transaction id on `responses`), stores the server as a `pserver` with its
// `owner`, and announces the owner as an `owner` vertex (emit-change, not stored). A
// server stored already with the same data and owner is left alone, so redelivery is
// harmless. Twins: plugins/py-owner-lookup, plugins/c-owner-lookup (the same fixtures).

import * as synchro from './synchro-guest.js';

function ownerOf(serverId) {
  const transaction = `owner-${serverId}`;
  const request = JSON.stringify({ 'transaction-id': transaction, server: serverId });
  synchro.bus.publish(synchro.config.require('requests'), request, { key: serverId });
  const timeout = Number(synchro.config.get('timeout-ms') ?? '2000');
  const response = synchro.bus.awaitResponse(synchro.config.require('responses'), transaction, timeout);
  const answer = synchro.json(response.payload, 'the owner service\'s answer');
  if (answer.result !== 'SUCCESS' || typeof answer.owner !== 'string') {
    throw new synchro.Failed(`no owner for ${serverId}: ${answer['error-message'] ?? 'no error-message'}`);
  }
  return answer.owner;
}

// Whether two JSON values are equal, whatever the order of their objects' keys.
function same(a, b) {
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) {
    return a === b;
  }
  const keys = Object.keys(a);
  return Array.isArray(a) === Array.isArray(b)
    && keys.length === Object.keys(b).length
    && keys.every((key) => Object.hasOwn(b, key) && same(a[key], b[key]));
}

export const eventStep = synchro.eventStep((message) => {
  const server = synchro.json(message.payload, `${message.topic}: the message`);
  if (server === null || typeof server !== 'object' || typeof server.id !== 'string') {
    throw new synchro.InvalidInput(`${message.topic}: a server needs a string \`id\``);
  }
  const stored = synchro.store.get('pserver', server.id);
  if (stored !== undefined) {
    const { owner, ...known } = synchro.properties(stored);
    if (same(known, server)) {
      return;
    }
  }
  const owner = ownerOf(server.id);
  synchro.store.save(synchro.vertex(server.id, 'pserver', { ...server, owner }));
  synchro.emit.change('create', synchro.vertex(owner, 'owner', { name: owner }));
  synchro.log.info(`${server.id} is owned by ${owner}`);
});
