//! The in-host responder: ONAP Champ's part in async mode. It consumes Gizmo's requests
//! from the request topic, makes each write in the model as the API's sync mode does
//! (through the same group-committing writer, the same schemas), and publishes Gizmo's
//! response — SUCCESS with the element as written, or FAILURE with `httpErrorStatus` and
//! `error-message` — on the response topic, keyed by the transaction id.
//!
//! Requests are handled concurrently (up to [`IN_FLIGHT`]) and committed in order once
//! answered: a host killed meanwhile handles the unanswered ones again (a create made
//! twice then fails as already there; its first answer was lost with the host's waiter).
//! A request that is not Gizmo's shape is answered FAILURE when its transaction id can be
//! read, and otherwise logged and dropped.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::Value;
use synchro_bus::{Bus, Consumer, Delivery, Message, StartFrom, Topics};
use synchro_model::gizmo::{self, Operation, Outcome, Request, Response, Subject as Which};
use synchro_model::{EdgeEnds, Entity, EntityRef, Id};
use synchro_store::{ApiWrite, Db};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::answer::Failure;
use crate::backend::{Subject, refused};
use crate::remote::element;
use crate::schema::Schemas;
use crate::writer::Writer;

/// Requests handled at once.
pub const IN_FLIGHT: usize = 1024;
/// The responder's consumer group.
pub const GROUP: &str = "synchro-gizmo-responder";

/// What a request needs to be answered.
#[derive(Clone)]
struct Answering {
    bus: Bus,
    db: Arc<Db>,
    writer: Writer,
    schemas: Arc<Schemas>,
    responses: String,
}

/// Starts answering the requests on `requests` until `shutdown`.
pub async fn spawn(
    bus: Bus,
    db: Arc<Db>,
    writer: Writer,
    schemas: Arc<Schemas>,
    requests: &str,
    responses: String,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    bus.declare(requests).await?;
    let mut consumer = bus.consume(
        GROUP,
        Topics::Names(vec![requests.to_owned()]),
        StartFrom::Earliest,
    )?;
    let answering = Answering {
        bus,
        db,
        writer,
        schemas,
        responses,
    };
    tokio::spawn(async move {
        let mut in_flight: VecDeque<(Delivery, JoinHandle<()>)> = VecDeque::new();
        loop {
            tokio::select! {
                // Dropped at once: a `watch::Ref` held across the awaits below would
                // make this future !Send.
                _ = async { drop(shutdown.wait_for(|stop| *stop).await) } => break,
                delivery = consumer.next(), if in_flight.len() < IN_FLIGHT => match delivery {
                    Ok(delivery) => {
                        let answering = answering.clone();
                        let message = delivery.message.clone();
                        let task = tokio::spawn(async move { answering.answer(&message).await });
                        in_flight.push_back((delivery, task));
                    }
                    Err(error) => {
                        tracing::warn!("Gizmo responder: reading requests: {error}");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                },
                _ = async { (&mut in_flight.front_mut().expect("guarded").1).await }, if !in_flight.is_empty() => {
                    let (delivery, _) = in_flight.pop_front().expect("guarded");
                    commit(&mut consumer, &delivery);
                }
            }
        }
    });
    Ok(())
}

fn commit(consumer: &mut Consumer, delivery: &Delivery) {
    if let Err(error) = consumer.commit(delivery) {
        tracing::warn!("Gizmo responder: committing a request: {error}");
    }
}

impl Answering {
    async fn answer(&self, message: &Message) {
        let response = match serde_json::from_slice::<Request>(&message.payload) {
            Ok(request) => self.respond(request).await,
            Err(error) => {
                let Some(id) = transaction_id(&message.payload) else {
                    tracing::warn!(
                        topic = message.topic,
                        "Gizmo responder: dropped a request without a transaction id: {error}"
                    );
                    return;
                };
                let failure = Failure::bad_request(format!("not a Gizmo request: {error}"));
                failure_response(id, Operation::Create, empty(), &failure)
            }
        };
        let key = response.transaction_id.clone().into_bytes();
        let payload = serde_json::to_vec(&response).expect("a response serialises");
        let message = Message::new(self.responses.clone(), payload).with_key(key);
        if let Err(error) = self.bus.publish(message).await {
            tracing::warn!("Gizmo responder: publishing a response: {error}");
        }
    }

    async fn respond(&self, request: Request) -> Response {
        let body = request.body;
        let (subject, asked) = match &body.subject {
            Which::Vertex(e) => (Subject::Vertex, e),
            Which::Edge(e) => (Subject::Edge, e),
        };
        let fail = |failure: Failure| {
            failure_response(
                body.transaction_id.clone(),
                body.operation,
                body.subject.clone(),
                &failure,
            )
        };
        if request.header.request_id != body.transaction_id {
            return fail(Failure::bad_request(format!(
                "request-id `{}` differs from the body's transaction-id `{}`",
                request.header.request_id, body.transaction_id
            )));
        }
        let write = match self.write_of(subject, body.operation, asked) {
            Ok(write) => write,
            Err(failure) => return fail(failure),
        };
        match self
            .writer
            .one(write.clone(), body.transaction_id.clone())
            .await
        {
            Ok(Ok(applied)) => Response {
                timestamp: synchro_model::now_millis(),
                operation: body.operation,
                subject: element(&applied.entity, body.operation != Operation::Delete),
                transaction_id: body.transaction_id,
                result: Outcome::Success,
                error_message: None,
                http_error_status: None,
                policy_violations: None,
            },
            Ok(Err(refusal)) => fail(refused(subject, &write, &refusal)),
            Err(error) => fail(Failure::from(error)),
        }
    }

    /// The write a request's element asks for, checked as the API checks it.
    fn write_of(
        &self,
        subject: Subject,
        operation: Operation,
        element: &gizmo::Element,
    ) -> Result<ApiWrite, Failure> {
        if operation != Operation::Create {
            // A vertex is not changed by an edge's request, nor an edge by a vertex's.
            let id = Id::new(&element.kind, &element.key);
            let found = self.db.api_get(&id).map_err(Failure::from)?;
            if let Some((entity, _)) = found
                && Subject::of(&entity) != subject
            {
                return Err(Failure::not_found(format!(
                    "No {} with id {} and type {} found in graph",
                    subject.name(),
                    element.key,
                    element.kind
                )));
            }
            if operation == Operation::Delete {
                return Ok(ApiWrite::Delete(id));
            }
        }
        let key = match element.key.as_str() {
            // Gizmo leaves the key of a new element to its responder.
            "" => uuid::Uuid::now_v7().to_string(),
            key => key.to_owned(),
        };
        let properties = Value::Object(element.properties.clone().unwrap_or_default());
        self.schemas
            .check(&element.kind, &properties)
            .map_err(|invalid| crate::routes::unknown(subject, invalid))?;
        let end = |end: &Option<gizmo::Endpoint>, name: &str| match end {
            Some(end) => Ok(EntityRef {
                key: end.key.clone(),
                kind: end.kind.clone(),
            }),
            None => Err(Failure::bad_request(format!("an edge without `{name}`"))),
        };
        let ends = match subject {
            Subject::Vertex => None,
            Subject::Edge => Some(EdgeEnds {
                source: end(&element.source, "source")?,
                target: end(&element.target, "target")?,
            }),
        };
        let entity = Entity::new(
            key,
            element.kind.clone(),
            properties.to_string(),
            element.schema_version.clone(),
            ends,
        )
        .map_err(|error| Failure::bad_request(error.to_string()))?;
        Ok(match operation {
            Operation::Create => ApiWrite::Create(entity),
            _ => ApiWrite::Replace(entity),
        })
    }
}

/// A FAILURE answering `transaction_id`, echoing `subject` (Gizmo reads it even then).
fn failure_response(
    transaction_id: String,
    operation: Operation,
    subject: Which,
    failure: &Failure,
) -> Response {
    Response {
        timestamp: synchro_model::now_millis(),
        operation,
        subject,
        transaction_id,
        result: Outcome::Failure,
        error_message: Some(failure.message.clone()),
        http_error_status: Some(gizmo::status_name(failure.status.as_u16()).to_owned()),
        policy_violations: None,
    }
}

/// An element with nothing in it, for a request too malformed to echo.
fn empty() -> Which {
    Which::Vertex(gizmo::Element {
        key: String::new(),
        kind: String::new(),
        schema_version: None,
        properties: None,
        source: None,
        target: None,
    })
}

/// The transaction id of a request that is not Gizmo's shape, if it has one.
fn transaction_id(payload: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    let body = value.get("body").unwrap_or(&value);
    body.get("transaction-id")?.as_str().map(str::to_owned)
}
