#![warn(missing_docs)]
//! Write plugins for synchro, the host of WebAssembly synchronizer plugins, in Rust.
//!
//! A plugin implements one trait per role and calls that role's export macro once:
//!
//! ```ignore
//! use synchro_guest::{Collector, Completeness, Error, Snapshot, vertex};
//!
//! struct Hello;
//!
//! impl Collector for Hello {
//!     fn collect(snapshot: &mut Snapshot) -> Result<Completeness, Error> {
//!         snapshot.add(vertex("host-1", "pserver", serde_json::json!({"up": true})))?;
//!         Ok(Completeness::Complete)
//!     }
//! }
//!
//! synchro_guest::export_collector!(Hello);
//! ```
//!
//! The crate hides the wit-bindgen bindings of the `synchro:plugin` WIT package; the host
//! functions a plugin may call are the modules [`bus`], [`http`], [`emit`], [`store`],
//! [`log`] and [`config`]. Each of them is denied unless the plugin's manifest grants it.

mod entity;
mod snapshot;

pub mod bus;
pub mod config;
pub mod emit;
pub mod http;
pub mod log;
pub mod store;

#[doc(hidden)]
pub mod __bindings {
    // The imports every role shares (the `platform` world), generated once.
    wit_bindgen::generate!({
        path: "wit",
        world: "synchro:plugin/platform",
    });

    /// The bindings of one role's world: its export (and its own imports), with the
    /// shared imports mapped to the ones above — listed here once for every role.
    macro_rules! role_world {
        ($module:ident, $world:tt, $export_macro:tt, $bindings_module:tt) => {
            pub mod $module {
                wit_bindgen::generate!({
                    path: "wit",
                    world: $world,
                    pub_export_macro: true,
                    export_macro_name: $export_macro,
                    default_bindings_module: $bindings_module,
                    with: {
                        "synchro:plugin/types@0.2.0": crate::__bindings::synchro::plugin::types,
                        "synchro:plugin/bus@0.2.0": crate::__bindings::synchro::plugin::bus,
                        "synchro:plugin/poll@0.2.0": crate::__bindings::synchro::plugin::poll,
                        "synchro:plugin/emit@0.2.0": crate::__bindings::synchro::plugin::emit,
                        "synchro:plugin/store@0.2.0": crate::__bindings::synchro::plugin::store,
                        "synchro:plugin/log@0.2.0": crate::__bindings::synchro::plugin::log,
                        "synchro:plugin/config@0.2.0": crate::__bindings::synchro::plugin::config,
                    },
                });
            }
        };
    }

    role_world!(
        collector,
        "synchro:plugin/collector-plugin",
        "__export_collector_plugin",
        "synchro_guest::__bindings::collector"
    );
    role_world!(
        event_step,
        "synchro:plugin/event-step-plugin",
        "__export_event_step_plugin",
        "synchro_guest::__bindings::event_step"
    );
    role_world!(
        model_policy,
        "synchro:plugin/model-policy-plugin",
        "__export_model_policy_plugin",
        "synchro_guest::__bindings::model_policy"
    );
    role_world!(
        sync_step,
        "synchro:plugin/sync-step-plugin",
        "__export_sync_step_plugin",
        "synchro_guest::__bindings::sync_step"
    );
}

pub use __bindings::collector::exports::synchro::plugin::collector::Completeness;
pub use __bindings::synchro::plugin::types::{
    Change, EdgeEnds, Entity, EntityRef, Error, ErrorCode, Message, Operation,
};
pub use entity::{edge, vertex};
pub use snapshot::Snapshot;

/// A plugin that samples an outside system on the host's schedule.
pub trait Collector {
    /// Adds every entity of the outside system to `snapshot`.
    ///
    /// Return [`Completeness::Complete`] when the snapshot covers the whole system, so
    /// that entities missing from it are deleted, or [`Completeness::Partial`] when it does
    /// not. Returning an error discards the snapshot: nothing is created, updated or deleted.
    fn collect(snapshot: &mut Snapshot) -> Result<Completeness, Error>;
}

/// A plugin that consumes bus messages (an XOS event step).
pub trait EventStep {
    /// Handles one message. An error leaves the message to be retried with backoff; after
    /// the configured attempts it goes to the dead-letter topic. Handling must be
    /// idempotent: a message can be delivered more than once.
    fn process_event(message: Message) -> Result<(), Error>;
}

/// A plugin that reacts to the model's writes (an XOS model policy).
///
/// The host calls it for each entity of its `[policy] kinds` that a source or a sync step
/// changed since it last handled it, one entity at a time, at the manifest's rate. Its
/// own `store` writes never call it again, and it may write the entity it handles even
/// when another plugin owns it (a write over a change made meanwhile is refused with
/// [`ErrorCode::Unavailable`], and the entity is handed again). An error is shown on the
/// entity and retried after a backoff. Calls must be idempotent: after a crash the host
/// calls again.
pub trait ModelPolicy {
    /// `entity` is new to the policy.
    fn handle_create(entity: Entity) -> Result<(), Error>;
    /// `entity` changed since the policy handled it as `previous`.
    fn handle_update(entity: Entity, previous: Entity) -> Result<(), Error>;
    /// `entity` was deleted; the host keeps it, hidden, until this succeeds.
    fn handle_delete(entity: Entity) -> Result<(), Error>;
}

/// A plugin that pushes the model to an outside system (an XOS sync step).
///
/// The host calls it for each entity of its `[sync] kinds` whose data is newer than what
/// was last enacted, one entity at a time, at the manifest's rate. An error is shown on
/// the entity and retried after a backoff of that entity alone; return
/// [`ErrorCode::Unavailable`] for "not now" (the entity is deferred, not failed). Both
/// calls must be idempotent: after a crash the host calls again.
pub trait SyncStep {
    /// Makes the outside system hold `entity` (create or update).
    fn sync_record(entity: Entity) -> Result<(), Error>;
    /// Removes `entity` from the outside system; the host keeps it, marked deleted, until
    /// this succeeds.
    fn delete_record(entity: Entity) -> Result<(), Error>;
}

/// Builds an [`Error`] from a code and anything printable.
pub fn error(code: ErrorCode, message: impl std::fmt::Display) -> Error {
    Error {
        code,
        message: message.to_string(),
    }
}

#[doc(hidden)]
pub fn __run_collector<C: Collector>() -> Result<Completeness, Error> {
    let mut snapshot = Snapshot::new();
    let completeness = C::collect(&mut snapshot)?;
    snapshot.flush()?;
    Ok(completeness)
}

/// Exports `$plugin`, a type implementing [`Collector`], as this component's collector.
#[macro_export]
macro_rules! export_collector {
    ($plugin:ty) => {
        #[doc(hidden)]
        struct __SynchroCollector;

        impl $crate::__bindings::collector::exports::synchro::plugin::collector::Guest for __SynchroCollector {
            fn collect() -> ::core::result::Result<$crate::Completeness, $crate::Error> {
                $crate::__run_collector::<$plugin>()
            }
        }

        $crate::__bindings::collector::__export_collector_plugin!(
            __SynchroCollector with_types_in $crate::__bindings::collector
        );
    };
}

/// Exports `$plugin`, a type implementing [`EventStep`], as this component's event step.
#[macro_export]
macro_rules! export_event_step {
    ($plugin:ty) => {
        #[doc(hidden)]
        struct __SynchroEventStep;

        impl $crate::__bindings::event_step::exports::synchro::plugin::event_step::Guest for __SynchroEventStep {
            fn process_event(message: $crate::Message) -> ::core::result::Result<(), $crate::Error> {
                <$plugin as $crate::EventStep>::process_event(message)
            }
        }

        $crate::__bindings::event_step::__export_event_step_plugin!(
            __SynchroEventStep with_types_in $crate::__bindings::event_step
        );
    };
}

/// Exports `$plugin`, a type implementing [`ModelPolicy`], as this component's model
/// policy.
#[macro_export]
macro_rules! export_model_policy {
    ($plugin:ty) => {
        #[doc(hidden)]
        struct __SynchroModelPolicy;

        impl $crate::__bindings::model_policy::exports::synchro::plugin::model_policy::Guest for __SynchroModelPolicy {
            fn handle_create(entity: $crate::Entity) -> ::core::result::Result<(), $crate::Error> {
                <$plugin as $crate::ModelPolicy>::handle_create(entity)
            }

            fn handle_update(
                entity: $crate::Entity,
                previous: $crate::Entity,
            ) -> ::core::result::Result<(), $crate::Error> {
                <$plugin as $crate::ModelPolicy>::handle_update(entity, previous)
            }

            fn handle_delete(entity: $crate::Entity) -> ::core::result::Result<(), $crate::Error> {
                <$plugin as $crate::ModelPolicy>::handle_delete(entity)
            }
        }

        $crate::__bindings::model_policy::__export_model_policy_plugin!(
            __SynchroModelPolicy with_types_in $crate::__bindings::model_policy
        );
    };
}

/// Exports `$plugin`, a type implementing [`SyncStep`], as this component's sync step.
#[macro_export]
macro_rules! export_sync_step {
    ($plugin:ty) => {
        #[doc(hidden)]
        struct __SynchroSyncStep;

        impl $crate::__bindings::sync_step::exports::synchro::plugin::sync_step::Guest for __SynchroSyncStep {
            fn sync_record(entity: $crate::Entity) -> ::core::result::Result<(), $crate::Error> {
                <$plugin as $crate::SyncStep>::sync_record(entity)
            }

            fn delete_record(entity: $crate::Entity) -> ::core::result::Result<(), $crate::Error> {
                <$plugin as $crate::SyncStep>::delete_record(entity)
            }
        }

        $crate::__bindings::sync_step::__export_sync_step_plugin!(
            __SynchroSyncStep with_types_in $crate::__bindings::sync_step
        );
    };
}
