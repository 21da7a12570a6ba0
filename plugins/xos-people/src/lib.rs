//! The event step of the XOS synchronizer reference: each event is a JSON object with
//! `first_name` and `last_name`; the step creates a `person` entity for it unless one
//! exists. Saving an identical entity again changes nothing, so redelivery is harmless.

use serde_json::{Value, json};
use synchro_guest::{Error, ErrorCode, EventStep, Message, error, store, vertex};

struct People;

impl EventStep for People {
    fn process_event(message: Message) -> Result<(), Error> {
        let event: Value = serde_json::from_slice(&message.payload)
            .map_err(|e| error(ErrorCode::InvalidInput, format!("event is not JSON: {e}")))?;
        let name = |field: &str| {
            event[field]
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    error(
                        ErrorCode::InvalidInput,
                        format!("event has no string `{field}`"),
                    )
                })
        };
        let (first, last) = (name("first_name")?, name("last_name")?);
        let key = format!("person/{}-{}", first.to_lowercase(), last.to_lowercase());
        if store::get("person", &key)?.is_none() {
            store::save(&vertex(
                key,
                "person",
                json!({"first_name": first, "last_name": last}),
            ))?;
        }
        Ok(())
    }
}

synchro_guest::export_event_step!(People);
