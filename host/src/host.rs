//! The running host: state, bus, runtime, the plugins of the plugin directory kept in
//! step with it, and the admin API.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::admin::Request;
use crate::bus::Bus;
use crate::capability::Services;
use crate::config::Config;
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::state::State;
use crate::watch::DirWatcher;

pub struct Host {
    services: Services,
    runtime: Arc<Runtime>,
    config: Config,
}

impl Host {
    /// Opens the state and builds the runtime; loads no plugin yet.
    pub fn new(config: Config, bus: Bus) -> anyhow::Result<Host> {
        let state = Arc::new(State::open(&config.data_dir)?);
        let runtime = Arc::new(Runtime::for_config(&config)?);
        let services = Services::new(bus, state, config.poll.clone())?;
        Ok(Host {
            services,
            runtime,
            config,
        })
    }

    /// Runs the plugins until `shutdown` turns true, then waits for calls in flight.
    /// A plugin that fails to load is logged with the reason and skipped: the others run.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut registry = Registry::new(self.runtime, self.services, self.config.clone());
        registry.scan().await;
        if registry.is_empty() {
            tracing::warn!(dir = %self.config.plugin_dir.display(), "no plugin loaded");
        }
        let (requests, mut admin) = mpsc::channel(16);
        if self.config.admin.enabled {
            crate::admin::serve(
                &self.config.admin,
                &self.config.data_dir,
                requests,
                shutdown.clone(),
            )
            .await?;
        }
        let mut watcher = self.config.watch.then(|| watcher(&registry)).flatten();
        loop {
            tokio::select! {
                // Dropped at once: a `watch::Ref` held across the awaits below would make
                // this future !Send.
                _ = async { drop(shutdown.wait_for(|stop| *stop).await) } => break,
                _ = async { watcher.as_mut().expect("guarded").changed().await }, if watcher.is_some() => {
                    registry.scan().await;
                    watch_dirs(watcher.as_mut().expect("guarded"), &registry);
                }
                Some(request) = admin.recv() => match request {
                    Request::Status(reply) => drop(reply.send(registry.report())),
                    Request::Release(name, reply) => drop(reply.send(registry.release(&name))),
                    Request::Reload(name, reply) => {
                        drop(reply.send(registry.reload(&name).await));
                        // A reloaded manifest may point at a component elsewhere.
                        if let Some(watcher) = watcher.as_mut() {
                            watch_dirs(watcher, &registry);
                        }
                    }
                },
            }
        }
        registry.shutdown().await;
        Ok(())
    }
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
