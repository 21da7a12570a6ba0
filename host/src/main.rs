//! The `synchro` command line.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use synchro::bus::{Bus, Filter};
use synchro::config::Config;
use synchro::host::Host;
use synchro::runtime::Runtime;
use synchro::state::State;
use synchro::toolchain::Route;

#[derive(Parser)]
#[command(
    name = "synchro",
    version,
    about = "Host for WebAssembly synchronizer plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the plugins of the plugin directory and prints change notifications.
    Run {
        /// Host configuration; the embedded defaults when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print each notification as its JSON event instead of a readable line.
        #[arg(long)]
        json: bool,
        /// Only print notifications about these entity kinds (comma-separated).
        #[arg(long, value_delimiter = ',')]
        kinds: Vec<String>,
    },
    /// Builds and checks plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Shows the plugins of a running host: health, counters, refused manifests.
    Status {
        /// The config the host runs with (it locates the host's data directory).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the JSON the admin API returns.
        #[arg(long)]
        json: bool,
    },
    /// Inspects and resets collector baselines (the host must not be running).
    Baseline {
        #[command(subcommand)]
        command: BaselineCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Builds a Rust plugin folder into a wasm component.
    Build {
        dir: PathBuf,
        /// Which toolchain to use.
        #[arg(long, value_enum, default_value_t = Route::Auto)]
        toolchain: Route,
        /// Copy the component here.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Checks a component (.wasm) or a plugin manifest (.toml) against the WIT worlds.
    Check {
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Loads a plugin of a running host again from its files and swaps it in.
    Reload {
        name: String,
        /// The config the host runs with.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Ends the quarantine of a plugin of a running host.
    Release {
        name: String,
        /// The config the host runs with.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Lists a collector's baseline: every entity it last reported, with its hash.
    List {
        plugin: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Forgets a collector's baseline, so that its next collect re-emits everything.
    Reset {
        plugin: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,cranelift=warn,wasmtime=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("synchro: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run {
            config,
            json,
            kinds,
        } => {
            let config = Config::load_or_default(config.as_deref())?;
            let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
            runtime.block_on(serve(config, json, kinds))
        }
        Command::Plugin {
            command:
                PluginCommand::Build {
                    dir,
                    toolchain,
                    output,
                },
        } => {
            let built = synchro::toolchain::build(&dir, toolchain)?;
            let path = match output {
                Some(output) => {
                    std::fs::copy(&built, &output)
                        .with_context(|| format!("copying to {}", output.display()))?;
                    output
                }
                None => built,
            };
            println!("{}", path.display());
            Ok(())
        }
        Command::Plugin {
            command: PluginCommand::Check { file, config },
        } => {
            let config = Config::load_or_default(config.as_deref())?;
            check(&file, &config)
        }
        Command::Status { config, json } => {
            let report = admin(config.as_deref(), |c| async move { c.status().await })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_status(&report);
            }
            Ok(())
        }
        Command::Plugin {
            command: PluginCommand::Reload { name, config },
        } => {
            let reloaded = admin(config.as_deref(), |c| async move { c.reload(&name).await })?;
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
        Command::Plugin {
            command: PluginCommand::Release { name, config },
        } => {
            admin(config.as_deref(), |c| {
                let name = name.clone();
                async move { c.release(&name).await }
            })?;
            println!("released {name}: it is called again on its schedule");
            Ok(())
        }
        Command::Baseline {
            command: BaselineCommand::List { plugin, config },
        } => {
            let state = State::open(&Config::load_or_default(config.as_deref())?.data_dir)?;
            known_plugin(&state, &plugin)?;
            let mut out = std::io::stdout().lock();
            for entry in state.list_baseline(&plugin)? {
                let e = &entry.entity;
                writeln!(
                    out,
                    "{:016x} {} {} {}",
                    entry.hash,
                    e.kind(),
                    e.key(),
                    e.properties()
                )?;
            }
            Ok(())
        }
        Command::Baseline {
            command: BaselineCommand::Reset { plugin, config },
        } => {
            let state = State::open(&Config::load_or_default(config.as_deref())?.data_dir)?;
            known_plugin(&state, &plugin)?;
            let dropped = state.reset_baseline(&plugin)?;
            println!(
                "reset the baseline of {plugin}: {dropped} entities forgotten; its next collect re-emits them as CREATE"
            );
            Ok(())
        }
    }
}

/// Runs one admin API call against the host that runs with `config`.
fn admin<T, F: Future<Output = anyhow::Result<T>>>(
    config: Option<&Path>,
    call: impl FnOnce(synchro::admin::Client) -> F,
) -> anyhow::Result<T> {
    let config = Config::load_or_default(config)?;
    let client = synchro::admin::Client::for_data_dir(&config.data_dir)?;
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    runtime.block_on(call(client))
}

fn print_status(report: &synchro::status::HostReport) {
    use synchro::status::Health;
    for plugin in &report.plugins {
        let health = match &plugin.health {
            Health::Running => "running".to_owned(),
            Health::BackingOff {
                failures,
                last_error,
            } => format!("backing off after {failures} failed call(s): {last_error}"),
            Health::Quarantined { failures, reason } => {
                format!("QUARANTINED after {failures} failed calls: {reason}")
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
        if let Some(error) = &plugin.reload_error {
            println!("  last reload refused: {error}");
        }
    }
    for refused in &report.refused {
        // The error names the manifest.
        println!("NOT LOADED: {}", refused.error);
    }
    if report.plugins.is_empty() && report.refused.is_empty() {
        println!("no plugin");
    }
}

fn known_plugin(state: &State, plugin: &str) -> anyhow::Result<()> {
    let known = state.baselines()?;
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

/// `synchro run`: the host, plus a printer of change notifications on stdout.
async fn serve(config: Config, json: bool, kinds: Vec<String>) -> anyhow::Result<()> {
    let bus = Bus::from_settings(&config.bus)?;
    let filter = if kinds.is_empty() {
        Filter::All
    } else {
        Filter::Kinds(kinds.into_iter().collect())
    };
    let mut changes = bus.subscribe(synchro::change::TOPIC, filter)?;
    let printer = tokio::spawn(async move {
        let mut out = std::io::stdout();
        while let Some(message) = changes.recv().await {
            let line = if json {
                String::from_utf8_lossy(&message.payload).into_owned()
            } else {
                readable(&message)
            };
            // stdout going away (a closed pipe) ends printing, not the host.
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    });
    let host = Host::new(config, bus)?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping: waiting for calls in flight");
        let _ = stop.send(true);
    });
    host.run(shutdown).await?;
    printer.abort();
    Ok(())
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `12:00:01.123Z UPDATE pserver srv-1 (http-inventory) {"hostname":"b"}`
fn readable(message: &synchro::bus::Message) -> String {
    let event: serde_json::Value = serde_json::from_slice(&message.payload).unwrap_or_default();
    let element = event
        .get("vertex")
        .or_else(|| event.get("edge"))
        .cloned()
        .unwrap_or_default();
    let time = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(message.timestamp),
    );
    let time = time.to_string();
    let mut line = format!(
        "{} {:<6} {} {} ({})",
        time.get(11..).unwrap_or(&time),
        event["operation"].as_str().unwrap_or("?"),
        element["type"].as_str().unwrap_or("?"),
        element["key"].as_str().unwrap_or("?"),
        event["source"].as_str().unwrap_or("?"),
    );
    if let (Some(source), Some(target)) = (element.get("source"), element.get("target")) {
        line += &format!(
            " {} -> {}",
            source["key"].as_str().unwrap_or("?"),
            target["key"].as_str().unwrap_or("?")
        );
    }
    if let Some(properties) = element
        .get("properties")
        .filter(|p| p.as_object().is_some_and(|o| !o.is_empty()))
    {
        line += &format!(" {properties}");
    }
    line
}

/// `synchro plugin check`: which roles a component implements, or what does not match;
/// for a manifest, also what it asks for and what this host's config grants it.
fn check(file: &Path, config: &Config) -> anyhow::Result<()> {
    let runtime = Runtime::for_config(config)?;
    if file.extension().is_some_and(|e| e == "toml") {
        let plugin = synchro::plugin::Plugin::load(&runtime, file, config)?;
        let manifest = &plugin.manifest;
        println!(
            "{}: ok ({} {}, component {})",
            file.display(),
            manifest.name,
            manifest.version,
            manifest.component.display()
        );
        for role in &manifest.roles {
            println!("  role {}: ok", role.name());
        }
        for (name, ask) in &manifest.capabilities {
            println!("  asks for {name}: {ask}");
        }
        let narrowed = if plugin.grants.narrowed {
            " (narrowed by the host config's grants)"
        } else {
            ""
        };
        println!("  granted{narrowed}:");
        for (name, grant) in plugin.grants.describe() {
            println!("    {name}: {grant}");
        }
        let l = &plugin.limits;
        println!(
            "  limits: deadline {:?}, memory {} MiB, {} entities / {} KiB per snapshot, {} KiB per message, fuel {}; quarantined after {} failures",
            l.deadline,
            l.memory_bytes >> 20,
            l.max_entities,
            l.max_snapshot_bytes >> 10,
            l.max_message_bytes >> 10,
            l.fuel.map_or("unmetered".to_owned(), |f| f.to_string()),
            plugin.failure.quarantine_after
        );
        return Ok(());
    }
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let (component, _) = runtime
        .compile(&bytes)
        .with_context(|| format!("{} is not a valid component", file.display()))?;
    println!(
        "{}: a component of {} KiB",
        file.display(),
        bytes.len() / 1024
    );
    let roles = runtime.exported_roles(&component);
    if roles.is_empty() {
        anyhow::bail!(
            "{} exports none of the synchro:plugin roles (collector, event-step, model-policy, sync-step); its exports do not match",
            file.display()
        );
    }
    for role in &roles {
        runtime
            .prepare(&component, std::slice::from_ref(role))
            .with_context(|| format!("role {}: does not match", role.name()))?;
        println!("  role {}: ok", role.name());
    }
    let imports = runtime.imports(&component);
    println!("  imports ({}): {}", imports.len(), imports.join(", "));
    Ok(())
}
