// Write synchro plugins in JavaScript, built with componentize-js (StarlingMonkey).
//
// The same shape as the Rust and Python SDKs: a wrapper per role, entity helpers, typed
// errors, and one object per host function (`config`, `http`, `bus`, `emit`, `store`,
// `log`), each denied unless the plugin's manifest grants it.
//
//     import * as synchro from './synchro-guest.js';
//
//     export const collector = synchro.collector((snapshot) => {
//       for (const server of synchro.http.getJson(synchro.config.require('url')).servers) {
//         snapshot.add(synchro.vertex(server.id, 'pserver', server));
//       }
//       return synchro.COMPLETE;
//     });
//
// `synchro plugin build DIR` builds `DIR/app.js` against the host's WIT with this module
// (and `synchro-world.js`, which holds what only the role's world imports) beside it.
// Types: `synchro-guest.d.ts`, and `types/` generated from the WIT.

import * as hostBus from 'synchro:plugin/bus@0.2.0';
import * as hostConfig from 'synchro:plugin/config@0.2.0';
import * as hostEmit from 'synchro:plugin/emit@0.2.0';
import * as hostLog from 'synchro:plugin/log@0.2.0';
import * as hostPoll from 'synchro:plugin/poll@0.2.0';
import * as hostStore from 'synchro:plugin/store@0.2.0';
import { addToSnapshot } from './synchro-world.js';

/** A snapshot that covers the whole outside system: absent entities are deleted. */
export const COMPLETE = 'complete';
/** A snapshot of only part of the outside system: nothing is deleted. */
export const PARTIAL = 'partial';

// Errors ---------------------------------------------------------------------------

/** An error a plugin returns to the host (and a host function's error): a code and a message. */
export class SynchroError extends Error {
  constructor(message, code = 'failed') {
    super(String(message));
    this.name = new.target.name;
    this.code = code;
  }
}

/** The input is wrong: trying again with it fails again (an event goes to the dead letters). */
export class InvalidInput extends SynchroError {
  constructor(message) { super(message, 'invalid-input'); }
}
export class NotFound extends SynchroError {
  constructor(message) { super(message, 'not-found'); }
}
/** Not now: an outside system cannot be reached; the host tries again later. */
export class Unavailable extends SynchroError {
  constructor(message) { super(message, 'unavailable'); }
}
export class Failed extends SynchroError {
  constructor(message) { super(message, 'failed'); }
}
export class Denied extends SynchroError {
  constructor(message) { super(message, 'denied'); }
}
export class TimedOut extends SynchroError {
  constructor(message) { super(message, 'timed-out'); }
}

const ERRORS = {
  'invalid-input': InvalidInput,
  'not-found': NotFound,
  unavailable: Unavailable,
  failed: Failed,
  denied: Denied,
  'timed-out': TimedOut,
};

// A host function's error arrives as the bindings' `ComponentError` whose `payload` is
// the WIT `error`: thrown again as the `SynchroError` of its code, so that a plugin can
// `catch (e) { if (e instanceof synchro.NotFound) ... }`.
function host(call) {
  try {
    return call();
  } catch (error) {
    const payload = error && error.payload;
    if (payload && typeof payload.code === 'string') {
      throw new (ERRORS[payload.code] || Failed)(payload.message);
    }
    throw error;
  }
}

// Runs an export's body, turning what it throws into the error the host expects: a
// `SynchroError` as its code, anything else (a bug) as `failed` naming the exception,
// its stack on stderr, which the host logs. Only a plain object reaches the bindings:
// they rethrow an `Error` as a trap.
function returningErrors(call) {
  try {
    const result = call();
    if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
      // The host waits for no promise: what it would do after returning would be lost.
      throw new TypeError('a handler returned a Promise: plugin handlers must be synchronous (no `async`)');
    }
    return result;
  } catch (error) {
    if (error instanceof SynchroError) {
      throw { code: error.code, message: error.message };
    }
    console.error(error && error.stack ? error.stack : String(error));
    const name = error && error.name ? error.name : 'Error';
    throw { code: 'failed', message: `${name}: ${error && error.message !== undefined ? error.message : error}` };
  }
}

// Bytes and entities ---------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `bytes` (a message's payload, a response's body) as text, UTF-8. */
export function text(bytes) {
  return decoder.decode(bytes);
}

/** `bytes` as JSON; not JSON is `InvalidInput`. */
export function json(bytes, what = 'the payload') {
  try {
    return JSON.parse(text(bytes));
  } catch (error) {
    throw new InvalidInput(`${what} is not JSON: ${error.message}`);
  }
}

function toBytes(value) {
  return typeof value === 'string' ? encoder.encode(value) : value;
}

/** A vertex of `kind` identified by `key`; `properties` an object (sent as JSON). */
export function vertex(key, kind, properties = {}, schemaVersion) {
  return { key: String(key), kind: String(kind), properties: JSON.stringify(properties), schemaVersion, edge: undefined };
}

/** An edge of `kind` from `source` to `target`, each a `[key, kind]` pair. */
export function edge(key, kind, source, target, properties = {}, schemaVersion) {
  return {
    key: String(key),
    kind: String(kind),
    properties: JSON.stringify(properties),
    schemaVersion,
    edge: {
      source: { key: String(source[0]), kind: String(source[1]) },
      target: { key: String(target[0]), kind: String(target[1]) },
    },
  };
}

/** An entity's properties, as an object. */
export function properties(entity) {
  return JSON.parse(entity.properties);
}

// Roles ----------------------------------------------------------------------------

/** The snapshot being collected; entities go to the host in batches as they are added. */
export class Snapshot {
  static BATCH = 1024;

  #batch = [];

  add(entity) {
    this.#batch.push(entity);
    if (this.#batch.length >= Snapshot.BATCH) {
      this.flush();
    }
  }

  extend(entities) {
    for (const entity of entities) {
      this.add(entity);
    }
  }

  flush() {
    if (this.#batch.length > 0) {
      const batch = this.#batch;
      this.#batch = [];
      host(() => addToSnapshot(batch));
    }
  }
}

/**
 * A collector: `collectInto(snapshot)` adds every entity and returns `COMPLETE` (absent
 * entities are deleted) or `PARTIAL`. Export it as `collector`.
 */
export function collector(collectInto) {
  return {
    collect() {
      return returningErrors(() => {
        if (addToSnapshot === undefined) {
          throw new Failed('built as another role: export `collector` from app.js');
        }
        const snapshot = new Snapshot();
        const completeness = collectInto(snapshot);
        if (completeness !== COMPLETE && completeness !== PARTIAL) {
          // A forgotten `return` would make every snapshot partial: nothing deleted.
          throw new TypeError(`the collector returned ${completeness}; return synchro.COMPLETE or synchro.PARTIAL`);
        }
        snapshot.flush();
        return completeness;
      });
    },
  };
}

/**
 * An event step: `process(message)` handles one bus message; throw a `SynchroError` to
 * have it retried (`InvalidInput`: dead-lettered at once). Must be idempotent. Export it
 * as `eventStep`.
 */
export function eventStep(process) {
  return {
    processEvent(message) {
      returningErrors(() => process(message));
    },
  };
}

/**
 * A model policy: `{ onCreate(entity), onUpdate(entity, previous), onDelete(entity) }`,
 * each optional. Export it as `modelPolicy`.
 */
export function modelPolicy(handlers) {
  const call = (name, ...args) => returningErrors(() => handlers[name] && handlers[name](...args));
  return {
    handleCreate(entity) { call('onCreate', entity); },
    handleUpdate(entity, previous) { call('onUpdate', entity, previous); },
    handleDelete(entity) { call('onDelete', entity); },
  };
}

/**
 * A sync step: `{ sync(entity), delete(entity) }`; throw `Unavailable` for "not now".
 * Export it as `syncStep`.
 */
export function syncStep(handlers) {
  return {
    syncRecord(entity) { returningErrors(() => handlers.sync(entity)); },
    deleteRecord(entity) { returningErrors(() => handlers.delete(entity)); },
  };
}

// Host functions -------------------------------------------------------------------

/** The plugin's `[settings]`. */
export const config = {
  /** The setting `name`: a string as it is, other values as JSON text; undefined if unset. */
  get(name) {
    return hostConfig.get(name);
  },
  require(name) {
    const value = hostConfig.get(name);
    if (value === undefined) {
      throw new InvalidInput(`setting \`${name}\` is missing from the manifest`);
    }
    return value;
  },
  all() {
    return JSON.parse(hostConfig.all());
  },
};

/** HTTP through the host (`poll`), only to the hosts the manifest allows. */
export const http = {
  send({ method = 'GET', url, headers = [], body, timeoutMs } = {}) {
    const request = { method, url, headers, body: body === undefined ? undefined : toBytes(body), timeoutMs };
    return host(() => hostPoll.poll(request));
  },
  /** The body of GET `url`; a non-2xx status is a `Failed` error. */
  get(url, headers = []) {
    const response = http.send({ url, headers });
    if (response.status < 200 || response.status >= 300) {
      throw new Failed(`GET ${url}: HTTP status ${response.status}`);
    }
    return response.body;
  },
  getJson(url, headers = []) {
    return json(http.get(url, headers), `GET ${url}: the body`);
  },
};

export const bus = {
  /** Puts `payload` (bytes or a string) on `topic`; `headers` are `[name, value]` pairs. */
  publish(topic, payload, { key, headers = [] } = {}) {
    const pairs = headers.map(([name, value]) => [name, toBytes(value)]);
    host(() => hostBus.publish(topic, key === undefined ? undefined : toBytes(key), toBytes(payload), pairs));
  },
  /** The message on `topic` whose `correlation-id` header is `correlationId`. */
  awaitResponse(topic, correlationId, timeoutMs) {
    return host(() => hostBus.awaitResponse(topic, correlationId, timeoutMs));
  },
};

export const emit = {
  /** Announces a change (`'create'`, `'update'` or `'delete'`) the plugin learned of itself. */
  change(operation, entity) {
    host(() => hostEmit.emitChange({ operation, entity, timestamp: 0n, transactionId: '' }));
  },
};

export const store = {
  get(kind, key) {
    return host(() => hostStore.get(kind, key));
  },
  query({ kind, after, limit = 100 } = {}) {
    return host(() => hostStore.query({ kind, after, limit }));
  },
  save(entity) {
    host(() => hostStore.save(entity));
  },
  delete(kind, key) {
    host(() => hostStore.delete(kind, key));
  },
};

function logAt(level) {
  return (message, fields = {}) =>
    hostLog.log(level, String(message), Object.entries(fields).map(([name, value]) => [name, String(value)]));
}

/** Structured logging, attributed to the plugin; `console.log` goes to the host's log too. */
export const log = {
  trace: logAt('trace'),
  debug: logAt('debug'),
  info: logAt('info'),
  warn: logAt('warn'),
  error: logAt('error'),
};
