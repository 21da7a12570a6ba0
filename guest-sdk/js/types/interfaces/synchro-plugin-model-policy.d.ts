/// <reference path="./synchro-plugin-types.d.ts" />
declare module 'synchro:plugin/model-policy@0.2.0' {
  export function handleCreate(e: Entity): void;
  export function handleUpdate(e: Entity, previous: Entity): void;
  export function handleDelete(e: Entity): void;
  export type Entity = import('synchro:plugin/types@0.2.0').Entity;
  export type Error = import('synchro:plugin/types@0.2.0').Error;
}
