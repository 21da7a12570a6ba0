//! Conversions between the WIT types of the bindings and the host's own types.

use synchro_bus::Message;
use synchro_model::{EdgeEnds, Entity, EntityError, EntityRef, Error, ErrorKind, Operation};

use crate::synchro::plugin::types as wit;

/// A WIT error code for each kind: the one place the host's error kinds meet the
/// contract's. `conflict` has no code of its own: to a plugin, asking for what the state
/// does not allow now is invalid input.
impl From<ErrorKind> for wit::ErrorCode {
    fn from(kind: ErrorKind) -> wit::ErrorCode {
        match kind {
            ErrorKind::Denied => wit::ErrorCode::Denied,
            ErrorKind::TimedOut => wit::ErrorCode::TimedOut,
            ErrorKind::InvalidInput | ErrorKind::Conflict => wit::ErrorCode::InvalidInput,
            ErrorKind::NotFound => wit::ErrorCode::NotFound,
            ErrorKind::Unavailable => wit::ErrorCode::Unavailable,
            ErrorKind::Failed => wit::ErrorCode::Failed,
        }
    }
}

/// The kind of the error a plugin returned.
pub fn kind_of(code: wit::ErrorCode) -> ErrorKind {
    match code {
        wit::ErrorCode::Denied => ErrorKind::Denied,
        wit::ErrorCode::TimedOut => ErrorKind::TimedOut,
        wit::ErrorCode::InvalidInput => ErrorKind::InvalidInput,
        wit::ErrorCode::NotFound => ErrorKind::NotFound,
        wit::ErrorCode::Unavailable => ErrorKind::Unavailable,
        wit::ErrorCode::Failed => ErrorKind::Failed,
    }
}

impl From<Error> for wit::Error {
    fn from(error: Error) -> wit::Error {
        wit::Error {
            code: error.kind.into(),
            message: error.message,
        }
    }
}

/// Bytes of every string of a guest's entity — key, kind, properties, schema version and
/// both edge ends — which the host's size limits count.
pub fn entity_size(e: &wit::Entity) -> usize {
    let ends = e.edge.as_ref().map_or(0, |ends| {
        ends.source.key.len()
            + ends.source.kind.len()
            + ends.target.key.len()
            + ends.target.kind.len()
    });
    e.key.len()
        + e.kind.len()
        + e.properties.len()
        + e.schema_version.as_ref().map_or(0, String::len)
        + ends
}

/// Validates a guest's entity; the strings move, nothing is copied.
pub fn entity_from_wit(e: wit::Entity) -> Result<Entity, EntityError> {
    let edge = e.edge.map(|ends| EdgeEnds {
        source: EntityRef {
            key: ends.source.key,
            kind: ends.source.kind,
        },
        target: EntityRef {
            key: ends.target.key,
            kind: ends.target.kind,
        },
    });
    Entity::new(e.key, e.kind, e.properties, e.schema_version, edge)
}

pub fn entity_to_wit(e: Entity) -> wit::Entity {
    let (key, kind, properties, schema_version, edge) = e.into_parts();
    wit::Entity {
        key,
        kind,
        properties,
        schema_version,
        edge: edge.map(|ends| wit::EdgeEnds {
            source: wit::EntityRef {
                key: ends.source.key,
                kind: ends.source.kind,
            },
            target: wit::EntityRef {
                key: ends.target.key,
                kind: ends.target.kind,
            },
        }),
    }
}

pub fn operation_from_wit(op: wit::Operation) -> Operation {
    match op {
        wit::Operation::Create => Operation::Create,
        wit::Operation::Update => Operation::Update,
        wit::Operation::Delete => Operation::Delete,
    }
}

pub fn message_to_wit(m: &Message) -> wit::Message {
    wit::Message {
        topic: m.topic.clone(),
        key: m.key.clone(),
        payload: m.payload.clone(),
        headers: m.headers.clone(),
        timestamp: m.timestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synchro_bus::BusError;

    #[test]
    fn a_broker_that_is_down_is_unavailable_to_the_plugin_not_its_fault() {
        let down = BusError::Kafka {
            brokers: "127.0.0.1:9092".into(),
            reason: "all brokers are down".into(),
        };
        let error = wit::Error::from(Error::from(down));
        assert_eq!(error.code, wit::ErrorCode::Unavailable);
        assert!(
            error.message.contains("127.0.0.1:9092"),
            "{}",
            error.message
        );
        let timed_out = BusError::TimedOut {
            topic: "t".into(),
            id: "i".into(),
            timeout: std::time::Duration::from_secs(1),
        };
        assert_eq!(
            wit::Error::from(Error::from(timed_out)).code,
            wit::ErrorCode::TimedOut
        );
    }

    #[test]
    fn every_wit_code_maps_back_to_the_kind_it_came_from() {
        for kind in [
            ErrorKind::Denied,
            ErrorKind::TimedOut,
            ErrorKind::InvalidInput,
            ErrorKind::NotFound,
            ErrorKind::Unavailable,
            ErrorKind::Failed,
        ] {
            assert_eq!(kind_of(kind.into()), kind);
        }
        assert_eq!(
            kind_of(ErrorKind::Conflict.into()),
            ErrorKind::InvalidInput,
            "a conflict is invalid input to a plugin"
        );
    }
}
