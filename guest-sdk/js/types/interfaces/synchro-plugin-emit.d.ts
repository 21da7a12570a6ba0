/// <reference path="./synchro-plugin-types.d.ts" />
declare module 'synchro:plugin/emit@0.2.0' {
  /**
   * Publishes `c` as a change notification attributed to this plugin.
   */
  export function emitChange(c: Change): void;
  export type Change = import('synchro:plugin/types@0.2.0').Change;
  export type Error = import('synchro:plugin/types@0.2.0').Error;
}
