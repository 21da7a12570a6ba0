/// <reference path="./synchro-plugin-types.d.ts" />
declare module 'synchro:plugin/event-step@0.2.0' {
  /**
   * Handles one message. An error leaves the message to be retried.
   */
  export function processEvent(msg: Message): void;
  export type Message = import('synchro:plugin/types@0.2.0').Message;
  export type Error = import('synchro:plugin/types@0.2.0').Error;
}
