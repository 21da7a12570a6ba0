//! Host capabilities: what a plugin may ask the host to do.
//!
//! Each capability is one module that owns its grant (parsed from the manifest's
//! `[capabilities]` entry of its name), its per-call state, and its implementation of
//! its WIT interface — the shape Spin's "factors" arrived at. Adding a capability means
//! adding a module and one line in the `capabilities!` list below.

mod bus;
mod config;
mod emit;
mod log;
mod poll;
mod store;

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{HasSelf, Linker};

use crate::manifest::{Manifest, ManifestError};
use crate::runtime::PluginState;

/// The host services capabilities act on, shared by every plugin.
#[derive(Clone)]
pub struct Services {
    pub bus: crate::bus::Bus,
    pub state: Arc<crate::state::State>,
    pub http: reqwest::Client,
    pub poll: crate::config::PollSettings,
}

impl Services {
    pub fn new(
        bus: crate::bus::Bus,
        state: Arc<crate::state::State>,
        poll: crate::config::PollSettings,
    ) -> anyhow::Result<Services> {
        let http = reqwest::Client::builder()
            // A redirect could lead outside the allowed hosts: plugins see 3xx and decide.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("synchro/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Services {
            bus,
            state,
            http,
            poll,
        })
    }
}

/// A capability's grant: what the manifest allows, parsed once when the plugin loads.
pub trait Grant: Sized + Send + Sync + 'static {
    /// Parses the `[capabilities]` entry named after the capability (`None` when the
    /// manifest has none: the capability is denied, or has its default).
    fn parse(manifest: &Manifest, entry: Option<&toml::Value>) -> Result<Self, ManifestError>;

    /// Readies host services for a plugin holding this grant.
    fn activate(&self, _services: &Services) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }
}

/// Who is calling and until when: what every capability needs to know about a call.
#[derive(Clone)]
pub struct CallContext {
    pub plugin: Arc<str>,
    pub grants: Arc<Grants>,
    pub services: Services,
    pub limits: crate::runtime::CallLimits,
    /// Where denials are counted.
    pub status: Arc<crate::status::Status>,
    /// When the call's deadline passes; host waits never outlast it.
    pub deadline: Instant,
}

impl CallContext {
    /// The context of a call of `plugin` starting now.
    pub fn new(
        plugin: &crate::plugin::Plugin,
        status: &Arc<crate::status::Status>,
        services: &Services,
    ) -> CallContext {
        CallContext {
            plugin: plugin.name.clone(),
            grants: plugin.grants.clone(),
            services: services.clone(),
            limits: plugin.limits,
            status: status.clone(),
            deadline: Instant::now() + plugin.limits.deadline,
        }
    }
}

/// Parses the grant of a capability from a TOML value, naming the entry on error.
fn parse_entry<T: serde::de::DeserializeOwned>(
    manifest: &Manifest,
    name: &str,
    entry: &toml::Value,
) -> Result<T, ManifestError> {
    entry.clone().try_into().map_err(|e: toml::de::Error| {
        manifest.error(format!("field `capabilities.{name}`: {}", e.message()))
    })
}

macro_rules! capabilities {
    ($($name:ident),* $(,)?) => {
        /// Every grant of one plugin.
        pub struct Grants {
            $(pub $name: $name::Grant,)*
        }

        impl Grants {
            /// Parses the manifest's `[capabilities]`; an unknown name is an error.
            pub fn from_manifest(manifest: &Manifest) -> Result<Grants, ManifestError> {
                const KNOWN: &[&str] = &[$(stringify!($name)),*];
                if let Some(unknown) = manifest.capabilities.keys().find(|k| !KNOWN.contains(&k.as_str())) {
                    return Err(manifest.error(format!(
                        "field `capabilities.{unknown}`: no such capability (known: {})",
                        KNOWN.join(", ")
                    )));
                }
                Ok(Grants {
                    $($name: <$name::Grant as Grant>::parse(manifest, manifest.capabilities.get(stringify!($name)))?,)*
                })
            }

            pub async fn activate(&self, services: &Services) -> anyhow::Result<()> {
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
        pub fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
            $($name::wit::add_to_linker::<_, HasSelf<$name::Capability>>(linker, |state| &mut state.caps.$name)?;)*
            Ok(())
        }
    };
}

capabilities!(bus, poll, emit, store, log, config);

impl CallContext {
    /// Publishes a change notification attributed to the calling plugin, stamped now
    /// with a new transaction id unless `timestamp` / `transaction_id` say otherwise.
    async fn publish_change(
        &self,
        operation: crate::diff::Operation,
        entity: crate::entity::Entity,
        timestamp: Option<u64>,
        transaction_id: Option<String>,
    ) -> Result<(), crate::runtime::convert::WitError> {
        let change = crate::change::Change {
            operation,
            entity,
            timestamp: timestamp.unwrap_or_else(crate::change::now_millis),
            transaction_id: transaction_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            database_transaction_id: None,
            source: self.plugin.to_string(),
        };
        self.services
            .bus
            .publish(change.to_message())
            .await
            .map_err(|e| {
                crate::runtime::convert::error(
                    crate::runtime::convert::ErrorCode::Unavailable,
                    format!("the change notification could not be published: {e}"),
                )
            })
    }
}

/// Logs, counts and builds the error a plugin gets for a denied call.
fn denied(
    call: &CallContext,
    capability: &str,
    what: impl std::fmt::Display,
) -> crate::runtime::convert::WitError {
    tracing::warn!(plugin = %call.plugin, capability, "denied: {what}");
    crate::status::Counters::bump(&call.status.counters.denials);
    crate::runtime::convert::error(
        crate::runtime::convert::ErrorCode::Denied,
        format!("{capability}: {what} is not granted by the manifest"),
    )
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
}

impl<'de> serde::Deserialize<'de> for NameList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(d).map(NameList)
    }
}
