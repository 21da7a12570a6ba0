//! `synchro baseline list | reset`: a collector's baseline, read from the database of a
//! host that is not running.

use std::io::Write;

use synchro_model::OneLine;
use synchro_store::Db;
use synchro_supervisor::Config;

/// Every entity the baseline of `plugin` records, with its hash (Vitrage's "get all").
pub fn list(config: &Config, plugin: &str) -> anyhow::Result<()> {
    let db = Db::open(&config.data_dir)?;
    known_plugin(&db, plugin)?;
    let mut out = std::io::stdout().lock();
    for entry in db.list_baseline(plugin)? {
        let e = &entry.entity;
        writeln!(
            out,
            "{:016x} {} {} {}",
            entry.hash,
            OneLine(e.kind()),
            OneLine(e.key()),
            e.properties()
        )?;
    }
    Ok(())
}

/// Forgets the baseline of `plugin`, so that its next collect re-emits everything.
pub fn reset(config: &Config, plugin: &str) -> anyhow::Result<()> {
    let db = Db::open(&config.data_dir)?;
    known_plugin(&db, plugin)?;
    let dropped = db.reset_baseline(plugin)?;
    println!(
        "reset the baseline of {plugin}: {dropped} entities forgotten; its next collect re-emits them as CREATE"
    );
    Ok(())
}

fn known_plugin(db: &Db, plugin: &str) -> anyhow::Result<()> {
    let known = db.baselines()?;
    if known.iter().any(|p| p == plugin) {
        return Ok(());
    }
    if known.is_empty() {
        anyhow::bail!(
            "no baseline for `{plugin}`: no collector has run with this data directory yet"
        );
    }
    anyhow::bail!(
        "no baseline for `{plugin}`; plugins with one: {}",
        known.join(", ")
    )
}
