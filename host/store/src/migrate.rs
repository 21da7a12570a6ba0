//! Migrations of state written by an older host, each run when the database is opened, in
//! its opening transaction.
//!
//! - [`unowned_model`]: before entities had owners, the model was one table keyed by the
//!   entity key alone (`model`: key → canonical entity) and each baseline was keyed by key
//!   too. Both are re-keyed by id (kind and key; the stored entity names its kind). An
//!   entity's owner is the collector whose baseline holds it (when several do, because one
//!   overwrote the other, the one whose baseline matches what the model holds). An entity
//!   in no baseline was written through `store` by a plugin nobody recorded: it is left
//!   unclaimed, and the next plugin permitted to write its kind claims it.
//! - [`canonical_form`]: when the canonical form changes (numbers by value, say), every
//!   stored entity is written in the new form and every baseline hash recomputed, so an
//!   upgrade re-announces nothing: a collect after it finds exactly what changed outside.

use std::collections::HashMap;

use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};

use synchro_model::{Entity, Id};

use crate::{DbError, baseline, dberr, model, outbox};

/// The canonical form this host writes: 1 wrote numbers as serde_json does, 2 by value
/// (`synchro_model`'s canonical module). Stored in `meta`.
///
/// [`canonical_form`] rewrites the baselines and the model's entities, the only tables
/// that held entities under form 1. The sources' contributions and what each policy last
/// handled hold entities too, written only under form 2: a form 3 must rewrite them as
/// well, since [`Entity::decode`] takes a stored form as it is.
const CANONICAL_FORM: u64 = 2;
const CANONICAL_FORM_KEY: &str = "canonical-form";

/// The model before owners: key → canonical entity.
const UNOWNED: TableDefinition<&str, &[u8]> = TableDefinition::new("model");

/// What a migration moved.
pub(crate) struct Migrated {
    pub entities: u64,
    pub unclaimed: u64,
    pub baselines: usize,
}

/// Migrates state in `txn` if it is from before owners; `None` if it is not.
pub(crate) fn unowned_model(txn: &WriteTransaction) -> Result<Option<Migrated>, DbError> {
    let tables: Vec<String> = txn
        .list_tables()
        .map_err(dberr)?
        .map(|t| t.name().to_owned())
        .collect();
    if !tables.iter().any(|t| t == UNOWNED.name()) {
        return Ok(None);
    }
    let mut plugins: Vec<&str> = tables
        .iter()
        .filter_map(|t| baseline::plugin_of(t))
        .collect();
    plugins.sort_unstable();
    // id → every (plugin, hash) whose baseline holds it.
    let mut holders: HashMap<Id, Vec<(String, u64)>> = HashMap::new();
    let mut buf = Vec::new();
    for plugin in &plugins {
        let name = baseline::table_name(plugin);
        let rows = {
            let table = txn.open_table(baseline::def(&name)).map_err(dberr)?;
            let mut rows = Vec::new();
            for row in table.iter().map_err(dberr)? {
                let (_, value) = row.map_err(dberr)?;
                let (hash, bytes) = value.value();
                rows.push((hash, bytes.to_vec()));
            }
            rows
        };
        txn.delete_table(baseline::def(&name)).map_err(dberr)?;
        let mut table = txn.open_table(baseline::def(&name)).map_err(dberr)?;
        for (hash, bytes) in rows {
            let id = Entity::decode_older(&bytes)?.into_id();
            table
                .insert(id.as_str(), (hash, bytes.as_slice()))
                .map_err(dberr)?;
            holders
                .entry(id)
                .or_default()
                .push((plugin.to_string(), hash));
        }
    }
    let mut migrated = Migrated {
        entities: 0,
        unclaimed: 0,
        baselines: plugins.len(),
    };
    {
        let old = txn.open_table(UNOWNED).map_err(dberr)?;
        let mut new = txn.open_table(model::ENTITIES).map_err(dberr)?;
        for row in old.iter().map_err(dberr)? {
            let (_, value) = row.map_err(dberr)?;
            let entity = Entity::decode_older(value.value())?;
            let hash = entity.hash_with(&mut buf);
            let owner = holders.get(entity.id()).and_then(|held| {
                held.iter()
                    .find(|(_, h)| *h == hash)
                    .or(held.first())
                    .map(|(plugin, _)| plugin.as_str())
            });
            migrated.entities += 1;
            migrated.unclaimed += u64::from(owner.is_none());
            new.insert(entity.id().as_str(), (owner.unwrap_or(""), value.value()))
                .map_err(dberr)?;
        }
    }
    txn.delete_table(UNOWNED).map_err(dberr)?;
    Ok(Some(migrated))
}

/// Rewrites every stored entity in today's canonical form if the database was written in
/// another; returns how many entities were rewritten.
pub(crate) fn canonical_form(txn: &WriteTransaction) -> Result<Option<u64>, DbError> {
    let mut meta = txn.open_table(outbox::META).map_err(dberr)?;
    let stored = meta
        .get(CANONICAL_FORM_KEY)
        .map_err(dberr)?
        .map(|v| v.value());
    if stored == Some(CANONICAL_FORM) {
        return Ok(None);
    }
    meta.insert(CANONICAL_FORM_KEY, CANONICAL_FORM)
        .map_err(dberr)?;
    let mut rewritten = 0;
    let mut buf = Vec::new();
    let tables: Vec<String> = txn
        .list_tables()
        .map_err(dberr)?
        .map(|t| t.name().to_owned())
        .filter(|name| baseline::plugin_of(name).is_some())
        .collect();
    for name in &tables {
        let mut table = txn.open_table(baseline::def(name)).map_err(dberr)?;
        let mut rows = Vec::new();
        for row in table.iter().map_err(dberr)? {
            let (id, value) = row.map_err(dberr)?;
            rows.push((
                id.value().to_owned(),
                Entity::decode_older(value.value().1)?,
            ));
        }
        for (id, entity) in rows {
            let hash = entity.hash_with(&mut buf);
            table
                .insert(id.as_str(), (hash, buf.as_slice()))
                .map_err(dberr)?;
            rewritten += 1;
        }
    }
    let mut entities = txn.open_table(model::ENTITIES).map_err(dberr)?;
    let mut rows = Vec::new();
    for row in entities.iter().map_err(dberr)? {
        let (id, value) = row.map_err(dberr)?;
        let (owner, bytes) = value.value();
        rows.push((
            id.value().to_owned(),
            owner.to_owned(),
            Entity::decode_older(bytes)?,
        ));
    }
    for (id, owner, entity) in rows {
        entities
            .insert(
                id.as_str(),
                (owner.as_str(), entity.to_canonical().as_slice()),
            )
            .map_err(dberr)?;
        rewritten += 1;
    }
    Ok(Some(rewritten))
}
