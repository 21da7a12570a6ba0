//! {name}: an event step. The host hands it each message of the manifest's
//! `[events] topics` (as generated, `changes`: every CREATE, UPDATE and DELETE the host
//! announces, as a Gizmo-shaped JSON event); an error leaves the message to be retried
//! (then dead-lettered), so handling must be idempotent.

use serde_json::Value;
use synchro_guest::{Error, ErrorCode, EventStep, Message, error, log};

struct Plugin;

impl EventStep for Plugin {
    fn process_event(message: Message) -> Result<(), Error> {
        let event: Value = serde_json::from_slice(&message.payload).map_err(|e| {
            // Not retried forever: after `[events] retries` it goes to the dead letters.
            error(
                ErrorCode::InvalidInput,
                format!("{}: not JSON: {e}", message.topic),
            )
        })?;
        // A change: `{"operation": "CREATE", "vertex": {"key": ..., "type": ...}, ...}`
        // (`edge` instead of `vertex` for an edge).
        let element = event.get("vertex").or_else(|| event.get("edge"));
        let field = |name: &str| {
            element
                .and_then(|e| e.get(name))
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned()
        };
        log::info(&format!(
            "{}: {} {}/{}",
            message.topic,
            event
                .get("operation")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            field("type"),
            field("key")
        ));
        Ok(())
    }
}

synchro_guest::export_event_step!(Plugin);
