//! Plugins run in process: an engine, a database and the services every capability uses,
//! in a directory that lives as long as the harness.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use synchro_bus::Bus;
use synchro_capability::{Http, PollSettings, Services};
use synchro_roles::{Deployment, Plugin, PluginEngine};
use synchro_store::{Appender, Db};
use synchro_supervisor::{Compiles, Config, Registry};

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub engine: Arc<PluginEngine>,
    pub services: Services,
    /// The host config plugins are loaded under; its directories are in `dir`.
    pub config: Config,
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
        Harness::start(dir, config, bus, Db::open)
    }

    fn start(
        dir: tempfile::TempDir,
        config: Config,
        bus: &Bus,
        open: impl Fn(&Path) -> Result<Db, synchro_store::DbError>,
    ) -> Harness {
        let engine = Arc::new(
            synchro_roles::engine(Some(&config.data_dir.join("cache")), config.fuel_metering)
                .expect("the engine"),
        );
        let db = Arc::new(open(&config.data_dir).expect("the database"));
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
        }
    }

    /// The same host started again on its state (data and plugins) and `bus`, as after a
    /// crash: nothing more is flushed or settled on the way. Everything of the old one
    /// (registries, runners) must be dropped first.
    pub fn restart(self, bus: &Bus) -> Harness {
        let Harness {
            dir,
            config,
            services,
            engine,
        } = self;
        drop((services, engine));
        // The outbox's writer thread lets the database go once its queue is written.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        Harness::start(dir, config, bus, |path| {
            loop {
                match Db::open(path) {
                    Err(synchro_store::DbError::Locked(_))
                        if std::time::Instant::now() < deadline =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    result => return result,
                }
            }
        })
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
    pub fn registry(&self) -> Loader {
        let (registry, compiles) = Registry::new(
            self.engine.clone(),
            self.services.clone(),
            self.config.clone(),
        );
        Loader { registry, compiles }
    }
}

/// A registry whose scans and reloads return once their loads are applied, as they are
/// by `synchro run`'s loop, which applies them among its other work.
pub struct Loader {
    registry: Registry,
    compiles: Compiles,
}

impl Loader {
    pub async fn scan(&mut self) {
        self.registry.scan().await;
        self.apply_loads().await;
    }

    pub async fn reload(
        &mut self,
        name: &str,
    ) -> Result<synchro_status::Reloaded, synchro_model::Error> {
        let (reply, reloaded) = tokio::sync::oneshot::channel();
        self.registry.reload(name, reply).await;
        self.apply_loads().await;
        reloaded.await.expect("answered once applied")
    }

    pub async fn shutdown(self, grace: std::time::Duration) {
        self.registry.shutdown(grace).await;
    }

    async fn apply_loads(&mut self) {
        while self.registry.is_loading() {
            let compiled = self.compiles.next().await;
            self.registry.apply(compiled).await;
        }
    }
}

impl std::ops::Deref for Loader {
    type Target = Registry;

    fn deref(&self) -> &Registry {
        &self.registry
    }
}
