//! How change notifications travel on the bus.

use synchro_model::Change;

use crate::Message;

/// The bus topic that carries change notifications.
pub const CHANGES: &str = "changes";

/// Whether the host alone writes `topic`: a plugin publishing there could forge changes
/// attributed to another plugin, whatever its grants say.
pub fn is_host_topic(topic: &str) -> bool {
    topic == CHANGES
}

/// The bus message of a change: its Gizmo-shaped JSON, keyed by entity, with headers
/// that let subscribers filter by kind or plugin without parsing the payload.
pub fn change_message(change: &Change) -> Message {
    Message::new(CHANGES, change.to_json())
        .with_key(change.entity.key())
        .with_header("operation", change.operation.as_str())
        .with_header("kind", change.entity.kind())
        .with_header("source", &change.source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use synchro_model::{Entity, Operation};

    #[test]
    fn a_change_is_keyed_by_entity_with_filterable_headers() {
        let entity = Entity::new("vm-1".into(), "vserver".into(), "{}".into(), None, None).unwrap();
        let change = Change {
            operation: Operation::Delete,
            entity,
            timestamp: 1,
            transaction_id: "t".into(),
            database_transaction_id: None,
            source: "inv".into(),
        };
        let message = change_message(&change);
        assert_eq!(message.topic, CHANGES);
        assert_eq!(message.header("kind"), Some("vserver"));
        assert_eq!(message.header("operation"), Some("DELETE"));
        assert_eq!(message.header("source"), Some("inv"));
        assert_eq!(message.key.as_deref(), Some("vm-1"));
    }
}
