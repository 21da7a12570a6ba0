//! `synchro baseline list | reset`: a collector's baseline — through the admin API of the
//! host that runs with this data directory, or read from its database when none runs.

use std::io::Write;

use anyhow::Context;
use synchro_admin::{Client, MAX_PAGE, PageRequest};
use synchro_model::OneLine;
use synchro_store::Db;
use synchro_supervisor::Config;

/// Every entity the baseline of `plugin` records, with its hash (Vitrage's "get all").
pub fn list(config: &Config, plugin: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut line = |hash: &str, kind: &str, key: &str, properties: &str| {
        writeln!(
            out,
            "{hash} {} {} {properties}",
            OneLine(kind),
            OneLine(key)
        )
    };
    if let Some((client, runtime)) = running(config)? {
        let mut page = PageRequest {
            kind: None,
            owner: None,
            only: None,
            after: None,
            limit: MAX_PAGE,
        };
        loop {
            let found = runtime.block_on(client.baseline(plugin, &page))?;
            for e in &found.entries {
                line(&e.hash, &e.kind, &e.key, e.properties.get())?;
            }
            match found.next {
                Some(next) => page.after = Some(next),
                None => return Ok(()),
            }
        }
    }
    let db = Db::open(&config.data_dir)?;
    known_plugin(&db, plugin)?;
    for entry in db.list_baseline(plugin)? {
        let e = &entry.entity;
        line(
            &format!("{:016x}", entry.hash),
            e.kind(),
            e.key(),
            e.properties(),
        )?;
    }
    Ok(())
}

/// Forgets the baseline of `plugin`, so that its next collect re-emits everything.
pub fn reset(config: &Config, plugin: &str) -> anyhow::Result<()> {
    let dropped = match running(config)? {
        Some((client, runtime)) => runtime.block_on(client.reset_baseline(plugin))?,
        None => {
            let db = Db::open(&config.data_dir)?;
            known_plugin(&db, plugin)?;
            db.reset_baseline(plugin)?
        }
    };
    println!(
        "reset the baseline of {plugin}: {dropped} entities forgotten; its next collect re-emits them as CREATE"
    );
    Ok(())
}

/// The client of the host running with this data directory, if one answers (a host
/// killed with -9 leaves its address behind).
fn running(config: &Config) -> anyhow::Result<Option<(Client, tokio::runtime::Runtime)>> {
    let Ok(client) = Client::for_data_dir(&config.data_dir) else {
        return Ok(None);
    };
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    Ok(runtime
        .block_on(client.answers())
        .then_some((client, runtime)))
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
