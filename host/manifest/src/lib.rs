//! The plugin manifest: a TOML file beside each component that says what the plugin is,
//! what it may do and what it may use — and the limits every plugin call runs under.
//!
//! ```toml
//! name = "http-inventory"
//! version = "0.1.0"
//! roles = ["collector"]
//! component = "http-inventory.wasm"   # default: the manifest's file name with .wasm
//!
//! [schedule]                          # the collector role's section
//! interval = "10s"
//!
//! [limits]
//! deadline = "5s"                     # wall clock per call
//! memory-mb = 64                      # linear memory cap
//!
//! [capabilities]                      # each host import is denied unless granted here
//! poll = { hosts = ["http://127.0.0.1:8181"] }
//!
//! [settings]                          # the plugin's own, read through `config`
//! url = "http://127.0.0.1:8181/inventory.json"
//! ```
//!
//! This crate validates what every plugin has. A role's own section (`[schedule]`,
//! `[events]`) is kept as TOML here and parsed by that role, which alone knows its shape.

mod file;
mod limits;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use file::{MAX_COMPONENT_BYTES, MAX_MANIFEST_BYTES, read_capped};
pub use limits::{LimitOverrides, Limits};

/// A manifest that could not be used, naming the file and what is wrong in it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ManifestError {
    pub path: PathBuf,
    pub message: String,
}

/// What a plugin does for the host; each role is one exported WIT interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Collector,
    EventStep,
    ModelPolicy,
    SyncStep,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Collector,
        Role::EventStep,
        Role::ModelPolicy,
        Role::SyncStep,
    ];

    /// The role's name in manifests and in the WIT package.
    pub fn name(self) -> &'static str {
        match self {
            Role::Collector => "collector",
            Role::EventStep => "event-step",
            Role::ModelPolicy => "model-policy",
            Role::SyncStep => "sync-step",
        }
    }
}

/// The fields every manifest has; any other top-level key is a role's section.
const FIELDS: &[&str] = &[
    "name",
    "version",
    "roles",
    "component",
    "limits",
    "capabilities",
    "settings",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Raw {
    name: String,
    version: String,
    roles: Vec<Role>,
    component: Option<PathBuf>,
    #[serde(default)]
    limits: LimitOverrides,
    #[serde(default)]
    capabilities: toml::Table,
    #[serde(default)]
    settings: toml::Table,
    /// Everything else: roles' sections, or mistakes the roles name.
    #[serde(flatten)]
    sections: BTreeMap<String, toml::Value>,
}

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Where the manifest was read from.
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub roles: Vec<Role>,
    /// The component file, resolved against the manifest's directory.
    pub component: PathBuf,
    /// What the manifest asks for; the host's defaults fill in the rest.
    pub limits: LimitOverrides,
    /// Raw capability grants; each capability parses its own entry.
    pub capabilities: toml::Table,
    pub settings: toml::Table,
    /// The other top-level keys, as TOML: each role parses its own section.
    pub sections: BTreeMap<String, toml::Value>,
    /// The manifest's text, so that errors about a section can say where it is.
    text: String,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let fail = |message: String| ManifestError {
            path: path.to_owned(),
            message,
        };
        let bytes = read_capped(path, MAX_MANIFEST_BYTES).map_err(fail)?;
        let text = String::from_utf8(bytes).map_err(|e| fail(format!("not UTF-8 text: {e}")))?;
        Manifest::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let fail = |message: String| ManifestError {
            path: path.to_owned(),
            message,
        };
        let raw: Raw = toml::from_str(text).map_err(|e| fail(toml_error(text, &e)))?;
        if !is_valid_name(&raw.name) {
            return Err(fail(format!(
                "field `name`: `{}` must be 1 to 64 characters of a-z, 0-9, `-` and `_`",
                raw.name
            )));
        }
        if raw.name == API_WRITER {
            return Err(fail(format!(
                "field `name`: `{API_WRITER}` is the name the host's API writes the model under; \
                 a plugin named so would own what operators wrote: choose another name"
            )));
        }
        // The name keys the operator's grants, the baseline and the consumer group: a
        // manifest must not claim them by naming another plugin than its file does.
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if raw.name != stem {
            return Err(fail(format!(
                "field `name`: `{}` is not the file's name; a plugin's manifest is NAME.toml \
                 (rename the file to {}.toml, or the name to `{stem}`)",
                raw.name, raw.name
            )));
        }
        if raw.roles.is_empty() {
            return Err(fail(
                "field `roles`: a plugin needs at least one role".into(),
            ));
        }
        raw.limits
            .check()
            .map_err(|m| fail(format!("field `limits.{m}")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let component = match raw.component {
            Some(file) => dir.join(file),
            None => path.with_extension("wasm"),
        };
        Ok(Manifest {
            path: path.to_owned(),
            name: raw.name,
            version: raw.version,
            roles: raw.roles,
            component,
            limits: raw.limits,
            capabilities: raw.capabilities,
            settings: raw.settings,
            sections: raw.sections,
            text: text.to_owned(),
        })
    }

    /// A [`ManifestError`] about this manifest.
    pub fn error(&self, message: impl Into<String>) -> ManifestError {
        ManifestError {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    /// The error for a top-level key that neither the manifest nor any role knows,
    /// located like a TOML error, with the names that would be understood.
    pub fn unknown_field(&self, key: &str, sections: &[&str]) -> ManifestError {
        let expected: Vec<String> = FIELDS
            .iter()
            .chain(sections)
            .map(|f| format!("`{f}`"))
            .collect();
        let message = format!(
            "unknown field `{key}`, expected one of {}",
            expected.join(", ")
        );
        match locate_key(&self.text, key) {
            Some((line, column)) => self.error(format!("line {line}, column {column}: {message}")),
            None => self.error(message),
        }
    }
}

/// Where the top-level key `key` is defined: `key = …` or `[key]` at the start of a line.
fn locate_key(text: &str, key: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(number, line)| {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let rest = trimmed
            .strip_prefix('[')
            .unwrap_or(trimmed)
            .strip_prefix(key)?;
        let rest = rest.trim_start();
        (rest.starts_with('=') || rest.starts_with(']') || rest.starts_with('.'))
            .then_some((number + 1, indent + 1))
    })
}

/// A TOML error on one line, `line L, column C: message`, so that it reads well in logs.
pub fn toml_error(text: &str, error: &toml::de::Error) -> String {
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {}", error.message())
        }
        None => error.message().to_owned(),
    }
}

/// The owner of what the host's API writes into the model: a name no plugin may take, so
/// that no plugin may replace or delete it.
pub const API_WRITER: &str = "api";

fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(Path::new("/p/inv.toml"), text).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
        name = "inv"
        version = "0.1.0"
        roles = ["collector"]
        [schedule]
        interval = "10s"
        [capabilities]
        poll = { hosts = ["http://127.0.0.1:8181"] }
        [settings]
        url = "http://127.0.0.1:8181/x.json"
    "#;

    #[test]
    fn a_good_manifest_resolves_its_component_and_keeps_role_sections() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.component, Path::new("/p/inv.wasm"));
        assert_eq!(m.roles, [Role::Collector]);
        assert!(m.capabilities.contains_key("poll"));
        assert_eq!(m.sections.keys().collect::<Vec<_>>(), ["schedule"]);
    }

    #[test]
    fn errors_name_the_file_the_field_and_the_reason() {
        let cases = [
            (
                GOOD.replace("roles = [\"collector\"]", "roles = [\"collecter\"]"),
                "unknown variant `collecter`",
            ),
            (
                GOOD.replace("name = \"inv\"", "name = \"Bad Name\""),
                "field `name`",
            ),
            (
                GOOD.replace("version = \"0.1.0\"", ""),
                "missing field `version`",
            ),
            (
                GOOD.replace("[capabilities]", "[limits]\nmemory-mb = 0\n[capabilities]"),
                "field `limits.memory-mb`: must be at least 1",
            ),
            ("name = ".into(), "/p/inv.toml: line 1, column 8: "),
            (
                GOOD.replace("name = \"inv\"", "name = \"neighbour\""),
                "field `name`: `neighbour` is not the file's name; a plugin's manifest is NAME.toml",
            ),
            (
                GOOD.replace("name = \"inv\"", "name = \"api\""),
                "field `name`: `api` is the name the host's API writes the model under",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err();
            assert!(error.starts_with("/p/inv.toml: "), "{error}");
            assert!(
                error.contains(expected),
                "expected `{expected}` in: {error}"
            );
        }
    }

    #[test]
    fn an_unknown_key_is_located() {
        let m = parse(&format!("extra = 1\n{GOOD}")).unwrap();
        let error = m.unknown_field("extra", &["schedule"]).to_string();
        assert!(
            error.starts_with("/p/inv.toml: line 1, column 1: unknown field `extra`"),
            "{error}"
        );
        let m = parse(&format!("{GOOD}\n        [extra]\n")).unwrap();
        assert!(
            m.unknown_field("extra", &[])
                .to_string()
                .contains("line 12, column 9: unknown field `extra`"),
        );
    }
}
