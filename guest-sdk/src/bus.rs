//! Publishing on the bus and awaiting correlated responses.

use crate::__bindings::synchro::plugin::bus;
use crate::{Error, Message};

/// Puts `payload` on `topic` with the given partitioning key and headers (bytes, as
/// Kafka's are; `"text".as_bytes()` for text).
pub fn publish(
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: &[(String, Vec<u8>)],
) -> Result<(), Error> {
    bus::publish(topic, key, payload, headers)
}

/// Waits up to `timeout_ms` for the message on `topic` whose `correlation-id` header is
/// `correlation_id`.
///
/// Request and response, as ONAP Gizmo's async mode does it: publish the request, then
/// await the response that carries its id (the host holds a response that arrives first).
///
/// ```no_run
/// use synchro_guest::bus;
/// let id = "req-42";
/// let request = serde_json::json!({ "transaction-id": id, "lookup": "srv-1" });
/// bus::publish("requests", None, request.to_string().as_bytes(), &[])?;
/// let response = bus::await_response("responses", id, 5_000)?;
/// # Ok::<(), synchro_guest::Error>(())
/// ```
pub fn await_response(
    topic: &str,
    correlation_id: &str,
    timeout_ms: u32,
) -> Result<Message, Error> {
    bus::await_response(topic, correlation_id, timeout_ms)
}
