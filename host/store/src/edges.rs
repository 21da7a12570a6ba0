//! The model's edges by their ends: which edges touch a vertex, without a scan. A sync
//! step removes a vertex outside only after the edges that hang on it (dependents
//! first), and holds an edge until its ends are enacted.
//!
//! Kept in the transaction of every write of an edge: added when an edge is written,
//! moved when its ends change, dropped when it is purged. A soft-deleted edge stays
//! indexed: it is still outside.

use redb::{
    MultimapTable, MultimapTableDefinition, MultimapTableHandle, ReadableMultimapTable,
    ReadableTable, WriteTransaction,
};

use synchro_model::{Entity, Id};

use crate::{DbError, dberr};

/// vertex id → the ids of the edges with it as an end.
pub(crate) const EDGES: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("edges-by-end");

pub(crate) type Edges<'txn> = MultimapTable<'txn, &'static str, &'static str>;

/// The ids of the ends of `edge`, if it is one.
fn ends(edge: &Entity) -> Option<[Id; 2]> {
    let ends = edge.edge()?;
    Some([
        Id::new(&ends.source.kind, &ends.source.key),
        Id::new(&ends.target.kind, &ends.target.key),
    ])
}

/// Whether the stored (canonical) form `bytes` is an edge's: its encoding starts with its
/// ends, so a vertex's rewrite costs no decoding.
pub(crate) fn is_edge(bytes: &[u8]) -> bool {
    bytes.starts_with(b"{\"edge\":")
}

/// Records that the entity `id` is now `new` where it was `old` (either may be absent,
/// or a vertex).
pub(crate) fn replace(
    table: &mut Edges<'_>,
    id: &Id,
    old: Option<&Entity>,
    new: Option<&Entity>,
) -> Result<(), DbError> {
    let (old, new) = (old.and_then(ends), new.and_then(ends));
    if old == new {
        return Ok(());
    }
    for end in old.iter().flatten() {
        table.remove(end.as_str(), id.as_str()).map_err(dberr)?;
    }
    for end in new.iter().flatten() {
        table.insert(end.as_str(), id.as_str()).map_err(dberr)?;
    }
    Ok(())
}

/// The ids of the edges with `vertex` as an end.
pub(crate) fn of(
    table: &impl ReadableMultimapTable<&'static str, &'static str>,
    vertex: &Id,
) -> Result<Vec<Id>, DbError> {
    let mut found = Vec::new();
    for edge in table.get(vertex.as_str()).map_err(dberr)? {
        let edge = edge.map_err(dberr)?.value().to_owned();
        found.push(Id::parse(edge.clone()).ok_or_else(|| {
            DbError::Corrupt(synchro_model::EntityError::Corrupt(format!(
                "an edge index entry is not an id: {edge:?}"
            )))
        })?);
    }
    Ok(found)
}

/// Creates the index, filled from the model's edges, if a version of synchro before it
/// wrote this state; says how many edges it indexed.
pub(crate) fn build_if_missing(txn: &WriteTransaction) -> Result<Option<u64>, DbError> {
    let exists = txn
        .list_multimap_tables()
        .map_err(dberr)?
        .any(|table| table.name() == EDGES.name());
    let mut table = txn.open_multimap_table(EDGES).map_err(dberr)?;
    if exists {
        return Ok(None);
    }
    let model = txn.open_table(crate::model::ENTITIES).map_err(dberr)?;
    let mut indexed = 0;
    for row in model.iter().map_err(dberr)? {
        let (id, value) = row.map_err(dberr)?;
        let bytes = value.value().1;
        if !is_edge(bytes) {
            continue;
        }
        let id = Id::parse(id.value().to_owned()).ok_or_else(|| {
            DbError::Corrupt(synchro_model::EntityError::Corrupt(format!(
                "a model key is not an id: {:?}",
                id.value()
            )))
        })?;
        replace(&mut table, &id, None, Some(&Entity::decode(bytes)?))?;
        indexed += 1;
    }
    Ok(Some(indexed))
}
