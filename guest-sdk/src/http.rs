//! HTTP through the host (`poll`): only to hosts the manifest allows.

use crate::__bindings::synchro::plugin::poll;
use crate::{Error, ErrorCode, error};

pub use poll::{Request, Response};

/// Performs `request` through the host.
pub fn send(request: &Request) -> Result<Response, Error> {
    poll::poll(request)
}

/// GETs `url` and returns the body, treating a non-2xx status as an error.
pub fn get(url: &str) -> Result<Vec<u8>, Error> {
    let response = send(&Request {
        method: "GET".into(),
        url: url.into(),
        headers: vec![],
        body: None,
        timeout_ms: None,
    })?;
    if !(200..300).contains(&response.status) {
        return Err(error(
            ErrorCode::Failed,
            format!("GET {url}: HTTP status {}", response.status),
        ));
    }
    Ok(response.body)
}

/// GETs `url` and parses the body as JSON.
///
/// ```no_run
/// // The manifest grants `poll = { hosts = ["https://inventory.example"] }`.
/// let servers = synchro_guest::http::get_json("https://inventory.example/servers")?;
/// # Ok::<(), synchro_guest::Error>(())
/// ```
pub fn get_json(url: &str) -> Result<serde_json::Value, Error> {
    let body = get(url)?;
    serde_json::from_slice(&body).map_err(|e| {
        error(
            ErrorCode::InvalidInput,
            format!("GET {url}: body is not JSON: {e}"),
        )
    })
}
