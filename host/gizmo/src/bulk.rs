//! Bulk: `POST /services/inventory/{version}/bulk`, Gizmo's format and order.
//!
//! ```json
//! {"objects":       [{"operation": "add", "v1": {"type": "vserver", "properties": {…}}}],
//!  "relationships": [{"operation": "add", "e1": {"type": "…", "source": "$v1",
//!                                                 "target": "services/inventory/v11/pserver/ID"}}]}
//! ```
//!
//! Operations are `add`, `modify` (replace), `patch` (merge) and `delete`; an edge's end
//! may be `$LABEL`, a vertex of the same bulk. They run edge deletes first, then vertex
//! deletes, vertex adds / modifies / patches, edge adds / modifies / patches, each group in
//! the order given — all of them or none, their changes sharing one
//! `database-transaction-id`. The answer is the request with each item's element
//! replaced by what was written (`{}` for a delete).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use synchro_model::{EdgeEnds, EntityRef};
use synchro_store::ApiWrite;

use crate::answer::{Failure, TransactionId};
use crate::backend::Subject;
use crate::routes::{self, Api};
use crate::wire::{self, Body, Edges};

const SECTIONS: [(&str, Subject); 2] = [
    ("objects", Subject::Vertex),
    ("relationships", Subject::Edge),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Add,
    Modify,
    Patch,
    Delete,
}

impl Operation {
    fn parse(text: &str) -> Option<Operation> {
        match text.to_ascii_lowercase().as_str() {
            "add" => Some(Operation::Add),
            "modify" => Some(Operation::Modify),
            "patch" => Some(Operation::Patch),
            "delete" => Some(Operation::Delete),
            _ => None,
        }
    }
}

/// One item of the bulk, where it is in the request, and the write it makes.
struct Step {
    section: usize,
    index: usize,
    label: String,
    subject: Subject,
    operation: Operation,
    write: ApiWrite,
}

impl Step {
    /// Its place in Gizmo's order: edge deletes, vertex deletes, vertex writes, edge
    /// writes.
    fn phase(&self) -> u8 {
        match (self.subject, self.operation) {
            (Subject::Edge, Operation::Delete) => 0,
            (Subject::Vertex, Operation::Delete) => 1,
            (Subject::Vertex, _) => 2,
            (Subject::Edge, _) => 3,
        }
    }
}

pub async fn handle(
    State(api): State<Arc<Api>>,
    Path(version): Path<String>,
    Extension(transaction): Extension<TransactionId>,
    body: Bytes,
) -> Result<Response, Failure> {
    let mut document: Value = routes::parse(&body)?;
    let mut steps = plan(&api, &version, &document)?;
    // A stable sort keeps each phase in the order given.
    steps.sort_by_key(Step::phase);
    let writes = steps.iter().map(|s| (s.subject, s.write.clone())).collect();
    let written = api.backend.bulk(writes, &transaction.0).await?;
    for (step, entity) in steps.iter().zip(written) {
        let element = match step.operation {
            Operation::Delete => Value::Object(Map::new()),
            _ => serde_json::from_str(wire::json(&version, &entity, Edges::None).get())
                .expect("an entity's JSON is JSON"),
        };
        let (section, _) = SECTIONS[step.section];
        document[section][step.index][&step.label] = element;
    }
    Ok(axum::Json(document).into_response())
}

/// The steps of `document`, checked, in the order given.
fn plan(api: &Api, version: &str, document: &Value) -> Result<Vec<Step>, Failure> {
    let Value::Object(document) = document else {
        return Err(Failure::bad_request("Invalid request Payload"));
    };
    if let Some(other) = document
        .keys()
        .find(|k| !SECTIONS.iter().any(|(name, _)| name == k))
    {
        return Err(Failure::bad_request(format!(
            "Invalid request Payload: unknown section `{other}` (expected `objects` and `relationships`)"
        )));
    }
    let mut steps = Vec::new();
    // The vertices of this bulk by label: what `$LABEL` names.
    let mut labelled: BTreeMap<String, EntityRef> = BTreeMap::new();
    for (section, (name, subject)) in SECTIONS.iter().enumerate() {
        let items = match document.get(*name) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(items)) => items,
            Some(_) => {
                return Err(Failure::bad_request(format!(
                    "Invalid request Payload: `{name}` must be an array"
                )));
            }
        };
        for (index, item) in items.iter().enumerate() {
            let (operation, label, element) = item_parts(name, index, item)?;
            if steps
                .iter()
                .any(|s: &Step| s.subject == *subject && s.label == label)
            {
                return Err(Failure::bad_request(format!(
                    "duplicate {} in payload: {label}",
                    match subject {
                        Subject::Vertex => "vertex",
                        Subject::Edge => "Edge",
                    }
                )));
            }
            let write = match subject {
                Subject::Vertex => vertex_write(api, version, operation, &label, element)?,
                Subject::Edge => edge_write(api, version, operation, &label, element, &labelled)?,
            };
            if *subject == Subject::Vertex {
                let id = write.id();
                labelled.insert(
                    label.clone(),
                    EntityRef {
                        kind: id.kind().to_owned(),
                        key: id.key().to_owned(),
                    },
                );
            }
            steps.push(Step {
                section,
                index,
                label,
                subject: *subject,
                operation,
                write,
            });
        }
    }
    if steps.is_empty() {
        return Err(Failure::bad_request("Invalid request Payload"));
    }
    Ok(steps)
}

/// An item's operation, label and element: `{"operation": OP, LABEL: {…}}`.
fn item_parts<'d>(
    section: &str,
    index: usize,
    item: &'d Value,
) -> Result<(Operation, String, &'d Value), Failure> {
    let malformed = || {
        Failure::bad_request(format!(
            "item {index} of `{section}`: expected an object with `operation` and one label"
        ))
    };
    let Value::Object(item) = item else {
        return Err(malformed());
    };
    if item.len() != 2 {
        return Err(malformed());
    }
    let Some((label, element)) = item.iter().find(|(k, _)| *k != "operation") else {
        return Err(malformed());
    };
    let Some(operation) = item.get("operation") else {
        return Err(Failure::bad_request(format!(
            "operation missing in item: {label}"
        )));
    };
    let operation = operation
        .as_str()
        .and_then(Operation::parse)
        .ok_or_else(|| Failure::bad_request(format!("Invalid operation at item: {label}")))?;
    Ok((operation, label.clone(), element))
}

/// An element's fields.
fn body(label: &str, element: &Value) -> Result<Body, Failure> {
    serde_json::from_value(element.clone()).map_err(|error| {
        Failure::bad_request(format!("Invalid Json Payload at item {label}: {error}"))
    })
}

fn vertex_write(
    api: &Api,
    version: &str,
    operation: Operation,
    label: &str,
    element: &Value,
) -> Result<ApiWrite, Failure> {
    let body = body(label, element)?;
    let Some(kind) = body.kind.clone().filter(|k| !k.is_empty()) else {
        return Err(Failure::bad_request(format!(
            "Vertex Type cannot be null for: {label}"
        )));
    };
    if operation == Operation::Add {
        let body = Body { id: None, ..body };
        return routes::new_entity(api, Subject::Vertex, version, Some(&kind), body)
            .map(ApiWrite::Create);
    }
    let id = body
        .id
        .clone()
        .ok_or_else(|| Failure::bad_request(format!("Missing ID at item: {label}")))?;
    let (old, _) = routes::existing(api, Subject::Vertex, &kind, &id)?;
    changed(api, version, operation, label, old, body, None)
}

fn edge_write(
    api: &Api,
    version: &str,
    operation: Operation,
    label: &str,
    element: &Value,
    labelled: &BTreeMap<String, EntityRef>,
) -> Result<ApiWrite, Failure> {
    let mut body = body(label, element)?;
    // `$LABEL`: the URL of a vertex of this bulk.
    for (end, role) in [(&mut body.source, "Source"), (&mut body.target, "Target")] {
        if let Some(named) = end.as_deref().and_then(|e| e.strip_prefix('$')) {
            let vertex = labelled.get(named).ok_or_else(|| {
                Failure::bad_request(format!(
                    "{role} Vertex ${named} not found for Edge: {label}"
                ))
            })?;
            *end = Some(wire::vertex_url(version, &vertex.kind, &vertex.key));
        }
    }
    let Some(kind) = body.kind.clone().filter(|k| !k.is_empty()) else {
        return Err(Failure::bad_request(format!(
            "Edge Type cannot be null for: {label} (an edge is named by its type and id)"
        )));
    };
    if operation == Operation::Add {
        if body.source.is_none() || body.target.is_none() {
            return Err(Failure::bad_request(format!(
                "Source/Target cannot be null for edge: {label}"
            )));
        }
        let body = Body { id: None, ..body };
        return routes::new_entity(api, Subject::Edge, version, Some(&kind), body)
            .map(ApiWrite::Create);
    }
    let id = body
        .id
        .clone()
        .ok_or_else(|| Failure::bad_request(format!("Missing ID at item: {label}")))?;
    let (old, _) = routes::existing(api, Subject::Edge, &kind, &id)?;
    let ends = routes::kept_ends(&old, body.source.as_deref(), body.target.as_deref())?;
    changed(api, version, operation, label, old, body, ends)
}

/// The modify, patch or delete of `old`.
fn changed(
    api: &Api,
    version: &str,
    operation: Operation,
    label: &str,
    old: synchro_model::Entity,
    body: Body,
    ends: Option<EdgeEnds>,
) -> Result<ApiWrite, Failure> {
    let subject = Subject::of(&old);
    if operation == Operation::Delete {
        return Ok(ApiWrite::Delete(old.into_id()));
    }
    let Some(properties) = body.properties else {
        return Err(Failure::bad_request(format!(
            "Invalid request Payload: no properties at item: {label}"
        )));
    };
    if operation == Operation::Patch {
        let merged = routes::patched(&old, &properties)?;
        routes::check(api, subject, old.kind(), &merged)?;
        return routes::patch_write(api, old, properties, merged, version);
    }
    let properties = Value::Object(properties);
    routes::check(api, subject, old.kind(), &properties)?;
    let (key, kind, ..) = old.into_parts();
    routes::entity(key, kind, &properties, version, ends).map(ApiWrite::Replace)
}
