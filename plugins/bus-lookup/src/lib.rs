//! A collector that samples a system reachable only through the bus: it publishes
//! `{"transaction-id": ID, "query": "servers"}` on the `requests` setting's topic and
//! awaits the response whose `transaction-id` is ID on the `responses` topic (the
//! manifest declares `correlation = "json:transaction-id"`, as Gizmo's responses carry
//! it). A `{"result": "SUCCESS", "servers": [...]}` response becomes `pserver` vertices;
//! a FAILURE, or no response in time, fails the collect and deletes nothing.

use serde_json::{Value, json};
use synchro_guest::{
    Collector, Completeness, Error, ErrorCode, Snapshot, bus, config, error, vertex,
};

struct Lookup;

/// Unique enough per call: each collect runs in a fresh instance, so no counter survives.
fn transaction_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("lookup-{nanos}")
}

impl Collector for Lookup {
    fn collect(snapshot: &mut Snapshot) -> Result<Completeness, Error> {
        let requests = config::require("requests")?;
        let responses = config::require("responses")?;
        let id = transaction_id();
        let request = json!({"transaction-id": id, "query": "servers"}).to_string();
        bus::publish(&requests, Some(id.as_bytes()), request.as_bytes(), &[])?;
        let response = bus::await_response(&responses, &id, 5_000)?;
        let response: Value = serde_json::from_slice(&response.payload).map_err(|e| {
            error(
                ErrorCode::InvalidInput,
                format!("response is not JSON: {e}"),
            )
        })?;
        if response["result"] != "SUCCESS" {
            let message = response["error-message"]
                .as_str()
                .unwrap_or("no error-message");
            return Err(error(
                ErrorCode::Failed,
                format!("the responder answered FAILURE: {message}"),
            ));
        }
        for server in response["servers"].as_array().into_iter().flatten() {
            let id = server["id"]
                .as_str()
                .ok_or_else(|| error(ErrorCode::InvalidInput, "a server without an `id`"))?;
            snapshot.add(vertex(id, "pserver", server.clone()))?;
        }
        Ok(Completeness::Complete)
    }
}

synchro_guest::export_collector!(Lookup);
