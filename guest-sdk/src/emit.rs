//! Change notifications that need no baseline diff.

use crate::__bindings::synchro::plugin::emit;
use crate::{Change, Entity, Error, Operation};

/// Publishes a change notification attributed to this plugin, for a change a plugin
/// learned of itself (an event step reading a source's own notifications) rather than
/// by a collector's diff.
///
/// ```no_run
/// use synchro_guest::{Operation, emit, vertex};
/// emit::change(Operation::Update, vertex("srv-1", "pserver", serde_json::json!({ "up": false })))?;
/// # Ok::<(), synchro_guest::Error>(())
/// ```
pub fn change(operation: Operation, entity: Entity) -> Result<(), Error> {
    emit::emit_change(&Change {
        operation,
        entity,
        timestamp: 0,
        transaction_id: String::new(),
    })
}
