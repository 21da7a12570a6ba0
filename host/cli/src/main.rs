//! The `synchro` command line.

mod baseline;
mod build;
mod check;
mod collector;
mod log_lines;
mod model;
mod plugin_test;
mod printer;
mod scaffold;
mod serve;
mod status;

use std::path::PathBuf;

use anyhow::Context;
use build::Route;
use clap::{Parser, Subcommand};
use synchro_supervisor::Config;

#[derive(Parser)]
#[command(
    name = "synchro",
    version,
    about = "Host for WebAssembly synchronizer plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How the log on stderr is written: `text` (a line per record) or `json` (a JSON
    /// object per line, for a log collector).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
        /// Only print these operations: CREATE, UPDATE, DELETE (comma-separated).
        #[arg(long, value_delimiter = ',', value_parser = synchro_bus::ChangeFilter::operation)]
        operations: Vec<synchro_model::Operation>,
        /// Only print the changes of these plugins (`api` for the APIs' writes;
        /// comma-separated).
        #[arg(long, value_delimiter = ',')]
        plugins: Vec<String>,
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
    /// Prints the link to the dashboard of a running host: a page with its plugins, the
    /// live change feed, run records and the model, and buttons to steer them.
    Dashboard {
        /// The config the host runs with (it locates the host's data directory).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Shows the model of a running host: its entities, who owns each, and where its
    /// policies and sync steps are with it.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Inspects and resets collector baselines (the host must not be running).
    Baseline {
        #[command(subcommand)]
        command: BaselineCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Writes a new plugin folder, NAME/, that builds, loads and runs as generated: its
    /// source, its manifest and a README.
    New {
        name: String,
        /// The role it plays for the host.
        #[arg(long, value_parser = ["collector", "event-step", "model-policy", "sync-step"])]
        role: String,
        /// The language it is written in.
        #[arg(long, value_enum, default_value_t = scaffold::Lang::Rust)]
        lang: scaffold::Lang,
        /// Where to write the folder.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Builds a plugin folder into a wasm component: a Rust crate (Cargo.toml), a Python
    /// plugin (app.py, componentize-py), a JavaScript plugin (app.js, componentize-js) or
    /// a C plugin (app.c, clang); the toolchain is installed when missing.
    Build {
        dir: PathBuf,
        /// Which toolchain builds a Rust plugin.
        #[arg(long, value_enum, default_value_t = Route::Auto)]
        toolchain: Route,
        /// Copy the component here.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Runs a plugin's component in a mock host against its fixtures, then the
    /// conformance checks every plugin must pass; exits non-zero when one fails.
    Test {
        /// The plugin's folder (its manifest NAME.toml and the component it names), or
        /// its manifest.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The fixtures (`*.toml`); by default the `fixtures` folder beside the manifest.
        #[arg(long)]
        fixtures: Option<PathBuf>,
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
    /// Deletes the entities a collector holds back (more deletes at once than its limits
    /// allow), exactly those `synchro status` shows.
    ApproveDeletes {
        name: String,
        /// Only if the held set is still this one (its id in `synchro status --json`).
        #[arg(long)]
        held: Option<String>,
        /// The config the host runs with.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Collects once without committing, and prints the changes a collect would make
    /// now and what it would hold back.
    Plan {
        name: String,
        /// The plan as JSON.
        #[arg(long)]
        json: bool,
        /// The config the host runs with.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Lists a plugin's last runs: when, how long, what they did, their errors.
    Runs {
        name: String,
        /// The records as JSON.
        #[arg(long)]
        json: bool,
        /// The config the host runs with.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Makes a collector collect now.
    Collect {
        name: String,
        /// The config the host runs with.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Stops a collector's schedule; its baseline stays.
    Pause {
        name: String,
        /// The config the host runs with.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Restarts a paused collector's schedule, with a collect at once.
    Resume {
        name: String,
        /// The config the host runs with.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Shows one entity: its owner, its bookkeeping, its edge's ends, its properties as
    /// they were hashed.
    Get {
        kind: String,
        key: String,
        /// The config the host runs with.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the entity's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists the model's entities, one a line, by kind then key.
    List {
        /// Only entities of this kind.
        kind: Option<String>,
        /// Only entities this plugin owns (`api` for the APIs' writes).
        #[arg(long)]
        owner: Option<String>,
        /// Only entities a deployed policy or sync step still has to handle.
        #[arg(long, conflicts_with = "failed")]
        dirty: bool,
        /// Only entities whose last policy run or sync failed.
        #[arg(long)]
        failed: bool,
        /// Stop after this many.
        #[arg(long)]
        limit: Option<usize>,
        /// The config the host runs with.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print each entity as a line of JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sets the operator's flags on an entity, then shows it: `no-policy` (no policy runs
    /// for it), `write-protect` (policies and sync steps may not write it). A flag not
    /// given is left as it is.
    Flag {
        kind: String,
        key: String,
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        no_policy: Option<bool>,
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        write_protect: Option<bool>,
        /// The config the host runs with.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the entity's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Writes an entity into the model as the API (its owner: `api`), then shows it: a
    /// vertex, or with --from and --to an edge, whose ends must be in the model. It is
    /// announced, policed and synced like a plugin's write.
    Put {
        kind: String,
        key: String,
        /// The properties, a JSON object.
        properties: String,
        /// The edge's source.
        #[arg(long, num_args = 2, value_names = ["KIND", "KEY"], requires = "to")]
        from: Option<Vec<String>>,
        /// The edge's target.
        #[arg(long, num_args = 2, value_names = ["KIND", "KEY"], requires = "from")]
        to: Option<Vec<String>>,
        #[arg(long)]
        schema_version: Option<String>,
        /// The config the host runs with.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the entity's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deletes an entity the API wrote; a vertex with edges only with --cascade, which
    /// deletes the edges first (all of them the API's). Prints what went, one a line.
    Delete {
        kind: String,
        key: String,
        #[arg(long)]
        cascade: bool,
        /// The config the host runs with.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// A flag's value on the command line.
fn on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("`{other}`: say `on` or `off`")),
    }
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

/// jemalloc rather than glibc's malloc. Under the Gizmo API's load glibc's arenas were
/// contended (`__lll_lock_wait_private` in the profile: tokio moves tasks between its
/// workers, and a buffer freed on another thread than it was allocated takes that
/// arena's lock), and malloc and free took an eighth of the host's CPU; jemalloc's
/// per-thread caches served GET ~25 % and writes ~20 % more requests a second, with a
/// lower p99 (BENCHMARKS.md). It also gives a compile's memory back on request, which
/// the loader asks for after each compile (`synchro_supervisor`'s `compile` module).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let log = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,cranelift=warn,wasmtime=warn".into()),
        )
        .with_writer(|| log_lines::Stderr);
    match cli.log_format {
        // JSON escapes line breaks itself; log_lines keeps a record on one line anyway.
        LogFormat::Json => log.json().init(),
        LogFormat::Text => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // An error can quote a plugin's text (a refused reload's reason).
            eprintln!("synchro: {}", synchro_model::OneLine(&format!("{error:#}")));
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
            operations,
            plugins,
        } => {
            let config = Config::load_or_default(config.as_deref())?;
            let only = synchro_bus::ChangeFilter {
                kinds,
                operations,
                sources: plugins,
            };
            serve::run(config, json, only)
        }
        Command::Plugin {
            command:
                PluginCommand::Build {
                    dir,
                    toolchain,
                    output,
                },
        } => {
            let started = std::time::Instant::now();
            let built = build::build(&dir, toolchain)?;
            let size = std::fs::metadata(&built)
                .with_context(|| format!("reading {}", built.display()))?
                .len();
            let size = match size {
                0..1_048_576 => format!("{} KiB", size.div_ceil(1024)),
                _ => format!("{:.1} MiB", size as f64 / 1_048_576.0),
            };
            eprintln!(
                "synchro: built {} ({size}) in {:.1} s",
                built.display(),
                started.elapsed().as_secs_f64()
            );
            // What the host will make of it, on stderr: stdout is the path, for scripts.
            check::run(&built, None, &mut std::io::stderr().lock())
                .with_context(|| format!("built {}, but it is no plugin", built.display()))?;
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
            command:
                PluginCommand::New {
                    name,
                    role,
                    lang,
                    dir,
                },
        } => {
            let role = synchro_manifest::Role::ALL
                .into_iter()
                .find(|r| r.name() == role)
                .expect("clap checks the role");
            let root = scaffold::new(&dir, &name, lang, role)?;
            println!(
                "created {} ({} in {}); next:\n  cd {}\n  synchro plugin build . -o {name}.wasm\n  \
                 synchro plugin test\n  \
                 cp {name}.toml {name}.wasm PLUGIN-DIR/    # a running host loads it at once\n\
                 the plugin is {}; its README says more",
                root.display(),
                role.name(),
                lang.name(),
                root.display(),
                lang.source()
            );
            Ok(())
        }
        Command::Plugin {
            command: PluginCommand::Test { dir, fixtures },
        } => plugin_test::run(&dir, fixtures.as_deref(), &mut std::io::stdout().lock()),
        Command::Plugin {
            command: PluginCommand::Check { file, config },
        } => check::run(&file, config.as_deref(), &mut std::io::stdout().lock()),
        Command::Status { config, json } => status::status(config.as_deref(), json),
        Command::Dashboard { config } => status::dashboard(config.as_deref()),
        Command::Plugin {
            command: PluginCommand::Reload { name, config },
        } => status::reload(config.as_deref(), &name),
        Command::Plugin {
            command: PluginCommand::Release { name, config },
        } => status::release(config.as_deref(), &name),
        Command::Plugin {
            command: PluginCommand::ApproveDeletes { name, held, config },
        } => collector::approve_deletes(config.as_deref(), &name, held.as_deref()),
        Command::Plugin {
            command: PluginCommand::Plan { name, json, config },
        } => collector::plan(config.as_deref(), &name, json),
        Command::Plugin {
            command: PluginCommand::Runs { name, json, config },
        } => collector::runs(config.as_deref(), &name, json),
        Command::Plugin {
            command: PluginCommand::Collect { name, config },
        } => collector::collect_now(config.as_deref(), &name),
        Command::Plugin {
            command: PluginCommand::Pause { name, config },
        } => collector::pause(config.as_deref(), &name, true),
        Command::Plugin {
            command: PluginCommand::Resume { name, config },
        } => collector::pause(config.as_deref(), &name, false),
        Command::Model {
            command:
                ModelCommand::Get {
                    kind,
                    key,
                    config,
                    json,
                },
        } => model::get(config.as_deref(), &kind, &key, json),
        Command::Model {
            command:
                ModelCommand::Flag {
                    kind,
                    key,
                    no_policy,
                    write_protect,
                    config,
                    json,
                },
        } => {
            let flags = synchro_status::ModelFlags {
                no_policy,
                write_protect,
            };
            model::flag(config.as_deref(), &kind, &key, flags, json)
        }
        Command::Model {
            command:
                ModelCommand::Put {
                    kind,
                    key,
                    properties,
                    from,
                    to,
                    schema_version,
                    config,
                    json,
                },
        } => {
            let ends = from.zip(to).map(|(from, to)| [from, to]);
            model::put(
                config.as_deref(),
                (&kind, &key),
                &properties,
                ends,
                schema_version,
                json,
            )
        }
        Command::Model {
            command:
                ModelCommand::Delete {
                    kind,
                    key,
                    cascade,
                    config,
                },
        } => model::delete(config.as_deref(), &kind, &key, cascade),
        Command::Model {
            command:
                ModelCommand::List {
                    kind,
                    owner,
                    dirty,
                    failed,
                    limit,
                    config,
                    json,
                },
        } => {
            let only = match (dirty, failed) {
                (true, _) => Some(synchro_status::ModelFilter::Dirty),
                (_, true) => Some(synchro_status::ModelFilter::Failed),
                _ => None,
            };
            model::list(config.as_deref(), kind, owner, only, limit, json)
        }
        Command::Baseline {
            command: BaselineCommand::List { plugin, config },
        } => baseline::list(&Config::load_or_default(config.as_deref())?, &plugin),
        Command::Baseline {
            command: BaselineCommand::Reset { plugin, config },
        } => baseline::reset(&Config::load_or_default(config.as_deref())?, &plugin),
    }
}
