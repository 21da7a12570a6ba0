//! The plugins a host runs, kept in step with the plugin directory.
//!
//! A scan compares each manifest and its component with what runs: a new file starts a
//! plugin, a changed one is loaded and checked beside the running version and swapped in
//! only once it is whole, a removed manifest stops its plugin. A version that does not load
//! leaves the running one in place, with the reason in its status and the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::capability::Services;
use crate::collector::Collector;
use crate::config::Config;
use crate::event_step::EventStep;
use crate::live::Live;
use crate::plugin::{Plugin, manifests_in};
use crate::runtime::{Origin, Runtime};
use crate::status::{Counters, HostReport, PluginReport, Refused};

/// What a manifest and its component looked like when last loaded (or refused).
type Fingerprint = u64;

struct Running {
    live: Arc<Live>,
    /// Stops this plugin's tasks (set on removal, and on host shutdown).
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

pub struct Registry {
    runtime: Arc<Runtime>,
    services: Services,
    config: Config,
    running: BTreeMap<PathBuf, Running>,
    refused: BTreeMap<PathBuf, String>,
    /// The fingerprint last acted on, per manifest: a scan skips files that did not change,
    /// so a broken version is reported once, not at every scan.
    seen: BTreeMap<PathBuf, Fingerprint>,
    /// Tasks of stopped plugins, finishing their last call.
    stopping: Vec<JoinHandle<()>>,
}

/// A version swapped in by [`Registry::reload`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Reloaded {
    pub name: String,
    pub version: String,
    /// Whether the compiled component came from the cache.
    pub cached: bool,
    pub elapsed_ms: u64,
}

impl Registry {
    pub fn new(runtime: Arc<Runtime>, services: Services, config: Config) -> Registry {
        Registry {
            runtime,
            services,
            config,
            running: BTreeMap::new(),
            refused: BTreeMap::new(),
            seen: BTreeMap::new(),
            stopping: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// The directories whose files make up the running plugins: the plugin directory
    /// and those of components kept elsewhere.
    pub fn watched_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.config.plugin_dir.clone()];
        for running in self.running.values() {
            if let Some(dir) = running.live.current().manifest.component.parent()
                && !dirs.iter().any(|d| d == dir)
            {
                dirs.push(dir.to_owned());
            }
        }
        dirs
    }

    /// Brings the running plugins in step with the plugin directory.
    pub async fn scan(&mut self) {
        let paths = match manifests_in(&self.config.plugin_dir) {
            Ok(paths) => paths,
            Err(error) => {
                tracing::error!("{error:#}; the running plugins stay");
                return;
            }
        };
        let gone: Vec<PathBuf> = self
            .seen
            .keys()
            .filter(|p| !paths.contains(p))
            .cloned()
            .collect();
        for path in gone {
            self.seen.remove(&path);
            self.refused.remove(&path);
            if let Some(running) = self.running.remove(&path) {
                tracing::info!(plugin = %running.live.current().name, manifest = %path.display(), "manifest removed: stopping");
                self.stop(running);
            }
        }
        for path in paths {
            let fingerprint = fingerprint(&path);
            if self.seen.get(&path) == Some(&fingerprint) {
                continue;
            }
            self.seen.insert(path.clone(), fingerprint);
            // Errors are logged and kept in the status by `load`.
            let _ = self.load(&path).await;
        }
    }

    /// Loads the plugin `name` again from its files, whether or not they changed.
    pub async fn reload(&mut self, name: &str) -> Result<Reloaded, String> {
        let path = self.path_of(name)?;
        self.seen.insert(path.clone(), fingerprint(&path));
        self.load(&path).await
    }

    /// Ends the quarantine of `name`.
    pub fn release(&self, name: &str) -> Result<(), String> {
        let path = self.path_of(name)?;
        self.running[&path]
            .live
            .release()
            .map_err(|e| e.to_string())
    }

    pub fn report(&self) -> HostReport {
        let plugins = self
            .running
            .iter()
            .map(|(path, running)| {
                let plugin = running.live.current();
                let status = &running.live.status;
                PluginReport {
                    name: plugin.name.to_string(),
                    version: plugin.manifest.version.clone(),
                    roles: plugin
                        .manifest
                        .roles
                        .iter()
                        .map(|r| r.name().to_owned())
                        .collect(),
                    manifest: path.display().to_string(),
                    health: status.health(),
                    reload_error: status.reload_error(),
                    counters: status.counters.values(),
                }
            })
            .collect();
        let refused = self
            .refused
            .iter()
            .map(|(path, error)| Refused {
                manifest: path.display().to_string(),
                error: error.clone(),
            })
            .collect();
        HostReport { plugins, refused }
    }

    /// Stops every plugin and waits for the calls in flight.
    pub async fn shutdown(mut self) {
        for (_, running) in std::mem::take(&mut self.running) {
            self.stop(running);
        }
        for task in self.stopping {
            if let Err(error) = task.await {
                tracing::error!("a plugin task panicked: {error}");
            }
        }
    }

    fn path_of(&self, name: &str) -> Result<PathBuf, String> {
        self.running
            .iter()
            .find(|(_, r)| &*r.live.current().name == name)
            .map(|(path, _)| path.clone())
            .ok_or_else(|| {
                let names: Vec<String> = self
                    .running
                    .values()
                    .map(|r| r.live.current().name.to_string())
                    .collect();
                format!(
                    "no plugin named `{name}` is running (running: {})",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                )
            })
    }

    /// Loads the manifest at `path` and starts it, or swaps it in for the version running
    /// from that manifest. On failure, whatever ran keeps running.
    async fn load(&mut self, path: &Path) -> Result<Reloaded, String> {
        let started = Instant::now();
        let loaded = self.load_checked(path).await;
        let running = self.running.get(path);
        let plugin = match loaded {
            Ok(plugin) => plugin,
            Err(error) => {
                match running {
                    Some(running) => {
                        let name = running.live.current().name.clone();
                        tracing::error!(plugin = %name, "new version refused, the running one stays: {error}");
                        running.live.status.set_reload_error(Some(error.clone()));
                        Counters::bump(&running.live.status.counters.failed_reloads);
                    }
                    None => {
                        tracing::error!("plugin not loaded: {error}");
                        self.refused.insert(path.to_owned(), error.clone());
                    }
                }
                return Err(error);
            }
        };
        self.refused.remove(path);
        let (name, version) = (plugin.name.to_string(), plugin.manifest.version.clone());
        let cached = plugin.origin == Origin::Cache;
        match self.running.get(path) {
            // Same plugin, same roles: swap, keeping its tasks, baseline and offsets.
            Some(running)
                if running.live.current().name == plugin.name
                    && running.live.current().manifest.roles == plugin.manifest.roles =>
            {
                running.live.swap(Arc::new(plugin));
            }
            // Renamed or re-roled: a different plugin from the same file. The old one is
            // waited for (at most its call in flight), so that the two never share a
            // consumer group.
            Some(_) => {
                let old = self.running.remove(path).expect("present");
                tracing::info!(plugin = %old.live.current().name, "its manifest now names another plugin or roles: restarting");
                let _ = old.stop.send(true);
                for task in old.tasks {
                    if let Err(error) = task.await {
                        tracing::error!("a plugin task panicked: {error}");
                    }
                }
                self.start(path, plugin);
            }
            None => self.start(path, plugin),
        }
        let reloaded = Reloaded {
            name,
            version,
            cached,
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        tracing::info!(
            plugin = %reloaded.name,
            version = %reloaded.version,
            cached = reloaded.cached,
            elapsed_ms = reloaded.elapsed_ms,
            "loaded"
        );
        Ok(reloaded)
    }

    /// Loads, links and activates the plugin at `path` without touching what runs.
    async fn load_checked(&self, path: &Path) -> Result<Plugin, String> {
        let runtime = self.runtime.clone();
        let owned = path.to_owned();
        let config = self.config.clone();
        let plugin = tokio::task::spawn_blocking(move || Plugin::load(&runtime, &owned, &config))
            .await
            .map_err(|e| format!("{}: loading panicked: {e}", path.display()))?
            .map_err(|e| format!("{e:#}"))?;
        let clash = self
            .running
            .iter()
            .find(|(other, r)| *other != path && r.live.current().name == plugin.name);
        if let Some((other, _)) = clash {
            return Err(format!(
                "{}: plugin `{}` is already loaded from {}",
                path.display(),
                plugin.name,
                other.display()
            ));
        }
        plugin
            .activate(&self.services)
            .await
            .map_err(|e| format!("{e:#}"))?;
        Ok(plugin)
    }

    fn start(&mut self, path: &Path, plugin: Plugin) {
        let collector = plugin.prepared.is_collector();
        let event_step = plugin.prepared.is_event_step();
        let live = Live::new(Arc::new(plugin));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        if collector {
            let collector =
                Collector::new(live.clone(), self.runtime.clone(), self.services.clone());
            tasks.push(tokio::spawn(collector.run(stopped.clone())));
        }
        if event_step {
            let step = EventStep::new(live.clone(), self.runtime.clone(), self.services.clone());
            tasks.push(tokio::spawn(step.run(stopped)));
        }
        self.running
            .insert(path.to_owned(), Running { live, stop, tasks });
    }

    fn stop(&mut self, running: Running) {
        let _ = running.stop.send(true);
        self.stopping.extend(running.tasks);
        // Forget tasks that are done, so a host that reloads for months does not grow.
        self.stopping.retain(|task| !task.is_finished());
    }
}

/// A hash of the manifest's bytes and its component's; `0` when unreadable (a file being
/// written): the load that follows reports why.
fn fingerprint(manifest: &Path) -> Fingerprint {
    use std::hash::Hasher;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let Ok(text) = std::fs::read(manifest) else {
        return 0;
    };
    hasher.write(&text);
    if let Ok(parsed) = crate::manifest::Manifest::load(manifest) {
        match std::fs::read(&parsed.component) {
            Ok(bytes) => hasher.write(&bytes),
            Err(_) => return 0,
        }
    }
    hasher.finish()
}
