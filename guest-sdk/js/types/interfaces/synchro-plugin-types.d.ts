declare module 'synchro:plugin/types@0.2.0' {
  /**
   * A reference from an edge to one of its two endpoints.
   */
  export interface EntityRef {
    /**
     * The key of the referenced vertex.
     */
    key: string,
    /**
     * The kind (Gizmo's `type`) of the referenced vertex.
     */
    kind: string,
  }
  /**
   * The two endpoints of an edge.
   */
  export interface EdgeEnds {
    source: EntityRef,
    target: EntityRef,
  }
  /**
   * One element of the model graph: a vertex, or an edge when `edge` is present.
   * 
   * Kind and key together identify the entity: one key under two kinds is two
   * entities, and an entity whose kind changes is another entity (a complete snapshot
   * announces DELETE of the old and CREATE of the new). One snapshot may not hold an
   * entity twice. The model keeps who wrote each entity: a plugin writes, replaces and
   * deletes only what it wrote.
   */
  export interface Entity {
    /**
     * Stable identity of the entity in the outside system.
     */
    key: string,
    /**
     * The entity's type, e.g. `pserver` or `tosca.relationships.HostedOn`. Not empty,
     * and without a NUL character.
     */
    kind: string,
    /**
     * A JSON object, as text. Key order and whitespace are not significant: the host
     * hashes a canonical form.
     */
    properties: string,
    /**
     * The schema version of the outside system's model, when it has one.
     */
    schemaVersion?: string,
    /**
     * Present for edges, absent for vertices.
     */
    edge?: EdgeEnds,
  }
  /**
   * What happened to an entity.
   * # Variants
   * 
   * ## `"create"`
   * 
   * ## `"update"`
   * 
   * ## `"delete"`
   */
  export type Operation = 'create' | 'update' | 'delete';
  /**
   * A change notification, shaped like an A&AI Gizmo event.
   */
  export interface Change {
    operation: Operation,
    entity: Entity,
    /**
     * Milliseconds since the Unix epoch. Zero asks the host to stamp it.
     */
    timestamp: bigint,
    /**
     * Correlates the change with the request that caused it. Empty asks the host to
     * generate one.
     */
    transactionId: string,
  }
  /**
   * HTTP headers: an ordered list of text values.
   */
  export type Headers = Array<[string, string]>;
  /**
   * Message headers: an ordered list, since buses allow repeated names. Values are
   * bytes, as Kafka's are: what a producer wrote reaches the plugin unchanged.
   */
  export type MessageHeaders = Array<[string, Uint8Array]>;
  /**
   * A message on the bus.
   */
  export interface Message {
    topic: string,
    /**
     * Partitioning key, as bytes; messages with one key keep their order.
     */
    key?: Uint8Array,
    payload: Uint8Array,
    headers: MessageHeaders,
    /**
     * Milliseconds since the Unix epoch, set by the host on publish.
     */
    timestamp: bigint,
  }
  /**
   * Why a call failed. Guests can match on the code; the message is for people.
   * # Variants
   * 
   * ## `"denied"`
   * 
   * The plugin's manifest, or the operator, does not grant this.
   * ## `"timed-out"`
   * 
   * A deadline passed before the operation completed.
   * ## `"invalid-input"`
   * 
   * An argument was malformed: bad JSON, an invalid URL, a duplicate key, ...
   * ## `"not-found"`
   * 
   * The thing asked for does not exist.
   * ## `"unavailable"`
   * 
   * An outside system or the bus could not be reached; trying later may work.
   * ## `"failed"`
   * 
   * The operation was attempted and failed for another reason.
   */
  export type ErrorCode = 'denied' | 'timed-out' | 'invalid-input' | 'not-found' | 'unavailable' | 'failed';
  /**
   * A typed error, used in both directions: the host answers imports with it, and a
   * plugin's exports return it.
   */
  export interface Error {
    code: ErrorCode,
    message: string,
  }
}
