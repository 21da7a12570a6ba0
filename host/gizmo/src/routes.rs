//! The routes: vertices under `/services/inventory/{version}/{type}[/{id}]`, edges under
//! `/services/inventory/relationships/{version}/{type}[/{id}]`, bulk under
//! `/services/inventory/{version}/bulk`, each with and without a trailing slash.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use synchro_model::{EdgeEnds, Entity, Id};
use synchro_store::{ApiWrite, Db, merge_patch};

use crate::answer::{Failure, TransactionId};
use crate::backend::{Backend, Subject};
use crate::schema::{Invalid, Schemas};
use crate::wire::{self, Body, Edges};

/// Entities in a page of a list when the request names no `_limit`.
pub const DEFAULT_PAGE: usize = 1000;
/// The most entities one page of a list holds.
pub const MAX_PAGE: usize = 10_000;

/// What every handler shares.
pub struct Api {
    pub db: Arc<Db>,
    pub schemas: Arc<Schemas>,
    pub backend: Backend,
}

type Shared = State<Arc<Api>>;

/// The API's routes.
pub fn router(api: Arc<Api>) -> axum::Router {
    let base = "/services/inventory";
    let mut router = axum::Router::new();
    let both = |path: String| [path.clone(), format!("{path}/")];
    for path in both(format!("{base}/{{version}}/bulk")) {
        router = router.route(&path, post(crate::bulk::handle));
    }
    for (prefix, subject) in [
        (format!("{base}/relationships"), Subject::Edge),
        (base.to_owned(), Subject::Vertex),
    ] {
        for path in both(format!("{prefix}/{{version}}")) {
            router = router.route(&path, post(move |s, p, t, b| create(s, p, t, b, subject)));
        }
        for path in both(format!("{prefix}/{{version}}/{{kind}}")) {
            let list = get(move |s, p, q| list(s, p, q, subject));
            router = router.route(
                &path,
                list.post(move |s, p, t, b| create(s, p, t, b, subject)),
            );
        }
        for path in both(format!("{prefix}/{{version}}/{{kind}}/{{id}}")) {
            router = router.route(&path, one(subject));
        }
    }
    router.with_state(api)
}

/// The routes of one vertex or edge.
fn one(subject: Subject) -> MethodRouter<Arc<Api>> {
    get(move |s, p| read(s, p, subject))
        .put(move |s, p, h, t, b| replace(s, p, h, t, b, subject))
        .patch(move |s, p, t, b| patch(s, p, t, b, subject))
        .delete(move |s, p, t| delete(s, p, t, subject))
}

/// The answer to an unknown kind: Gizmo's words for a vertex type and an edge label.
pub fn unknown(subject: Subject, invalid: Invalid) -> Failure {
    match invalid {
        Invalid::UnknownKind(kind) => match subject {
            Subject::Vertex => {
                Failure::not_found(format!("Object of collection type not found: {kind}"))
            }
            Subject::Edge => Failure::not_found(format!("Invalid label: {kind}")),
        },
        Invalid::Property { field, reason } => {
            Failure::bad_request(format!("Invalid property value at {field}: {reason}"))
        }
    }
}

pub fn check(api: &Api, subject: Subject, kind: &str, properties: &Value) -> Result<(), Failure> {
    api.schemas
        .check(kind, properties)
        .map_err(|invalid| unknown(subject, invalid))
}

/// A write's body, or Gizmo's refusal of it.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(body)
        .map_err(|error| Failure::bad_request(format!("Invalid Json Payload: {error}")))
}

/// The live entity `kind`/`id` served on a route of `subject`, or Gizmo's 404.
pub fn existing(
    api: &Api,
    subject: Subject,
    kind: &str,
    id: &str,
) -> Result<(Entity, Vec<Entity>), Failure> {
    api.schemas
        .knows(kind)
        .map_err(|invalid| unknown(subject, invalid))?;
    let found = api.db.api_get(&Id::new(kind, id)).map_err(Failure::from)?;
    match found {
        Some((entity, edges)) if Subject::of(&entity) == subject => Ok((entity, edges)),
        _ => Err(Failure::not_found(format!(
            "No {} with id {id} and type {kind} found in graph",
            subject.name()
        ))),
    }
}

/// A 200 or 201 with the entity's JSON and ETag.
fn answer(status: StatusCode, version: &str, entity: &Entity, edges: Edges<'_>) -> Response {
    let etag = HeaderValue::from_str(&wire::etag(entity)).expect("hex is a header value");
    let json = HeaderValue::from_static("application/json");
    let body = wire::json(version, entity, edges).get().to_owned();
    (
        status,
        [(header::ETAG, etag), (header::CONTENT_TYPE, json)],
        body,
    )
        .into_response()
}

async fn read(
    State(api): Shared,
    Path((version, kind, id)): Path<(String, String, String)>,
    subject: Subject,
) -> Result<Response, Failure> {
    let (entity, edges) = existing(&api, subject, &kind, &id)?;
    Ok(answer(StatusCode::OK, &version, &entity, Edges::Of(&edges)))
}

/// What a list asks for: filters on property values, which properties to show, a page.
struct ListQuery {
    filters: Vec<(String, String)>,
    shown: Shown,
    limit: usize,
    after: Option<String>,
}

/// The properties a list shows (`properties=NAME`, repeated, or `properties=all`).
#[derive(Debug, PartialEq, Eq)]
enum Shown {
    None,
    All,
    Only(Vec<String>),
}

impl ListQuery {
    /// Every parameter but `properties` and those starting with `_` is a filter (only
    /// its first value counts, as in Gizmo).
    fn parse(pairs: Vec<(String, String)>) -> Result<ListQuery, Failure> {
        let mut query = ListQuery {
            filters: Vec::new(),
            shown: Shown::None,
            limit: DEFAULT_PAGE,
            after: None,
        };
        for (name, value) in pairs {
            match name.as_str() {
                "properties" if value == "all" => query.shown = Shown::All,
                "properties" => match &mut query.shown {
                    Shown::All => {}
                    Shown::Only(names) => names.push(value),
                    Shown::None => query.shown = Shown::Only(vec![value]),
                },
                "_limit" => {
                    query.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| {
                            Failure::bad_request(format!(
                                "query parameter `_limit`: `{value}` is not a number from 1 to {MAX_PAGE}"
                            ))
                        })?;
                }
                "_after" => query.after = Some(value),
                other if other.starts_with('_') => {
                    return Err(Failure::bad_request(format!(
                        "query parameter `{other}`: names starting with `_` are reserved (`_limit`, `_after`)"
                    )));
                }
                _ if query.filters.iter().any(|(n, _)| *n == name) => {}
                _ => query.filters.push((name, value)),
            }
        }
        Ok(query)
    }

    /// Whether `entity`'s properties hold every filter's value: a string property equal
    /// to it, any other value equal to it read as JSON (`in-maint=false`, `n=5`).
    fn takes(&self, entity: &Entity) -> bool {
        if self.filters.is_empty() {
            return true;
        }
        let Ok(Value::Object(properties)) = serde_json::from_str::<Value>(entity.properties())
        else {
            return false;
        };
        self.filters
            .iter()
            .all(|(name, wanted)| match properties.get(name) {
                Some(Value::String(text)) => text == wanted,
                Some(other) => serde_json::from_str::<Value>(wanted).is_ok_and(|w| w == *other),
                None => false,
            })
    }

    /// The properties of `entity` to show.
    fn shown(&self, entity: &Entity) -> Option<Box<RawValue>> {
        match &self.shown {
            Shown::None => None,
            Shown::All => Some(wire::properties(entity).to_owned()),
            Shown::Only(names) => {
                let Ok(Value::Object(mut all)) = serde_json::from_str(entity.properties()) else {
                    return None;
                };
                all.retain(|name, _| names.contains(name));
                serde_json::value::to_raw_value(&all).ok()
            }
        }
    }
}

async fn list(
    State(api): Shared,
    Path((version, kind)): Path<(String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
    subject: Subject,
) -> Result<Response, Failure> {
    api.schemas
        .knows(&kind)
        .map_err(|invalid| unknown(subject, invalid))?;
    let query = ListQuery::parse(pairs)?;
    let (db, wanted, limit) = (api.db.clone(), kind.clone(), query.limit);
    let after = query.after.clone();
    let query = Arc::new(query);
    let filter = query.clone();
    let page = tokio::task::spawn_blocking(move || {
        db.api_page(
            &wanted,
            after.as_deref(),
            |entity| Subject::of(entity) == subject && filter.takes(entity),
            limit + 1,
        )
    })
    .await
    .map_err(|_| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "reading a page failed"))?
    .map_err(Failure::from)?;
    let more = page.len() > limit;
    let items: Vec<Box<RawValue>> = page
        .iter()
        .take(limit)
        .map(|entity| {
            let shown = query.shown(entity);
            match subject {
                Subject::Vertex => wire::vertex(&version, entity, shown.as_deref(), Edges::Omitted),
                Subject::Edge => wire::edge(&version, entity, shown.as_deref()),
            }
        })
        .collect();
    let mut response = axum::Json(items).into_response();
    if more && let Some(last) = page.get(limit - 1) {
        let next = next_page(subject, &version, &kind, &query, last.key());
        if let Ok(link) = HeaderValue::from_str(&format!("</{next}>; rel=\"next\"")) {
            response.headers_mut().insert(header::LINK, link);
        }
    }
    Ok(response)
}

/// The URL of the page after the key `last`.
fn next_page(subject: Subject, version: &str, kind: &str, query: &ListQuery, last: &str) -> String {
    let path = match subject {
        Subject::Vertex => wire::vertex_url(version, kind, ""),
        Subject::Edge => wire::edge_url(version, kind, ""),
    };
    let mut pairs = query.filters.clone();
    match &query.shown {
        Shown::All => pairs.push(("properties".into(), "all".into())),
        Shown::Only(names) => pairs.extend(names.iter().map(|n| ("properties".into(), n.clone()))),
        Shown::None => {}
    }
    pairs.push(("_limit".into(), query.limit.to_string()));
    pairs.push(("_after".into(), last.to_owned()));
    let encode = |text: &str| {
        percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let query: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect();
    format!("{}?{}", path.trim_end_matches('/'), query.join("&"))
}

/// The path of a create: its version, and its kind unless the body names it.
#[derive(serde::Deserialize)]
pub struct CreatePath {
    version: String,
    kind: Option<String>,
}

async fn create(
    State(api): Shared,
    Path(path): Path<CreatePath>,
    Extension(transaction): Extension<TransactionId>,
    body: Bytes,
    subject: Subject,
) -> Result<Response, Failure> {
    let body: Body = parse(&body)?;
    let entity = new_entity(&api, subject, &path.version, path.kind.as_deref(), body)?;
    let written = api
        .backend
        .write(subject, ApiWrite::Create(entity), &transaction.0)
        .await?;
    Ok(answer(
        StatusCode::CREATED,
        &path.version,
        &written,
        Edges::None,
    ))
}

/// The entity a create's `body` makes, under a new key; `kind` is the path's.
pub fn new_entity(
    api: &Api,
    subject: Subject,
    version: &str,
    kind: Option<&str>,
    body: Body,
) -> Result<Entity, Failure> {
    let title = subject.title();
    let Some(properties) = body.properties else {
        return Err(Failure::bad_request("Invalid request Payload"));
    };
    if body.id.is_some() {
        return Err(Failure::bad_request(format!(
            "ID specified , use Http PUT to update {title}"
        )));
    }
    let kind = match (kind, body.kind) {
        (Some(path), Some(named)) if path != named => {
            return Err(Failure::bad_request(format!("{title} Type mismatch")));
        }
        (Some(path), _) => path.to_owned(),
        (None, Some(named)) if !named.is_empty() => named,
        (None, _) => return Err(Failure::bad_request(format!("Missing {title} Type"))),
    };
    let properties = Value::Object(properties);
    check(api, subject, &kind, &properties)?;
    let edge = match subject {
        Subject::Vertex => None,
        Subject::Edge => Some(ends(body.source.as_deref(), body.target.as_deref())?),
    };
    let key = uuid::Uuid::now_v7().to_string();
    entity(key, kind, &properties, version, edge)
}

/// An edge's ends, from the URLs of its vertices.
pub fn ends(source: Option<&str>, target: Option<&str>) -> Result<EdgeEnds, Failure> {
    let (Some(source), Some(target)) = (source, target) else {
        return Err(Failure::bad_request("Source/Target not specified"));
    };
    match (wire::vertex_of(source), wire::vertex_of(target)) {
        (Some(source), Some(target)) => Ok(EdgeEnds { source, target }),
        _ => Err(Failure::bad_request(format!(
            "Invalid Source/Target Urls: expected services/inventory/VERSION/TYPE/ID, got `{source}` and `{target}`"
        ))),
    }
}

pub fn entity(
    key: String,
    kind: String,
    properties: &Value,
    version: &str,
    edge: Option<EdgeEnds>,
) -> Result<Entity, Failure> {
    Entity::new(
        key,
        kind,
        properties.to_string(),
        Some(version.to_owned()),
        edge,
    )
    .map_err(|error| Failure::bad_request(error.to_string()))
}

async fn replace(
    state: Shared,
    Path((version, kind, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    transaction: Extension<TransactionId>,
    body: Bytes,
    subject: Subject,
) -> Result<Response, Failure> {
    let overridden = headers
        .get("x-http-method-override")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("patch"));
    if overridden {
        return patch(state, Path((version, kind, id)), transaction, body, subject).await;
    }
    let State(api) = state;
    let body: Body = parse(&body)?;
    let Some(properties) = body.properties else {
        return Err(Failure::bad_request("Invalid request Payload"));
    };
    if body.id.as_ref().is_some_and(|named| *named != id) {
        return Err(Failure::bad_request("ID Mismatch"));
    }
    let properties = Value::Object(properties);
    check(&api, subject, &kind, &properties)?;
    let edge = match (&api.backend, subject) {
        // The responder finds the vertex, or answers why not.
        (Backend::Async(..), Subject::Vertex) => None,
        _ => {
            let (old, _) = existing(&api, subject, &kind, &id)?;
            kept_ends(&old, body.source.as_deref(), body.target.as_deref())?
        }
    };
    let new = entity(id, kind, &properties, &version, edge)?;
    let written = api
        .backend
        .write(subject, ApiWrite::Replace(new), &transaction.0.0)
        .await?;
    Ok(answer(StatusCode::OK, &version, &written, Edges::None))
}

/// The ends of the edge `old` (none for a vertex), which a write may name but not move.
pub fn kept_ends(
    old: &Entity,
    source: Option<&str>,
    target: Option<&str>,
) -> Result<Option<EdgeEnds>, Failure> {
    let Some(ends) = old.edge() else {
        return Ok(None);
    };
    for (named, end, role) in [
        (source, &ends.source, "Source"),
        (target, &ends.target, "Target"),
    ] {
        if let Some(named) = named {
            match wire::vertex_of(named) {
                None => return Err(Failure::bad_request(format!("Invalid {role} Urls"))),
                Some(named) if named != *end => {
                    return Err(Failure::bad_request(format!("{role} can't be updated")));
                }
                Some(_) => {}
            }
        }
    }
    Ok(Some(ends.clone()))
}

async fn patch(
    State(api): Shared,
    Path((version, kind, id)): Path<(String, String, String)>,
    Extension(transaction): Extension<TransactionId>,
    body: Bytes,
    subject: Subject,
) -> Result<Response, Failure> {
    let body: Body = parse(&body)?;
    let Some(patch) = body.properties else {
        return Err(Failure::bad_request("Invalid request Payload"));
    };
    if body.id.as_ref().is_some_and(|named| *named != id) {
        return Err(Failure::bad_request("ID Mismatch"));
    }
    let (old, _) = existing(&api, subject, &kind, &id)?;
    kept_ends(&old, body.source.as_deref(), body.target.as_deref())?;
    let merged = patched(&old, &patch)?;
    check(&api, subject, &kind, &merged)?;
    let write = patch_write(&api, old, patch, merged, &version)?;
    let written = api.backend.write(subject, write, &transaction.0).await?;
    Ok(answer(StatusCode::OK, &version, &written, Edges::None))
}

/// The write of a patch: in sync mode the model merges `patch` into what it holds when
/// the write is made; in async mode the request carries the `merged` properties, as
/// Gizmo's does.
pub fn patch_write(
    api: &Api,
    old: Entity,
    patch: Map<String, Value>,
    merged: Value,
    version: &str,
) -> Result<ApiWrite, Failure> {
    Ok(match &api.backend {
        Backend::Sync(_) => ApiWrite::Patch {
            id: old.into_id(),
            properties: patch,
        },
        Backend::Async(..) => {
            let (key, kind, _, _, edge) = old.into_parts();
            ApiWrite::Replace(entity(key, kind, &merged, version, edge)?)
        }
    })
}

/// `old`'s properties with `patch` merged in.
pub fn patched(old: &Entity, patch: &Map<String, Value>) -> Result<Value, Failure> {
    let mut properties: Value = serde_json::from_str(old.properties())
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    merge_patch(&mut properties, &Value::Object(patch.clone()));
    Ok(properties)
}

async fn delete(
    State(api): Shared,
    Path((_version, kind, id)): Path<(String, String, String)>,
    Extension(transaction): Extension<TransactionId>,
    subject: Subject,
) -> Result<Response, Failure> {
    let failed = || {
        Failure::not_found(format!(
            "Failed to delete {}: {id} not found",
            subject.name()
        ))
    };
    let target = match &api.backend {
        // The responder finds it, or answers why not.
        Backend::Async(..) => {
            api.schemas
                .knows(&kind)
                .map_err(|invalid| unknown(subject, invalid))?;
            Id::new(&kind, &id)
        }
        Backend::Sync(_) => {
            let (old, _) = existing(&api, subject, &kind, &id).map_err(|f| match f.status {
                StatusCode::NOT_FOUND if api.schemas.knows(&kind).is_ok() => failed(),
                _ => f,
            })?;
            old.into_id()
        }
    };
    api.backend
        .write(subject, ApiWrite::Delete(target), &transaction.0)
        .await?;
    Ok(StatusCode::OK.into_response())
}
