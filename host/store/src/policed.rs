//! What each model policy last handled of an entity: the `previous` of its next
//! `handle-update`. Each policy has its own, since each runs at its own pace.
//!
//! State from before several policies per kind kept one row per entity (`policed-as`,
//! keyed by id); [`migrate`] moves each under [`UNATTRIBUTED`], which the first policy
//! that handles the entity takes over, as it takes over the bookkeeping's progress.

use redb::{ReadableTable, Table, TableDefinition, TableHandle, WriteTransaction};

use synchro_model::bookkeeping::UNATTRIBUTED;
use synchro_model::{Bookkeeping, Entity, Id};

use crate::{DbError, dberr};

/// `POLICY \0 ID` (see [`key`]) → the entity as that policy last handled it.
pub(crate) const POLICED_AS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("policed-as-by-policy");

/// Before several policies per kind: id → the entity as its one policy last handled it.
const LEGACY: TableDefinition<&str, &[u8]> = TableDefinition::new("policed-as");

pub(crate) type PolicedAs<'txn> = Table<'txn, &'static str, &'static [u8]>;

/// The row of `policy`'s record of `id`: one string, as a tuple key costs twice as much
/// to write. A plugin name has no `\0`, so the first one ends it.
fn key(policy: &str, id: &Id) -> String {
    format!("{policy}\0{}", id.as_str())
}

/// The entity `id` as `policy` last handled it: its own record, or one from before
/// policies could be told apart if the entity's bookkeeping `books` still has such
/// progress (looked up only then, as a miss costs as much as a hit).
pub(crate) fn get(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &Id,
    policy: &str,
    books: &Bookkeeping,
) -> Result<Option<Entity>, DbError> {
    let legacy = legacy(books).then_some(UNATTRIBUTED);
    for by in std::iter::once(policy).chain(legacy) {
        if let Some(row) = table.get(key(by, id).as_str()).map_err(dberr)? {
            return Ok(Some(Entity::decode(row.value())?));
        }
    }
    Ok(None)
}

/// Records `entity` as what `policy` handled of `id`, whose bookkeeping was `books`
/// before: it takes over the record from before policies could be told apart, if there
/// may be one.
pub(crate) fn put(
    table: &mut PolicedAs<'_>,
    id: &Id,
    policy: &str,
    entity: &Entity,
    books: &Bookkeeping,
) -> Result<(), DbError> {
    let mut buf = Vec::new();
    entity.encode(&mut buf);
    table
        .insert(key(policy, id).as_str(), buf.as_slice())
        .map_err(dberr)?;
    if legacy(books) {
        table
            .remove(key(UNATTRIBUTED, id).as_str())
            .map_err(dberr)?;
    }
    Ok(())
}

/// Forgets every record of `id` (it is purged): those of the policies its bookkeeping
/// `books` names.
pub(crate) fn remove_all(
    table: &mut PolicedAs<'_>,
    id: &Id,
    books: &Bookkeeping,
) -> Result<(), DbError> {
    for (policy, _) in books.policies.iter() {
        table.remove(key(policy, id).as_str()).map_err(dberr)?;
    }
    Ok(())
}

/// Whether `books` still has progress from before policies could be told apart.
fn legacy(books: &Bookkeeping) -> bool {
    books
        .policies
        .iter()
        .any(|(policy, _)| policy == UNATTRIBUTED)
}

/// Moves the records of before several policies per kind under [`UNATTRIBUTED`]; how
/// many, or `None` when there were none to move.
pub(crate) fn migrate(txn: &WriteTransaction) -> Result<Option<u64>, DbError> {
    let legacy = txn
        .list_tables()
        .map_err(dberr)?
        .any(|t| t.name() == LEGACY.name());
    let mut table = txn.open_table(POLICED_AS).map_err(dberr)?;
    if !legacy {
        return Ok(None);
    }
    let mut moved = 0;
    {
        let old = txn.open_table(LEGACY).map_err(dberr)?;
        for row in old.iter().map_err(dberr)? {
            let (id, entity) = row.map_err(dberr)?;
            let id = format!("{UNATTRIBUTED}\0{}", id.value());
            table.insert(id.as_str(), entity.value()).map_err(dberr)?;
            moved += 1;
        }
    }
    txn.delete_table(LEGACY).map_err(dberr)?;
    Ok(Some(moved))
}
