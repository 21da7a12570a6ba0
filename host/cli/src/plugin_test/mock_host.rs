//! The host `plugin test` runs a plugin in: the real loader, capabilities, collector
//! runner, diff and store, with a database in a temporary directory, the embedded bus and
//! `poll` answered from fixtures instead of the network.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use synchro_bus::Bus;
use synchro_capability::{Canned, Http, PollSettings, Services};
use synchro_engine::CallError;
use synchro_roles::collector::{CollectError, Runner};
use synchro_roles::{Deployment, Origin, Plugin, PluginEngine};
use synchro_store::{Appender, Cursor, Db, Start};
use synchro_supervisor::Config;

/// The plugin under test: its manifest, read as a table so that a case can change its
/// settings or capabilities, and the engine every case shares (one compile, cached).
pub struct MockHost {
    dir: tempfile::TempDir,
    engine: Arc<PluginEngine>,
    /// The manifest with its component's path made absolute.
    manifest: toml::Table,
    /// Where it was read from, which errors name (not the copy a case loads).
    path: PathBuf,
    name: String,
    /// The operator's side: the host defaults, no grants config (a plugin gets what its
    /// manifest asks), as `synchro run` without a config.
    config: Config,
    cases: std::cell::Cell<usize>,
}

/// What a manifest variant of a case changes.
#[derive(Debug, Clone, Default)]
pub struct Variant {
    /// Merged over the manifest's `[settings]`.
    pub settings: toml::Table,
    /// Every setting removed first.
    pub no_settings: bool,
    /// Every capability removed.
    pub no_capabilities: bool,
}

impl MockHost {
    pub fn new(manifest_path: &Path) -> anyhow::Result<MockHost> {
        let manifest = synchro_manifest::Manifest::load(manifest_path)?;
        let text = std::fs::read_to_string(manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?;
        let mut table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("reading {}", manifest_path.display()))?;
        anyhow::ensure!(
            manifest.component.is_file(),
            "{}: its component {} is missing; build it first (synchro plugin build {} -o {})",
            manifest_path.display(),
            manifest.component.display(),
            manifest_path
                .parent()
                .map_or(Path::new("."), |p| p)
                .display(),
            manifest.component.display()
        );
        let component = manifest
            .component
            .canonicalize()
            .with_context(|| format!("reading {}", manifest.component.display()))?;
        table.insert(
            "component".into(),
            toml::Value::String(component.display().to_string()),
        );
        let dir = tempfile::tempdir().context("a temporary directory")?;
        let engine = Arc::new(synchro_roles::engine(
            Some(&dir.path().join("cache")),
            false,
        )?);
        Ok(MockHost {
            dir,
            engine,
            manifest: table,
            path: manifest_path.to_owned(),
            name: manifest.name,
            config: Config::default(),
            cases: std::cell::Cell::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The manifest's `[settings]`.
    pub fn settings(&self) -> toml::Table {
        match self.manifest.get("settings") {
            Some(toml::Value::Table(settings)) => settings.clone(),
            _ => toml::Table::new(),
        }
    }

    /// Loads the plugin as a host would, with `variant`: the time it took and whether its
    /// component came from the cache.
    pub fn load(&self, variant: &Variant) -> anyhow::Result<(Plugin, Duration, Origin)> {
        let mut manifest = self.manifest.clone();
        let settings = manifest
            .entry("settings")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(settings) = settings else {
            anyhow::bail!("the manifest's `settings` is not a table");
        };
        if variant.no_settings {
            settings.clear();
        }
        settings.extend(variant.settings.clone());
        if variant.no_capabilities {
            manifest.remove("capabilities");
        }
        let path = self.dir.path().join(format!("{}.toml", self.name));
        std::fs::write(&path, toml::to_string(&manifest)?)
            .with_context(|| format!("writing {}", path.display()))?;
        let started = Instant::now();
        let plugin =
            Plugin::load(&self.engine, &path, &self.config.load_policy()).map_err(|e| {
                let copy = path.display().to_string();
                anyhow::anyhow!(
                    "{}",
                    format!("{e:#}").replace(&copy, &self.path.display().to_string())
                )
            })?;
        let origin = plugin.origin;
        Ok((plugin, started.elapsed(), origin))
    }

    /// A new, empty host state for one case: its own database and bus.
    pub fn case(&self) -> anyhow::Result<Case<'_>> {
        let n = self.cases.get() + 1;
        self.cases.set(n);
        let data = self.dir.path().join(format!("case-{n}"));
        let db = Arc::new(Db::open(&data)?);
        let changes = db.cursor("plugin-test", Start::End)?;
        Ok(Case {
            host: self,
            bus: Bus::embedded(),
            outbox: Arc::new(Appender::new(db.clone())),
            db,
            changes,
        })
    }
}

/// One case's host state, which its collects share: a collect diffs against the baseline
/// the one before left.
pub struct Case<'h> {
    host: &'h MockHost,
    bus: Bus,
    db: Arc<Db>,
    outbox: Arc<Appender>,
    changes: Cursor,
}

/// How a collect ended.
pub enum Collect {
    /// Committed; the changes announced, as `OPERATION kind/key`.
    Done(Vec<String>),
    /// Failed: nothing changed.
    Failed(CallError),
}

impl Case<'_> {
    /// Loads the plugin with `variant` and collects once, `poll` answered by `answers`,
    /// through the host's collector runner (which commits the baseline and announces
    /// the changes as `synchro run` does).
    pub async fn collect(
        &mut self,
        variant: &Variant,
        answers: Vec<Canned>,
    ) -> anyhow::Result<Collect> {
        let (plugin, _, _) = self.host.load(variant)?;
        let services = Services {
            bus: self.bus.clone(),
            db: self.db.clone(),
            outbox: self.outbox.clone(),
            http: Http::canned(PollSettings::default(), answers),
        };
        plugin.activate(&services).await?;
        anyhow::ensure!(
            plugin.roles.collector.is_some(),
            "{} is not a collector",
            self.host.name
        );
        let mut runner = Runner::new(
            Deployment::new(Arc::new(plugin)),
            self.host.engine.clone(),
            services,
        );
        match runner.collect().await {
            Ok(_) => Ok(Collect::Done(self.announced().await?)),
            Err(CollectError::Call(error)) => Ok(Collect::Failed(error)),
            Err(CollectError::Db(error)) => Err(error.into()),
        }
    }

    /// The changes committed since the last time asked, as `OPERATION kind/key`.
    async fn announced(&mut self) -> anyhow::Result<Vec<String>> {
        let mut announced = Vec::new();
        while self.changes.has_more() {
            for (seq, record) in self.changes.next_batch(1024).await? {
                let message = synchro_bus::record_message(&record)?;
                let event: serde_json::Value = serde_json::from_slice(&message.payload)?;
                let element = event.get("vertex").or_else(|| event.get("edge"));
                let field = |name| element.and_then(|e| e.get(name)).and_then(|v| v.as_str());
                announced.push(format!(
                    "{} {}/{}",
                    event["operation"].as_str().unwrap_or("?"),
                    field("type").unwrap_or("?"),
                    field("key").unwrap_or("?")
                ));
                self.changes.handled(seq).await?;
            }
        }
        announced.sort();
        Ok(announced)
    }
}

/// The manifest in `dir` (or `dir` itself, a `.toml` file): the one `.toml` file that is
/// not `Cargo.toml`.
pub fn manifest_in(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.is_file() {
        return Ok(dir.to_owned());
    }
    let manifests: Vec<PathBuf> = synchro_roles::manifests_in(dir)?
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "Cargo.toml"))
        .collect();
    match manifests.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!("{} holds no plugin manifest (NAME.toml)", dir.display()),
        many => anyhow::bail!(
            "{} holds several manifests ({}); name the one to test",
            dir.display(),
            many.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
