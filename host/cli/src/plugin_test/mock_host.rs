//! The host `plugin test` runs a plugin in: the real loader, capabilities, collector
//! runner, diff and store, the roles' own calls, with a database in a temporary
//! directory, the embedded bus and `poll` answered from fixtures instead of the network.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use synchro_bus::Bus;
use synchro_capability::{Canned, Http, PollSettings, Services};
use synchro_engine::CallError;
use synchro_model::Handling;
use synchro_roles::collector::{CollectError, Runner};
use synchro_roles::{Deployment, Origin, Plugin, PluginEngine};
use synchro_store::{Appender, Cursor, Db, Start};
use synchro_supervisor::Config;

use super::fixture::{Function, StoredEntity};

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
            responses: Vec::new(),
            published: None,
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
    /// Published once the plugin has declared its response topics (so that they are
    /// kept for its `await-response`), before its first call.
    responses: Vec<synchro_bus::Message>,
    /// Reads what the plugin's calls publish, from its first call on.
    published: Option<synchro_bus::Consumer>,
}

/// What a call did.
pub struct Called {
    pub result: Result<(), CallError>,
    /// Announced (a collect's changes, store writes, `emit-change`), as
    /// `OPERATION kind/key`.
    pub changes: Vec<String>,
    pub published: Vec<synchro_bus::Message>,
}

impl Case<'_> {
    /// Puts `entities` in the store, written by the plugin (announced as its creates
    /// are, but not counted as a call's).
    pub async fn seed(&mut self, entities: &[StoredEntity]) -> anyhow::Result<()> {
        let plugin = self.host.name.clone();
        for stored in entities {
            self.put(&plugin, &stored.entity()?, false)?;
        }
        self.announced().await?;
        Ok(())
    }

    /// Writes `entity` to the model as the source `writer` would (or, with `deleted`,
    /// deletes it so); what a policy or a sync step handling it may write.
    fn put(
        &self,
        writer: &str,
        entity: &synchro_model::Entity,
        deleted: bool,
    ) -> anyhow::Result<Option<Handling>> {
        let as_writer = synchro_store::Writer {
            plugin: writer,
            acting: synchro_model::Acting::Source,
            handling: None,
        };
        let record = |operation, entity: &synchro_model::Entity| {
            synchro_bus::change_record(&synchro_model::Change {
                operation,
                entity: entity.clone(),
                timestamp: synchro_model::now_millis(),
                transaction_id: synchro_model::new_transaction_id(),
                database_transaction_id: None,
                source: writer.to_owned(),
            })
        };
        let write = match deleted {
            false => self.db.model_put(as_writer, entity, record)?,
            true => self.db.model_delete(as_writer, entity.id(), record)?,
        };
        anyhow::ensure!(
            matches!(write, synchro_store::Write::Done { .. }),
            "{}: the fixture's write of it was refused ({write:?}): is it in `[[store]]` too?",
            entity.id()
        );
        if deleted {
            return Ok(None);
        }
        let stored = self
            .db
            .model_get(entity.id())?
            .context("the entity just written")?;
        Ok(Some(Handling {
            id: entity.id().clone(),
            seen: stored.bookkeeping.last_write(),
        }))
    }

    /// Messages for the bus before the plugin's first call.
    pub fn respond_with(&mut self, messages: Vec<synchro_bus::Message>) {
        self.responses = messages;
    }

    /// Loads the plugin with `variant` and hands `message` to its event step (one call,
    /// as the host's event-step runner makes it), `poll` answered by `answers`.
    pub async fn process(
        &mut self,
        variant: &Variant,
        answers: Vec<Canned>,
        message: &synchro_bus::Message,
    ) -> anyhow::Result<Called> {
        let (plugin, _, _) = self.host.load(variant)?;
        let services = self.services(answers);
        plugin.activate(&services).await?;
        self.start_calls().await?;
        let step = plugin
            .roles
            .event_step
            .as_ref()
            .with_context(|| format!("{} is not an event step", self.host.name))?;
        let call = plugin.call_context(&Default::default(), &services);
        let result = match step.session(&self.host.engine, &plugin.linked, call).await {
            Ok(mut session) => session.process(&self.host.engine, message).await,
            Err(error) => Err(error),
        };
        self.called(result).await
    }

    /// Loads the plugin with `variant` and collects once, `poll` answered by `answers`,
    /// through the host's collector runner (which commits the baseline and announces
    /// the changes as `synchro run` does).
    pub async fn collect(
        &mut self,
        variant: &Variant,
        answers: Vec<Canned>,
    ) -> anyhow::Result<Called> {
        let (plugin, _, _) = self.host.load(variant)?;
        let services = self.services(answers);
        plugin.activate(&services).await?;
        self.start_calls().await?;
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
        let result = match runner.collect().await {
            Ok(_) => Ok(()),
            Err(CollectError::Call(error)) => Err(error),
            Err(CollectError::Db(error)) => return Err(error.into()),
        };
        self.called(result).await
    }

    /// Loads the plugin with `variant` and makes one call of its model policy or sync step
    /// (`function`, with `entity`, and `previous` for `handle-update`), `poll` answered by
    /// `answers`. The entity is in the model first, as a source wrote it (a delete's is
    /// gone from it), and the call may write it as the host's runners allow. The runners'
    /// planning (dependency holds, the operator's modes) is not applied: the call is made
    /// as the fixture says.
    pub async fn call(
        &mut self,
        variant: &Variant,
        answers: Vec<Canned>,
        function: Function,
        entity: &StoredEntity,
        previous: Option<&StoredEntity>,
    ) -> anyhow::Result<Called> {
        use synchro_roles::model_policy::{React, handle_once};
        use synchro_roles::sync_step::{Enact, enact_once};
        let (plugin, _, _) = self.host.load(variant)?;
        let has_role = if function.is_policy() {
            plugin.roles.model_policy.is_some()
        } else {
            plugin.roles.sync_step.is_some()
        };
        anyhow::ensure!(
            has_role,
            "{} is not a {}",
            self.host.name,
            if function.is_policy() {
                "model policy"
            } else {
                "sync step"
            }
        );
        let services = self.services(answers);
        plugin.activate(&services).await?;
        let entity = entity.entity()?;
        let handling = self.put(SOURCE, &entity, function.deletes())?;
        self.announced().await?;
        self.start_calls().await?;
        let engine = &self.host.engine;
        let context = plugin.call_context(&Default::default(), &services);
        let result = match function {
            Function::HandleCreate => {
                handle_once(&plugin, engine, context, &React::Create(entity), handling).await
            }
            Function::HandleUpdate => {
                let previous = previous
                    .context("handle-update needs `previous`")?
                    .entity()?;
                let react = React::Update(entity, previous);
                handle_once(&plugin, engine, context, &react, handling).await
            }
            Function::HandleDelete => {
                handle_once(&plugin, engine, context, &React::Delete(entity), handling).await
            }
            Function::SyncRecord => {
                enact_once(&plugin, engine, context, &Enact::Sync(entity), handling).await
            }
            Function::DeleteRecord => {
                enact_once(&plugin, engine, context, &Enact::Delete(entity), handling).await
            }
        };
        self.called(result).await
    }

    /// The entity `kind` `key` of the store.
    pub fn stored(&self, kind: &str, key: &str) -> anyhow::Result<Option<synchro_model::Entity>> {
        let stored = self.db.model_get(&synchro_model::Id::new(kind, key))?;
        Ok(stored.map(|s| s.entity))
    }

    fn services(&self, answers: Vec<Canned>) -> Services {
        Services {
            bus: self.bus.clone(),
            db: self.db.clone(),
            outbox: self.outbox.clone(),
            http: Http::canned(PollSettings::default(), answers),
        }
    }

    /// Before a call, once the plugin has declared its response topics: publishes the
    /// responses of [`Case::respond_with`] (kept for its `await-response`), then starts
    /// reading what it publishes.
    async fn start_calls(&mut self) -> anyhow::Result<()> {
        for response in std::mem::take(&mut self.responses) {
            self.bus.publish(response).await?;
        }
        if self.published.is_none() {
            let all = synchro_bus::Topics::Pattern(".*".into());
            let start = synchro_bus::StartFrom::Latest;
            self.published = Some(self.bus.consume("plugin-test", all, start)?);
        }
        Ok(())
    }

    /// What the call that ended with `result` did, once its changes are committed.
    async fn called(&mut self, result: Result<(), CallError>) -> anyhow::Result<Called> {
        self.outbox.durable(self.outbox.issued()).await;
        let mut published = Vec::new();
        let consumer = self.published.as_mut().expect("joined by `start_calls`");
        // Published messages are on the embedded bus when the call returns: take what is
        // ready, without waiting.
        while let Ok(Ok(delivery)) = tokio::time::timeout(Duration::ZERO, consumer.next()).await {
            published.push((*delivery.message).clone());
        }
        Ok(Called {
            result,
            changes: self.announced().await?,
            published,
        })
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

/// Who wrote what a `[[call]]` is handed: no plugin's name.
const SOURCE: &str = "(fixture)";

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
