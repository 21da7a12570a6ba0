//! Change notifications as they go on the bus: A&AI Gizmo's event shape (`operation`,
//! `vertex` or `edge`, `transaction-id`, `timestamp`) plus the plugin they came from.

use crate::diff::Operation;
use crate::entity::Entity;
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
    /// The change as a Gizmo event.
    pub fn to_event(&self) -> gizmo::Event {
        let e = &self.entity;
        let endpoint = |r: &crate::EntityRef| gizmo::Endpoint {
            key: r.key.clone(),
            kind: r.kind.clone(),
        };
        let element = gizmo::Element {
            key: e.key().to_owned(),
            kind: e.kind().to_owned(),
            schema_version: e.schema_version().map(str::to_owned),
            properties: Some(
                serde_json::from_str(e.properties())
                    .expect("entity properties are a JSON object by construction"),
            ),
            source: e.edge().map(|ends| endpoint(&ends.source)),
            target: e.edge().map(|ends| endpoint(&ends.target)),
        };
        gizmo::Event {
            timestamp: self.timestamp,
            operation: match self.operation {
                Operation::Create => gizmo::Operation::Create,
                Operation::Update => gizmo::Operation::Update,
                Operation::Delete => gizmo::Operation::Delete,
            },
            subject: if e.edge().is_some() {
                gizmo::Subject::Edge(element)
            } else {
                gizmo::Subject::Vertex(element)
            },
            transaction_id: self.transaction_id.clone(),
            database_transaction_id: self.database_transaction_id.clone(),
            source: Some(self.source.clone()),
        }
    }

    /// The Gizmo-shaped JSON document.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_event()).expect("an event serialises")
    }
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
        assert_eq!(json["operation"], "DELETE");
        assert_eq!(
            json["edge"]["source"],
            serde_json::json!({"key": "vm", "type": "vserver"})
        );
        assert_eq!(json["edge"]["target"]["key"], "srv-1");
        assert!(json.get("vertex").is_none() && json.get("database-transaction-id").is_none());
    }
}
