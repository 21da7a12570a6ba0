//! Conversions between the WIT types of the bindings and the host's own types.

use super::bindings::synchro::plugin::types as wit;
use crate::bus::Message;
use crate::diff::Operation;
use crate::entity::{EdgeEnds, Entity, EntityError, EntityRef};

pub use wit::{Error as WitError, ErrorCode};

/// A WIT error with `code` and `message`.
pub fn error(code: ErrorCode, message: impl Into<String>) -> WitError {
    WitError {
        code,
        message: message.into(),
    }
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

impl std::fmt::Display for wit::ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            wit::ErrorCode::Denied => "denied",
            wit::ErrorCode::TimedOut => "timed-out",
            wit::ErrorCode::InvalidInput => "invalid-input",
            wit::ErrorCode::NotFound => "not-found",
            wit::ErrorCode::Unavailable => "unavailable",
            wit::ErrorCode::Failed => "failed",
        })
    }
}
