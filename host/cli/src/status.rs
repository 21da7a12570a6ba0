//! `synchro status`, `dashboard`, `plugin reload` and `plugin release`: the admin API of
//! a running host, and how its answers are printed.

use std::path::Path;

use anyhow::Context;
use synchro_admin::Client;
use synchro_model::OneLine;
use synchro_status::{Health, HostReport};
use synchro_supervisor::Config;

pub fn status(config: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let report = admin(config, |c| async move { c.status().await })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_status(&report);
    }
    Ok(())
}

/// Prints the link to the running host's dashboard (once the host has answered on it).
pub fn dashboard(config: Option<&Path>) -> anyhow::Result<()> {
    let link = admin(config, |c| async move {
        c.status().await?;
        Ok(c.dashboard_link())
    })?;
    println!("{link}");
    eprintln!("(the link carries the admin token: open it in a browser of this machine's user)");
    Ok(())
}

pub fn reload(config: Option<&Path>, name: &str) -> anyhow::Result<()> {
    let reloaded = admin(config, |c| async move { c.reload(name).await })?;
    println!(
        "reloaded {} {} in {} ms ({})",
        reloaded.name,
        reloaded.version,
        reloaded.elapsed_ms,
        if reloaded.cached {
            "compiled component from the cache"
        } else {
            "compiled"
        }
    );
    Ok(())
}

pub fn release(config: Option<&Path>, name: &str) -> anyhow::Result<()> {
    admin(config, |c| async move { c.release(name).await })?;
    println!("released {name}: it is called again on its schedule");
    Ok(())
}

/// Runs one admin API call against the host that runs with `config`.
pub(crate) fn admin<T, F: Future<Output = anyhow::Result<T>>>(
    config: Option<&Path>,
    call: impl FnOnce(Client) -> F,
) -> anyhow::Result<T> {
    let config = Config::load_or_default(config)?;
    let client = Client::for_data_dir(&config.data_dir)?;
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    runtime.block_on(call(client))
}

fn print_status(report: &HostReport) {
    for plugin in &report.plugins {
        let health = match &plugin.health {
            Health::Starting => "starting".to_owned(),
            Health::Ok => "ok".to_owned(),
            Health::RecoverableError {
                failures,
                last_error,
            } => format!(
                "recoverable error, retried later each time, after {failures} failed call(s): {}",
                OneLine(last_error)
            ),
            Health::PermanentError {
                failures,
                last_error,
            } => format!(
                "PERMANENT ERROR (retrying cannot help: check its grants and limits) after \
                 {failures} failed call(s): {}",
                OneLine(last_error)
            ),
            Health::Stopped { reason } => format!(
                "STOPPED by a host error (reload it to start again): {}",
                OneLine(reason)
            ),
            Health::Paused => format!(
                "PAUSED by the operator (`synchro plugin resume {}` restarts it)",
                plugin.name
            ),
            Health::Quarantined { failures, reason } => {
                format!(
                    "QUARANTINED after {failures} failed calls: {}",
                    OneLine(reason)
                )
            }
        };
        println!(
            "{} {} [{}] {health}",
            plugin.name,
            plugin.version,
            plugin.roles.join(", ")
        );
        let c = &plugin.counters;
        println!(
            "  calls {} failures {} denials {} changes {} processed {} retried {} dead-lettered {} quarantines {} reloads {} failed-reloads {}",
            c.calls,
            c.failures,
            c.denials,
            c.changes,
            c.processed,
            c.retried,
            c.dead_lettered,
            c.quarantines,
            c.reloads,
            c.failed_reloads
        );
        let queues = [
            ("policy", &plugin.policy_queue, "policed", c.policed),
            ("sync", &plugin.sync_queue, "enacted", c.enacted),
        ];
        for (role, queue, done, count) in queues {
            if let Some(q) = queue {
                println!(
                    "  {role} queue: ready {} in-flight {} backing-off {} held {} {done} {count}",
                    q.ready, q.in_flight, q.backing_off, q.held
                );
            }
        }
        if let Some(held) = &plugin.held_deletes {
            println!(
                "  HELD {} deletes ({}), the first: {}",
                held.count,
                held.reason,
                held.sample
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!(
                "  check the source, then `synchro plugin approve-deletes {}` deletes them",
                plugin.name
            );
        }
        if let Some(error) = &plugin.reload_error {
            println!("  last reload refused: {}", OneLine(error));
        }
    }
    let outbox = &report.outbox;
    let behind: Vec<String> = outbox
        .readers
        .iter()
        .map(|(reader, at)| {
            let behind = outbox.last.saturating_sub(*at);
            format!("{} {behind} behind", OneLine(reader))
        })
        .collect();
    println!(
        "changes: {} committed; {}",
        outbox.last,
        if behind.is_empty() {
            "no reader running".to_owned()
        } else {
            behind.join(", ")
        }
    );
    let r = &report.responses;
    if *r != Default::default() {
        println!(
            "responses: delivered {} early {} late {} duplicate {} unknown {} malformed {} timed out {}",
            r.delivered, r.early, r.late, r.duplicate, r.unknown, r.malformed, r.timed_out
        );
    }
    for loading in &report.loading {
        let name = loading.name.as_deref().unwrap_or("(unnamed)");
        let replaces = if loading.replaces_running {
            "; the running version serves meanwhile"
        } else {
            ""
        };
        println!(
            "{} compiling for {:.1} s ({}{replaces})",
            OneLine(name),
            loading.elapsed_ms as f64 / 1000.0,
            OneLine(&loading.manifest)
        );
    }
    for refused in &report.refused {
        // The error names the manifest.
        println!("NOT LOADED: {}", OneLine(&refused.error));
    }
    if report.plugins.is_empty() && report.refused.is_empty() {
        println!("no plugin");
    }
}
