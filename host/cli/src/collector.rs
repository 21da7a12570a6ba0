//! An operator's commands to a running host's collector: approve its held deletes, plan,
//! collect now, pause and resume; and any plugin's runs.

use std::path::Path;

use synchro_status::{CollectPlan, RunRecord};

use crate::status::admin;

/// Approves the held deletes of `name`: the set `held` names, or the one the host shows
/// now (which this prints first, so the operator sees what was deleted).
pub fn approve_deletes(
    config: Option<&Path>,
    name: &str,
    held: Option<&str>,
) -> anyhow::Result<()> {
    let (shown, deleted) = admin(config, |client| async move {
        let report = client.status().await?;
        let shown = report
            .plugins
            .into_iter()
            .find(|p| p.name == name)
            .and_then(|p| p.held_deletes);
        let id = held
            .map(str::to_owned)
            .or_else(|| shown.as_ref().map(|s| s.id.clone()));
        let deleted = client.approve_deletes(name, id.as_deref()).await?;
        Ok((shown, deleted))
    })?;
    match shown {
        Some(shown) => println!(
            "{name}: deleted {deleted} held entities ({}; the first: {})",
            shown.reason,
            shown.sample.join(", ")
        ),
        None => println!("{name}: deleted {deleted} held entities"),
    }
    Ok(())
}

pub fn plan(config: Option<&Path>, name: &str, json: bool) -> anyhow::Result<()> {
    let plan = admin(config, |client| async move { client.plan(name).await })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print_plan(name, &plan, &mut std::io::stdout().lock())?;
    }
    Ok(())
}

fn print_plan(
    name: &str,
    plan: &CollectPlan,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    for change in &plan.changes {
        writeln!(out, "{} {} {}", change.operation, change.kind, change.key)?;
    }
    writeln!(
        out,
        "{name}: {} entities, {} changes{}{}",
        plan.entities,
        plan.changes.len(),
        if plan.refused > 0 {
            format!(", {} left to the plugins that own them", plan.refused)
        } else {
            String::new()
        },
        if plan.in_grace > 0 {
            format!(", {} deletes in their grace", plan.in_grace)
        } else {
            String::new()
        },
    )?;
    if let Some(held) = &plan.held_deletes {
        writeln!(
            out,
            "{name}: {} deletes would be held: {}",
            held.count, held.reason
        )?;
    }
    writeln!(out, "(a plan: nothing was committed or published)")
}

pub fn runs(config: Option<&Path>, name: &str, json: bool) -> anyhow::Result<()> {
    let runs = admin(config, |client| async move { client.runs(name).await })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(());
    }
    for run in &runs {
        let at = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(run.started()),
        );
        match run {
            RunRecord::Collect(run) => {
                let r = &run.report;
                let outcome = match &run.error {
                    Some(error) => format!("FAILED: {}", synchro_model::OneLine(error)),
                    None => format!(
                        "{} entities: {} created, {} updated, {} deleted, {} refused, {} in grace, {} held",
                        r.entities, r.created, r.updated, r.deleted, r.refused, r.in_grace, r.held
                    ),
                };
                println!(
                    "{at} collect {} ms commit {} ms {outcome}",
                    run.collect_ms, run.commit_ms
                );
            }
            RunRecord::Pass(pass) => println!(
                "{at} {} pass {} ms {} entities: {} done, {} failed, {} held",
                pass.role, pass.ms, pass.entities, pass.done, pass.failed, pass.held
            ),
        }
    }
    if runs.is_empty() {
        println!("{name}: no run yet");
    }
    Ok(())
}

pub fn collect_now(config: Option<&Path>, name: &str) -> anyhow::Result<()> {
    let r = admin(
        config,
        |client| async move { client.collect_now(name).await },
    )?;
    println!(
        "{name}: collected {} entities: {} created, {} updated, {} deleted, {} refused, {} deletes in grace, {} held",
        r.entities, r.created, r.updated, r.deleted, r.refused, r.in_grace, r.held
    );
    Ok(())
}

pub fn pause(config: Option<&Path>, name: &str, paused: bool) -> anyhow::Result<()> {
    admin(
        config,
        |client| async move { client.pause(name, paused).await },
    )?;
    if paused {
        println!("{name}: paused; its baseline stays, `synchro plugin resume {name}` restarts it");
    } else {
        println!("{name}: resumed, collecting now");
    }
    Ok(())
}
