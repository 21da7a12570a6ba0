//! What each model policy last handled of an entity: the `previous` of its next
//! `handle-update`. Each policy has its own, since each runs at its own pace.
//!
//! State from before several policies per kind kept one row per entity (`policed-as`,
//! keyed by id); [`migrate`] moves each under [`UNATTRIBUTED`], which the first policy
//! that handles the entity takes over, as it takes over the bookkeeping's progress.

use redb::{ReadableTable, Table, TableDefinition, TableHandle, WriteTransaction};

use synchro_model::bookkeeping::UNATTRIBUTED;
use synchro_model::{Entity, Id};

use crate::{DbError, dberr};

/// (id, policy) → the entity as that policy last handled it.
pub(crate) const POLICED_AS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("policed-as-by-policy");

/// Before several policies per kind: id → the entity as its one policy last handled it.
const LEGACY: TableDefinition<&str, &[u8]> = TableDefinition::new("policed-as");

pub(crate) type PolicedAs<'txn> = Table<'txn, (&'static str, &'static str), &'static [u8]>;

/// The entity `id` as `policy` last handled it: its own record, or one from before
/// policies could be told apart.
pub(crate) fn get(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    id: &Id,
    policy: &str,
) -> Result<Option<Entity>, DbError> {
    for by in [policy, UNATTRIBUTED] {
        if let Some(row) = table.get((id.as_str(), by)).map_err(dberr)? {
            return Ok(Some(Entity::decode(row.value())?));
        }
    }
    Ok(None)
}

/// Records `entity` as what `policy` handled of `id`, taking over the record from before
/// policies could be told apart.
pub(crate) fn put(
    table: &mut PolicedAs<'_>,
    id: &Id,
    policy: &str,
    entity: &Entity,
) -> Result<(), DbError> {
    let mut buf = Vec::new();
    entity.encode(&mut buf);
    table
        .insert((id.as_str(), policy), buf.as_slice())
        .map_err(dberr)?;
    table.remove((id.as_str(), UNATTRIBUTED)).map_err(dberr)?;
    Ok(())
}

/// Forgets every policy's record of `id` (it is purged).
pub(crate) fn remove_all(table: &mut PolicedAs<'_>, id: &Id) -> Result<(), DbError> {
    let mut policies = Vec::new();
    for row in table.range((id.as_str(), "")..).map_err(dberr)? {
        let (key, _) = row.map_err(dberr)?;
        let (of, policy) = key.value();
        if of != id.as_str() {
            break;
        }
        policies.push(policy.to_owned());
    }
    for policy in policies {
        table
            .remove((id.as_str(), policy.as_str()))
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
                .insert((id.value(), UNATTRIBUTED), entity.value())
                .map_err(dberr)?;
            moved += 1;
        }
    }
    txn.delete_table(LEGACY).map_err(dberr)?;
    Ok(Some(moved))
}
