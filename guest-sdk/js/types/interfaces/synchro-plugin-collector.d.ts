/// <reference path="./synchro-plugin-types.d.ts" />
declare module 'synchro:plugin/collector@0.2.0' {
  /**
   * Samples the outside system and adds every entity through `snapshot.add`. An error
   * (or a trap, or a timeout) discards the whole snapshot: it never causes deletions.
   */
  export function collect(): Completeness;
  export type Error = import('synchro:plugin/types@0.2.0').Error;
  /**
   * Whether a snapshot covers the whole outside system.
   * # Variants
   * 
   * ## `"complete"`
   * 
   * Every entity the system has was added: absent ones are deleted.
   * ## `"partial"`
   * 
   * Only some entities were added: nothing is deleted.
   */
  export type Completeness = 'complete' | 'partial';
}
