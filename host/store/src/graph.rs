//! Writes that keep the graph whole: the API's.
//!
//! A plugin reports what its outside system holds, and may report an edge before the
//! vertex it points to (another collector may own that vertex): the model keeps the edge,
//! dangling, until the vertex appears. A client of the API writes the graph itself, and
//! is told instead: an edge needs both its ends, and a vertex with edges goes only when
//! the client asks to cascade, its edges first.

use std::fmt;

use synchro_model::{Acting, Entity, Id, Operation};

use crate::model::{Change, Rows, Write, Writer};
use crate::{Db, DbError, outbox};

/// Why a write through the API was not made: the graph would not be whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphRefusal {
    /// The edge's end `role` ("source" or "target") is not in the model, or is deleted.
    MissingEnd { role: &'static str, end: Id },
    /// The vertex has these edges: deleting it needs a cascade, which deletes them too.
    HasEdges(Vec<Id>),
    /// A cascade would delete `edge`, which another plugin owns and alone may delete
    /// (or, the API being a ranked source of its kind, which `owner` still describes).
    EdgeOwned { edge: Id, owner: String },
    /// The vertex would stay, `owner` still describing it (the API is a ranked source of
    /// its kind and only withdraws its part): its edges stay with it.
    Described { vertex: Id, owner: String },
}

impl fmt::Display for GraphRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphRefusal::MissingEnd { role, end } => write!(
                f,
                "the edge's {role} {end} is not in the model: write the vertex first"
            ),
            GraphRefusal::HasEdges(edges) => {
                write!(f, "the vertex has {} edge(s) (", edges.len())?;
                for (i, edge) in edges.iter().take(5).enumerate() {
                    write!(f, "{}{edge}", if i == 0 { "" } else { ", " })?;
                }
                if edges.len() > 5 {
                    write!(f, ", …")?;
                }
                write!(f, "): delete them first, or ask to cascade")
            }
            GraphRefusal::EdgeOwned { edge, owner } => write!(
                f,
                "cascading would delete the edge {edge}, which {owner} wrote and alone may delete"
            ),
            GraphRefusal::Described { vertex, owner } => write!(
                f,
                "{vertex} stays in the model: {owner} describes it too (the API's delete only \
                 withdraws its own part), so its edges stay with it"
            ),
        }
    }
}

/// What [`Db::model_delete_cascading`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct Cascaded {
    /// The vertex's deletion: done, or why nothing was written.
    pub write: Write,
    /// Whether the vertex went: not if it was not there, nor, the API being a ranked
    /// source of its kind, while another source describes it (the API's part is
    /// withdrawn).
    pub deleted: bool,
    /// The edges deleted with it, each announced before it.
    pub edges: Vec<Id>,
}

impl Db {
    /// Writes `entity` as the source `plugin` (the API), as [`Db::model_put`] does, if it
    /// is a vertex or an edge whose ends are both in the model.
    pub fn model_put_linked(
        &self,
        plugin: &str,
        entity: &Entity,
        record: impl FnOnce(Operation, &Entity) -> Vec<u8>,
    ) -> Result<Result<Write, GraphRefusal>, DbError> {
        let txn = self.begin_write()?;
        let at = outbox::last_seq(&txn)? + 1;
        let change = {
            let mut rows = Rows::open(&txn, self.policies())?;
            if let Some(ends) = entity.edge() {
                for (role, end) in [("source", &ends.source), ("target", &ends.target)] {
                    let end = Id::new(&end.kind, &end.key);
                    if rows.live_owner(&end)?.is_none() {
                        return Ok(Err(GraphRefusal::MissingEnd { role, end }));
                    }
                }
            }
            match rows.apply(
                &self.sources(),
                source(plugin),
                entity.id(),
                Some(entity),
                at,
            )? {
                Ok(change) => change,
                Err(refused) => return Ok(Ok(refused)),
            }
        };
        self.commit_announcing(txn, change, at, record).map(Ok)
    }

    /// Deletes the vertex (or edge) `id` as the source `plugin` (the API), as
    /// [`Db::model_delete`] does, unless edges hang on it: then only if `cascade`, with
    /// them, in one transaction, each edge's change `record`ed before the vertex's (a
    /// reader of the stream never sees an edge outlive its end). Nothing is deleted if
    /// one of the edges would stay (another plugin wrote it, or, the API being a ranked
    /// source of its kind, another source still describes it), nor if the vertex with
    /// edges would.
    pub fn model_delete_cascading(
        &self,
        plugin: &str,
        id: &Id,
        cascade: bool,
        mut record: impl FnMut(Operation, &Entity) -> Vec<u8>,
    ) -> Result<Result<Cascaded, GraphRefusal>, DbError> {
        let txn = self.begin_write()?;
        let mut at = outbox::last_seq(&txn)? + 1;
        let sources = self.sources();
        let mut records = Vec::new();
        let mut gone = Vec::new();
        let cascaded = {
            let mut rows = Rows::open(&txn, self.policies())?;
            if rows.live_owner(id)?.is_none() {
                return Ok(Ok(Cascaded {
                    write: Write::Done { version: None },
                    deleted: false,
                    edges: Vec::new(),
                }));
            }
            let edges = rows.live_edges_of(id)?;
            if !edges.is_empty() && !cascade {
                return Ok(Err(GraphRefusal::HasEdges(edges)));
            }
            let had_edges = !edges.is_empty();
            for edge in edges {
                let change = rows.apply(&sources, source(plugin), &edge, None, at)?;
                // Still there: another plugin's, or another ranked source's too.
                if let Some(owner) = rows.live_owner(&edge)? {
                    return Ok(Err(GraphRefusal::EdgeOwned { edge, owner }));
                }
                if let Ok(Change::Changed(operation, entity)) = change {
                    records.push(record(operation, &entity));
                    gone.push(edge);
                    at += 1;
                }
            }
            let write = match rows.apply(&sources, source(plugin), id, None, at)? {
                Ok(Change::Changed(operation, entity)) => {
                    records.push(record(operation, &entity));
                    Write::Done { version: Some(at) }
                }
                Ok(Change::Unchanged) => Write::Done { version: None },
                Ok(Change::Refused(_)) => Write::Refused,
                Err(refused) => refused,
            };
            if !matches!(write, Write::Done { .. }) {
                // Not the edges either: the transaction is dropped.
                return Ok(Ok(Cascaded {
                    write,
                    deleted: false,
                    edges: Vec::new(),
                }));
            }
            let kept = rows.live_owner(id)?;
            if let (Some(owner), true) = (&kept, had_edges) {
                return Ok(Err(GraphRefusal::Described {
                    vertex: id.clone(),
                    owner: owner.clone(),
                }));
            }
            Cascaded {
                write,
                deleted: kept.is_none(),
                edges: gone,
            }
        };
        self.commit_with(txn, records.iter().map(Vec::as_slice))?;
        Ok(Ok(cascaded))
    }
}

/// The API's writer: a source, handling nothing.
pub(crate) fn source(plugin: &str) -> Writer<'_> {
    Writer {
        plugin,
        acting: Acting::Source,
        handling: None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use synchro_model::{EdgeEnds, EntityRef, Upsert};

    use super::*;

    fn vertex(key: &str) -> Entity {
        Entity::new(key.into(), "pserver".into(), "{}".into(), None, None).unwrap()
    }

    /// A `link` edge `key` between the `pserver`s `from` and `to`.
    pub(crate) fn edge(key: &str, from: &str, to: &str) -> Entity {
        let end = |key: &str| EntityRef {
            key: key.into(),
            kind: "pserver".into(),
        };
        let ends = EdgeEnds {
            source: end(from),
            target: end(to),
        };
        Entity::new(key.into(), "link".into(), "{}".into(), None, Some(ends)).unwrap()
    }

    /// Each change as `OP kind/key`.
    fn line(operation: Operation, entity: &Entity) -> Vec<u8> {
        let (kind, key) = (entity.kind(), entity.key());
        format!("{} {kind}/{key}", operation.as_str()).into_bytes()
    }

    fn put(db: &Db, entity: &Entity) -> Result<Write, GraphRefusal> {
        db.model_put_linked("api", entity, line).unwrap()
    }

    fn live(db: &Db, id: &Id) -> bool {
        db.model_get(id)
            .unwrap()
            .is_some_and(|s| !s.bookkeeping.deleted)
    }

    #[test]
    fn an_edge_written_through_the_api_needs_both_its_ends() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        put(&db, &vertex("a")).unwrap();
        let before = db.last_change();
        assert_eq!(
            put(&db, &edge("e", "a", "b")),
            Err(GraphRefusal::MissingEnd {
                role: "target",
                end: Id::new("pserver", "b"),
            })
        );
        assert_eq!(
            put(&db, &edge("e", "c", "a")),
            Err(GraphRefusal::MissingEnd {
                role: "source",
                end: Id::new("pserver", "c"),
            })
        );
        assert_eq!(
            db.last_change(),
            before,
            "nothing written, nothing announced"
        );
        assert!(!live(&db, &Id::new("link", "e")));

        put(&db, &vertex("b")).unwrap();
        assert_eq!(
            put(&db, &edge("e", "a", "b")),
            Ok(Write::Done {
                version: Some(before + 2)
            })
        );
        // A deleted end is no end: b goes (nothing holds it), then an edge to it is refused.
        db.model_delete_cascading("api", &Id::new("link", "e"), false, line)
            .unwrap()
            .unwrap();
        db.model_delete_cascading("api", &Id::new("pserver", "b"), false, line)
            .unwrap()
            .unwrap();
        assert!(matches!(
            put(&db, &edge("f", "a", "b")),
            Err(GraphRefusal::MissingEnd { role: "target", .. })
        ));
    }

    #[test]
    fn a_vertex_with_edges_goes_only_with_a_cascade_and_its_edges_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        for key in ["a", "b", "c"] {
            put(&db, &vertex(key)).unwrap();
        }
        put(&db, &edge("ab", "a", "b")).unwrap();
        put(&db, &edge("ca", "c", "a")).unwrap();
        let a = Id::new("pserver", "a");
        let before = db.last_change();

        let refused = db.model_delete_cascading("api", &a, false, line).unwrap();
        let Err(GraphRefusal::HasEdges(mut edges)) = refused else {
            panic!("{refused:?}");
        };
        edges.sort();
        assert_eq!(edges, [Id::new("link", "ab"), Id::new("link", "ca")]);
        assert!(live(&db, &a));
        assert_eq!(db.last_change(), before);

        let mut records = Vec::new();
        let cascaded = db
            .model_delete_cascading("api", &a, true, |operation, entity| {
                records.push(String::from_utf8(line(operation, entity)).unwrap());
                Vec::new()
            })
            .unwrap()
            .unwrap();
        assert_eq!(
            cascaded.write,
            Write::Done {
                version: Some(before + 3)
            },
            "the vertex's deletion is the last of the three"
        );
        assert_eq!(cascaded.edges.len(), 2);
        assert_eq!(records.len(), 3);
        assert_eq!(records[2], "DELETE pserver/a", "{records:?}");
        assert!(records[..2].iter().all(|r| r.starts_with("DELETE link/")));
        assert_eq!(db.last_change(), before + 3);
        assert!(!live(&db, &a) && !live(&db, &Id::new("link", "ab")));
        assert!(live(&db, &Id::new("pserver", "b")), "the other ends stay");
    }

    /// The API deletes only what it wrote: a collector's edge on the vertex holds the
    /// whole cascade back, and the collector may still report an edge to a vertex that
    /// is not there (it dangles).
    #[test]
    fn a_cascade_never_deletes_another_writers_edge() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        put(&db, &vertex("a")).unwrap();
        put(&db, &vertex("b")).unwrap();
        put(&db, &edge("mine", "a", "b")).unwrap();
        let theirs = Upsert {
            operation: Operation::Create,
            entity: edge("theirs", "a", "nowhere"),
            hash: 1,
        };
        db.commit_collect("collector", &[theirs], &[], true, line)
            .unwrap();
        let before = db.last_change();

        let a = Id::new("pserver", "a");
        let refused = db.model_delete_cascading("api", &a, true, line).unwrap();
        assert_eq!(
            refused,
            Err(GraphRefusal::EdgeOwned {
                edge: Id::new("link", "theirs"),
                owner: "collector".into(),
            })
        );
        assert_eq!(db.last_change(), before, "nothing deleted");
        assert!(live(&db, &a) && live(&db, &Id::new("link", "mine")));
        // Nor may the API delete the collector's edge itself.
        let write = db
            .model_delete_cascading("api", &Id::new("link", "theirs"), false, line)
            .unwrap();
        assert_eq!(
            write,
            Ok(Cascaded {
                write: Write::Refused,
                deleted: false,
                edges: Vec::new()
            })
        );
    }

    /// The API ranked among a kind's sources only withdraws its part: a cascade takes no
    /// edge another source still describes, and leaves no vertex that stays without its
    /// edges; a vertex without edges stays while another source describes it.
    #[test]
    fn a_ranked_api_withdraws_its_part_and_a_cascade_takes_nothing_that_stays() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let ranked = || vec!["api".to_owned(), "cmdb".to_owned()];
        let ranking = [
            ("pserver".to_owned(), ranked()),
            ("link".to_owned(), ranked()),
        ];
        db.set_sources(crate::Sources::new(ranking.into()).unwrap());
        for key in ["a", "b", "c", "d"] {
            put(&db, &vertex(key)).unwrap();
        }
        put(&db, &edge("e", "a", "b")).unwrap();
        put(&db, &edge("f", "b", "d")).unwrap();
        let upsert = |entity: Entity| Upsert {
            operation: Operation::Create,
            entity,
            hash: 1,
        };
        let cmdb = [edge("e", "a", "b"), vertex("c"), vertex("d")].map(upsert);
        db.commit_collect("cmdb", &cmdb, &[], true, line).unwrap();
        let before = db.last_change();
        let id = |kind: &str, key: &str| Id::new(kind, key);

        let refused = db.model_delete_cascading("api", &id("pserver", "a"), true, line);
        assert_eq!(
            refused.unwrap(),
            Err(GraphRefusal::EdgeOwned {
                edge: id("link", "e"),
                owner: "cmdb".into(),
            })
        );
        let refused = db.model_delete_cascading("api", &id("pserver", "d"), true, line);
        assert_eq!(
            refused.unwrap(),
            Err(GraphRefusal::Described {
                vertex: id("pserver", "d"),
                owner: "cmdb".into(),
            })
        );
        assert_eq!(db.last_change(), before, "nothing deleted");
        assert!(
            live(&db, &id("link", "f")),
            "the edge stays with its vertex"
        );

        let c = db
            .model_delete_cascading("api", &id("pserver", "c"), false, line)
            .unwrap()
            .unwrap();
        assert!(!c.deleted, "{c:?}");
        assert!(live(&db, &id("pserver", "c")));
        let owner = db.model_get(&id("pserver", "c")).unwrap().unwrap().owner;
        assert_eq!(
            owner.as_deref(),
            Some("cmdb"),
            "the API's part is withdrawn"
        );
    }
}
