//! Host capabilities: what a plugin may ask the host to do.
//!
//! Each capability is one module that owns its grant (parsed from the manifest's
//! `[capabilities]` entry of its name), its per-call state, and its implementation of
//! its WIT interface — the shape Spin's "factors" arrived at. Adding a capability means
//! adding a module (a file beside this one) and its name in the `capabilities!` list
//! below, which declares the module, parses its grant, makes its per-call state and
//! links its interface.

use std::sync::Arc;
use std::time::Instant;

use synchro_bus::{Bus, Topics};
use synchro_engine::CallState;
use synchro_engine::wasmtime::component::{HasSelf, Linker};
use synchro_manifest::{Limits, Manifest, ManifestError};
use synchro_model::{Acting, Change, Entity, Error, ErrorKind, Handling, Operation};
use synchro_status::{Status, events};
use synchro_store::{Appender, Db};
use synchro_wit::WitError;

pub use log::guest_output;
pub use poll::{Canned, Http, PollSettings};
pub use snapshot::SnapshotSink;

/// The host services capabilities act on, shared by every plugin.
#[derive(Clone)]
pub struct Services {
    pub bus: Bus,
    pub db: Arc<Db>,
    /// Where changes that write nothing else (`emit-change`) are group-committed.
    pub outbox: Arc<Appender>,
    pub http: Http,
}

/// What a plugin asks for, as each grant reads it when the plugin loads.
pub struct Asks<'a> {
    pub manifest: &'a Manifest,
    /// The topics the plugin's roles read (an event step's `[events]`), which the
    /// operator's grants must allow.
    pub subscribes: Option<&'a Topics>,
}

/// A capability's grant: what the manifest asks for, narrowed by what the operator grants,
/// parsed once when the plugin loads.
pub trait Grant: Sized + Send + Sync + 'static {
    /// Parses the `[capabilities]` entry named after the capability (`None` when the
    /// manifest has none: the capability is denied, or has its default).
    fn parse(asks: &Asks<'_>, entry: Option<&toml::Value>) -> Result<Self, ManifestError>;

    /// Keeps only what the operator's entry for this capability (the same shape as the
    /// manifest's) also allows; `None`: the operator grants none of it. Capabilities that
    /// are the plugin's own (its settings, its log) cannot be narrowed.
    fn narrow(&mut self, operator: Option<&toml::Value>) -> Result<(), String> {
        match operator {
            None => Ok(()),
            Some(_) => Err("is always granted and cannot be narrowed".into()),
        }
    }

    /// What is granted, for `synchro plugin check`; `None` when nothing is.
    fn describe(&self) -> Option<String>;

    /// Readies host services for a plugin holding this grant.
    fn activate(&self, _services: &Services) -> impl Future<Output = Result<(), Error>> + Send {
        async { Ok(()) }
    }
}

/// Who is calling: the same for every call of one version of a plugin.
pub struct Caller {
    pub plugin: Arc<str>,
    pub grants: Arc<Grants>,
    pub services: Services,
    pub limits: Limits,
    /// Where denials are counted.
    pub status: Arc<Status>,
}

/// Who is calling and until when: what every capability needs to know about a call.
///
/// Each capability of a call holds one, and an event step makes one per event: the caller
/// is shared, so that costs a reference count, not a copy of the plugin's services.
#[derive(Clone)]
pub struct CallContext {
    caller: Arc<Caller>,
    /// When the call's deadline passes; host waits never outlast it.
    pub deadline: Instant,
    /// The role the plugin plays in this call, which decides what its model writes mean
    /// (XOS's caller kind): a policy's writes never re-run policies, a step's never
    /// re-sync.
    pub acting: Acting,
    /// The entity a policy's or a step's call handles, which the call may write whoever
    /// owns it.
    pub handling: Option<Handling>,
}

impl std::ops::Deref for CallContext {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl CallContext {
    /// A call of `caller` starting now.
    pub fn new(caller: Caller) -> CallContext {
        CallContext::starting_now(Arc::new(caller))
    }

    /// The largest message the plugin may cause: its `limits.max-message-kb`, or what the
    /// bus carries if that is less.
    pub fn message_limit(&self) -> usize {
        self.limits
            .max_message_bytes()
            .min(self.services.bus.max_message_bytes())
    }

    /// The same caller, for a call starting now.
    pub fn restarted(&self) -> CallContext {
        CallContext {
            acting: self.acting,
            handling: self.handling.clone(),
            ..CallContext::starting_now(self.caller.clone())
        }
    }

    /// The same call, made by the plugin acting as `acting`.
    pub fn acting_as(self, acting: Acting) -> CallContext {
        CallContext { acting, ..self }
    }

    fn starting_now(caller: Arc<Caller>) -> CallContext {
        CallContext {
            deadline: Instant::now() + caller.limits.deadline,
            acting: Acting::Source,
            handling: None,
            caller,
        }
    }
}

/// The store data a linker's capabilities reach their per-call state through, as
/// `wasmtime-wasi` reaches its own through `WasiView`.
pub trait CapabilityView: Send {
    fn capabilities(&mut self) -> &mut Capabilities;
}

impl CapabilityView for CallState<Capabilities> {
    fn capabilities(&mut self) -> &mut Capabilities {
        &mut self.caps
    }
}

/// Refuses `what` (a message a plugin causes: published, emitted, or a store write's
/// notification) of `size` bytes when it is over the plugin's `limits.max-message-kb`,
/// `limit` bytes.
fn check_message_size(what: &str, size: usize, limit: usize) -> Result<(), WitError> {
    if size > limit {
        return Err(fail(
            ErrorKind::InvalidInput,
            format!(
                "{what} of {size} bytes is over this plugin's limit of {limit} bytes (limits.max-message-kb, or the bus's own if lower)"
            ),
        ));
    }
    Ok(())
}

/// A WIT error of `kind`.
fn fail(kind: ErrorKind, message: impl Into<String>) -> WitError {
    Error::new(kind, message).into()
}

/// Parses the grant of a capability from a TOML value, naming the entry on error.
fn parse_entry<T: serde::de::DeserializeOwned>(
    manifest: &Manifest,
    name: &str,
    entry: &toml::Value,
) -> Result<T, ManifestError> {
    raw(entry).map_err(|e| manifest.error(format!("field `capabilities.{name}`: {e}")))
}

/// Deserialises a grant entry (the manifest's or the operator's).
fn raw<T: serde::de::DeserializeOwned>(entry: &toml::Value) -> Result<T, String> {
    entry
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_owned())
}

macro_rules! capabilities {
    ($($name:ident),* $(,)?) => {
        $(mod $name;)*

        /// Every grant of one plugin.
        pub struct Grants {
            $(pub $name: $name::Grant,)*
            /// Whether the operator narrowed what the manifest asks for.
            pub narrowed: bool,
        }

        impl Grants {
            /// Parses the manifest's `[capabilities]`, narrowed by `operator` (the host
            /// config's `[grants.NAME]` for this plugin) when there is one. An unknown
            /// capability name in either is an error.
            pub fn from_manifest(
                asks: &Asks<'_>,
                operator: Option<&toml::Table>,
            ) -> Result<Grants, ManifestError> {
                let manifest = asks.manifest;
                const KNOWN: &[&str] = &[$(stringify!($name)),*];
                let unknown = |name: &String| !KNOWN.contains(&name.as_str());
                if let Some(name) = manifest.capabilities.keys().find(|k| unknown(k)) {
                    return Err(manifest.error(format!(
                        "field `capabilities.{name}`: no such capability (known: {})",
                        KNOWN.join(", ")
                    )));
                }
                let mut grants = Grants {
                    $($name: <$name::Grant as Grant>::parse(asks, manifest.capabilities.get(stringify!($name)))?,)*
                    narrowed: operator.is_some(),
                };
                if let Some(operator) = operator {
                    let operator_error = |e: String| {
                        manifest.error(format!(
                            "the host config's `[grants.{}]`: {e}",
                            manifest.name
                        ))
                    };
                    if let Some(name) = operator.keys().find(|k| unknown(k)) {
                        return Err(operator_error(format!(
                            "no such capability `{name}` (known: {})",
                            KNOWN.join(", ")
                        )));
                    }
                    $(
                        Grant::narrow(&mut grants.$name, operator.get(stringify!($name)))
                            .map_err(|e| operator_error(format!("`{}` {e}", stringify!($name))))?;
                    )*
                }
                Ok(grants)
            }

            /// Each capability granted, with what it allows.
            pub fn describe(&self) -> Vec<(&'static str, String)> {
                let mut granted = Vec::new();
                $(
                    if let Some(text) = Grant::describe(&self.$name) {
                        granted.push((stringify!($name), text));
                    }
                )*
                granted
            }

            pub async fn activate(&self, services: &Services) -> Result<(), Error> {
                $(Grant::activate(&self.$name, services).await?;)*
                Ok(())
            }
        }

        /// The per-call state of every capability.
        pub struct Capabilities {
            $(pub $name: $name::Capability,)*
        }

        impl Capabilities {
            pub fn new(call: &CallContext) -> Capabilities {
                Capabilities {
                    $($name: $name::Capability::new(call),)*
                }
            }
        }

        /// Links every capability's WIT interface (each module's `wit`) to its state.
        pub fn add_to_linker<T: CapabilityView>(
            linker: &mut Linker<T>,
        ) -> synchro_engine::wasmtime::Result<()> {
            $($name::wit::add_to_linker::<_, HasSelf<$name::Capability>>(linker, |state| &mut state.capabilities().$name)?;)*
            Ok(())
        }
    };
}

capabilities!(bus, poll, emit, store, log, config, snapshot);

impl CallContext {
    /// A change attributed to the calling plugin, stamped now with a new transaction id
    /// unless `timestamp` / `transaction_id` say otherwise, as the outbox keeps it.
    fn change_record(
        &self,
        operation: Operation,
        entity: Entity,
        timestamp: Option<u64>,
        transaction_id: Option<String>,
    ) -> Vec<u8> {
        synchro_bus::change_record(&Change {
            operation,
            entity,
            timestamp: timestamp.unwrap_or_else(synchro_model::now_millis),
            transaction_id: transaction_id.unwrap_or_else(synchro_model::new_transaction_id),
            database_transaction_id: None,
            source: self.plugin.to_string(),
        })
    }
}

/// Logs, counts and builds the error a plugin gets for a denied call.
fn denied(call: &CallContext, capability: &str, what: impl std::fmt::Display) -> WitError {
    let by = if call.grants.narrowed {
        "the manifest and the operator's grants"
    } else {
        "the manifest"
    };
    deny(
        call,
        capability,
        format_args!("{what} is not granted by {by}"),
    )
}

/// Logs and counts a denial, and makes the error the plugin sees: `why` must say no more
/// than the plugin may know.
fn deny(call: &CallContext, capability: &str, why: impl std::fmt::Display) -> WitError {
    call.status.emit(events::Denied {
        plugin: &call.plugin,
        capability,
        why: &why,
    });
    fail(ErrorKind::Denied, format!("{capability}: {why}"))
}

/// A list of names from a manifest, where `*` grants every name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameList(Vec<String>);

impl NameList {
    pub fn allows(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == "*" || n == name)
    }

    /// The names listed, without the `*` wildcard.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str).filter(|n| *n != "*")
    }

    /// The names both lists allow.
    pub fn narrow(&self, operator: &NameList) -> NameList {
        let both: Vec<String> = if operator.allows("*") {
            self.0.clone()
        } else if self.allows("*") {
            operator.0.clone()
        } else {
            self.0
                .iter()
                .filter(|n| operator.allows(n))
                .cloned()
                .collect()
        };
        NameList(both)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for NameList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}]", self.0.join(", "))
    }
}

impl<'de> serde::Deserialize<'de> for NameList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(d).map(NameList)
    }
}

#[cfg(test)]
mod tests {
    use super::NameList;

    fn list(names: &[&str]) -> NameList {
        NameList(names.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn name_lists_narrow_to_what_both_allow() {
        assert_eq!(list(&["a", "b"]).narrow(&list(&["b", "c"])), list(&["b"]));
        assert_eq!(list(&["*"]).narrow(&list(&["b"])), list(&["b"]));
        assert_eq!(list(&["a"]).narrow(&list(&["*"])), list(&["a"]));
        assert_eq!(list(&["a"]).narrow(&list(&[])), list(&[]));
    }
}
