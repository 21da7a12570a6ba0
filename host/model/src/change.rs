//! Change notifications as they go on the bus: A&AI Gizmo's event shape (`operation`,
//! `vertex` or `edge`, `transaction-id`, `timestamp`) plus the plugin they came from.

use crate::diff::Operation;
use crate::entity::Entity;
#[cfg(test)]
use crate::gizmo;

/// A change ready to publish.
#[derive(Debug, Clone)]
pub struct Change {
    pub operation: Operation,
    pub entity: Entity,
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    pub transaction_id: String,
    /// Shared by all the changes of one collect, as Gizmo's bulk operations share one.
    pub database_transaction_id: Option<String>,
    /// The plugin that produced the change.
    pub source: String,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Change {
    /// The Gizmo-shaped JSON document ([`gizmo::Event`]'s form), written directly: the
    /// entity's properties are canonical JSON already and go in as they are.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json_size_hint());
        self.write_json(&mut out);
        out
    }

    /// About the length of [`Change::to_json`]'s document, for a buffer that holds it.
    pub fn json_size_hint(&self) -> usize {
        160 + self.entity.key().len() + self.entity.properties().len()
    }

    /// Appends [`Change::to_json`]'s document to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let e = &self.entity;
        out.extend_from_slice(b"{\"timestamp\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.timestamp).as_bytes());
        out.extend_from_slice(b",\"operation\":\"");
        out.extend_from_slice(self.operation.as_str().as_bytes());
        out.extend_from_slice(if e.edge().is_some() {
            b"\",\"edge\":{\"key\":"
        } else {
            b"\",\"vertex\":{\"key\":"
        });
        json_str(e.key(), out);
        out.extend_from_slice(b",\"type\":");
        json_str(e.kind(), out);
        if let Some(version) = e.schema_version() {
            out.extend_from_slice(b",\"schema-version\":");
            json_str(version, out);
        }
        out.extend_from_slice(b",\"properties\":");
        out.extend_from_slice(e.properties().as_bytes());
        if let Some(ends) = e.edge() {
            for (name, end) in [
                (&b",\"source\":"[..], &ends.source),
                (b",\"target\":", &ends.target),
            ] {
                out.extend_from_slice(name);
                out.extend_from_slice(b"{\"key\":");
                json_str(&end.key, out);
                out.extend_from_slice(b",\"type\":");
                json_str(&end.kind, out);
                out.push(b'}');
            }
        }
        out.extend_from_slice(b"},\"transaction-id\":");
        json_str(&self.transaction_id, out);
        if let Some(id) = &self.database_transaction_id {
            out.extend_from_slice(b",\"database-transaction-id\":");
            json_str(id, out);
        }
        out.extend_from_slice(b",\"source\":");
        json_str(&self.source, out);
        out.push(b'}');
    }
}

fn json_str(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(out, s).expect("writing a string to a Vec cannot fail");
}

/// A new transaction id: a random (v4) UUID from a generator seeded once per thread,
/// not a system call per id.
pub fn new_transaction_id() -> String {
    use rand::Rng;
    uuid::Builder::from_random_bytes(rand::rng().random())
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::{EdgeEnds, EntityRef};

    #[test]
    fn vertices_and_edges_look_like_gizmo_events() {
        let vertex = Entity::new(
            "srv-1".into(),
            "pserver".into(),
            r#"{"hostname":"a"}"#.into(),
            Some("v11".into()),
            None,
        )
        .unwrap();
        let change = Change {
            operation: Operation::Create,
            entity: vertex,
            timestamp: 1514927928167,
            transaction_id: "t".into(),
            database_transaction_id: Some("d".into()),
            source: "inv".into(),
        };
        assert_eq!(
            String::from_utf8(change.to_json()).unwrap(),
            r#"{"timestamp":1514927928167,"operation":"CREATE","vertex":{"key":"srv-1","type":"pserver","schema-version":"v11","properties":{"hostname":"a"}},"transaction-id":"t","database-transaction-id":"d","source":"inv"}"#
        );
        let edge = Entity::new(
            "e".into(),
            "tosca.relationships.HostedOn".into(),
            "{}".into(),
            None,
            Some(EdgeEnds {
                source: EntityRef {
                    key: "vm".into(),
                    kind: "vserver".into(),
                },
                target: EntityRef {
                    key: "srv-1".into(),
                    kind: "pserver".into(),
                },
            }),
        )
        .unwrap();
        let change = Change {
            operation: Operation::Delete,
            entity: edge,
            database_transaction_id: None,
            ..change
        };
        let json: serde_json::Value = serde_json::from_slice(&change.to_json()).unwrap();
        let event: gizmo::Event = serde_json::from_slice(&change.to_json()).unwrap();
        assert!(
            matches!(event.subject, gizmo::Subject::Edge(_)),
            "a Gizmo event"
        );
        assert_eq!(json["operation"], "DELETE");
        assert_eq!(
            json["edge"]["source"],
            serde_json::json!({"key": "vm", "type": "vserver"})
        );
        assert_eq!(json["edge"]["target"]["key"], "srv-1");
        assert!(json.get("vertex").is_none() && json.get("database-transaction-id").is_none());
    }
}
