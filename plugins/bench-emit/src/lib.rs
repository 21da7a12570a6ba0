//! An event step for benchmarks that does real work per event: it parses the message as a
//! JSON event with serde, builds a small entity of it and emits it as a change (the work
//! of a typical `process_event`, and of the Extism peer the benchmark is compared with).

use synchro_guest::{Error, ErrorCode, EventStep, Message, Operation, emit, error, vertex};

struct Bench;

impl EventStep for Bench {
    fn process_event(message: Message) -> Result<(), Error> {
        let event: serde_json::Value = serde_json::from_slice(&message.payload)
            .map_err(|e| error(ErrorCode::InvalidInput, format!("not JSON: {e}")))?;
        let id = event["id"]
            .as_str()
            .ok_or_else(|| error(ErrorCode::InvalidInput, "no `id`"))?;
        let properties = serde_json::json!({
            "hostname": event["hostname"],
            "status": event["status"],
        });
        emit::change(Operation::Create, vertex(id, "pserver", properties))
    }
}

synchro_guest::export_event_step!(Bench);
