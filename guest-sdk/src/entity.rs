//! Helpers that build entities from `serde_json` values.

use crate::{EdgeEnds, Entity, EntityRef};

/// A vertex of kind `kind` identified by `key`.
///
/// `properties` should be a JSON object; the host refuses anything else with a clear error.
///
/// ```
/// let server = synchro_guest::vertex("srv-1", "pserver", serde_json::json!({ "hostname": "alpha" }));
/// assert_eq!(server.properties, r#"{"hostname":"alpha"}"#);
/// ```
pub fn vertex(
    key: impl Into<String>,
    kind: impl Into<String>,
    properties: serde_json::Value,
) -> Entity {
    Entity {
        key: key.into(),
        kind: kind.into(),
        properties: properties.to_string(),
        schema_version: None,
        edge: None,
    }
}

/// An edge of kind `kind` from `source` to `target`, each given as `(key, kind)`.
///
/// ```
/// let hosted_on = synchro_guest::edge(
///     "vm-1/hosted-on",
///     "tosca.relationships.HostedOn",
///     ("vm-1", "vserver"),
///     ("srv-1", "pserver"),
///     serde_json::json!({}),
/// );
/// assert_eq!(hosted_on.edge.unwrap().target.key, "srv-1");
/// ```
pub fn edge(
    key: impl Into<String>,
    kind: impl Into<String>,
    source: (&str, &str),
    target: (&str, &str),
    properties: serde_json::Value,
) -> Entity {
    let end = |(key, kind): (&str, &str)| EntityRef {
        key: key.to_owned(),
        kind: kind.to_owned(),
    };
    Entity {
        edge: Some(EdgeEnds {
            source: end(source),
            target: end(target),
        }),
        ..vertex(key, kind, properties)
    }
}

impl Entity {
    /// Sets the schema version of the outside system's model.
    pub fn with_schema_version(mut self, version: impl Into<String>) -> Self {
        self.schema_version = Some(version.into());
        self
    }
}
