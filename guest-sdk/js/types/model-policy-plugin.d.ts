/// <reference path="./interfaces/synchro-plugin-bus.d.ts" />
/// <reference path="./interfaces/synchro-plugin-config.d.ts" />
/// <reference path="./interfaces/synchro-plugin-emit.d.ts" />
/// <reference path="./interfaces/synchro-plugin-log.d.ts" />
/// <reference path="./interfaces/synchro-plugin-model-policy.d.ts" />
/// <reference path="./interfaces/synchro-plugin-poll.d.ts" />
/// <reference path="./interfaces/synchro-plugin-store.d.ts" />
/// <reference path="./interfaces/synchro-plugin-types.d.ts" />
declare module 'synchro:plugin/model-policy-plugin@0.2.0' {
  export type * as SynchroPluginBus020 from 'synchro:plugin/bus@0.2.0'; // import synchro:plugin/bus@0.2.0
  export type * as SynchroPluginConfig020 from 'synchro:plugin/config@0.2.0'; // import synchro:plugin/config@0.2.0
  export type * as SynchroPluginEmit020 from 'synchro:plugin/emit@0.2.0'; // import synchro:plugin/emit@0.2.0
  export type * as SynchroPluginLog020 from 'synchro:plugin/log@0.2.0'; // import synchro:plugin/log@0.2.0
  export type * as SynchroPluginPoll020 from 'synchro:plugin/poll@0.2.0'; // import synchro:plugin/poll@0.2.0
  export type * as SynchroPluginStore020 from 'synchro:plugin/store@0.2.0'; // import synchro:plugin/store@0.2.0
  export type * as SynchroPluginTypes020 from 'synchro:plugin/types@0.2.0'; // import synchro:plugin/types@0.2.0
  export * as modelPolicy from 'synchro:plugin/model-policy@0.2.0'; // export synchro:plugin/model-policy@0.2.0
}
