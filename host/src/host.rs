//! The running host: state, bus, runtime and the plugins of the plugin directory.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::bus::Bus;
use crate::capability::Services;
use crate::collector::Collector;
use crate::config::Config;
use crate::event_step::EventStep;
use crate::plugin::{Plugin, manifests_in};
use crate::runtime::Runtime;
use crate::state::State;

pub struct Host {
    services: Services,
    runtime: Arc<Runtime>,
    config: Config,
}

impl Host {
    /// Opens the state and builds the runtime; loads no plugin yet.
    pub fn new(config: Config, bus: Bus) -> anyhow::Result<Host> {
        let state = Arc::new(State::open(&config.data_dir)?);
        let runtime = Arc::new(Runtime::new(&config.data_dir.join("cache"))?);
        let services = Services::new(bus, state, config.poll.clone())?;
        Ok(Host {
            services,
            runtime,
            config,
        })
    }

    /// Loads every plugin of the plugin directory. A plugin that fails to load is logged
    /// with the reason and skipped: the others run.
    pub async fn load_plugins(&self) -> anyhow::Result<Vec<Arc<Plugin>>> {
        let mut plugins: Vec<Arc<Plugin>> = Vec::new();
        for path in manifests_in(&self.config.plugin_dir)? {
            match Plugin::load(&self.runtime, &path, &self.config.limits) {
                Ok(plugin) if plugins.iter().any(|p| p.name == plugin.name) => {
                    tracing::error!(
                        "{}: plugin `{}` is already loaded from another manifest; skipped",
                        path.display(),
                        plugin.name
                    );
                }
                Ok(plugin) => {
                    if let Err(error) = plugin.activate(&self.services).await {
                        tracing::error!("plugin not loaded: {error:#}");
                        continue;
                    }
                    tracing::info!(
                        plugin = %plugin.name,
                        version = %plugin.manifest.version,
                        cached = plugin.origin == crate::runtime::Origin::Cache,
                        "loaded"
                    );
                    plugins.push(Arc::new(plugin));
                }
                Err(error) => tracing::error!("plugin not loaded: {error:#}"),
            }
        }
        Ok(plugins)
    }

    /// Runs the plugins until `shutdown` turns true, then waits for calls in flight.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let plugins = self.load_plugins().await?;
        if plugins.is_empty() {
            tracing::warn!(dir = %self.config.plugin_dir.display(), "no plugin loaded");
        }
        let mut tasks = JoinSet::new();
        for plugin in plugins {
            if plugin.prepared.is_collector() {
                let collector =
                    Collector::new(plugin.clone(), self.runtime.clone(), self.services.clone());
                tasks.spawn(collector.run(shutdown.clone()));
            }
            if plugin.prepared.is_event_step() {
                let step = EventStep::new(plugin, self.runtime.clone(), self.services.clone());
                tasks.spawn(step.run(shutdown.clone()));
            }
        }
        shutdown
            .wait_for(|stop| *stop)
            .await
            .context("shutdown signal lost")?;
        while let Some(done) = tasks.join_next().await {
            done.context("a plugin task panicked")?;
        }
        Ok(())
    }
}
