//! The kinds the API accepts and the properties each may have: an optional JSON Schema
//! per kind (`[gizmo.schemas]`), as Gizmo validates every write against its OXM model
//! before it writes or publishes it.
//!
//! Without schemas every kind is accepted with any properties. With them the set of kinds
//! is closed: a kind without a schema is unknown (404, Gizmo's "Object of collection type
//! not found"), and properties that do not match their kind's schema are refused (400,
//! naming the field and why).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// The compiled schemas, by kind.
#[derive(Default)]
pub struct Schemas {
    kinds: BTreeMap<String, jsonschema::Validator>,
}

/// Why a kind's properties were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Schemas are configured and this kind has none.
    UnknownKind(String),
    /// The properties break the kind's schema at `field` (a JSON pointer into them).
    Property { field: String, reason: String },
}

impl Schemas {
    /// Reads and compiles `files` (kind → JSON Schema file); errors name the kind and
    /// the file.
    pub fn load(
        files: &BTreeMap<String, std::path::PathBuf>,
        base: &Path,
    ) -> Result<Schemas, String> {
        let mut kinds = BTreeMap::new();
        for (kind, file) in files {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("`{kind}`: cannot read {}: {e}", path.display()))?;
            let schema: Value = serde_json::from_str(&text)
                .map_err(|e| format!("`{kind}`: {} is not JSON: {e}", path.display()))?;
            let validator = jsonschema::validator_for(&schema)
                .map_err(|e| format!("`{kind}`: {} is not a JSON Schema: {e}", path.display()))?;
            kinds.insert(kind.clone(), validator);
        }
        Ok(Schemas { kinds })
    }

    /// Whether `kind` may be written or read at all.
    pub fn knows(&self, kind: &str) -> Result<(), Invalid> {
        if self.kinds.is_empty() || self.kinds.contains_key(kind) {
            Ok(())
        } else {
            Err(Invalid::UnknownKind(kind.to_owned()))
        }
    }

    /// Checks `properties` (a JSON object) against `kind`'s schema.
    pub fn check(&self, kind: &str, properties: &Value) -> Result<(), Invalid> {
        self.knows(kind)?;
        let Some(validator) = self.kinds.get(kind) else {
            return Ok(());
        };
        match validator.iter_errors(properties).next() {
            None => Ok(()),
            Some(error) => Err(Invalid::Property {
                field: error.instance_path().to_string(),
                reason: error.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_closes_the_kinds_and_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pserver.json"),
            r#"{"type":"object","required":["hostname"],
                "properties":{"hostname":{"type":"string"},"in-maint":{"type":"boolean"}}}"#,
        )
        .unwrap();
        let files = BTreeMap::from([("pserver".to_owned(), "pserver.json".into())]);
        let schemas = Schemas::load(&files, dir.path()).unwrap();
        let good = serde_json::json!({"hostname": "a", "in-maint": false});
        assert_eq!(schemas.check("pserver", &good), Ok(()));
        let bad = serde_json::json!({"hostname": "a", "in-maint": "no"});
        match schemas.check("pserver", &bad) {
            Err(Invalid::Property { field, reason }) => {
                assert_eq!(field, "/in-maint");
                assert!(reason.contains("boolean"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            schemas.check("vserver", &good),
            Err(Invalid::UnknownKind("vserver".into()))
        );
        assert_eq!(Schemas::default().check("anything", &good), Ok(()));
    }

    #[test]
    fn a_broken_schema_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.json"), r#"{"type": 5}"#).unwrap();
        let files = BTreeMap::from([("x".to_owned(), "x.json".into())]);
        let error = Schemas::load(&files, dir.path()).err().unwrap();
        assert!(
            error.starts_with("`x`: ") && error.contains("x.json"),
            "{error}"
        );
        let files = BTreeMap::from([("y".to_owned(), "missing.json".into())]);
        let error = Schemas::load(&files, dir.path()).err().unwrap();
        assert!(error.contains("missing.json"), "{error}");
    }
}
