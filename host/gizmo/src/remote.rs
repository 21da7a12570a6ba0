//! Async mode: a write is published as Gizmo's request (`{header, body}`) on the request
//! topic, and answered when the response with its transaction id arrives on the response
//! topic — registered before the request is published, so a fast response is never lost
//! (the bus's correlator; late, duplicate and unknown responses are counted there and
//! dropped).
//!
//! A response is read as Gizmo reads it: a non-empty `policyViolations` → 400, whatever
//! the result; `result: FAILURE` → the status its `httpErrorStatus` names, with its
//! `error-message`; anything else is a success (a DELETE's response needs no `result`),
//! answered with the `vertex` or `edge` it carries. Both Gizmo's flat responses and the
//! `{header, body, policyViolations}` envelope ONAP's Champ sends are read. No response
//! within `timeout` → 504 naming the transaction id (Gizmo answers 500).

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;
use synchro_bus::{Bus, CorrelationId, Message};
use synchro_model::gizmo::{self, Element, Endpoint, Event, Request, Subject as Which};
use synchro_model::{EdgeEnds, Entity, EntityRef};
use synchro_store::ApiWrite;

use crate::answer::Failure;
use crate::backend::Subject;

/// Where a response carries its transaction id: Champ's envelope, or Gizmo's flat shape.
pub const RESPONSE_ID: &str = "json:body.transaction-id|transaction-id";
/// The `source-name` of the requests synchro publishes.
pub const SOURCE_NAME: &str = "SYNCHRO";

/// The bus side of async mode.
#[derive(Clone)]
pub struct Remote {
    bus: Bus,
    requests: String,
    responses: String,
    timeout: Duration,
}

impl Remote {
    /// Declares both topics, and the response topic as carrying responses, so that they
    /// are kept for their waiters from now.
    pub async fn start(
        bus: Bus,
        requests: String,
        responses: String,
        timeout: Duration,
    ) -> anyhow::Result<Remote> {
        let id = CorrelationId::parse(RESPONSE_ID).expect("a valid correlation id");
        // Declared now, so that a responder subscribing before the first request finds
        // the topic at its first join instead of joining again seconds later.
        bus.declare(&requests).await?;
        bus.expect_responses(&responses, id).await?;
        Ok(Remote {
            bus,
            requests,
            responses,
            timeout,
        })
    }

    /// Publishes `write` (a replace or a patch as Gizmo's UPDATE: a patch is merged by
    /// the caller) and waits for its response; `database` is a bulk's transaction id.
    pub async fn write(
        &self,
        subject: Subject,
        write: &ApiWrite,
        database: Option<&str>,
    ) -> Result<Entity, Failure> {
        let transaction = synchro_model::new_transaction_id();
        let event = event(subject, write, &transaction, database);
        let operation = event.operation;
        let request = Request::new(event, SOURCE_NAME, "pending-update");
        let payload = serde_json::to_vec(&request).expect("a request serialises");
        let message = Message::new(self.requests.clone(), payload)
            .with_key(write.id().key().as_bytes().to_vec());
        // The correlator keeps a response that comes before the wait below starts.
        self.bus.publish(message).await.map_err(|error| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Error publishing request {transaction}  Cause: {error}"),
            )
        })?;
        let response = match self
            .bus
            .await_response(&self.responses, &transaction, self.timeout)
            .await
        {
            Ok(response) => response,
            Err(synchro_bus::BusError::TimedOut { .. }) => {
                return Err(Failure::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "Timed out , transactionId: {transaction} , operation: {} (no response on `{}` within {:?})",
                        operation_name(operation),
                        self.responses,
                        self.timeout
                    ),
                ));
            }
            Err(error) => return Err(Failure::from(synchro_model::Error::from(error))),
        };
        answer(write, &transaction, &response.payload)
    }
}

fn operation_name(operation: gizmo::Operation) -> &'static str {
    match operation {
        gizmo::Operation::Create => "CREATE",
        gizmo::Operation::Update => "UPDATE",
        gizmo::Operation::Delete => "DELETE",
    }
}

/// The event that asks for `write` of a `subject`.
fn event(subject: Subject, write: &ApiWrite, transaction: &str, database: Option<&str>) -> Event {
    let (operation, subject) = match write {
        ApiWrite::Create(entity) => (gizmo::Operation::Create, element(entity, true)),
        ApiWrite::Replace(entity) => (gizmo::Operation::Update, element(entity, true)),
        ApiWrite::Patch { .. } => unreachable!("async mode merges a patch before it asks"),
        ApiWrite::Delete(id) => {
            // Its kind and key are what a delete carries.
            let bare = Element {
                key: id.key().to_owned(),
                kind: id.kind().to_owned(),
                schema_version: None,
                properties: None,
                source: None,
                target: None,
            };
            let which = match subject {
                Subject::Vertex => Which::Vertex(bare),
                Subject::Edge => Which::Edge(bare),
            };
            (gizmo::Operation::Delete, which)
        }
    };
    Event {
        timestamp: synchro_model::now_millis(),
        operation,
        subject,
        transaction_id: transaction.to_owned(),
        database_transaction_id: database.map(str::to_owned),
        source: None,
    }
}

/// A vertex or an edge as an event carries it; `properties` false: key and type only.
pub fn element(entity: &Entity, properties: bool) -> Which {
    let end = |r: &EntityRef| Endpoint {
        key: r.key.clone(),
        kind: r.kind.clone(),
    };
    let element = Element {
        key: entity.key().to_owned(),
        kind: entity.kind().to_owned(),
        schema_version: entity.schema_version().map(str::to_owned),
        properties: properties.then(|| {
            serde_json::from_str(entity.properties()).expect("stored properties are an object")
        }),
        source: entity.edge().map(|e| end(&e.source)),
        target: entity.edge().map(|e| end(&e.target)),
    };
    match entity.edge() {
        None => Which::Vertex(element),
        Some(_) => Which::Edge(element),
    }
}

/// The entity a response's element describes.
fn entity_of(element: &Value, edge: bool) -> Result<Entity, String> {
    let field = |name: &str| element.get(name).and_then(Value::as_str);
    let key = field("key").ok_or("no `key`")?.to_owned();
    let kind = field("type").ok_or("no `type`")?.to_owned();
    let properties = match element.get("properties") {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(properties) => properties.to_string(),
    };
    let end = |name: &str| -> Result<EntityRef, String> {
        let end = element
            .get(name)
            .ok_or(format!("an edge without `{name}`"))?;
        let part = |f: &str| end.get(f).and_then(Value::as_str).map(str::to_owned);
        match (part("key"), part("type")) {
            (Some(key), Some(kind)) => Ok(EntityRef { key, kind }),
            _ => Err(format!("`{name}` needs `key` and `type`")),
        }
    };
    let ends = match edge {
        true => Some(EdgeEnds {
            source: end("source")?,
            target: end("target")?,
        }),
        false => None,
    };
    Entity::new(
        key,
        kind,
        properties,
        field("schema-version").map(str::to_owned),
        ends,
    )
    .map_err(|e| e.to_string())
}

/// The answer a response `payload` makes to `write`.
fn answer(write: &ApiWrite, transaction: &str, payload: &[u8]) -> Result<Entity, Failure> {
    let malformed = |why: &str| {
        Failure::new(
            StatusCode::BAD_GATEWAY,
            format!("the response to transaction-id {transaction} is malformed: {why}"),
        )
    };
    let document: Value =
        serde_json::from_slice(payload).map_err(|e| malformed(&format!("not JSON: {e}")))?;
    // Champ's envelope holds the event in `body`, its violations beside it.
    let body = match document.get("body") {
        Some(body @ Value::Object(_)) => body,
        _ => &document,
    };
    let violations = document
        .get("policyViolations")
        .or_else(|| body.get("policyViolations"));
    if let Some(Value::Array(violations)) = violations
        && !violations.is_empty()
    {
        return Err(Failure::bad_request(format!(
            "Operation Failed with transaction-id {transaction}. Error: policy violations detected in request, {}",
            Value::Array(violations.clone())
        )));
    }
    if body.get("result").and_then(Value::as_str) == Some("FAILURE") {
        let status = body
            .get("httpErrorStatus")
            .and_then(Value::as_str)
            .map_or(500, gizmo::status_of);
        let message = body
            .get("error-message")
            .and_then(Value::as_str)
            .unwrap_or("(no error-message)");
        return Err(Failure::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            format!("Operation Failed with transaction-id: {transaction}. Error: {message}"),
        ));
    }
    match write {
        ApiWrite::Delete(_) => Ok(placeholder(write)),
        _ => {
            let (element, edge) = match (body.get("vertex"), body.get("edge")) {
                (Some(v), _) => (v, false),
                (None, Some(e)) => (e, true),
                (None, None) => return Err(malformed("a success without `vertex` or `edge`")),
            };
            entity_of(element, edge).map_err(|why| malformed(&why))
        }
    }
}

/// What a delete answers with (its body is empty): the request's own id.
fn placeholder(write: &ApiWrite) -> Entity {
    let id = write.id();
    Entity::new(
        id.key().to_owned(),
        id.kind().to_owned(),
        "{}".into(),
        None,
        None,
    )
    .expect("a stored id is a valid entity's")
}
