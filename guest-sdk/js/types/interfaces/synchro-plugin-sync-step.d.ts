/// <reference path="./synchro-plugin-types.d.ts" />
declare module 'synchro:plugin/sync-step@0.2.0' {
  /**
   * Enacts `e` in the outside system. An error is retried with backoff and shown on
   * the entity.
   */
  export function syncRecord(e: Entity): void;
  /**
   * Removes `e` from the outside system; the host purges it only after this succeeds.
   */
  export function deleteRecord(e: Entity): void;
  export type Entity = import('synchro:plugin/types@0.2.0').Entity;
  export type Error = import('synchro:plugin/types@0.2.0').Error;
}
