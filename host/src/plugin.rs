//! A loaded plugin: manifest, grants and linked component, validated together so that a
//! plugin either loads whole or is refused with a message naming the file and the reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::capability::{Grants, Services};
use crate::config::Config;
use crate::manifest::Manifest;
use crate::runtime::{CallLimits, Origin, Prepared, Runtime};

pub struct Plugin {
    pub name: Arc<str>,
    pub manifest: Manifest,
    pub grants: Arc<Grants>,
    pub prepared: Prepared,
    pub limits: CallLimits,
    pub failure: crate::failure::Policy,
    /// Whether the compiled component came from the cache.
    pub origin: Origin,
}

impl Plugin {
    /// Loads the plugin described by the manifest at `path`, under the operator's
    /// defaults, ceilings and grants in `config`.
    pub fn load(runtime: &Runtime, path: &Path, config: &Config) -> anyhow::Result<Plugin> {
        let manifest = Manifest::load(path)?;
        let grants =
            Grants::from_manifest(&manifest, config.grants_for(&manifest.name).as_deref())?;
        let bytes = std::fs::read(&manifest.component).with_context(|| {
            format!(
                "{}: cannot read its component {}",
                path.display(),
                manifest.component.display()
            )
        })?;
        let (component, origin) = runtime
            .compile(&bytes)
            .with_context(|| format!("{}: not a valid component", manifest.component.display()))?;
        let prepared = runtime
            .prepare(&component, &manifest.roles)
            .with_context(|| {
                format!(
                    "{}: does not fit its manifest {}",
                    manifest.component.display(),
                    path.display()
                )
            })?;
        let asked = &manifest.limits;
        let (defaults, ceilings) = (&config.limits, &config.ceilings);
        let name = manifest.name.as_str();
        // The manifest's value, or the host's default, held to the operator's ceiling.
        macro_rules! effective {
            ($field:ident, $key:literal) => {
                held(
                    name,
                    $key,
                    asked.$field.unwrap_or(defaults.$field),
                    ceilings.$field,
                )
            };
        }
        let limits = CallLimits {
            deadline: effective!(deadline, "deadline"),
            memory_bytes: (effective!(memory_mb, "memory-mb") << 20) as usize,
            max_entities: effective!(max_entities, "max-entities"),
            max_snapshot_bytes: effective!(max_snapshot_kb, "max-snapshot-kb") << 10,
            max_message_bytes: (effective!(max_message_kb, "max-message-kb") << 10) as usize,
            fuel: match (asked.fuel.or(defaults.fuel), ceilings.fuel) {
                (None, ceiling) => ceiling,
                (Some(fuel), ceiling) => Some(held(name, "fuel", fuel, ceiling)),
            },
        };
        if let Some(fuel) = limits.fuel
            && !runtime.fuel_metering()
        {
            anyhow::bail!(
                "{}: a fuel budget ({fuel}) needs fuel metering, which this host runs without \
                 (set `fuel-metering = true` in the host config)",
                path.display()
            );
        }
        let failure = crate::failure::Policy {
            quarantine_after: effective!(quarantine_after, "quarantine-after").max(1),
            max_backoff: effective!(max_backoff, "max-backoff"),
        };
        Ok(Plugin {
            failure,
            name: manifest.name.as_str().into(),
            manifest,
            grants: Arc::new(grants),
            prepared,
            limits,
            origin,
        })
    }

    /// Readies the host services this plugin's grants need.
    pub async fn activate(&self, services: &Services) -> anyhow::Result<()> {
        self.grants
            .activate(services)
            .await
            .with_context(|| format!("{}: cannot set up its grants", self.manifest.path.display()))
    }
}

/// `value`, unless it is above the operator's `ceiling`: then the ceiling, logged.
fn held<T: PartialOrd + std::fmt::Debug>(
    plugin: &str,
    field: &str,
    value: T,
    ceiling: Option<T>,
) -> T {
    match ceiling {
        Some(ceiling) if value > ceiling => {
            tracing::warn!(
                plugin = %plugin,
                "limits.{field} = {value:?} is above the operator's ceiling: held to {ceiling:?}"
            );
            ceiling
        }
        _ => value,
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
