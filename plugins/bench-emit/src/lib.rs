//! An event step for benchmarks that does real work per event: it parses the message as a
//! JSON event with serde, builds a small entity of it and emits it as a change (the work
//! of a typical `process_event`, and of the Extism peer the benchmark is compared with).

use std::borrow::Cow;

use serde::Deserialize;
use synchro_guest::{Error, ErrorCode, EventStep, Message, Operation, emit, error, vertex};

/// The fields of the event this step uses; serde skips the others.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    hostname: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
}

struct Bench;

impl EventStep for Bench {
    fn process_event(message: Message) -> Result<(), Error> {
        let event: Event = serde_json::from_slice(&message.payload).map_err(|e| {
            error(
                ErrorCode::InvalidInput,
                format!("not the event expected: {e}"),
            )
        })?;
        let properties = serde_json::json!({
            "hostname": event.hostname,
            "status": event.status,
        });
        emit::change(Operation::Create, vertex(event.id, "pserver", properties))
    }
}

synchro_guest::export_event_step!(Bench);
