//! The running host: the database, the bus, the engine, the plugins of the plugin
//! directory kept in step with it ([`Registry`]), and the admin API.

mod collector_requests;
mod compile;
mod config;
mod dir_watch;
mod feed;
mod metrics;
mod model_view;
mod model_write;
mod registry;
mod relay;
mod retention;

use std::sync::Arc;
use std::time::Duration;

use synchro_admin::Request;
use synchro_bus::Bus;
use synchro_capability::{Http, Services};
use synchro_roles::collector::Command;
use synchro_roles::{PluginEngine, manifests_in};
use synchro_store::{Appender, Cursor, Db, DbError, Start};
use tokio::sync::{mpsc, watch};

pub use compile::Compiles;
pub use config::{Config, ConfigError};
pub use registry::{Registry, ReloadReply};

use relay::Relay;

use dir_watch::DirWatcher;

pub struct Supervisor {
    services: Services,
    engine: Arc<PluginEngine>,
    config: Config,
}

impl Supervisor {
    /// Opens the database and builds the engine; loads no plugin yet. A `[grants.NAME]`
    /// for a plugin the plugin directory does not have is refused here.
    pub fn new(config: Config, bus: Bus) -> anyhow::Result<Supervisor> {
        config.check_grants(plugin_names(&config).iter().map(String::as_str))?;
        let db = Arc::new(Db::open(&config.data_dir)?);
        db.set_sources(config.ranked_sources().map_err(anyhow::Error::msg)?);
        let engine = Arc::new(synchro_roles::engine(
            Some(&config.data_dir.join("cache")),
            config.fuel_metering,
        )?);
        let http = Http::new(config.poll.clone()).map_err(anyhow::Error::msg)?;
        let outbox = Arc::new(Appender::new(db.clone()));
        let services = Services {
            bus,
            db,
            outbox,
            http,
        };
        Ok(Supervisor {
            services,
            engine,
            config,
        })
    }

    /// A reader of the change stream that resumes after what it handled last time
    /// (see [`synchro_store::Cursor`]); attached from now, so it misses nothing the
    /// plugins change once they run.
    pub fn changes(&self, reader: &str) -> Result<Cursor, DbError> {
        self.services.db.cursor(reader, Start::Saved)
    }

    /// The database, for what outlives [`Supervisor::run`].
    pub fn db(&self) -> Arc<Db> {
        self.services.db.clone()
    }

    /// Runs the plugins until `shutdown` turns true, then gives the calls in flight
    /// `shutdown-grace` to finish (see [`Registry::shutdown`]) and the changes they made
    /// as long again to reach the disk (and Kafka).
    /// A plugin that fails to load is logged with the reason and skipped: the others run.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let grace = self.config.shutdown_grace;
        let services = self.services.clone();
        let relay = match &services.bus {
            Bus::Kafka(kafka) => Some(Relay::start(&services.db, kafka.clone())?),
            Bus::Embedded(_) => None,
        };
        let (mut registry, mut compiles) =
            Registry::new(self.engine, self.services, self.config.clone());
        registry.scan().await;
        // From the first scan on, so that the event steps of this run hold back what they
        // have not read even before they join.
        let mut trim = tokio::time::interval(retention::TRIM_EVERY);
        trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if registry.is_empty() {
            tracing::warn!(dir = %self.config.plugin_dir.display(), "no plugin loaded");
        }
        let (requests, mut admin) = mpsc::channel(16);
        if self.config.admin.enabled {
            synchro_admin::serve(
                &self.config.admin,
                &self.config.data_dir,
                requests,
                shutdown.clone(),
            )
            .await?;
        }
        if self.config.gizmo.enabled {
            let base = self
                .config
                .source
                .as_deref()
                .and_then(std::path::Path::parent);
            synchro_gizmo::serve(
                &self.config.gizmo,
                base.unwrap_or(std::path::Path::new(".")),
                &self.config.data_dir,
                services.db.clone(),
                services.bus.clone(),
                shutdown.clone(),
            )
            .await?;
        }
        let feed = feed::Feed::start(&services.db);
        let mut watcher = self.config.watch.then(|| watcher(&registry)).flatten();
        loop {
            tokio::select! {
                // Dropped at once: a `watch::Ref` held across the awaits below would make
                // this future !Send.
                _ = async { drop(shutdown.wait_for(|stop| *stop).await) } => break,
                // Not while plugins load: an event step still compiling is no reader yet,
                // and what it has not read must wait for it.
                _ = trim.tick(), if !registry.is_loading() => {
                    let steps = registry.change_readers();
                    let keep = synchro_store::Retention {
                        max_plugin_lag: self.config.max_step_lag,
                        window: self.config.feed_window,
                    };
                    retention::trim(&services.db, steps, keep).await;
                }
                _ = async { watcher.as_mut().expect("guarded").changed().await }, if watcher.is_some() => {
                    registry.scan().await;
                    watch_dirs(watcher.as_mut().expect("guarded"), &registry);
                }
                compiled = compiles.next() => {
                    registry.apply(compiled).await;
                    // A new plugin may keep its component elsewhere.
                    if let Some(watcher) = watcher.as_mut() {
                        watch_dirs(watcher, &registry);
                    }
                }
                Some(request) = admin.recv() => match request {
                    Request::Status(reply) => drop(reply.send(registry.report())),
                    Request::Metrics(reply) => drop(reply.send(registry.metrics())),
                    Request::Release(name, reply) => drop(reply.send(registry.release(&name))),
                    Request::Runs(name, reply) => drop(reply.send(registry.deployment(&name).map(|d| d.status.runs()))),
                    Request::Feed(request, reply) => drop(reply.send(feed.open(request))),
                    Request::ApproveDeletes(name, held, reply) => collector_requests::relay(
                        registry.deployment(&name),
                        |tx| Command::ApproveDeletes { held, reply: tx },
                        reply,
                    ),
                    Request::ResetBaseline(name, reply) => collector_requests::relay(registry.deployment(&name), Command::ResetBaseline, reply),
                    Request::Plan(name, reply) => collector_requests::relay(registry.deployment(&name), Command::Plan, reply),
                    Request::CollectNow(name, reply) => collector_requests::relay(registry.deployment(&name), Command::CollectNow, reply),
                    Request::Pause(name, paused, reply) => collector_requests::relay(
                        registry.deployment(&name),
                        |tx| Command::Pause(paused, tx),
                        reply,
                    ),
                    Request::Entity(wanted, reply) => model_view::entity(&services.db, registry.work(), wanted, reply),
                    Request::Entities(page, reply) => model_view::entities(&services.db, registry.work(), page, reply),
                    Request::Baseline(name, page, reply) => model_view::baseline(&services.db, name, page, reply),
                    Request::Flag(wanted, flags, reply) => {
                        let handlers = registry.handlers_of(&wanted.kind);
                        model_view::flag(&services.db, registry.work(), wanted, flags, handlers, reply);
                    }
                    Request::Put(wanted, write, reply) => model_write::put(&services.db, registry.work(), wanted, write, reply),
                    Request::Delete(wanted, cascade, reply) => model_write::delete(&services.db, wanted, cascade, reply),
                    Request::Reload(name, reply) => registry.reload(&name, reply).await,
                },
            }
        }
        registry.shutdown(grace).await;
        // The changes of those calls get one more grace, together, to reach the disk and
        // the bus.
        let deadline = tokio::time::Instant::now() + grace;
        let outbox = &services.outbox;
        if tokio::time::timeout_at(deadline, outbox.durable(outbox.issued()))
            .await
            .is_err()
        {
            tracing::warn!("stopping before every emitted change reached the disk");
        }
        if let Some(relay) = relay {
            relay.drain(&services.db, deadline).await;
        }
        let db = services.db.clone();
        tokio::task::spawn_blocking(move || db.sync()).await??;
        Ok(())
    }
}

/// This host's identity: a UUID kept in `DATA-DIR/host-id`, made at the first start. A
/// data directory belongs to one host at a time (its database is locked), so the id is
/// unique among running hosts and stable across one host's restarts, as Kafka's static
/// group membership needs.
pub fn host_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    let path = data_dir.join("host-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let id = uuid::Uuid::new_v4().to_string();
    let fresh = data_dir.join("host-id.new");
    std::fs::write(&fresh, format!("{id}\n"))
        .and_then(|()| std::fs::rename(&fresh, &path))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// The names of the plugins in the plugin directory, as far as their manifests can be
/// read (the ones that cannot are reported when they are loaded).
fn plugin_names(config: &Config) -> Vec<String> {
    manifests_in(&config.plugin_dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|path| synchro_manifest::Manifest::load(path).ok())
        .map(|manifest| manifest.name)
        .collect()
}

/// A watcher of the plugin files, or `None` (logged) where the system refuses one: the
/// admin API still reloads.
fn watcher(registry: &Registry) -> Option<DirWatcher> {
    match DirWatcher::new() {
        Ok(mut watcher) => {
            watch_dirs(&mut watcher, registry);
            Some(watcher)
        }
        Err(error) => {
            tracing::warn!("{error:#}; plugins reload only through `synchro plugin reload`");
            None
        }
    }
}

fn watch_dirs(watcher: &mut DirWatcher, registry: &Registry) {
    for dir in registry.watched_dirs() {
        if let Err(error) = watcher.watch(&dir) {
            tracing::warn!("{error:#}; changes there are not noticed");
        }
    }
}

/// How long calls in flight get to finish after a stop is asked for, unless the host
/// config says otherwise.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    #[test]
    fn a_host_keeps_its_id_across_starts_and_another_has_another() {
        let one = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let data = one.path().join("data");
        let first = super::host_id(&data).unwrap();
        assert_eq!(
            super::host_id(&data).unwrap(),
            first,
            "the same at each start"
        );
        assert_ne!(super::host_id(other.path()).unwrap(), first);
        assert_eq!(first.len(), 36, "a UUID: {first}");
    }
}
