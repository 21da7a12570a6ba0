//! A trivial event step for benchmarks: it looks at each message and accepts it.

use synchro_guest::{Error, ErrorCode, EventStep, Message, error};

struct Bench;

impl EventStep for Bench {
    fn process_event(message: Message) -> Result<(), Error> {
        if message.topic.is_empty() {
            return Err(error(ErrorCode::InvalidInput, "a message without a topic"));
        }
        Ok(())
    }
}

synchro_guest::export_event_step!(Bench);
