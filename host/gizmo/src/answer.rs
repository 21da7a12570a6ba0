//! How the API answers: Gizmo's statuses, its error messages as plain text, and the
//! client's `X-TransactionId` on every answer.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use synchro_model::Error;

/// The header a Gizmo client names its request with.
pub const TRANSACTION_HEADER: &str = "x-transactionid";

/// A request's transaction id: the client's `X-TransactionId`, or a new one.
#[derive(Debug, Clone)]
pub struct TransactionId(pub String);

/// A refused or failed request: its status and Gizmo's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
}

impl Failure {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::NOT_FOUND, message)
    }
}

/// A host error (the disk, a stopping host, the bus) as an answer.
impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        let status = StatusCode::from_u16(error.kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Failure::new(status, error.message)
    }
}

/// A failure of the state database.
impl From<synchro_store::DbError> for Failure {
    fn from(error: synchro_store::DbError) -> Failure {
        Failure::from(Error::new(error.kind(), error.to_string()))
    }
}

/// Gizmo answers errors as their message, in plain text.
impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.message,
        )
            .into_response()
    }
}

/// Gives every request its transaction id and echoes it on the answer.
pub async fn transaction_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(TRANSACTION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .map_or_else(synchro_model::new_transaction_id, str::to_owned);
    request.extensions_mut().insert(TransactionId(id.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(TRANSACTION_HEADER, value);
    }
    response
}

/// Refuses what a web page may have sent (see [`synchro_admin::from_a_page`]): a page a
/// local browser opens could otherwise write the model through loopback.
pub async fn local_only(State(port): State<u16>, request: Request, next: Next) -> Response {
    match synchro_admin::from_a_page(port, request.headers()) {
        None => next.run(request).await,
        Some(refusal) => {
            tracing::warn!("Gizmo API: refused a request: {refusal}");
            Failure::new(StatusCode::FORBIDDEN, refusal).into_response()
        }
    }
}
