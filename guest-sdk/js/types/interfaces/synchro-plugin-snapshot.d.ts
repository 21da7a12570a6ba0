/// <reference path="./synchro-plugin-types.d.ts" />
declare module 'synchro:plugin/snapshot@0.2.0' {
  /**
   * Adds a batch of entities to the snapshot being collected. An invalid entity or a
   * key already added in this collect is an error, and it fails the whole collect.
   */
  export function add(batch: Array<Entity>): void;
  export type Entity = import('synchro:plugin/types@0.2.0').Entity;
  export type Error = import('synchro:plugin/types@0.2.0').Error;
}
