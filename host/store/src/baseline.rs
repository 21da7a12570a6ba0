//! Each collector's baseline: the entities of its last committed snapshot, by id, with
//! the hash the next snapshot is diffed against. Written only by
//! [`Db::commit_collect`](crate::Db::commit_collect), with the model.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};

use synchro_model::{Entity, Hashes, Id};

use crate::{Db, DbError, dberr};

/// One baseline entry as `synchro baseline list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineEntry {
    pub hash: u64,
    pub entity: Entity,
}

const PREFIX: &str = "baseline/";

/// Each plugin's baseline is its own table, so resetting one is a single table drop.
pub(crate) fn table_name(plugin: &str) -> String {
    format!("{PREFIX}{plugin}")
}

/// id (see [`Id::as_str`]) → (hash, canonical entity).
pub(crate) type Row = (u64, &'static [u8]);

pub(crate) fn def(name: &str) -> TableDefinition<'_, &'static str, Row> {
    TableDefinition::new(name)
}

/// The plugin whose baseline the table `name` is, if it is one.
pub(crate) fn plugin_of(name: &str) -> Option<&str> {
    name.strip_prefix(PREFIX)
}

type ReadTable = redb::ReadOnlyTable<&'static str, Row>;

impl Db {
    /// Runs `read` on the baseline table of `plugin`; a plugin never collected has no
    /// table, which reads as `empty`.
    fn read_baseline<T>(
        &self,
        plugin: &str,
        empty: T,
        read: impl FnOnce(&ReadTable) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let name = table_name(plugin);
        let txn = self.db.begin_read().map_err(dberr)?;
        match txn.open_table(def(&name)) {
            Ok(table) => read(&table),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(empty),
            Err(e) => Err(dberr(e)),
        }
    }

    /// The baseline hashes of `plugin` (empty for a plugin never collected).
    pub fn load_baseline(&self, plugin: &str) -> Result<Hashes, DbError> {
        self.read_baseline(plugin, Hashes::default(), |table| {
            let mut hashes = Hashes::with_capacity_and_hasher(
                table.len().map_err(dberr)? as usize,
                Default::default(),
            );
            for row in table.iter().map_err(dberr)? {
                let (id, value) = row.map_err(dberr)?;
                let id = Id::parse(id.value().to_owned()).ok_or_else(|| {
                    synchro_model::EntityError::Corrupt(format!(
                        "baseline of {plugin}: a row is not keyed by kind and key"
                    ))
                })?;
                hashes.insert(id, value.value().0);
            }
            Ok(hashes)
        })
    }

    /// Every entry of the baseline of `plugin`, by kind, then key.
    pub fn list_baseline(&self, plugin: &str) -> Result<Vec<BaselineEntry>, DbError> {
        self.baseline_page(plugin, None, None, usize::MAX)
    }

    /// Up to `limit` entries of the baseline of `plugin`, of `kind` (every kind when
    /// `None`), after the entity `after`, by kind, then key: a page of
    /// [`Db::list_baseline`].
    pub fn baseline_page(
        &self,
        plugin: &str,
        kind: Option<&str>,
        after: Option<&Id>,
        limit: usize,
    ) -> Result<Vec<BaselineEntry>, DbError> {
        let first_of_kind = kind.map(|k| Id::new(k, ""));
        let Some(lower) = crate::model::lower_bound(kind, first_of_kind.as_ref(), after) else {
            return Ok(Vec::new());
        };
        self.read_baseline(plugin, Vec::new(), |table| {
            let mut entries = Vec::new();
            for row in table
                .range::<&str>((lower, std::ops::Bound::Unbounded))
                .map_err(dberr)?
                .take(limit)
            {
                let (_, value) = row.map_err(dberr)?;
                let (hash, bytes) = value.value();
                let entity = Entity::decode(bytes)?;
                if kind.is_some_and(|k| k != entity.kind()) {
                    break;
                }
                entries.push(BaselineEntry { hash, entity });
            }
            Ok(entries)
        })
    }

    /// Forgets the baseline of `plugin`, so its next collect announces everything as
    /// CREATE. The model keeps its entities, still owned by `plugin`. Returns how many
    /// entries were dropped.
    pub fn reset_baseline(&self, plugin: &str) -> Result<u64, DbError> {
        let name = table_name(plugin);
        let txn = self.begin_write()?;
        let dropped = match txn.open_table(def(&name)) {
            Ok(table) => table.len().map_err(dberr)?,
            Err(e) => return Err(dberr(e)),
        };
        txn.delete_table(def(&name)).map_err(dberr)?;
        txn.commit().map_err(dberr)?;
        Ok(dropped)
    }

    /// The plugins that have a baseline.
    pub fn baselines(&self) -> Result<Vec<String>, DbError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let tables = txn.list_tables().map_err(dberr)?;
        Ok(tables
            .filter_map(|t| plugin_of(t.name()).map(str::to_owned))
            .collect())
    }
}
