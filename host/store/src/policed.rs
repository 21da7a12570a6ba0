//! What each model policy last handled of an entity: the `previous` of its next
//! `handle-update`. Each policy has its own, since each runs at its own pace.
//!
//! State from before several policies per kind kept one row per entity (`policed-as`,
//! keyed by id); [`migrate`] moves each under [`UNATTRIBUTED`], which the kind's policy
//! takes over with the bookkeeping's progress ([`attribute`]).

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

/// The row of `policy`'s record of `id` (`id` as [`Id::as_str`] gives it): one string,
/// as a tuple key costs twice as much to write. A plugin name has no `\0`, so the first
/// one ends it.
fn key(policy: &str, id: &str) -> String {
    format!("{policy}\0{id}")
}

/// The entity `id` as `policy` last handled it.
pub(crate) fn get(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &Id,
    policy: &str,
) -> Result<Option<Entity>, DbError> {
    match table
        .get(key(policy, id.as_str()).as_str())
        .map_err(dberr)?
    {
        Some(row) => Ok(Some(Entity::decode(row.value())?)),
        None => Ok(None),
    }
}

/// Records `entity` as what `policy` handled of `id`.
pub(crate) fn put(
    table: &mut PolicedAs<'_>,
    id: &Id,
    policy: &str,
    entity: &Entity,
) -> Result<(), DbError> {
    let mut buf = Vec::new();
    entity.encode(&mut buf);
    table
        .insert(key(policy, id.as_str()).as_str(), buf.as_slice())
        .map_err(dberr)?;
    Ok(())
}

/// Gives the record of `id` from before policies could be told apart to `policy`,
/// unless it has its own.
pub(crate) fn attribute(table: &mut PolicedAs<'_>, id: &Id, policy: &str) -> Result<(), DbError> {
    let Some(legacy) = table
        .remove(key(UNATTRIBUTED, id.as_str()).as_str())
        .map_err(dberr)?
        .map(|row| row.value().to_vec())
    else {
        return Ok(());
    };
    let theirs = key(policy, id.as_str());
    if table.get(theirs.as_str()).map_err(dberr)?.is_none() {
        table
            .insert(theirs.as_str(), legacy.as_slice())
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
        table
            .remove(key(policy, id.as_str()).as_str())
            .map_err(dberr)?;
    }
    Ok(())
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
            table
                .insert(key(UNATTRIBUTED, id.value()).as_str(), entity.value())
                .map_err(dberr)?;
            moved += 1;
        }
    }
    txn.delete_table(LEGACY).map_err(dberr)?;
    Ok(Some(moved))
}
