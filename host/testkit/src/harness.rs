//! Plugins run in process: an engine, a database and the services every capability uses,
//! in a directory that lives as long as the harness.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use synchro_bus::Bus;
use synchro_capability::{Http, PollSettings, Services};
use synchro_roles::{Deployment, Plugin, PluginEngine};
use synchro_store::{Appender, Db};
use synchro_supervisor::{Config, Registry, Relay};

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub engine: Arc<PluginEngine>,
    pub services: Services,
    /// The host config plugins are loaded under; its directories are in `dir`.
    pub config: Config,
    relay: Option<Relay>,
}

impl Harness {
    /// A harness on `bus` with the default host config.
    pub fn new(bus: &Bus) -> Harness {
        Harness::with_config(bus, |_| {})
    }

    /// A harness on `bus` whose host config `configure` adjusts (grants, fuel metering).
    pub fn with_config(bus: &Bus, configure: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = Config {
            data_dir: dir.path().join("data"),
            plugin_dir: dir.path().join("plugins"),
            watch: false,
            ..Config::default()
        };
        configure(&mut config);
        std::fs::create_dir_all(&config.plugin_dir).expect("the plugin directory");
        let engine = Arc::new(
            synchro_roles::engine(&config.data_dir.join("cache"), config.fuel_metering)
                .expect("the engine"),
        );
        let db = Arc::new(Db::open(&config.data_dir).expect("the database"));
        let services = Services {
            bus: bus.clone(),
            outbox: Arc::new(Appender::new(db.clone())),
            db,
            http: Http::new(PollSettings::default()).expect("the HTTP client"),
        };
        Harness {
            dir,
            engine,
            services,
            config,
            relay: None,
        }
    }

    /// Publishes the outbox to the bus's `changes` from now on, as `synchro run` does (in a
    /// runtime: the relay is a task).
    pub fn relay_changes(&mut self) {
        self.relay =
            Some(Relay::start(&self.services.db, self.services.bus.clone()).expect("the relay"));
    }

    /// Installs the component built from `plugins/PLUGIN` as `name` in the plugin
    /// directory, with `manifest`; returns the manifest's path.
    pub fn install(&self, name: &str, plugin_crate: &str, manifest: &str) -> PathBuf {
        let dir = &self.config.plugin_dir;
        std::fs::copy(
            crate::plugin(plugin_crate),
            dir.join(format!("{name}.wasm")),
        )
        .expect("copying the component");
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, manifest).expect("writing the manifest");
        path
    }

    /// Loads and activates the plugin of `manifest` under the harness's host config.
    pub async fn load(&self, manifest: &Path) -> anyhow::Result<Arc<Plugin>> {
        let plugin = Plugin::load(&self.engine, manifest, &self.config.load_policy())?;
        plugin.activate(&self.services).await?;
        Ok(Arc::new(plugin))
    }

    /// A deployment of `plugin`, to hand to a runner.
    pub fn deploy(plugin: Arc<Plugin>) -> Arc<Deployment> {
        Deployment::new(plugin)
    }

    /// A registry of the plugin directory, as `synchro run` keeps one.
    pub fn registry(&self) -> Registry {
        Registry::new(
            self.engine.clone(),
            self.services.clone(),
            self.config.clone(),
        )
    }
}
