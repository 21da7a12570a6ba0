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

/// One call — a collect (`[[collect]]`) or a message handed to an event step
/// (`[[event]]`, which names its `topic`) — and what must come of it.
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
        anyhow::ensure!(
            fixture.collect.is_empty() != fixture.event.is_empty(),
            "fixture {}: give `[[collect]]` (a collector's) or `[[event]]` (an event step's), \
             saying what each must do",
            path.display()
        );
        for (i, step) in fixture.collect.iter().enumerate() {
            anyhow::ensure!(
                step.topic.is_none()
                    && step.payload.is_empty()
                    && step.key.is_none()
                    && step.headers.is_empty(),
                "fixture {}: collect {}: a collect is handed no message (`topic`, `payload`, \
                 `key`, `headers` are an `[[event]]`'s)",
                path.display(),
                i + 1
            );
        }
        for (i, step) in fixture.event.iter().enumerate() {
            anyhow::ensure!(
                step.topic.is_some(),
                "fixture {}: event {}: no `topic`: say where the message comes from",
                path.display(),
                i + 1
            );
        }
        for (i, step) in fixture.collect.iter().chain(&fixture.event).enumerate() {
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
