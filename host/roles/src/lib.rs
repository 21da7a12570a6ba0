//! The roles a plugin plays for the host, and what runs them.
//!
//! Each role is one folder: its manifest section, its runner (the loop that schedules
//! its calls and handles their outcome) and its call into the engine. A role is
//! registered in two places here: its section in `Sections` (read before anything is
//! compiled) and its export in [`Roles`]. A plugin is loaded as a whole ([`Plugin`]), and
//! runs through a [`Deployment`], whose version a reload swaps without stopping the
//! runners.

mod backoff;
pub mod collector;
mod deployment;
pub mod event_step;
mod failure;
pub mod model_policy;
mod model_work;
mod plugin;
mod session;
pub mod sync_step;
mod task;

use std::path::Path;
use std::sync::Arc;

use synchro_capability::{Capabilities, Services};
use synchro_engine::{CallState, Engine};
use synchro_manifest::{Manifest, ManifestError, Role};
use tokio::sync::watch;

use backoff::Backoff;
pub use deployment::{CallFailure, Deployment, NotQuarantined, Recheck};
pub use model_work::{Mode, ModelWork, Modes};
pub use plugin::{Declared, LoadPolicy, Plugin, manifests_in};
/// Where a plugin's compiled component came from (`Plugin::origin`).
pub use synchro_engine::Origin;
pub use task::{Ended, PluginTask};

/// The engine every plugin runs on: its calls' state is the capabilities'.
pub type PluginEngine = Engine<Capabilities>;

/// A linked component, ready to instantiate.
pub type Linked = synchro_engine::wasmtime::component::InstancePre<CallState<Capabilities>>;

/// The engine with every capability linked; compiled components cached in `cache_dir`
/// (none: not kept).
pub fn engine(cache_dir: Option<&Path>, fuel_metering: bool) -> anyhow::Result<PluginEngine> {
    Engine::new(
        cache_dir,
        fuel_metering,
        synchro_capability::add_to_linker::<CallState<Capabilities>>,
    )
}

/// The manifest sections of the roles a plugin declares, read before its component is
/// compiled (a mistake there is reported without compiling anything).
pub(crate) struct Sections {
    collector: Option<collector::Schedule>,
    event_step: Option<event_step::Events>,
    model_policy: Option<ModelWork>,
    sync_step: Option<ModelWork>,
}

impl Sections {
    /// The manifest sections of the roles: which top-level key belongs to which role.
    const SECTIONS: &[(&str, Role)] = &[
        (collector::SECTION, Role::Collector),
        (event_step::SECTION, Role::EventStep),
        (model_policy::SECTION, Role::ModelPolicy),
        (sync_step::SECTION, Role::SyncStep),
    ];

    /// Reads each role's section of `manifest`; a section of no role, or of a role the
    /// plugin does not have, is an error.
    pub(crate) fn from_manifest(manifest: &Manifest) -> Result<Sections, ManifestError> {
        for key in manifest.sections.keys() {
            match Sections::SECTIONS
                .iter()
                .find(|(section, _)| section == key)
            {
                None => {
                    let known: Vec<&str> = Sections::SECTIONS.iter().map(|(s, _)| *s).collect();
                    return Err(manifest.unknown_field(key, &known));
                }
                Some((section, role)) if !manifest.roles.contains(role) => {
                    return Err(manifest.error(format!(
                        "`[{section}]` is only for plugins with the {} role",
                        role.name()
                    )));
                }
                Some(_) => {}
            }
        }
        let mut sections = Sections {
            collector: None,
            event_step: None,
            model_policy: None,
            sync_step: None,
        };
        for role in &manifest.roles {
            match role {
                Role::Collector => {
                    sections.collector = Some(collector::Collector::section(manifest)?)
                }
                Role::EventStep => {
                    sections.event_step = Some(event_step::EventStep::section(manifest)?)
                }
                Role::ModelPolicy => {
                    sections.model_policy = Some(model_policy::ModelPolicy::section(manifest)?)
                }
                Role::SyncStep => {
                    sections.sync_step = Some(sync_step::SyncStep::section(manifest)?)
                }
            }
        }
        Ok(sections)
    }

    /// The topics the plugin's roles read, which the operator's grants must allow.
    pub(crate) fn subscribes(&self) -> Option<&synchro_bus::Topics> {
        self.event_step.as_ref().map(|events| &events.topics)
    }

    /// The model roles' sections, by name.
    pub(crate) fn model_work(&self) -> impl Iterator<Item = (&'static str, &ModelWork)> {
        [
            (model_policy::SECTION, &self.model_policy),
            (sync_step::SECTION, &self.sync_step),
        ]
        .into_iter()
        .filter_map(|(section, work)| Some((section, work.as_ref()?)))
    }
}

/// The roles one plugin plays, each with its manifest section and its export.
pub struct Roles {
    pub collector: Option<collector::Collector>,
    pub event_step: Option<event_step::EventStep>,
    pub model_policy: Option<model_policy::ModelPolicy>,
    pub sync_step: Option<sync_step::SyncStep>,
}

impl Roles {
    /// The roles of `sections` in the component linked as `linked`, which must export
    /// the interface of each.
    pub(crate) fn link(sections: Sections, linked: &Linked) -> anyhow::Result<Roles> {
        Ok(Roles {
            collector: sections
                .collector
                .map(|schedule| collector::Collector::link(schedule, linked))
                .transpose()?,
            event_step: sections
                .event_step
                .map(|events| event_step::EventStep::link(events, linked))
                .transpose()?,
            model_policy: sections
                .model_policy
                .map(|policy| model_policy::ModelPolicy::link(policy, linked))
                .transpose()?,
            sync_step: sections
                .sync_step
                .map(|sync| sync_step::SyncStep::link(sync, linked))
                .transpose()?,
        })
    }

    /// The model roles the plugin plays: each with the name and the contents of its
    /// manifest section.
    pub fn model_work(&self) -> impl Iterator<Item = (Role, &'static str, &ModelWork)> {
        let policy = self
            .model_policy
            .as_ref()
            .map(|p| (Role::ModelPolicy, model_policy::SECTION, &p.policy));
        let sync = self
            .sync_step
            .as_ref()
            .map(|s| (Role::SyncStep, sync_step::SECTION, &s.sync));
        policy.into_iter().chain(sync)
    }

    /// Checks that `linked` exports the interface of `role` as this host expects it.
    pub fn check_export(role: Role, linked: &Linked) -> anyhow::Result<()> {
        match role {
            Role::Collector => collector::guest(linked).map(drop),
            Role::EventStep => event_step::guest(linked).map(drop),
            Role::ModelPolicy => model_policy::guest(linked).map(drop),
            Role::SyncStep => sync_step::guest(linked).map(drop),
        }
    }

    /// The roles whose interface `exports` (a component's export names) include.
    pub fn exported(exports: &[String]) -> Vec<Role> {
        Role::ALL
            .into_iter()
            .filter(|role| {
                let prefix = format!("synchro:plugin/{}@", role.name());
                exports.iter().any(|name| name.starts_with(&prefix))
            })
            .collect()
    }

    /// Starts a runner for each role of the plugin that `deployment` runs; they stop when
    /// `stop` turns true.
    pub fn spawn(
        &self,
        deployment: &Arc<Deployment>,
        engine: &Arc<PluginEngine>,
        services: &Services,
        stop: &watch::Receiver<bool>,
    ) -> Vec<PluginTask> {
        let name = &deployment.current().name;
        let stopped = || {
            let (status, plugin) = (deployment.status.clone(), name.clone());
            move |panic: String| {
                status.emit(synchro_status::events::Stopped {
                    plugin: &plugin,
                    panic: &panic,
                })
            }
        };
        let mut tasks = Vec::new();
        if self.collector.is_some() {
            let runner =
                collector::Runner::new(deployment.clone(), engine.clone(), services.clone());
            tasks.push(PluginTask::spawn(name, runner.run(stop.clone()), stopped()));
        }
        if self.event_step.is_some() {
            let runner =
                event_step::Runner::new(deployment.clone(), engine.clone(), services.clone());
            tasks.push(PluginTask::spawn(name, runner.run(stop.clone()), stopped()));
        }
        if self.model_policy.is_some() {
            let runner =
                model_policy::Runner::new(deployment.clone(), engine.clone(), services.clone());
            tasks.push(PluginTask::spawn(name, runner.run(stop.clone()), stopped()));
        }
        if self.sync_step.is_some() {
            let runner =
                sync_step::Runner::new(deployment.clone(), engine.clone(), services.clone());
            tasks.push(PluginTask::spawn(name, runner.run(stop.clone()), stopped()));
        }
        tasks
    }
}

/// Runs `op` on the state database on a blocking thread: a redb transaction may wait for
/// the disk, which a runtime thread must not.
pub(crate) async fn blocking<T: Send + 'static>(
    db: &Arc<synchro_store::Db>,
    op: impl FnOnce(&synchro_store::Db) -> Result<T, synchro_store::DbError> + Send + 'static,
) -> Result<T, synchro_store::DbError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || op(&db))
        .await
        .expect("state operations do not panic")
}

/// The manifest `/p/FILE` with `text`, with its role sections read, or the error as text:
/// what the roles' own tests parse.
#[cfg(test)]
pub(crate) fn parse_manifest(file: &str, text: &str) -> Result<Manifest, String> {
    let manifest =
        Manifest::parse(&std::path::Path::new("/p").join(file), text).map_err(|e| e.to_string())?;
    Sections::from_manifest(&manifest).map_err(|e| e.to_string())?;
    Ok(manifest)
}
