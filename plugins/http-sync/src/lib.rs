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
//! cloud APIs do: an entity it has no id for is created by `POST {url}/{kind}`, and the id
//! in the JSON answer (`id`) is saved *before* anything else, in an entity of the step's
//! own — kind from the setting `ids-kind`, key `{kind}/{key}`, properties `{"id": …}` —
//! which no source overwrites and no other step shares. Then, and on every later sync, it
//! PUTs (and DELETEs) `{url}/{kind}/{id}`. The host keeps that save even if it dies before
//! the call returns: a crash after the create never creates twice (XOS's leaked creates).
//! If the save is refused, the step deletes what it just created before failing, so a
//! retry does not leave one behind.

use serde_json::{Value, json};
use synchro_guest::http::{Request, send};
use synchro_guest::{Entity, Error, ErrorCode, SyncStep, config, error, store, vertex};

struct HttpSync;

/// `{url}/{kind}`, each part one path segment (keys may hold `/`).
fn collection(entity: &Entity) -> Result<String, Error> {
    let base = config::get("url")
        .ok_or_else(|| error(ErrorCode::InvalidInput, "the setting `url` is missing"))?;
    Ok(format!(
        "{}/{}",
        base.trim_end_matches('/'),
        segment(&entity.kind)
    ))
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
        _ => Err(error(
            ErrorCode::InvalidInput,
            "properties are not a JSON object",
        )),
    }
}

/// The kind of the step's own entities that keep the ids the outside system gave.
fn ids_kind() -> Result<String, Error> {
    config::get("ids-kind").ok_or_else(|| {
        error(
            ErrorCode::InvalidInput,
            "`create = \"post\"` needs the setting `ids-kind`: where the step keeps the ids it gets",
        )
    })
}

/// The key of the entity that keeps `entity`'s outside id: `{kind}/{key}`, each part
/// escaped as a path segment, so that no two entities share one.
fn id_key(entity: &Entity) -> String {
    format!("{}/{}", segment(&entity.kind), segment(&entity.key))
}

/// Where the entity is outside: named by its key, or by the id the outside system gave
/// it (`None` if it has none yet).
fn url(entity: &Entity) -> Result<Option<String>, Error> {
    let name = match posts() {
        false => entity.key.clone(),
        true => match store::get(&ids_kind()?, &id_key(entity))? {
            Some(ids) => match properties(&ids)?.remove("id") {
                Some(Value::String(id)) => id,
                _ => {
                    return Err(error(
                        ErrorCode::Failed,
                        "a saved outside id is not a string",
                    ));
                }
            },
            None => return Ok(None),
        },
    };
    Ok(Some(format!("{}/{}", collection(entity)?, segment(&name))))
}

/// Creates `entity` outside, and saves the id it got before anything else; its URL.
fn create(entity: &Entity) -> Result<String, Error> {
    let collection = collection(entity)?;
    let body = entity.properties.clone().into_bytes();
    let body = send_checked("POST", &collection, Some(body), false)?;
    let id = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(answer)) => match answer.get("id") {
            Some(Value::String(id)) => id.clone(),
            Some(Value::Number(id)) => id.to_string(),
            _ => {
                let why = format!("POST {collection}: no `id` in the answer");
                return Err(error(ErrorCode::Failed, why));
            }
        },
        _ => {
            let why = format!("POST {collection}: the answer is not JSON");
            return Err(error(ErrorCode::Failed, why));
        }
    };
    let url = format!("{collection}/{}", segment(&id));
    let ids = vertex(id_key(entity), ids_kind()?, json!({ "id": id }));
    if let Err(refused) = store::save(&ids) {
        // Not kept: a retry would create another. What was just created goes.
        let _ = send_checked("DELETE", &url, None, true);
        return Err(refused);
    }
    Ok(url)
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
        let url = match url(&entity)? {
            Some(url) => url,
            None => create(&entity)?,
        };
        let body = entity.properties.clone().into_bytes();
        send_checked("PUT", &url, Some(body), false)?;
        if config::get("record-url").as_deref() == Some("true") {
            record_url(entity, url)?;
        }
        Ok(())
    }

    fn delete_record(entity: Entity) -> Result<(), Error> {
        let Some(url) = url(&entity)? else {
            // Never created outside.
            return Ok(());
        };
        send_checked("DELETE", &url, None, true)?;
        if posts() {
            store::delete(&ids_kind()?, &id_key(&entity))?;
        }
        Ok(())
    }
}

synchro_guest::export_sync_step!(HttpSync);
