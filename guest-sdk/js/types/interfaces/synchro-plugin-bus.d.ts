/// <reference path="./synchro-plugin-types.d.ts" />
declare module 'synchro:plugin/bus@0.2.0' {
  /**
   * Puts a message on `topic`. Denied unless the manifest grants publishing to it.
   */
  export function publish(topic: string, key: Uint8Array | undefined, payload: Uint8Array, headers: MessageHeaders): void;
  /**
   * Blocks this plugin call (never a host thread) until the message whose correlation
   * id is `correlation-id` arrives on `topic`, or `timeout-ms` passes (`timed-out`).
   * 
   * A response that arrived before this call started is not lost: the host keeps
   * recent responses on the topics a manifest declares for awaiting. The correlation id
   * is read from the `correlation-id` header.
   */
  export function awaitResponse(topic: string, correlationId: string, timeoutMs: number): Message;
  export type MessageHeaders = import('synchro:plugin/types@0.2.0').MessageHeaders;
  export type Message = import('synchro:plugin/types@0.2.0').Message;
  export type Error = import('synchro:plugin/types@0.2.0').Error;
}
