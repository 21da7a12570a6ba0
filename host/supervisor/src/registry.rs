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

use synchro_capability::Services;
use synchro_manifest::Role;
use synchro_model::{Error, ErrorKind};
use synchro_roles::{
    Deployment, Ended, Mode, Origin, Plugin, PluginEngine, PluginTask, Recheck, manifests_in,
};
use synchro_status::{Counters, Health, HostReport, ModelRole, PluginReport, Refused, Reloaded};

use crate::Config;

/// What a manifest and its component looked like when last loaded (or refused).
type Fingerprint = u64;

struct Running {
    deployment: Arc<Deployment>,
    /// Stops this plugin's tasks (set on removal, and on host shutdown).
    stop: watch::Sender<bool>,
    tasks: Vec<PluginTask>,
}

pub struct Registry {
    engine: Arc<PluginEngine>,
    services: Services,
    config: Config,
    running: BTreeMap<PathBuf, Running>,
    refused: BTreeMap<PathBuf, String>,
    /// The fingerprint last acted on, per manifest: a scan skips files that did not change,
    /// so a broken version is reported once, not at every scan.
    seen: BTreeMap<PathBuf, Fingerprint>,
    /// Tasks of stopped plugins, finishing their last call.
    stopping: Vec<PluginTask>,
    /// The `[modes.plugins]` entries no running sync step is named by, as last said in
    /// the log (said again only when that changes).
    idle_modes: Vec<String>,
    /// The policies and the steps of each kind, as last told to the model (which
    /// sweeps the model when told): told again only when they change.
    told_handlers: Option<(crate::model_view::Deployed, crate::model_view::Deployed)>,
}

impl Registry {
    pub fn new(engine: Arc<PluginEngine>, services: Services, config: Config) -> Registry {
        Registry {
            engine,
            services,
            config,
            running: BTreeMap::new(),
            refused: BTreeMap::new(),
            seen: BTreeMap::new(),
            stopping: Vec::new(),
            idle_modes: Vec::new(),
            told_handlers: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// The outbox readers of the running plugins: each event step's consumer group, whose
    /// saved cursor holds back what it has not read (see `retention`).
    pub fn change_readers(&self) -> Vec<String> {
        self.running
            .values()
            .filter_map(|r| {
                let plugin = r.deployment.current();
                let step = plugin.roles.event_step.as_ref()?;
                Some(step.events.group.clone())
            })
            .collect()
    }

    /// The directories whose files make up the running plugins: the plugin directory
    /// and those of components kept elsewhere.
    pub fn watched_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.config.plugin_dir.clone()];
        for running in self.running.values() {
            if let Some(dir) = running.deployment.current().manifest.component.parent()
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
                tracing::info!(plugin = %running.deployment.current().name, manifest = %path.display(), "manifest removed: stopping");
                self.stop(running);
            }
        }
        for (fingerprint, path) in fingerprints(paths).await {
            if self.seen.get(&path) == Some(&fingerprint) {
                continue;
            }
            self.seen.insert(path.clone(), fingerprint);
            // Errors are logged and kept in the status by `load`.
            let _ = self.load(&path).await;
        }
        self.tell_handlers().await;
        self.check_modes();
    }

    /// Says in the log which `[modes.plugins]` entries name no running sync step: a
    /// typo, or a plugin of another role, which modes do not apply to.
    fn check_modes(&mut self) {
        let idle: Vec<String> = self
            .config
            .modes
            .plugins
            .keys()
            .filter(|name| {
                !self.running.values().any(|r| {
                    let plugin = r.deployment.current();
                    *plugin.name == ***name && plugin.roles.sync_step.is_some()
                })
            })
            .cloned()
            .collect();
        if idle != self.idle_modes {
            for name in idle.iter().filter(|n| !self.idle_modes.contains(n)) {
                tracing::warn!(
                    "`modes.plugins.{name}` in the host config names no running sync step: \
                     it applies to nothing (modes are a sync step's)"
                );
            }
            self.idle_modes = idle;
        }
    }

    /// Tells the model which policies and steps run for each kind, once the plugins are
    /// loaded: a deletion waits for `handle-delete` only from those policies, what waited
    /// for a policy that is gone is purged, and progress from before several handlers
    /// per kind goes to the kind's one handler.
    async fn tell_handlers(&mut self) {
        let work = self.work();
        let told = (work.policed, work.synced);
        if self.told_handlers.as_ref() == Some(&told) {
            return;
        }
        let db = self.services.db.clone();
        let (policies, steps) = told.clone();
        match tokio::task::spawn_blocking(move || db.set_handlers(policies, &steps)).await {
            Ok(Ok(swept)) => {
                if swept.purged > 0 {
                    tracing::info!(
                        purged = swept.purged,
                        "deleted entities no running policy waits for any more: purged"
                    );
                }
                if swept.attributed > 0 {
                    tracing::info!(
                        entities = swept.attributed,
                        "progress recorded before several policies or steps per kind given to the kind's one"
                    );
                    // Their runners listed the model before: what they have to do
                    // with those entities (a deletion to enact, say) changed.
                    for running in self.running.values() {
                        running.deployment.recheck(Recheck::All);
                    }
                }
                self.told_handlers = Some(told);
            }
            Ok(Err(error)) => tracing::error!("cannot tell the model its handlers: {error}"),
            Err(error) => tracing::error!("cannot tell the model its handlers: {error}"),
        }
    }

    /// Loads the plugin `name` again from its files, whether or not they changed.
    pub async fn reload(&mut self, name: &str) -> Result<Reloaded, Error> {
        let path = self.path_of(name)?;
        let [(fingerprint, _)] = fingerprints(vec![path.clone()])
            .await
            .try_into()
            .expect("one path, one fingerprint");
        self.seen.insert(path.clone(), fingerprint);
        let loaded = self
            .load(&path)
            .await
            .map_err(|e| Error::new(ErrorKind::InvalidInput, e));
        self.tell_handlers().await;
        loaded
    }

    /// Ends the quarantine of `name`.
    pub fn release(&self, name: &str) -> Result<(), Error> {
        let path = self.path_of(name)?;
        self.running[&path]
            .deployment
            .release()
            .map_err(|e| Error::new(ErrorKind::Conflict, e.to_string()))
    }

    /// What the running plugins do with the model.
    pub fn work(&self) -> crate::model_view::Work {
        let mut work = crate::model_view::Work::default();
        for running in self.running.values() {
            let plugin = running.deployment.current();
            for (role, _, section) in plugin.roles.model_work() {
                let into = match role {
                    Role::ModelPolicy => &mut work.policed,
                    _ => &mut work.synced,
                };
                // An observe-only kind is never enacted: nothing of it is work.
                let kinds = section.kinds.iter();
                for kind in kinds.filter(|k| section.mode(k) != Mode::ObserveOnly) {
                    let handlers = into.entry(kind.clone()).or_default();
                    handlers.insert(plugin.name.to_string());
                }
            }
        }
        work
    }

    /// The plugins whose policy or sync step handles `kind`.
    pub fn handlers_of(&self, kind: &str) -> Vec<Arc<Deployment>> {
        self.running
            .values()
            .filter(|running| {
                let plugin = running.deployment.current();
                let mut work = plugin.roles.model_work();
                work.any(|(_, _, section)| section.kinds.contains(kind))
            })
            .map(|running| running.deployment.clone())
            .collect()
    }

    pub fn report(&self) -> HostReport {
        let plugins = self
            .running
            .iter()
            .map(|(path, running)| {
                let plugin = running.deployment.current();
                let status = &running.deployment.status;
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
                    sync_queue: status.queue(ModelRole::Sync),
                    policy_queue: status.queue(ModelRole::Policy),
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
        let db = &self.services.db;
        HostReport {
            plugins,
            refused,
            responses: self.services.bus.response_stats(),
            outbox: synchro_status::Outbox {
                last: db.last_change(),
                readers: db.readers().into_iter().collect(),
            },
        }
    }

    /// Stops every plugin and waits up to `grace` for the calls in flight, then cuts
    /// what still runs. Cutting loses nothing: a collect's changes commit with its
    /// baseline and an event is committed after it is handled, so what was cut is
    /// collected or delivered again at the next start. A broker that cannot be reached
    /// therefore delays a stop by `grace` at most.
    pub async fn shutdown(mut self, grace: std::time::Duration) {
        for (_, running) in std::mem::take(&mut self.running) {
            self.stop(running);
        }
        let deadline = tokio::time::Instant::now() + grace;
        let mut cut = 0;
        for task in self.stopping {
            if task.finish(deadline).await == Ended::Cut {
                cut += 1;
            }
        }
        if cut > 0 {
            tracing::warn!(
                "{cut} plugin task(s) were still busy after the shutdown grace of {grace:?} and were cut; \
                 what they had not committed is redone at the next start"
            );
        }
    }

    fn path_of(&self, name: &str) -> Result<PathBuf, Error> {
        self.running
            .iter()
            .find(|(_, r)| &*r.deployment.current().name == name)
            .map(|(path, _)| path.clone())
            .ok_or_else(|| {
                let names: Vec<String> = self
                    .running
                    .values()
                    .map(|r| r.deployment.current().name.to_string())
                    .collect();
                let message = format!(
                    "no plugin named `{name}` is running (running: {})",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                );
                Error::new(ErrorKind::NotFound, message)
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
                        let name = running.deployment.current().name.clone();
                        tracing::error!(plugin = %name, "new version refused, the running one stays: {error}");
                        running
                            .deployment
                            .status
                            .set_reload_error(Some(error.clone()));
                        Counters::bump(&running.deployment.status.counters.failed_reloads);
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
            // Same roles (the name is the file's), runners alive: swap, keeping its tasks,
            // baseline and offsets.
            Some(running)
                if running.deployment.current().manifest.roles == plugin.manifest.roles
                    && !matches!(running.deployment.status.health(), Health::Stopped { .. }) =>
            {
                running.deployment.swap(Arc::new(plugin));
            }
            // Re-roled, or its runners stopped on a host error: its tasks are not the same.
            // The old ones are waited for (at most their call in flight), so that the two
            // never share a consumer group.
            Some(_) => {
                let old = self.running.remove(path).expect("present");
                tracing::info!(plugin = %old.deployment.current().name, "restarting its runners (new roles, or they had stopped)");
                let _ = old.stop.send(true);
                // No deadline: at most the call in flight, itself bounded by its own.
                let never =
                    tokio::time::Instant::now() + std::time::Duration::from_secs(365 * 24 * 3600);
                for task in old.tasks {
                    task.finish(never).await;
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
        let engine = self.engine.clone();
        let owned = path.to_owned();
        let config = self.config.clone();
        let plugin = tokio::task::spawn_blocking(move || {
            Plugin::load(&engine, &owned, &config.load_policy())
        })
        .await
        .map_err(|e| format!("{}: loading panicked: {e}", path.display()))?
        .map_err(|e| format!("{e:#}"))?;
        for topic in plugin.grants.bus.awaits() {
            let other = self
                .running
                .values()
                .map(|r| r.deployment.current())
                .find(|other| {
                    other.name != plugin.name && other.grants.bus.awaits().any(|t| t == topic)
                });
            if let Some(other) = other {
                return Err(format!(
                    "{}: `capabilities.bus.await`: plugin `{}` already awaits responses on topic \
                     `{topic}`; each plugin needs a response topic of its own, or one could take \
                     or block the other's responses",
                    path.display(),
                    other.name
                ));
            }
        }
        plugin
            .activate(&self.services)
            .await
            .map_err(|e| format!("{e:#}"))?;
        Ok(plugin)
    }

    fn start(&mut self, path: &Path, plugin: Plugin) {
        let plugin = Arc::new(plugin);
        let deployment = Deployment::new(plugin.clone());
        let (stop, stopped) = watch::channel(false);
        let tasks = plugin
            .roles
            .spawn(&deployment, &self.engine, &self.services, &stopped);
        self.running.insert(
            path.to_owned(),
            Running {
                deployment,
                stop,
                tasks,
            },
        );
    }

    fn stop(&mut self, running: Running) {
        let _ = running.stop.send(true);
        self.stopping.extend(running.tasks);
        // Forget tasks that are done, so a host that reloads for months does not grow.
        self.stopping.retain(|task| !task.is_finished());
    }
}

/// The fingerprint of each manifest in `paths`. Reading the files is blocking work (a
/// slow disk, a large component), done off the registry's loop.
async fn fingerprints(paths: Vec<PathBuf>) -> Vec<(Fingerprint, PathBuf)> {
    tokio::task::spawn_blocking(move || {
        paths
            .into_iter()
            .map(|path| (fingerprint(&path), path))
            .collect()
    })
    .await
    .expect("fingerprinting does not panic")
}

/// A hash of the manifest's bytes and its component's; `0` when unreadable (a file being
/// written, or one the host refuses to read): the load that follows reports why.
fn fingerprint(manifest: &Path) -> Fingerprint {
    use std::hash::Hasher;
    use synchro_manifest::{MAX_COMPONENT_BYTES, MAX_MANIFEST_BYTES, Manifest, read_capped};
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let Ok(text) = read_capped(manifest, MAX_MANIFEST_BYTES) else {
        return 0;
    };
    hasher.write(&text);
    let parsed = std::str::from_utf8(&text)
        .ok()
        .and_then(|text| Manifest::parse(manifest, text).ok());
    if let Some(parsed) = parsed {
        match read_capped(&parsed.component, MAX_COMPONENT_BYTES) {
            Ok(bytes) => hasher.write(&bytes),
            Err(_) => return 0,
        }
    }
    hasher.finish()
}
