//! `synchro plugin check`: what a component or a plugin manifest amounts to on this host.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use synchro_roles::{Plugin, Roles};
use synchro_supervisor::Config;

/// `synchro plugin check`: which roles a component implements, or what does not match;
/// for a manifest, also what it asks for and what this host's config grants it, written
/// to `out`. With the host's config (`host`), the compiled component goes into that host's
/// cache, so that its next load is quick; without one, nothing is written anywhere.
pub fn run(file: &Path, host: Option<&Path>, out: &mut impl Write) -> anyhow::Result<()> {
    let config = Config::load_or_default(host)?;
    let cache = host.map(|_| config.data_dir.join("cache"));
    let engine = synchro_roles::engine(cache.as_deref(), config.fuel_metering)?;
    if file.extension().is_some_and(|e| e == "toml") {
        let plugin = Plugin::load(&engine, file, &config.load_policy())?;
        let manifest = &plugin.manifest;
        writeln!(
            out,
            "{}: ok ({} {}, component {})",
            file.display(),
            manifest.name,
            manifest.version,
            manifest.component.display()
        )?;
        for role in &manifest.roles {
            writeln!(out, "  role {}: ok", role.name())?;
        }
        for (name, ask) in &manifest.capabilities {
            writeln!(out, "  asks for {name}: {ask}")?;
        }
        let narrowed = if plugin.grants.narrowed {
            " (narrowed by the host config's grants)"
        } else {
            ""
        };
        writeln!(out, "  granted{narrowed}:")?;
        for (name, grant) in plugin.grants.describe() {
            writeln!(out, "    {name}: {grant}")?;
        }
        let l = &plugin.limits;
        writeln!(
            out,
            "  limits: deadline {:?}, memory {} MiB, {} entities / {} KiB per snapshot, {} KiB per message, fuel {}; quarantined after {} failures",
            l.deadline,
            l.memory_mb,
            l.max_entities,
            l.max_snapshot_kb,
            l.max_message_kb,
            l.fuel.map_or("unmetered".to_owned(), |f| f.to_string()),
            l.quarantine_after
        )?;
        return Ok(());
    }
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let (component, _) = engine
        .compile(&bytes)
        .with_context(|| format!("{} is not a valid component", file.display()))?;
    writeln!(
        out,
        "{}: a component of {} KiB",
        file.display(),
        bytes.len() / 1024
    )?;
    let roles = Roles::exported(&engine.exports(&component));
    if roles.is_empty() {
        anyhow::bail!(
            "{} exports none of the synchro:plugin roles (collector, event-step, model-policy, sync-step); its exports do not match",
            file.display()
        );
    }
    let linked = engine.link(&component)?;
    for role in roles {
        Roles::check_export(role, &linked)
            .with_context(|| format!("role {}: does not match", role.name()))?;
        writeln!(out, "  role {}: ok", role.name())?;
    }
    let imports = engine.imports(&component);
    writeln!(out, "  imports ({}): {}", imports.len(), imports.join(", "))?;
    Ok(())
}
