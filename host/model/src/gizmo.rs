//! A&AI Gizmo's async-mode envelopes, typed: the events it publishes, the request
//! envelope around them, and the SUCCESS / FAILURE responses it awaits.
//!
//! synchro's change notifications are [`Event`]s; plugins speaking Gizmo's protocol on
//! the bus exchange [`Request`]s and [`Response`]s correlated by transaction id.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What an event does to its element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// One end of an edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub key: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A vertex or an edge as Gizmo writes it. A DELETE may carry only key, type and
/// schema version; an edge's endpoints are absent then too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Element {
    pub key: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(
        rename = "schema-version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub schema_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Endpoint>,
}

/// Which kind of graph element an event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    Vertex(Element),
    Edge(Element),
}

/// An event: what Gizmo publishes, and what synchro publishes as a change notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    pub operation: Operation,
    #[serde(flatten)]
    pub subject: Subject,
    #[serde(rename = "transaction-id")]
    pub transaction_id: String,
    /// Shared by the events of one bulk operation.
    #[serde(
        rename = "database-transaction-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub database_transaction_id: Option<String>,
    /// The synchro plugin that produced a change notification (absent in Gizmo's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A request timestamp: Gizmo writes either epoch milliseconds or a formatted time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Timestamp {
    Millis(u64),
    Text(String),
}

/// The header of a request envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RequestHeader {
    /// Equal to the body's transaction id: the correlation id of the response.
    pub request_id: String,
    pub timestamp: Timestamp,
    pub source_name: String,
    pub event_type: String,
    pub validation_entity_type: String,
}

/// A request: `{header, body}`, published on the request stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub header: RequestHeader,
    pub body: Event,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request-id `{header}` differs from the body's transaction-id `{body}`")]
    MismatchedIds { header: String, body: String },
}

impl Request {
    /// Wraps `body`, taking the request id from its transaction id as Gizmo does.
    pub fn new(body: Event, source_name: &str, event_type: &str) -> Request {
        let validation_entity_type = match &body.subject {
            Subject::Vertex(e) | Subject::Edge(e) => e.kind.clone(),
        };
        Request {
            header: RequestHeader {
                request_id: body.transaction_id.clone(),
                timestamp: Timestamp::Millis(body.timestamp),
                source_name: source_name.to_owned(),
                event_type: event_type.to_owned(),
                validation_entity_type,
            },
            body,
        }
    }

    /// Checks what the protocol requires beyond the shape: the ids agree.
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.header.request_id != self.body.transaction_id {
            return Err(RequestError::MismatchedIds {
                header: self.header.request_id.clone(),
                body: self.body.transaction_id.clone(),
            });
        }
        Ok(())
    }
}

/// The outcome of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    Success,
    Failure,
}

/// A response: the event as the responder applied it, plus the outcome. A FAILURE
/// carries the HTTP status Gizmo answers its client with and a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub timestamp: u64,
    pub operation: Operation,
    #[serde(flatten)]
    pub subject: Subject,
    #[serde(rename = "transaction-id")]
    pub transaction_id: String,
    pub result: Outcome,
    #[serde(
        rename = "error-message",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub error_message: Option<String>,
    /// An HTTP status name such as `BAD_REQUEST`.
    #[serde(
        rename = "httpErrorStatus",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub http_error_status: Option<String>,
    #[serde(
        rename = "policyViolations",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub policy_violations: Option<Value>,
}

impl Response {
    /// The numeric HTTP status of a FAILURE (500 when the responder named none or an
    /// unknown one), `None` for a SUCCESS.
    pub fn http_status(&self) -> Option<u16> {
        if self.result == Outcome::Success {
            return None;
        }
        Some(self.http_error_status.as_deref().map_or(500, status_of))
    }
}

/// The HTTP status a Java `Response.Status` name (`BAD_REQUEST`) stands for; 500 for a
/// name this does not know.
pub fn status_of(name: &str) -> u16 {
    match name {
        "BAD_REQUEST" => 400,
        "UNAUTHORIZED" => 401,
        "FORBIDDEN" => 403,
        "NOT_FOUND" => 404,
        "CONFLICT" => 409,
        "PRECONDITION_FAILED" => 412,
        "UNPROCESSABLE_ENTITY" => 422,
        "SERVICE_UNAVAILABLE" => 503,
        "GATEWAY_TIMEOUT" => 504,
        _ => 500,
    }
}

/// The Java `Response.Status` name of an HTTP status: what a responder puts in
/// `httpErrorStatus`.
pub fn status_name(status: u16) -> &'static str {
    match status {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        409 => "CONFLICT",
        412 => "PRECONDITION_FAILED",
        422 => "UNPROCESSABLE_ENTITY",
        503 => "SERVICE_UNAVAILABLE",
        504 => "GATEWAY_TIMEOUT",
        _ => "INTERNAL_SERVER_ERROR",
    }
}
