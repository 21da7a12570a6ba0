//! Several sources of one entity, reconciled by the operator's priority — ServiceNow's
//! Identification and Reconciliation Engine in miniature.
//!
//! For a kind the host config ranks sources for (`[sources] pserver = ["cmdb",
//! "discovery"]`, highest first), each ranked source's last write of an entity is kept
//! as its *contribution*, and the model's entity is their merge: each top-level property
//! from the highest-ranked source that has it, the edge ends and schema version from the
//! highest-ranked source. The highest-ranked contributor owns it. A lower source's write
//! is never lost: it is kept, shown (`synchro model get`), and takes over what it says
//! when a higher source stops saying it. The entity is deleted when its last contributor
//! deletes it. A source contributes alike whether it writes by snapshot (a collector's
//! commit) or through `store` (an event step, later the API); a policy's or a step's
//! write is not a source's and writes the model's entity itself.
//!
//! Kinds without a ranking keep the first-writer-wins ownership of the model.

use std::collections::BTreeMap;
use std::ops::Bound;

use redb::{ReadableTable, Table, TableDefinition};
use serde_json::{Map, Value};

use synchro_model::{Entity, EntityError, Id};

use crate::{DbError, dberr};

/// (id, plugin) → that source's last write of the entity, canonical.
pub(crate) const CONTRIBUTIONS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("contributions");

pub(crate) type Contributions<'txn> = Table<'txn, (&'static str, &'static str), &'static [u8]>;

/// The operator's ranking of sources, per kind: plugin names, highest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources(BTreeMap<String, Vec<String>>);

impl Sources {
    /// A ranking per kind; a list must name each plugin once.
    pub fn new(ranking: BTreeMap<String, Vec<String>>) -> Result<Sources, String> {
        for (kind, plugins) in &ranking {
            if plugins.is_empty() {
                return Err(format!("`{kind}`: list at least one plugin"));
            }
            if let Some(twice) = plugins
                .iter()
                .enumerate()
                .find_map(|(i, p)| plugins[..i].contains(p).then_some(p))
            {
                return Err(format!("`{kind}`: plugin `{twice}` is listed twice"));
            }
        }
        Ok(Sources(ranking))
    }

    /// Where `plugin` ranks among the sources of `kind` (0 is the highest); `None` when
    /// the kind has no ranking or does not name it.
    pub(crate) fn rank(&self, kind: &str, plugin: &str) -> Option<usize> {
        self.0.get(kind)?.iter().position(|p| p == plugin)
    }
}

/// What the model holds after a source's write: the merge and its owner, or nothing
/// (the last contributor deleted it).
pub(crate) enum Reconciled {
    Merged { owner: String, entity: Entity },
    Gone,
}

/// Records `plugin`'s write of `id` (`None`: its deletion), and returns the merge of
/// every contribution.
pub(crate) fn contribute(
    table: &mut Contributions<'_>,
    sources: &Sources,
    id: &Id,
    plugin: &str,
    entity: Option<&Entity>,
) -> Result<Reconciled, DbError> {
    match entity {
        Some(entity) => {
            table
                .insert((id.as_str(), plugin), entity.to_canonical().as_slice())
                .map_err(dberr)?;
        }
        None => {
            table.remove((id.as_str(), plugin)).map_err(dberr)?;
        }
    }
    let mut ranked = Vec::new();
    for (plugin, entity) in of(table, id)? {
        // A source the operator no longer ranks comes last, in name order.
        let rank = sources.rank(id.kind(), &plugin).unwrap_or(usize::MAX);
        ranked.push((rank, plugin, entity));
    }
    ranked.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let Some((_, owner, top)) = ranked.first() else {
        return Ok(Reconciled::Gone);
    };
    let mut properties = Map::new();
    for (_, _, entity) in ranked.iter().rev() {
        if let Value::Object(map) = serde_json::from_str(entity.properties())
            .map_err(|e| DbError::Corrupt(EntityError::Corrupt(e.to_string())))?
        {
            properties.extend(map);
        }
    }
    let (key, kind, _, schema_version, edge) = top.clone().into_parts();
    let entity = Entity::new(
        key,
        kind,
        Value::Object(properties).to_string(),
        schema_version,
        edge,
    )?;
    Ok(Reconciled::Merged {
        owner: owner.clone(),
        entity,
    })
}

/// Every source's contribution to `id`, by plugin name.
pub(crate) fn of(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    id: &Id,
) -> Result<Vec<(String, Entity)>, DbError> {
    let range = (
        Bound::Included((id.as_str(), "")),
        Bound::Unbounded::<(&str, &str)>,
    );
    let mut found = Vec::new();
    for row in table.range::<(&str, &str)>(range).map_err(dberr)? {
        let (key, value) = row.map_err(dberr)?;
        let (of_id, plugin) = key.value();
        if of_id != id.as_str() {
            break;
        }
        found.push((plugin.to_owned(), Entity::decode(value.value())?));
    }
    Ok(found)
}
