//! Change notifications that need no baseline diff.

use crate::__bindings::synchro::plugin::emit;
use crate::{Change, Entity, Error, Operation};

/// Publishes a change notification attributed to this plugin.
pub fn change(operation: Operation, entity: Entity) -> Result<(), Error> {
    emit::emit_change(&Change {
        operation,
        entity,
        timestamp: 0,
        transaction_id: String::new(),
    })
}
