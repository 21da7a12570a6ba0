//! Fixture files: what the outside world answers a plugin, and what it must do then.
//!
//! ```toml
//! # fixtures/two-servers.toml: one case, its collects in order, each diffed against
//! # the baseline the one before left (the first against an empty one).
//! [settings]                 # merged over the manifest's [settings]
//! url = "https://inventory.example/servers"
//!
//! [[http]]                   # what `poll` answers (a request none matches: unavailable)
//! url = "https://inventory.example/servers"
//! body = '{"servers": [{"id": "srv-1"}, {"id": "srv-2"}]}'
//!
//! [[collect]]
//! changes = ["CREATE pserver/srv-1", "CREATE pserver/srv-2"]
//!
//! [[collect]]                # its own answers (and settings) instead of the case's
//! http = [{ url = "https://inventory.example/servers", body = '{"servers": [{"id": "srv-1"}]}' }]
//! changes = ["DELETE pserver/srv-2"]
//!
//! [[collect]]
//! http = [{ url = "https://inventory.example/servers", status = 503 }]
//! error = "failed"           # the collect fails with this error kind; nothing changes
//! ```
//!
//! An event step's case hands it messages instead, in order, in one host state:
//!
//! ```toml
//! [[store]]                  # entities in the store before, as the plugin wrote them
//! kind = "person"
//! key = "p1"
//! properties = { name = "Ada" }
//!
//! [[responses]]              # messages on the bus before the first event: answers to
//! topic = "responses"        # `await-response`, found by the manifest's correlation
//! payload = '{"transaction-id": "t1", "ok": true}'
//!
//! [[event]]
//! topic = "people"           # the message (key and headers optional)
//! payload = '{"id": "p2", "name": "Grace"}'
//! published = [{ topic = "requests" }]       # published by the call (payload optional)
//! changes = ["CREATE person/p2"]             # announced: store writes and emit-change
//! stored = [{ kind = "person", key = "p2", properties = { name = "Grace" } }]
//! # error = "invalid-input"  # the error kind the call returns
//! ```
//!
//! A model policy's or a sync step's case makes calls, each in an instance of its own, the
//! entity put in the model first as a source's write (a delete's is deleted from it):
//!
//! ```toml
//! [[call]]
//! function = "handle-update"     # or handle-create, handle-delete, sync-record, delete-record
//! entity = { kind = "pserver", key = "srv-1", properties = { hostname = "alpha" } }
//! previous = { kind = "pserver", key = "srv-1", properties = { hostname = "old" } }  # handle-update's
//! http = [{ method = "PUT", url = "https://cmdb.example/srv-1", status = 204 }]
//! stored = [{ kind = "pserver", key = "srv-1", properties = { hostname = "alpha", stamped = true } }]
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use synchro_capability::Canned;

/// One fixture file: one case.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Fixture {
    #[serde(skip)]
    pub name: String,
    #[serde(default)]
    pub settings: toml::Table,
    #[serde(default)]
    pub http: Vec<Answer>,
    #[serde(default)]
    pub collect: Vec<Step>,
    #[serde(default)]
    pub store: Vec<StoredEntity>,
    #[serde(default)]
    pub responses: Vec<BusMessage>,
    #[serde(default)]
    pub event: Vec<Step>,
    #[serde(default)]
    pub call: Vec<Step>,
}

/// The export function a `[[call]]` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Function {
    HandleCreate,
    HandleUpdate,
    HandleDelete,
    SyncRecord,
    DeleteRecord,
}

impl Function {
    /// Whether a model policy exports it (else a sync step does).
    pub fn is_policy(self) -> bool {
        matches!(
            self,
            Function::HandleCreate | Function::HandleUpdate | Function::HandleDelete
        )
    }

    /// Whether its entity is deleted: not put in the model before the call.
    pub fn deletes(self) -> bool {
        matches!(self, Function::HandleDelete | Function::DeleteRecord)
    }
}

/// An entity of the store, its properties a table (written as JSON).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StoredEntity {
    pub kind: String,
    pub key: String,
    /// Absent in an expectation: any.
    pub properties: Option<toml::Table>,
}

impl StoredEntity {
    pub fn properties_json(&self) -> String {
        serde_json::to_string(&self.properties.clone().unwrap_or_default())
            .expect("a TOML table is JSON")
    }

    /// The entity, a vertex, its properties `{}` when none are given.
    pub fn entity(&self) -> anyhow::Result<synchro_model::Entity> {
        Ok(synchro_model::Entity::new(
            self.key.clone(),
            self.kind.clone(),
            self.properties_json(),
            None,
            None,
        )?)
    }
}

/// A message on the bus.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BusMessage {
    pub topic: String,
    #[serde(default)]
    pub payload: String,
    pub key: Option<String>,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

impl BusMessage {
    pub fn message(&self) -> synchro_bus::Message {
        let mut message = synchro_bus::Message::new(self.topic.clone(), self.payload.clone());
        if let Some(key) = &self.key {
            message = message.with_key(key.clone());
        }
        for (name, value) in &self.headers {
            message = message.with_header(name.clone(), value.clone());
        }
        message
    }
}

/// A message a call must publish.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Published {
    pub topic: String,
    pub payload: Option<String>,
}

/// One call — a collect (`[[collect]]`), a message handed to an event step (`[[event]]`,
/// which names its `topic`) or a policy's or sync step's call (`[[call]]`, which names
/// its `function` and `entity`) — and what must come of it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Step {
    /// Over the case's settings.
    #[serde(default)]
    pub settings: toml::Table,
    /// Instead of the case's answers.
    pub http: Option<Vec<Answer>>,
    /// An event's message: its topic, payload, key and headers.
    pub topic: Option<String>,
    #[serde(default)]
    pub payload: String,
    pub key: Option<String>,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// A call's function, its entity, and (`handle-update`'s) the entity as handled last.
    pub function: Option<Function>,
    pub entity: Option<StoredEntity>,
    pub previous: Option<StoredEntity>,
    /// The changes announced, as `OPERATION kind/key`, in any order.
    #[serde(default)]
    pub changes: Vec<String>,
    /// Messages the call published: each topic (and payload, when given).
    #[serde(default)]
    pub published: Vec<Published>,
    /// Entities in the store after the call (properties compared when given).
    #[serde(default)]
    pub stored: Vec<StoredEntity>,
    /// The error kind the call fails with (`invalid-input`, `unavailable`, ...).
    pub error: Option<String>,
}

impl Step {
    fn hands_no_message(&self) -> bool {
        self.topic.is_none()
            && self.payload.is_empty()
            && self.key.is_none()
            && self.headers.is_empty()
    }

    /// An event's message; `None` for a collect.
    pub fn message(&self) -> Option<synchro_bus::Message> {
        let topic = self.topic.clone()?;
        let message = BusMessage {
            topic,
            payload: self.payload.clone(),
            key: self.key.clone(),
            headers: self.headers.clone(),
        };
        Some(message.message())
    }
}

/// An answer of `poll`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Answer {
    #[serde(default = "get")]
    pub method: String,
    pub url: String,
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    #[serde(default)]
    pub body: String,
}

fn get() -> String {
    "GET".into()
}

fn ok() -> u16 {
    200
}

impl Answer {
    pub fn canned(answers: &[Answer]) -> Vec<Canned> {
        answers
            .iter()
            .map(|a| Canned {
                method: a.method.clone(),
                url: a.url.clone(),
                status: a.status,
                headers: a.headers.clone(),
                body: a.body.clone().into_bytes(),
            })
            .collect()
    }
}

impl Fixture {
    fn load(path: &Path) -> anyhow::Result<Fixture> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the fixture {}", path.display()))?;
        let mut fixture: Fixture =
            toml::from_str(&text).with_context(|| format!("fixture {}", path.display()))?;
        fixture.name = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        let kinds = [&fixture.collect, &fixture.event, &fixture.call];
        anyhow::ensure!(
            kinds.iter().filter(|steps| !steps.is_empty()).count() == 1,
            "fixture {}: give `[[collect]]` (a collector's), `[[event]]` (an event step's) or \
             `[[call]]` (a model policy's or a sync step's), saying what each must do",
            path.display()
        );
        let at = |what: &str, i: usize| format!("fixture {}: {what} {}", path.display(), i + 1);
        for (what, steps) in [("collect", &fixture.collect), ("event", &fixture.event)] {
            for (i, step) in steps.iter().enumerate() {
                anyhow::ensure!(
                    step.function.is_none() && step.entity.is_none() && step.previous.is_none(),
                    "{}: `function`, `entity` and `previous` are a `[[call]]`'s",
                    at(what, i)
                );
            }
        }
        for (i, step) in fixture.collect.iter().enumerate() {
            anyhow::ensure!(
                step.hands_no_message(),
                "{}: a collect is handed no message (`topic`, `payload`, `key`, `headers` are \
                 an `[[event]]`'s)",
                at("collect", i)
            );
        }
        for (i, step) in fixture.event.iter().enumerate() {
            anyhow::ensure!(
                step.topic.is_some(),
                "{}: no `topic`: say where the message comes from",
                at("event", i)
            );
        }
        for (i, step) in fixture.call.iter().enumerate() {
            let Some(function) = step.function else {
                anyhow::bail!(
                    "{}: no `function` (handle-create, handle-update, handle-delete, \
                     sync-record or delete-record)",
                    at("call", i)
                );
            };
            anyhow::ensure!(
                step.entity.is_some(),
                "{}: no `entity`: say what the call is handed",
                at("call", i)
            );
            anyhow::ensure!(
                step.previous.is_some() == (function == Function::HandleUpdate),
                "{}: `previous` is handle-update's, and handle-update needs it",
                at("call", i)
            );
            if let (Some(entity), Some(previous)) = (&step.entity, &step.previous) {
                anyhow::ensure!(
                    (&entity.kind, &entity.key) == (&previous.kind, &previous.key),
                    "{}: `previous` is the same entity as handled last: kind `{}` and key `{}`",
                    at("call", i),
                    entity.kind,
                    entity.key
                );
            }
            anyhow::ensure!(
                function.is_policy() == fixture.call[0].function.is_some_and(|f| f.is_policy()),
                "{}: a case's calls are a model policy's (handle-...) or a sync step's \
                 (sync-record, delete-record), not both",
                at("call", i)
            );
            if let Some(entity) = &step.entity
                && let Some(seeded) = fixture
                    .store
                    .iter()
                    .find(|s| (&s.kind, &s.key) == (&entity.kind, &entity.key))
            {
                anyhow::bail!(
                    "{}: {}/{} is in `[[store]]` too, written by the plugin: a call's entity \
                     is a source's",
                    at("call", i),
                    seeded.kind,
                    seeded.key
                );
            }
            anyhow::ensure!(
                step.hands_no_message(),
                "{}: a call is handed no message (`topic`, `payload`, `key`, `headers` are an \
                 `[[event]]`'s)",
                at("call", i)
            );
        }
        for (i, step) in fixture
            .collect
            .iter()
            .chain(&fixture.event)
            .chain(&fixture.call)
            .enumerate()
        {
            if let Some(kind) = &step.error {
                anyhow::ensure!(
                    synchro_model::ErrorKind::ALL
                        .iter()
                        .any(|k| k.label() == kind),
                    "fixture {}: step {}: `error = \"{kind}\"` is no error kind ({})",
                    path.display(),
                    i + 1,
                    synchro_model::ErrorKind::ALL.map(|k| k.label()).join(", ")
                );
                anyhow::ensure!(
                    step.changes.is_empty(),
                    "fixture {}: step {}: a failed call changes nothing; give `error` or `changes`",
                    path.display(),
                    i + 1
                );
            }
        }
        Ok(fixture)
    }

    /// The fixtures in `dir` (`*.toml`, by name); none when it does not exist.
    pub fn all_in(dir: &Path) -> anyhow::Result<Vec<Fixture>> {
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading the fixtures in {}", dir.display()))?
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        paths.iter().map(|p| Fixture::load(p)).collect()
    }
}
