//! A sync step that enacts entities over HTTP: `PUT {url}/{kind}/{key}` with the
//! entity's properties as the body, `DELETE` the same URL to remove it. A 503 answer
//! means "not now" (`unavailable`: the entity is deferred); any other non-2xx status fails
//! the entity with the status and body in the message, for the operator to read.
//!
//! Both are idempotent, as the host needs them to be (it calls again after a crash): a
//! PUT replaces, and a DELETE of what is already gone (404, 410) is done.
//!
//! With the setting `record-url = "true"`, a successful PUT writes the URL back onto the
//! entity as `outside-url` (XOS's steps record the backend's id this way): a write of the
//! step's own, which never syncs the entity again but which its model policy sees.

use serde_json::Value;
use synchro_guest::http::{Request, send};
use synchro_guest::{Entity, Error, ErrorCode, SyncStep, config, error, store};

struct HttpSync;

fn url(entity: &Entity) -> Result<String, Error> {
    let base = config::get("url")
        .ok_or_else(|| error(ErrorCode::InvalidInput, "the setting `url` is missing"))?;
    // Keys may hold `/`: each is one path segment.
    let segment = |s: &str| s.replace('%', "%25").replace('/', "%2F");
    Ok(format!(
        "{}/{}/{}",
        base.trim_end_matches('/'),
        segment(&entity.kind),
        segment(&entity.key)
    ))
}

/// Writes `url` onto `entity` as `outside-url`, unless it is there already.
fn record_url(mut entity: Entity, url: String) -> Result<(), Error> {
    let Ok(Value::Object(mut props)) = serde_json::from_str::<Value>(&entity.properties) else {
        return Err(error(ErrorCode::InvalidInput, "properties are not a JSON object"));
    };
    if props.get("outside-url").and_then(Value::as_str) == Some(url.as_str()) {
        return Ok(());
    }
    props.insert("outside-url".into(), Value::String(url));
    entity.properties = Value::Object(props).to_string();
    store::save(&entity)
}

fn call(method: &str, entity: &Entity, body: Option<Vec<u8>>) -> Result<String, Error> {
    let gone_is_done = method == "DELETE";
    let url = url(entity)?;
    let response = send(&Request {
        method: method.into(),
        url: url.clone(),
        headers: vec![("content-type".into(), "application/json".into())],
        body,
        timeout_ms: None,
    })?;
    match response.status {
        200..=299 => Ok(url),
        404 | 410 if gone_is_done => Ok(url),
        503 => Err(error(
            ErrorCode::Unavailable,
            format!("{method} {url}: not ready (HTTP 503)"),
        )),
        status => Err(error(
            ErrorCode::Failed,
            format!(
                "{method} {url}: HTTP {status}: {}",
                String::from_utf8_lossy(&response.body)
            ),
        )),
    }
}

impl SyncStep for HttpSync {
    fn sync_record(entity: Entity) -> Result<(), Error> {
        let body = entity.properties.clone().into_bytes();
        let url = call("PUT", &entity, Some(body))?;
        if config::get("record-url").as_deref() == Some("true") {
            record_url(entity, url)?;
        }
        Ok(())
    }

    fn delete_record(entity: Entity) -> Result<(), Error> {
        call("DELETE", &entity, None).map(drop)
    }
}

synchro_guest::export_sync_step!(HttpSync);
