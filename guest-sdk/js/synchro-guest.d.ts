// Types of `synchro-guest.js`, for editors and `tsc --checkJs`. The contract's own types
// (`Entity`, `Message`, `Request`, ...) come from `types/`, which jco generates from the
// WIT (tests/languages.rs checks that they match it).
/// <reference path="./types/collector-plugin.d.ts" />
/// <reference path="./types/event-step-plugin.d.ts" />
/// <reference path="./types/model-policy-plugin.d.ts" />
/// <reference path="./types/sync-step-plugin.d.ts" />

import type { Entity, Message, ErrorCode, Operation } from 'synchro:plugin/types@0.2.0';
import type { Response } from 'synchro:plugin/poll@0.2.0';
import type { Completeness } from 'synchro:plugin/collector@0.2.0';

export type { Entity, Message, ErrorCode, Operation, Response, Completeness };

/** A snapshot that covers the whole outside system: absent entities are deleted. */
export const COMPLETE: 'complete';
/** A snapshot of only part of the outside system: nothing is deleted. */
export const PARTIAL: 'partial';

/** An error a plugin returns to the host (and a host function's error): a code and a message. */
export class SynchroError extends Error {
  constructor(message: string, code?: ErrorCode);
  code: ErrorCode;
}
/** The input is wrong: trying again with it fails again (an event goes to the dead letters). */
export class InvalidInput extends SynchroError { constructor(message: string); }
export class NotFound extends SynchroError { constructor(message: string); }
/** Not now: an outside system cannot be reached; the host tries again later. */
export class Unavailable extends SynchroError { constructor(message: string); }
export class Failed extends SynchroError { constructor(message: string); }
export class Denied extends SynchroError { constructor(message: string); }
export class TimedOut extends SynchroError { constructor(message: string); }

/** `bytes` (a message's payload, a response's body) as text, UTF-8. */
export function text(bytes: Uint8Array): string;
/** `bytes` as JSON; not JSON is `InvalidInput`, naming `what`. */
export function json(bytes: Uint8Array, what?: string): any;

/** A vertex of `kind` identified by `key`; `properties` an object (sent as JSON). */
export function vertex(key: string, kind: string, properties?: object, schemaVersion?: string): Entity;
/** An edge of `kind` from `source` to `target`, each a `[key, kind]` pair. */
export function edge(
  key: string,
  kind: string,
  source: [string, string],
  target: [string, string],
  properties?: object,
  schemaVersion?: string,
): Entity;
/** An entity's properties, as an object. */
export function properties(entity: Entity): any;

/** The snapshot being collected; entities go to the host in batches as they are added. */
export class Snapshot {
  static BATCH: number;
  add(entity: Entity): void;
  extend(entities: Iterable<Entity>): void;
  flush(): void;
}

// Handlers are synchronous: one returning a Promise fails its call.

/** A collector: export it as `collector`. */
export function collector(collectInto: (snapshot: Snapshot) => Completeness): { collect(): Completeness };
/** An event step: export it as `eventStep`. Must be idempotent. */
export function eventStep(process: (message: Message) => void): { processEvent(message: Message): void };
/** A model policy: export it as `modelPolicy`; each handler is optional. */
export function modelPolicy(handlers: {
  onCreate?(entity: Entity): void;
  onUpdate?(entity: Entity, previous: Entity): void;
  onDelete?(entity: Entity): void;
}): {
  handleCreate(entity: Entity): void;
  handleUpdate(entity: Entity, previous: Entity): void;
  handleDelete(entity: Entity): void;
};
/** A sync step: export it as `syncStep`. */
export function syncStep(handlers: { sync(entity: Entity): void; delete(entity: Entity): void }): {
  syncRecord(entity: Entity): void;
  deleteRecord(entity: Entity): void;
};

/** The plugin's `[settings]`. */
export const config: {
  /** The setting `name`: a string as it is, other values as JSON text; undefined if unset. */
  get(name: string): string | undefined;
  /** The setting `name`; a missing one is `InvalidInput`. */
  require(name: string): string;
  /** All settings. */
  all(): Record<string, unknown>;
};

/** HTTP through the host (`poll`), only to the hosts the manifest allows. */
export const http: {
  send(request: {
    method?: string;
    url: string;
    headers?: Array<[string, string]>;
    body?: Uint8Array | string;
    timeoutMs?: number;
  }): Response;
  /** The body of GET `url`; a non-2xx status is a `Failed` error. */
  get(url: string, headers?: Array<[string, string]>): Uint8Array;
  getJson(url: string, headers?: Array<[string, string]>): any;
};

export const bus: {
  /** Puts `payload` on `topic`; `headers` are `[name, value]` pairs. */
  publish(
    topic: string,
    payload: Uint8Array | string,
    options?: { key?: Uint8Array | string; headers?: Array<[string, Uint8Array | string]> },
  ): void;
  /** The message on `topic` whose `correlation-id` header is `correlationId`. */
  awaitResponse(topic: string, correlationId: string, timeoutMs: number): Message;
};

export const emit: {
  /** Announces a change the plugin learned of itself. */
  change(operation: Operation, entity: Entity): void;
};

export const store: {
  get(kind: string, key: string): Entity | undefined;
  query(filter?: { kind?: string; after?: { key: string; kind: string }; limit?: number }): Entity[];
  save(entity: Entity): void;
  delete(kind: string, key: string): void;
};

type Log = (message: unknown, fields?: Record<string, unknown>) => void;
/** Structured logging, attributed to the plugin; `console.log` goes to the host's log too. */
export const log: { trace: Log; debug: Log; info: Log; warn: Log; error: Log };
