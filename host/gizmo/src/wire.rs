//! Gizmo's REST JSON: the bodies clients write, the vertices and edges they read back, and
//! the URLs that name them (`services/inventory/{version}/{type}/{id}`, without a leading
//! slash, as Gizmo writes them).

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use synchro_model::{Entity, EntityRef};

/// Where the API's paths start.
pub const BASE: &str = "services/inventory";

/// What a path segment may not hold unescaped.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// The URL of a vertex.
pub fn vertex_url(version: &str, kind: &str, key: &str) -> String {
    format!(
        "{BASE}/{}/{}/{}",
        utf8_percent_encode(version, SEGMENT),
        utf8_percent_encode(kind, SEGMENT),
        utf8_percent_encode(key, SEGMENT)
    )
}

/// The URL of an edge.
pub fn edge_url(version: &str, kind: &str, key: &str) -> String {
    format!(
        "{BASE}/relationships/{}/{}/{}",
        utf8_percent_encode(version, SEGMENT),
        utf8_percent_encode(kind, SEGMENT),
        utf8_percent_encode(key, SEGMENT)
    )
}

/// The vertex a URL names (`services/inventory/{version}/{type}/{id}`, a leading `/`
/// allowed; the version is not looked at, as in Gizmo).
pub fn vertex_of(url: &str) -> Option<EntityRef> {
    let rest = url.strip_prefix('/').unwrap_or(url).strip_prefix(BASE)?;
    let mut segments = rest.strip_prefix('/')?.split('/');
    let (_version, kind, key) = (segments.next()?, segments.next()?, segments.next()?);
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    };
    let (kind, key) = (decode(kind)?, decode(key)?);
    (segments.next().is_none() && !kind.is_empty() && !key.is_empty())
        .then_some(EntityRef { key, kind })
}

/// A vertex's or an edge's body in a write. Unknown fields (a `url`, `in`, `out` read
/// back and sent again) are ignored, as Gizmo ignores them.
#[derive(Debug, Default, Deserialize)]
pub struct Body {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub properties: Option<Map<String, Value>>,
    pub source: Option<String>,
    pub target: Option<String>,
}

/// A vertex as Gizmo answers it.
#[derive(Serialize)]
struct VertexOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<&'a RawValue>,
    #[serde(rename = "in", skip_serializing_if = "Option::is_none")]
    incoming: Option<Vec<EdgeEnd<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    out: Option<Vec<EdgeEnd<'a>>>,
}

/// An edge in a vertex's `in` or `out`: the other end only.
#[derive(Serialize)]
struct EdgeEnd<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

/// An edge as Gizmo answers it.
#[derive(Serialize)]
struct EdgeOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    url: String,
    source: String,
    target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<&'a RawValue>,
}

/// The stored properties, as JSON text (canonical, so always valid).
pub fn properties(entity: &Entity) -> &RawValue {
    serde_json::from_str(entity.properties()).expect("stored properties are a JSON object")
}

/// What a vertex's answer holds beside its properties.
pub enum Edges<'a> {
    /// `in` and `out` empty, as after a write.
    None,
    /// The vertex's edges, sorted into `in` (it is their target) and `out`.
    Of(&'a [Entity]),
    /// No `in` and `out`: an item of a list.
    Omitted,
}

/// A vertex's JSON (in Gizmo's field order), its URLs under `version`, with
/// `properties` if any.
pub fn vertex(
    version: &str,
    entity: &Entity,
    properties: Option<&RawValue>,
    edges: Edges<'_>,
) -> Box<RawValue> {
    let (mut incoming, mut out) = (Vec::new(), Vec::new());
    if let Edges::Of(edges) = edges {
        for edge in edges {
            let Some(ends) = edge.edge() else { continue };
            let end = |r: &EntityRef| vertex_url(version, &r.kind, &r.key);
            let mut entry = EdgeEnd {
                id: edge.key(),
                kind: edge.kind(),
                url: edge_url(version, edge.kind(), edge.key()),
                source: None,
                target: None,
            };
            // A loop is `in` only, as in Gizmo.
            if ends.target.kind == entity.kind() && ends.target.key == entity.key() {
                entry.source = Some(end(&ends.source));
                incoming.push(entry);
            } else {
                entry.target = Some(end(&ends.target));
                out.push(entry);
            }
        }
    }
    let listed = matches!(edges, Edges::Omitted);
    let out = VertexOut {
        id: entity.key(),
        kind: entity.kind(),
        url: vertex_url(version, entity.kind(), entity.key()),
        properties,
        incoming: (!listed).then_some(incoming),
        out: (!listed).then_some(out),
    };
    serde_json::value::to_raw_value(&out).expect("a vertex serialises")
}

/// An edge's JSON (in Gizmo's field order), its URLs under `version`, with `properties`
/// if any.
pub fn edge(version: &str, entity: &Entity, properties: Option<&RawValue>) -> Box<RawValue> {
    let ends = entity.edge().expect("an edge has ends");
    let out = EdgeOut {
        id: entity.key(),
        kind: entity.kind(),
        url: edge_url(version, entity.kind(), entity.key()),
        source: vertex_url(version, &ends.source.kind, &ends.source.key),
        target: vertex_url(version, &ends.target.kind, &ends.target.key),
        properties,
    };
    serde_json::value::to_raw_value(&out).expect("an edge serialises")
}

/// An entity's JSON with all its properties: a vertex with `edges`, or an edge.
pub fn json(version: &str, entity: &Entity, edges: Edges<'_>) -> Box<RawValue> {
    let all = Some(properties(entity));
    match entity.edge() {
        None => vertex(version, entity, all, edges),
        Some(_) => edge(version, entity, all),
    }
}

/// The entity's ETag: its model hash (xxh3 of its canonical form), quoted.
pub fn etag(entity: &Entity) -> String {
    format!("\"{:016x}\"", entity.hash_with(&mut Vec::new()))
}

#[cfg(test)]
mod tests {
    use synchro_model::EdgeEnds;

    use super::*;

    #[test]
    fn urls_round_trip_through_escaping() {
        let url = vertex_url("v11", "pserver", "a b/c%");
        assert_eq!(url, "services/inventory/v11/pserver/a%20b%2Fc%25");
        let end = vertex_of(&url).unwrap();
        assert_eq!((end.kind.as_str(), end.key.as_str()), ("pserver", "a b/c%"));
        assert!(
            vertex_of(&format!("/{url}")).is_some(),
            "a leading slash is allowed"
        );
        for bad in [
            "services/inventory/v11/pserver",
            "services/inventory/v11/pserver/x/y",
            "inventory/v11/pserver/x",
            "services/inventory/v11//x",
        ] {
            assert_eq!(vertex_of(bad), None, "{bad}");
        }
    }

    fn value(raw: &RawValue) -> Value {
        serde_json::from_str(raw.get()).unwrap()
    }

    #[test]
    fn a_vertex_sorts_its_edges_into_in_and_out() {
        let v = |key: &str| {
            Entity::new(
                key.into(),
                "pserver".into(),
                r#"{"n":1}"#.into(),
                None,
                None,
            )
            .unwrap()
        };
        let e = |key: &str, from: &str, to: &str| {
            let end = |key: &str| EntityRef {
                key: key.into(),
                kind: "pserver".into(),
            };
            let ends = EdgeEnds {
                source: end(from),
                target: end(to),
            };
            Entity::new(key.into(), "link".into(), "{}".into(), None, Some(ends)).unwrap()
        };
        let edges = [e("e1", "b", "a"), e("e2", "a", "c")];
        let a = v("a");
        let json = vertex("v11", &a, Some(properties(&a)), Edges::Of(&edges));
        assert!(
            json.get()
                .starts_with(r#"{"id":"a","type":"pserver","url":"#),
            "{json}"
        );
        assert_eq!(
            value(&json),
            serde_json::json!({
                "id": "a", "type": "pserver", "url": "services/inventory/v11/pserver/a",
                "properties": {"n": 1},
                "in": [{"id": "e1", "type": "link",
                        "url": "services/inventory/relationships/v11/link/e1",
                        "source": "services/inventory/v11/pserver/b"}],
                "out": [{"id": "e2", "type": "link",
                         "url": "services/inventory/relationships/v11/link/e2",
                         "target": "services/inventory/v11/pserver/c"}],
            })
        );
        let listed = vertex("v11", &a, None, Edges::Omitted);
        assert_eq!(
            value(&listed),
            serde_json::json!({"id": "a", "type": "pserver", "url": "services/inventory/v11/pserver/a"})
        );
        assert_eq!(
            value(&edge("v11", &edges[0], Some(properties(&edges[0])))),
            serde_json::json!({
                "id": "e1", "type": "link", "url": "services/inventory/relationships/v11/link/e1",
                "source": "services/inventory/v11/pserver/b",
                "target": "services/inventory/v11/pserver/a",
                "properties": {},
            })
        );
    }
}
