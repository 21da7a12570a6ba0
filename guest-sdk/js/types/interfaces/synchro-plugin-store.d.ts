/// <reference path="./synchro-plugin-types.d.ts" />
declare module 'synchro:plugin/store@0.2.0' {
  /**
   * The entity of `kind` under `key`, if there is one.
   */
  export function get(kind: string, key: string): Entity | undefined;
  export function query(f: Filter): Array<Entity>;
  /**
   * Creates or replaces the entity with the same kind and key, and announces the
   * change; saving an entity unchanged announces nothing.
   */
  export function save(e: Entity): void;
  /**
   * Deletes the entity of `kind` under `key`; deleting an absent one is not an error.
   */
  export { _delete as delete };
  function _delete(kind: string, key: string): void;
  export type Entity = import('synchro:plugin/types@0.2.0').Entity;
  export type EntityRef = import('synchro:plugin/types@0.2.0').EntityRef;
  export type Error = import('synchro:plugin/types@0.2.0').Error;
  /**
   * A page of entities, by kind, then key.
   */
  export interface Filter {
    /**
     * Only entities of this kind; all readable kinds when absent.
     */
    kind?: string,
    /**
     * Start after this entity (the last one of the previous page).
     */
    after?: EntityRef,
    /**
     * At most this many entities (the host caps it).
     */
    limit: number,
  }
}
