//! The plugins a host runs, kept in step with the plugin directory.
//!
//! A scan compares each manifest and its component with what runs: a new file starts a
//! plugin, a changed one is loaded and checked beside the running version and swapped in
//! only once it is whole, a removed manifest stops its plugin. A version that does not load
//! leaves the running one in place, with the reason in its status and the log.
//!
//! Loads compile off the registry's loop (see `compile`): the registry starts them and
//! applies each result when [`Compiles::next`] hands it over, and answers the admin API
//! meanwhile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{oneshot, watch};

use synchro_capability::Services;
use synchro_manifest::Role;
use synchro_model::{Error, ErrorKind};
use synchro_roles::{
    Deployment, Ended, Mode, Origin, Plugin, PluginEngine, PluginTask, Recheck, manifests_in,
};
use synchro_status::{
    Health, HostReport, Loading, ModelRole, PluginReport, Refused, Reloaded, events,
};

use crate::Config;
use crate::compile::{Compiled, Compiler, Compiles};

/// What a manifest and its component looked like when last loaded (or refused).
type Fingerprint = u64;

/// Where the answer to a reload goes once the new version is in, or refused.
pub type ReloadReply = oneshot::Sender<Result<Reloaded, Error>>;

/// A load started and not yet applied.
struct Pending {
    /// Of the files being loaded; a newer change starts another load, which wins.
    fingerprint: Fingerprint,
    /// The manifest's name, where it could be read.
    name: Option<String>,
    since: Instant,
    /// The reloads asked for while it loads, answered when it is applied.
    replies: Vec<ReloadReply>,
    /// The load's result, once it is in but waits for its turn (see [`Registry::apply`]).
    done: Option<Result<Plugin, String>>,
}

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
    compiler: Compiler,
    pending: BTreeMap<PathBuf, Pending>,
    /// Policies and sync steps loaded and not started yet: they start once the model has
    /// been told every handler, them included, when no load is pending any more. A policy
    /// that ran before was seen, on a busy machine, to lose the `previous` of its next
    /// `handle-update` (tests/model_policy.rs, the operator's flags).
    parked: BTreeMap<PathBuf, Arc<Plugin>>,
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
    /// A registry running nothing yet, and the loads it will start, for its owner to
    /// hand back to [`Registry::apply`] as they finish.
    pub fn new(
        engine: Arc<PluginEngine>,
        services: Services,
        config: Config,
    ) -> (Registry, Compiles) {
        let (compiler, compiles) = Compiler::new(engine.clone(), config.clone());
        let registry = Registry {
            engine,
            services,
            config,
            running: BTreeMap::new(),
            refused: BTreeMap::new(),
            seen: BTreeMap::new(),
            compiler,
            pending: BTreeMap::new(),
            parked: BTreeMap::new(),
            stopping: Vec::new(),
            idle_modes: Vec::new(),
            told_handlers: None,
        };
        (registry, compiles)
    }

    /// Whether a load is under way.
    pub fn is_loading(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether no plugin runs or loads.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty() && self.pending.is_empty()
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

    /// Brings the running plugins in step with the plugin directory: stops the removed
    /// ones at once and starts loading the new and changed ones.
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
            self.parked.remove(&path);
            if let Some(pending) = self.pending.remove(&path) {
                let why = format!("{}: removed while it loaded", path.display());
                for reply in pending.replies {
                    let _ = reply.send(Err(Error::new(ErrorKind::NotFound, why.clone())));
                }
            }
            if let Some(running) = self.running.remove(&path) {
                tracing::info!(plugin = %running.deployment.current().name, manifest = %path.display(), "manifest removed: stopping");
                self.stop(running);
            }
        }
        for (print, path) in fingerprints(paths).await {
            if self.seen.get(&path) == Some(&print.fingerprint) {
                continue;
            }
            self.seen.insert(path.clone(), print.fingerprint);
            self.start_load(path, print, None);
        }
        self.settle().await;
    }

    /// Loads the manifest at `path` (files of `print`) unless a load of those very files
    /// is under way; `reply` is answered when it is applied.
    fn start_load(&mut self, path: PathBuf, print: Print, reply: Option<ReloadReply>) {
        let mut replies = Vec::from_iter(reply);
        if let Some(pending) = self.pending.get_mut(&path) {
            if pending.fingerprint == print.fingerprint {
                pending.replies.append(&mut replies);
                return;
            }
            // Superseded: whoever waited for the older files gets the newer ones.
            replies.append(&mut pending.replies);
        }
        self.pending.insert(
            path.clone(),
            Pending {
                fingerprint: print.fingerprint,
                name: print.name,
                since: Instant::now(),
                replies,
                done: None,
            },
        );
        self.compiler.start(path, print.fingerprint);
    }

    /// Applies a finished load: starts the plugin, or swaps it in for the running
    /// version, or keeps the reason it was refused; answers the reloads that waited for
    /// it. A load superseded by newer files, or of a manifest since removed, is dropped.
    ///
    /// Loads are applied as they finish, so that a small plugin does not wait for a large
    /// one to compile, with one exception: a plugin that awaits responses waits for the
    /// loads of the manifests before it. A response topic is the first plugin's to claim
    /// it; claimed in the order loads finish, which plugin a restart refuses would be
    /// left to chance.
    pub async fn apply(&mut self, compiled: Compiled) {
        match self.pending.get_mut(&compiled.path) {
            Some(pending) if pending.fingerprint == compiled.fingerprint => {
                pending.done = Some(compiled.result);
            }
            _ => return,
        }
        let mut earlier_loading = false;
        let mut turn = Vec::new();
        for (path, pending) in &self.pending {
            match &pending.done {
                None => earlier_loading = true,
                Some(Ok(plugin))
                    if earlier_loading && plugin.grants.bus.awaits().next().is_some() => {}
                Some(_) => turn.push(path.clone()),
            }
        }
        for path in turn {
            let pending = self.pending.remove(&path).expect("present");
            let done = pending.done.expect("in");
            // Errors are logged and kept in the status by `install`.
            let installed = self
                .install(&path, done, pending.since)
                .await
                .map_err(|e| Error::new(ErrorKind::InvalidInput, e));
            for reply in pending.replies {
                let _ = reply.send(installed.clone());
            }
        }
        self.settle().await;
    }

    /// Once no load is under way, tells the model what the plugins handle: a policy
    /// still compiling must not be taken for gone (its held deletions would be purged).
    async fn settle(&mut self) {
        if self.pending.is_empty() {
            self.tell_handlers().await;
            for (path, plugin) in std::mem::take(&mut self.parked) {
                self.spawn(&path, plugin);
            }
            self.check_modes();
        }
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

    /// Loads the plugin `name` again from its files, whether or not they changed, and
    /// answers `reply` once the new version is in (or refused).
    pub async fn reload(&mut self, name: &str, reply: ReloadReply) {
        let path = match self.path_of(name) {
            Ok(path) => path,
            Err(error) => return drop(reply.send(Err(error))),
        };
        let [(print, _)] = fingerprints(vec![path.clone()])
            .await
            .try_into()
            .ok()
            .expect("one path, one fingerprint");
        self.seen.insert(path.clone(), print.fingerprint);
        self.start_load(path, print, Some(reply));
    }

    /// The running plugin `name`.
    pub fn deployment(&self, name: &str) -> Result<Arc<Deployment>, Error> {
        let path = self.path_of(name)?;
        Ok(self.running[&path].deployment.clone())
    }

    /// Ends the quarantine of `name`.
    pub fn release(&self, name: &str) -> Result<(), Error> {
        let path = self.path_of(name)?;
        self.running[&path]
            .deployment
            .release()
            .map_err(|e| Error::new(ErrorKind::Conflict, e.to_string()))
    }

    /// What the running plugins do with the model (those about to start included).
    pub fn work(&self) -> crate::model_view::Work {
        let mut work = crate::model_view::Work::default();
        let running = self.running.values().map(|r| r.deployment.current());
        for plugin in running.chain(self.parked.values().cloned()) {
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

    /// Each running plugin's name and status.
    pub fn statuses(&self) -> Vec<(String, Arc<synchro_status::Status>)> {
        self.running
            .values()
            .map(|r| {
                (
                    r.deployment.current().name.to_string(),
                    r.deployment.status.clone(),
                )
            })
            .collect()
    }

    /// The host's metrics text (OpenMetrics), as `GET /metrics` answers it.
    pub fn metrics(&self) -> String {
        crate::metrics::render(
            self.statuses(),
            self.report(),
            self.services.bus.response_waits(),
        )
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
                    held_deletes: status.held_deletes(),
                    last_run: status.last_run(),
                    counters: status.counters.values(),
                    memory_bytes: status
                        .memory_bytes
                        .load(std::sync::atomic::Ordering::Relaxed),
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
        let loading = self
            .pending
            .iter()
            .map(|(path, pending)| Loading {
                manifest: path.display().to_string(),
                name: pending.name.clone(),
                replaces_running: self.running.contains_key(path),
                elapsed_ms: pending.since.elapsed().as_millis() as u64,
            })
            .collect();
        let db = &self.services.db;
        HostReport {
            plugins,
            refused,
            loading,
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

    /// Starts the plugin `loaded` from the manifest at `path` (asked for at `since`), or
    /// swaps it in for the version running from that manifest. On failure, whatever ran
    /// keeps running.
    async fn install(
        &mut self,
        path: &Path,
        loaded: Result<Plugin, String>,
        since: Instant,
    ) -> Result<Reloaded, String> {
        let loaded = match loaded {
            Ok(plugin) => self.checked(path, plugin).await,
            Err(error) => Err(error),
        };
        let running = self.running.get(path);
        let plugin = match loaded {
            Ok(plugin) => plugin,
            Err(error) => {
                match running {
                    Some(running) => {
                        running.deployment.status.emit(events::ReloadRefused {
                            plugin: &running.deployment.current().name,
                            error: error.clone(),
                        });
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
            elapsed_ms: since.elapsed().as_millis() as u64,
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

    /// Checks the loaded `plugin` against the others and activates its grants, without
    /// touching what runs.
    async fn checked(&self, path: &Path, plugin: Plugin) -> Result<Plugin, String> {
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

    /// Starts `plugin`'s runners; a policy's or a sync step's wait in `parked` until the
    /// model has been told its handlers with it (`settle`, at once when no other load
    /// is pending).
    fn start(&mut self, path: &Path, plugin: Plugin) {
        let plugin = Arc::new(plugin);
        if plugin.roles.model_work().next().is_some() {
            self.parked.insert(path.to_owned(), plugin);
            return;
        }
        self.spawn(path, plugin);
    }

    fn spawn(&mut self, path: &Path, plugin: Arc<Plugin>) {
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

/// What a scan reads of a manifest and its component.
struct Print {
    fingerprint: Fingerprint,
    /// The manifest's name, where it parses.
    name: Option<String>,
}

/// The fingerprint of each manifest in `paths`. Reading the files is blocking work (a
/// slow disk, a large component), done off the registry's loop.
async fn fingerprints(paths: Vec<PathBuf>) -> Vec<(Print, PathBuf)> {
    tokio::task::spawn_blocking(move || {
        paths
            .into_iter()
            .map(|path| (fingerprint(&path), path))
            .collect()
    })
    .await
    .expect("fingerprinting does not panic")
}

/// A hash of the manifest's bytes and its component's, `0` when unreadable (a file being
/// written, or one the host refuses to read): the load that follows reports why.
fn fingerprint(manifest: &Path) -> Print {
    use std::hash::Hasher;
    use synchro_manifest::{MAX_COMPONENT_BYTES, MAX_MANIFEST_BYTES, Manifest, read_capped};
    let unreadable = |name| Print {
        fingerprint: 0,
        name,
    };
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let Ok(text) = read_capped(manifest, MAX_MANIFEST_BYTES) else {
        return unreadable(None);
    };
    hasher.write(&text);
    let parsed = std::str::from_utf8(&text)
        .ok()
        .and_then(|text| Manifest::parse(manifest, text).ok());
    let name = parsed.as_ref().map(|p| p.name.clone());
    if let Some(parsed) = parsed {
        match read_capped(&parsed.component, MAX_COMPONENT_BYTES) {
            Ok(bytes) => hasher.write(&bytes),
            Err(_) => return unreadable(name),
        }
    }
    Print {
        fingerprint: hasher.finish(),
        name,
    }
}
