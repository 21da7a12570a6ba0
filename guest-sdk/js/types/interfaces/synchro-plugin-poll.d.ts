/// <reference path="./synchro-plugin-types.d.ts" />
declare module 'synchro:plugin/poll@0.2.0' {
  /**
   * Performs `req`. A non-2xx status is a response, not an error; a denied host, an
   * unreachable server, a timeout or an oversized body is an error.
   */
  export function poll(req: Request): Response;
  export type Headers = import('synchro:plugin/types@0.2.0').Headers;
  export type Error = import('synchro:plugin/types@0.2.0').Error;
  export interface Request {
    /**
     * `GET`, `POST`, ...
     */
    method: string,
    /**
     * An absolute `http` or `https` URL.
     */
    url: string,
    headers: Headers,
    body?: Uint8Array,
    /**
     * Overrides the host's default timeout when set; never exceeds the call deadline.
     */
    timeoutMs?: number,
  }
  export interface Response {
    status: number,
    headers: Headers,
    body: Uint8Array,
  }
}
