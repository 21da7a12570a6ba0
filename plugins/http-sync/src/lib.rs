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
//!
//! With the setting `create = "post"`, the outside system names what is created, as most
//! cloud APIs do: an entity without an `outside-id` property is created by `POST
//! {url}/{kind}`, whose JSON answer's `id` the step writes onto the entity as
//! `outside-id` *before* anything else; then, and on every later sync, it PUTs (and
//! DELETEs) `{url}/{kind}/{outside-id}`. The host keeps that write even if it dies before
//! the call returns, and calls again with the entity as written: a crash after the create
//! never creates twice (XOS's leaked creates).

use serde_json::Value;
use synchro_guest::http::{Request, send};
use synchro_guest::{Entity, Error, ErrorCode, SyncStep, config, error, store};

struct HttpSync;

/// `{url}/{kind}`, each part one path segment (keys may hold `/`).
fn collection(entity: &Entity) -> Result<String, Error> {
    let base = config::get("url")
        .ok_or_else(|| error(ErrorCode::InvalidInput, "the setting `url` is missing"))?;
    Ok(format!("{}/{}", base.trim_end_matches('/'), segment(&entity.kind)))
}

fn segment(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

fn posts() -> bool {
    config::get("create").as_deref() == Some("post")
}

fn properties(entity: &Entity) -> Result<serde_json::Map<String, Value>, Error> {
    match serde_json::from_str(&entity.properties) {
        Ok(Value::Object(props)) => Ok(props),
        _ => Err(error(ErrorCode::InvalidInput, "properties are not a JSON object")),
    }
}

/// Where the entity is outside: named by its key, or by the id the outside system gave
/// it (`None` if it has none yet).
fn url(entity: &Entity) -> Result<Option<String>, Error> {
    let name = match posts() {
        false => entity.key.clone(),
        true => match properties(entity)?.get("outside-id") {
            Some(Value::String(id)) => id.clone(),
            _ => return Ok(None),
        },
    };
    Ok(Some(format!("{}/{}", collection(entity)?, segment(&name))))
}

/// Creates `entity` outside, and writes the id it got onto it before anything else.
fn create(mut entity: Entity) -> Result<Entity, Error> {
    let url = collection(&entity)?;
    let body = send_checked("POST", &url, Some(entity.properties.clone().into_bytes()), false)?;
    let id = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(answer)) => match answer.get("id") {
            Some(Value::String(id)) => id.clone(),
            Some(Value::Number(id)) => id.to_string(),
            _ => return Err(error(ErrorCode::Failed, format!("POST {url}: no `id` in the answer"))),
        },
        _ => return Err(error(ErrorCode::Failed, format!("POST {url}: the answer is not JSON"))),
    };
    let mut props = properties(&entity)?;
    props.insert("outside-id".into(), Value::String(id));
    entity.properties = Value::Object(props).to_string();
    store::save(&entity)?;
    Ok(entity)
}

/// Writes `url` onto `entity` as `outside-url`, unless it is there already.
fn record_url(mut entity: Entity, url: String) -> Result<(), Error> {
    let mut props = properties(&entity)?;
    if props.get("outside-url").and_then(Value::as_str) == Some(url.as_str()) {
        return Ok(());
    }
    props.insert("outside-url".into(), Value::String(url));
    entity.properties = Value::Object(props).to_string();
    store::save(&entity)
}

/// Sends `method` `url`; the body of a success. A 404 or 410 is one if `gone_is_done`.
fn send_checked(
    method: &str,
    url: &str,
    body: Option<Vec<u8>>,
    gone_is_done: bool,
) -> Result<Vec<u8>, Error> {
    let response = send(&Request {
        method: method.into(),
        url: url.to_owned(),
        headers: vec![("content-type".into(), "application/json".into())],
        body,
        timeout_ms: None,
    })?;
    match response.status {
        200..=299 => Ok(response.body),
        404 | 410 if gone_is_done => Ok(response.body),
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
        let (entity, url) = match url(&entity)? {
            Some(url) => (entity, url),
            None => {
                let entity = create(entity)?;
                let url = url(&entity)?.expect("an outside id was just written");
                (entity, url)
            }
        };
        let body = entity.properties.clone().into_bytes();
        send_checked("PUT", &url, Some(body), false)?;
        if config::get("record-url").as_deref() == Some("true") {
            record_url(entity, url)?;
        }
        Ok(())
    }

    fn delete_record(entity: Entity) -> Result<(), Error> {
        match url(&entity)? {
            Some(url) => send_checked("DELETE", &url, None, true).map(drop),
            // Never created outside.
            None => Ok(()),
        }
    }
}

synchro_guest::export_sync_step!(HttpSync);
