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
}

/// One collect and what must come of it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Step {
    /// Over the case's settings.
    #[serde(default)]
    pub settings: toml::Table,
    /// Instead of the case's answers.
    pub http: Option<Vec<Answer>>,
    /// The changes announced, as `OPERATION kind/key`, in any order.
    #[serde(default)]
    pub changes: Vec<String>,
    /// The error kind the collect fails with (`invalid-input`, `unavailable`, ...).
    pub error: Option<String>,
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
            !fixture.collect.is_empty(),
            "fixture {}: no `[[collect]]`: say what each collect must announce",
            path.display()
        );
        for (i, step) in fixture.collect.iter().enumerate() {
            if let Some(kind) = &step.error {
                anyhow::ensure!(
                    synchro_model::ErrorKind::ALL
                        .iter()
                        .any(|k| k.label() == kind),
                    "fixture {}: collect {}: `error = \"{kind}\"` is no error kind ({})",
                    path.display(),
                    i + 1,
                    synchro_model::ErrorKind::ALL.map(|k| k.label()).join(", ")
                );
                anyhow::ensure!(
                    step.changes.is_empty(),
                    "fixture {}: collect {}: a failed collect changes nothing; give `error` or `changes`",
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
