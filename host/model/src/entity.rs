//! The model's unit: a graph vertex or edge, with its canonical form and hash.
//!
//! The canonical form is the JSON object `{"edge":…,"key":…,"kind":…,"properties":…,
//! "schema-version":…}` with keys sorted at every level, no insignificant whitespace and
//! absent options omitted. It is both what the baseline stores and what is hashed (xxh3),
//! so a stored baseline is byte-for-byte what its hash covers. Changing this encoding
//! changes every hash: a baseline written by an older encoding would re-emit everything
//! as UPDATE. The golden test below pins it.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A reference from an edge to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    pub key: String,
    pub kind: String,
}

/// The two endpoints of an edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeEnds {
    pub source: EntityRef,
    pub target: EntityRef,
}

/// An entity's identity: its kind and its key. Two entities with one key and different
/// kinds are two entities; an entity whose kind changes is another entity.
///
/// Kept as one string, `kind NUL key` (a kind never holds a NUL; a key may), so it is a
/// single map or table key that orders by kind, then key: the order the store keeps and
/// pages in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    pub fn new(kind: &str, key: &str) -> Id {
        let mut id = String::with_capacity(kind.len() + 1 + key.len());
        id.push_str(kind);
        id.push('\0');
        id.push_str(key);
        Id(id)
    }

    /// An id as [`Id::as_str`] wrote it (a stored table key); `None` if it is not one.
    pub fn parse(stored: String) -> Option<Id> {
        stored.contains('\0').then_some(Id(stored))
    }

    fn split(&self) -> (&str, &str) {
        self.0
            .split_once('\0')
            .expect("an id always holds a NUL after its kind")
    }

    pub fn kind(&self) -> &str {
        self.split().0
    }

    pub fn key(&self) -> &str {
        self.split().1
    }

    /// The one-string form: a table key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Id {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// `kind `key``, with the key escaped as it would be in a log line.
impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, key) = self.split();
        write!(f, "{} `{}`", crate::OneLine(kind), crate::OneLine(key))
    }
}

/// A vertex, or an edge when `edge` is set. Built only through [`Entity::new`], so its
/// properties are always a canonical JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    id: Id,
    properties: String,
    schema_version: Option<String>,
    edge: Option<EdgeEnds>,
}

/// Why an entity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntityError {
    #[error("an entity has an empty key")]
    EmptyKey,
    #[error("entity `{key}` has an empty kind")]
    EmptyKind { key: String },
    #[error("entity `{key}` has a kind with a NUL character")]
    NulInKind { key: String },
    #[error("entity `{key}`: properties are not valid JSON: {reason}")]
    InvalidJson { key: String, reason: String },
    #[error("entity `{key}`: properties must be a JSON object, not {found}")]
    NotAnObject { key: String, found: &'static str },
    #[error("edge `{key}` has an endpoint with an empty key or kind, or a NUL in its kind")]
    BadEndpoint { key: String },
    #[error("stored entity is corrupt: {0}")]
    Corrupt(String),
}

impl Entity {
    /// Validates and canonicalises an entity. `properties` must be a JSON object; it is
    /// re-serialised only when it is not canonical already (the common case for guests
    /// that serialise a `serde_json::Value`, whose maps are sorted).
    pub fn new(
        key: String,
        kind: String,
        properties: String,
        schema_version: Option<String>,
        edge: Option<EdgeEnds>,
    ) -> Result<Entity, EntityError> {
        if key.is_empty() {
            return Err(EntityError::EmptyKey);
        }
        if kind.is_empty() {
            return Err(EntityError::EmptyKind { key });
        }
        if kind.contains('\0') {
            return Err(EntityError::NulInKind { key });
        }
        if let Some(ends) = &edge {
            // A NUL in an end's kind would name another entity's id (`kind NUL key`).
            let bad =
                |r: &EntityRef| r.key.is_empty() || r.kind.is_empty() || r.kind.contains('\0');
            if bad(&ends.source) || bad(&ends.target) {
                return Err(EntityError::BadEndpoint { key });
            }
        }
        let properties = canonical_object(&key, properties)?;
        Ok(Entity::checked(key, kind, properties, schema_version, edge))
    }

    /// `new`'s entity from parts it checked, `properties` canonical.
    fn checked(
        key: String,
        kind: String,
        properties: String,
        schema_version: Option<String>,
        edge: Option<EdgeEnds>,
    ) -> Entity {
        Entity {
            id: Id::new(&kind, &key),
            properties,
            schema_version,
            edge,
        }
    }

    pub fn key(&self) -> &str {
        self.id.key()
    }

    pub fn kind(&self) -> &str {
        self.id.kind()
    }

    /// What identifies the entity: its kind and key.
    pub fn id(&self) -> &Id {
        &self.id
    }

    pub fn into_id(self) -> Id {
        self.id
    }

    /// The properties as canonical JSON object text.
    pub fn properties(&self) -> &str {
        &self.properties
    }

    pub fn schema_version(&self) -> Option<&str> {
        self.schema_version.as_deref()
    }

    pub fn edge(&self) -> Option<&EdgeEnds> {
        self.edge.as_ref()
    }

    /// Splits the entity into its parts, e.g. to hand it to a guest.
    pub fn into_parts(self) -> (String, String, String, Option<String>, Option<EdgeEnds>) {
        let mut kind = self.id.0;
        let split = kind
            .find('\0')
            .expect("an id always holds a NUL after its kind");
        let key = kind[split + 1..].to_owned();
        kind.truncate(split);
        (key, kind, self.properties, self.schema_version, self.edge)
    }

    /// Appends the canonical form to `out` (see the module docs).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        if let Some(ends) = &self.edge {
            out.extend_from_slice(b"\"edge\":{\"source\":");
            encode_ref(&ends.source, out);
            out.extend_from_slice(b",\"target\":");
            encode_ref(&ends.target, out);
            out.extend_from_slice(b"},");
        }
        out.extend_from_slice(b"\"key\":");
        encode_str(self.key(), out);
        out.extend_from_slice(b",\"kind\":");
        encode_str(self.kind(), out);
        out.extend_from_slice(b",\"properties\":");
        out.extend_from_slice(self.properties.as_bytes());
        if let Some(version) = &self.schema_version {
            out.extend_from_slice(b",\"schema-version\":");
            encode_str(version, out);
        }
        out.push(b'}');
    }

    /// The canonical form as a new buffer.
    pub fn to_canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.properties.len() + self.id.0.len() + 64);
        self.encode(&mut out);
        out
    }

    /// xxh3 of the canonical form, using `scratch` to avoid an allocation per entity.
    pub fn hash_with(&self, scratch: &mut Vec<u8>) -> u64 {
        scratch.clear();
        self.encode(scratch);
        xxhash_rust::xxh3::xxh3_64(scratch)
    }

    /// Parses a canonical form written by [`Entity::encode`], as a store keeps it: its
    /// properties are taken as they are, not canonicalised again (a store migrates what
    /// an older canonical form wrote when it opens; see [`Entity::decode_older`]).
    pub fn decode(bytes: &[u8]) -> Result<Entity, EntityError> {
        let (key, kind, properties, schema_version, edge) = parse_stored(bytes)?;
        if key.is_empty() || kind.is_empty() || !properties.starts_with('{') {
            return Err(EntityError::Corrupt(format!(
                "not an entity's canonical form: {}",
                String::from_utf8_lossy(bytes)
            )));
        }
        Ok(Entity::checked(key, kind, properties, schema_version, edge))
    }

    /// Parses what an older canonical form wrote, and canonicalises it as today's.
    pub fn decode_older(bytes: &[u8]) -> Result<Entity, EntityError> {
        let (key, kind, properties, schema_version, edge) = parse_stored(bytes)?;
        Entity::new(key, kind, properties, schema_version, edge)
    }
}

type Parts = (String, String, String, Option<String>, Option<EdgeEnds>);

/// The parts of a stored canonical form.
fn parse_stored(bytes: &[u8]) -> Result<Parts, EntityError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Stored<'a> {
        edge: Option<EdgeEnds>,
        key: String,
        kind: String,
        #[serde(borrow)]
        properties: &'a RawValue,
        #[serde(rename = "schema-version")]
        schema_version: Option<String>,
    }
    let stored: Stored =
        serde_json::from_slice(bytes).map_err(|e| EntityError::Corrupt(e.to_string()))?;
    Ok((
        stored.key,
        stored.kind,
        stored.properties.get().to_owned(),
        stored.schema_version,
        stored.edge,
    ))
}

fn encode_ref(r: &EntityRef, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"key\":");
    encode_str(&r.key, out);
    out.extend_from_slice(b",\"kind\":");
    encode_str(&r.kind, out);
    out.push(b'}');
}

fn encode_str(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(out, s).expect("writing a string to a Vec cannot fail");
}

/// Returns `text` in canonical form, reusing the string when it already is.
fn canonical_object(key: &str, text: String) -> Result<String, EntityError> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|out| {
        let kind =
            crate::canonical::canonicalize(&text, out).map_err(|e| EntityError::InvalidJson {
                key: key.to_owned(),
                reason: e.to_string(),
            })?;
        if kind != crate::canonical::Kind::Object {
            return Err(EntityError::NotAnObject {
                key: key.to_owned(),
                found: kind.described(),
            });
        }
        Ok(if out.as_slice() == text.as_bytes() {
            text
        } else {
            String::from_utf8(out.clone()).expect("canonical JSON of a str is UTF-8")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vertex(props: &str) -> Entity {
        Entity::new("k".into(), "pserver".into(), props.into(), None, None).unwrap()
    }

    fn hash(e: &Entity) -> u64 {
        e.hash_with(&mut Vec::new())
    }

    #[test]
    fn key_order_and_whitespace_do_not_change_the_hash() {
        let a = vertex(r#"{"b": 1, "a": {"y": [1, 2], "x": null}}"#);
        let b = vertex(r#"{"a":{"x":null,"y":[1,2]},"b":1}"#);
        assert_eq!(hash(&a), hash(&b));
        assert_eq!(a.properties(), r#"{"a":{"x":null,"y":[1,2]},"b":1}"#);
    }

    #[test]
    fn value_and_type_changes_change_the_hash_and_a_numbers_form_does_not() {
        let base = hash(&vertex(r#"{"port":1}"#));
        assert_ne!(base, hash(&vertex(r#"{"port":"1"}"#)), "number vs string");
        assert_eq!(
            base,
            hash(&vertex(r#"{"port":1.0}"#)),
            "one value, two forms"
        );
        assert_eq!(
            base,
            hash(&vertex(r#"{"port":10e-1}"#)),
            "one value, two forms"
        );
        assert_ne!(base, hash(&vertex(r#"{"port":2}"#)), "value");
        assert_ne!(base, hash(&vertex(r#"{"port":[1]}"#)), "array");
        assert_ne!(base, hash(&vertex(r#"{"Port":1}"#)), "key case");
    }

    #[test]
    fn every_field_takes_part_in_the_hash() {
        let v = vertex("{}");
        let other_kind =
            Entity::new("k".into(), "vserver".into(), "{}".into(), None, None).unwrap();
        let versioned = Entity::new(
            "k".into(),
            "pserver".into(),
            "{}".into(),
            Some("v11".into()),
            None,
        )
        .unwrap();
        let ends = |t: &str| EdgeEnds {
            source: EntityRef {
                key: "a".into(),
                kind: "vserver".into(),
            },
            target: EntityRef {
                key: t.into(),
                kind: "pserver".into(),
            },
        };
        let edge_b = Entity::new(
            "k".into(),
            "pserver".into(),
            "{}".into(),
            None,
            Some(ends("b")),
        )
        .unwrap();
        let edge_c = Entity::new(
            "k".into(),
            "pserver".into(),
            "{}".into(),
            None,
            Some(ends("c")),
        )
        .unwrap();
        let hashes = [
            hash(&v),
            hash(&other_kind),
            hash(&versioned),
            hash(&edge_b),
            hash(&edge_c),
        ];
        for (i, a) in hashes.iter().enumerate() {
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn an_id_is_kind_and_key_and_orders_by_kind_first() {
        let a = Entity::new("k\0x".into(), "b".into(), "{}".into(), None, None).unwrap();
        assert_eq!((a.id().kind(), a.id().key()), ("b", "k\0x"));
        assert_eq!(a.clone().into_parts().0, "k\0x", "a key may hold a NUL");
        assert_eq!(a.id().to_string(), "b `k\\u{0}x`");
        let mut ids = [Id::new("b", "a"), Id::new("a", "z"), Id::new("ab", "")];
        ids.sort();
        assert_eq!(ids.map(|i| i.to_string()), ["a `z`", "ab ``", "b `a`"]);
        assert_ne!(Id::new("a", "b"), Id::new("ab", ""));
        assert_eq!(Id::parse("x".into()), None);
    }

    #[test]
    fn canonical_form_is_pinned() {
        let e = Entity::new(
            "vm-1/hosted-on".into(),
            "tosca.relationships.HostedOn".into(),
            r#"{"z":"\u00e9","a":true}"#.into(),
            Some("v11".into()),
            Some(EdgeEnds {
                source: EntityRef {
                    key: "vm-1".into(),
                    kind: "vserver".into(),
                },
                target: EntityRef {
                    key: "srv-1".into(),
                    kind: "pserver".into(),
                },
            }),
        )
        .unwrap();
        let canonical = String::from_utf8(e.to_canonical()).unwrap();
        assert_eq!(
            canonical,
            r#"{"edge":{"source":{"key":"vm-1","kind":"vserver"},"target":{"key":"srv-1","kind":"pserver"}},"key":"vm-1/hosted-on","kind":"tosca.relationships.HostedOn","properties":{"a":true,"z":"é"},"schema-version":"v11"}"#
        );
        assert_eq!(
            hash(&e),
            0x9e88_2d10_27f4_360c,
            "the canonical encoding changed: {:#x}",
            hash(&e)
        );
        assert_eq!(Entity::decode(canonical.as_bytes()).unwrap(), e);
        assert_eq!(Entity::decode_older(canonical.as_bytes()).unwrap(), e);
    }

    /// A stored form is taken as it is, but what is no entity's is refused as corrupt;
    /// an older canonical form is made today's.
    #[test]
    fn stored_forms_are_checked_and_older_ones_canonicalised() {
        for damaged in [
            &br#"{"key":"","kind":"pserver","properties":{}}"#[..],
            br#"{"key":"a","kind":"","properties":{}}"#,
            br#"{"key":"a","kind":"pserver","properties":[1]}"#,
            br#"{"key":"a","kind":"pserver","properties":{"#,
            br#"{"key":"a","kind":"pserver","properties":{},"extra":1}"#,
        ] {
            let error = Entity::decode(damaged).unwrap_err();
            assert!(matches!(error, EntityError::Corrupt(_)), "{error:?}");
        }
        let older = br#"{"key":"a","kind":"pserver","properties":{"v":1.0}}"#;
        assert_eq!(
            Entity::decode_older(older).unwrap().properties(),
            r#"{"v":1}"#
        );
    }

    /// Numbers by value, pinned: every form of one value hashes alike, and a change in the
    /// last digit of a 30-digit id (which a double cannot hold) is a change.
    #[test]
    fn numbers_hash_by_exact_value_and_are_pinned() {
        let forms = [
            r#"{"id":123456789012345678901234567890,"n":100,"r":1.5,"s":-0.000001,"z":0}"#,
            r#"{"z":-0.0,"s":-1e-6,"r":15e-1,"n":1e2,"id":1.2345678901234567890123456789e29}"#,
        ];
        let hashes = forms.map(|f| hash(&vertex(f)));
        assert_eq!(hashes[0], hashes[1]);
        assert_eq!(
            vertex(forms[1]).properties(),
            r#"{"id":123456789012345678901234567890,"n":100,"r":1.5,"s":-0.000001,"z":0}"#
        );
        assert_eq!(
            hashes[0], 0x82dd_de00_f920_1128,
            "the canonical number form changed: {:#x}",
            hashes[0]
        );
        let next_id = forms[0].replace("890,", "891,");
        assert_ne!(hash(&vertex(&next_id)), hashes[0]);
    }

    #[test]
    fn bad_entities_are_refused_with_their_key() {
        let new = |key: &str, kind: &str, props: &str| {
            Entity::new(key.into(), kind.into(), props.into(), None, None)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(new("", "k", "{}"), "an entity has an empty key");
        assert_eq!(new("a", "", "{}"), "entity `a` has an empty kind");
        assert_eq!(
            new("a", "k\0", "{}"),
            "entity `a` has a kind with a NUL character"
        );
        let end = |kind: &str| EntityRef {
            kind: kind.into(),
            key: "x".into(),
        };
        let forged = EdgeEnds {
            source: end("pserver\0x"),
            target: end("pserver"),
        };
        assert_eq!(
            Entity::new("e".into(), "link".into(), "{}".into(), None, Some(forged))
                .unwrap_err()
                .to_string(),
            "edge `e` has an endpoint with an empty key or kind, or a NUL in its kind"
        );
        assert!(new("a", "k", "{oops").starts_with("entity `a`: properties are not valid JSON"));
        assert_eq!(
            new("a", "k", "[1]"),
            "entity `a`: properties must be a JSON object, not an array"
        );
    }
}
