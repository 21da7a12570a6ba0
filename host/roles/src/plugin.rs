//! A loaded plugin: manifest, grants and linked component, validated together so that a
//! plugin either loads whole or is refused with a message naming the file and the reason.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use synchro_capability::{Asks, CallContext, Caller, Grants, Services};
use synchro_engine::Origin;
use synchro_manifest::{LimitOverrides, Limits, Manifest};
use synchro_status::Status;

use crate::{Linked, PluginEngine, Roles, Sections};

/// What the operator's host config says about every plugin it loads.
pub struct LoadPolicy<'a> {
    /// Limits of a plugin whose manifest does not set them.
    pub defaults: &'a Limits,
    /// The most any manifest gets.
    pub ceilings: &'a LimitOverrides,
    /// The operator's grants, per plugin name (`[grants.NAME]`).
    pub grants: &'a BTreeMap<String, toml::Table>,
    /// Whether a plugin without an entry in `grants` is granted nothing.
    pub grants_required: bool,
    /// The shortest `[schedule] interval` a collector gets, whatever its manifest asks.
    pub min_interval: Duration,
    /// How far sync steps manage their kinds outward.
    pub modes: &'a crate::Modes,
}

impl LoadPolicy<'_> {
    /// The operator's grants for plugin `name`: its entry, nothing when grants are
    /// required and it has none, or `None`: as the manifest asks.
    fn grants_for(&self, name: &str) -> Option<Cow<'_, toml::Table>> {
        match self.grants.get(name) {
            Some(table) => Some(Cow::Borrowed(table)),
            None if self.grants_required => Some(Cow::Owned(toml::Table::new())),
            None => None,
        }
    }
}

pub struct Plugin {
    pub name: Arc<str>,
    pub manifest: Manifest,
    pub roles: Roles,
    pub grants: Arc<Grants>,
    pub linked: Linked,
    /// The manifest's limits, filled in by the defaults and held to the ceilings.
    pub limits: Limits,
    /// Whether the compiled component came from the cache.
    pub origin: Origin,
}

/// What a manifest declares, read and checked against the operator's policy: all of a
/// plugin but its component, so that a mistake here is named before anything is read or
/// compiled.
pub struct Declared {
    manifest: Manifest,
    sections: Sections,
    grants: Grants,
}

impl Declared {
    /// Reads the role sections and the grants of `manifest` under `policy`.
    pub fn new(manifest: Manifest, policy: &LoadPolicy<'_>) -> anyhow::Result<Declared> {
        let path = &manifest.path;
        let mut sections = Sections::from_manifest(&manifest)?;
        if let Some(schedule) = &mut sections.collector
            && schedule.interval < policy.min_interval
        {
            tracing::warn!(
                plugin = %manifest.name,
                "schedule.interval = {:?} is below the operator's min-interval: held to {:?}",
                schedule.interval,
                policy.min_interval
            );
            schedule.interval = policy.min_interval;
        }
        let asks = Asks {
            manifest: &manifest,
            subscribes: sections.subscribes(),
        };
        let grants = Grants::from_manifest(&asks, policy.grants_for(&manifest.name).as_deref())?;
        if let Some(events) = &sections.event_step {
            let topic = &events.dead_letter;
            if *topic != crate::event_step::own_dead_letter(&manifest.name)
                && !grants.bus.may_publish(topic)
            {
                anyhow::bail!(
                    "{}: field `events.dead-letter`: writing dead letters to `{topic}` needs a grant \
                     to publish there (`capabilities.bus.publish`, and the operator's grants); \
                     unset, they go to the plugin's own `{}`",
                    path.display(),
                    crate::event_step::own_dead_letter(&manifest.name)
                );
            }
        }
        if let Some(sync) = &mut sections.sync_step {
            sync.modes = policy.modes.of(&manifest.name, &sync.kinds);
        }
        for (section, work) in sections.model_work() {
            if let Some(kind) = work.kinds.iter().find(|k| !grants.store.may_read(k)) {
                // The role is handed every entity of its kinds: reading them is what it asks.
                anyhow::bail!(
                    "{}: field `{section}.kinds`: handling `{kind}` entities needs a grant to \
                     read them (`capabilities.store.read`, and the operator's grants)",
                    path.display()
                );
            }
        }
        Ok(Declared {
            manifest,
            sections,
            grants,
        })
    }
}

impl Plugin {
    /// Loads the plugin described by the manifest at `path`, under the operator's
    /// defaults, ceilings and grants in `policy`.
    pub fn load(
        engine: &PluginEngine,
        path: &Path,
        policy: &LoadPolicy<'_>,
    ) -> anyhow::Result<Plugin> {
        let Declared {
            manifest,
            sections,
            grants,
        } = Declared::new(Manifest::load(path)?, policy)?;
        let bytes = synchro_manifest::read_capped(
            &manifest.component,
            synchro_manifest::MAX_COMPONENT_BYTES,
        )
        .map_err(|why| {
            anyhow::anyhow!(
                "{}: its component {} {why}",
                path.display(),
                manifest.component.display()
            )
        })?;
        let (component, origin) = engine
            .compile(&bytes)
            .with_context(|| format!("{}: not a valid component", manifest.component.display()))?;
        let fits = |error: anyhow::Error| {
            error.context(format!(
                "{}: does not fit its manifest {}",
                manifest.component.display(),
                path.display()
            ))
        };
        let linked = engine.link(&component).map_err(fits)?;
        let roles = Roles::link(sections, &linked).map_err(fits)?;
        let name = manifest.name.as_str();
        let limits = policy
            .defaults
            .resolve(&manifest.limits, policy.ceilings, |field, value, ceiling| {
                tracing::warn!(
                    plugin = %name,
                    "limits.{field} = {value:?} is above the operator's ceiling: held to {ceiling:?}"
                )
            });
        if let Some(fuel) = limits.fuel
            && !engine.fuel_metering()
        {
            anyhow::bail!(
                "{}: a fuel budget ({fuel}) needs fuel metering, which this host runs without \
                 (set `fuel-metering = true` in the host config)",
                path.display()
            );
        }
        Ok(Plugin {
            name: manifest.name.as_str().into(),
            manifest,
            roles,
            grants: Arc::new(grants),
            linked,
            limits,
            origin,
        })
    }

    /// Readies the host services this plugin's grants need, and an event step's place in
    /// the change stream.
    pub async fn activate(&self, services: &Services) -> anyhow::Result<()> {
        self.grants.activate(services).await.with_context(|| {
            format!("{}: cannot set up its grants", self.manifest.path.display())
        })?;
        if let Some(step) = &self.roles.event_step {
            step.reserve(services).with_context(|| {
                format!(
                    "{}: cannot keep its place in the change stream",
                    self.manifest.path.display()
                )
            })?;
        }
        Ok(())
    }

    /// The context of a call of this plugin starting now, counted in `status`.
    pub fn call_context(&self, status: &Arc<Status>, services: &Services) -> CallContext {
        CallContext::new(Caller {
            plugin: self.name.clone(),
            grants: self.grants.clone(),
            services: services.clone(),
            limits: self.limits,
            status: status.clone(),
        })
    }
}

/// The manifests (`*.toml`) in `dir`, sorted so that loading order is stable.
pub fn manifests_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the plugin directory {}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "toml") {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}
