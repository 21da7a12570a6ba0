//! The host's durable state in one embedded redb database: each collector's baseline,
//! the entity store (the model) and the outbox of changes to both. The only crate that
//! knows redb.
//!
//! redb over SQLite: it is pure Rust (no C toolchain in the build), its write
//! transactions are ACID with an fsync per commit, and the access pattern here — point
//! lookups and ordered scans by key — is exactly a B-tree's.

mod appender;
mod outbox;

use std::path::{Path, PathBuf};

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};

use synchro_model::{Entity, EntityError, ErrorKind, Hashes, Upsert};

pub use appender::{Appender, Ticket};
pub use outbox::{Cursor, Start};

/// key → canonical entity, across all plugins.
const MODEL: TableDefinition<&str, &[u8]> = TableDefinition::new("model");

/// The file inside the data directory.
const FILE: &str = "state.redb";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "the state database {0} is in use by another synchro process; stop it first, or use a different data directory"
    )]
    Locked(PathBuf),
    #[error("state database: {0}")]
    Db(#[from] redb::Error),
    #[error("cannot create the data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Corrupt(#[from] EntityError),
}

impl DbError {
    /// What kind of failure this is at a boundary.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DbError::Locked(_) => ErrorKind::Conflict,
            DbError::Db(_) | DbError::Dir { .. } | DbError::Corrupt(_) => ErrorKind::Failed,
        }
    }
}

fn dberr<E: Into<redb::Error>>(error: E) -> DbError {
    DbError::Db(error.into())
}

/// One baseline entry as `synchro baseline list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineEntry {
    pub hash: u64,
    pub entity: Entity,
}

/// What [`Db::model_put`] and [`Db::model_delete`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    /// Written, replacing `previous` if there was an entity under its key.
    Done { previous: Option<Entity> },
    /// Not written: the entity under its key may not be replaced.
    Refused,
}

pub struct Db {
    db: Database,
    outbox: outbox::Outbox,
}

/// Each plugin's baseline is its own table, so resetting one is a single table drop.
fn baseline_table(plugin: &str) -> String {
    format!("baseline/{plugin}")
}

type BaselineTable = redb::ReadOnlyTable<&'static str, (u64, &'static [u8])>;

fn baseline_def(name: &str) -> TableDefinition<'_, &'static str, (u64, &'static [u8])> {
    TableDefinition::new(name)
}

impl Db {
    /// Opens (creating if needed) the state in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Db, DbError> {
        std::fs::create_dir_all(data_dir).map_err(|source| DbError::Dir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(FILE);
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(DbError::Locked(path)),
            Err(e) => return Err(dberr(e)),
        };
        let txn = db.begin_write().map_err(dberr)?;
        txn.open_table(MODEL).map_err(dberr)?;
        txn.open_table(outbox::CHANGES).map_err(dberr)?;
        txn.open_table(outbox::CURSORS).map_err(dberr)?;
        let last = outbox::last_seq(&txn)?;
        txn.commit().map_err(dberr)?;
        Ok(Db {
            db,
            outbox: outbox::Outbox::new(last),
        })
    }

    /// Makes every earlier commit durable (the outbox's cursors are saved without an
    /// fsync of their own).
    pub fn sync(&self) -> Result<(), DbError> {
        self.db
            .begin_write()
            .map_err(dberr)?
            .commit()
            .map_err(dberr)
    }

    /// Runs `read` on the baseline table of `plugin`; a plugin never collected has no
    /// table, which reads as `empty`.
    fn read_baseline<T>(
        &self,
        plugin: &str,
        empty: T,
        read: impl FnOnce(&BaselineTable) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let name = baseline_table(plugin);
        let txn = self.db.begin_read().map_err(dberr)?;
        match txn.open_table(baseline_def(&name)) {
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
                let (key, value) = row.map_err(dberr)?;
                hashes.insert(key.value().to_owned(), value.value().0);
            }
            Ok(hashes)
        })
    }

    /// The last entities the baseline of `plugin` recorded under `keys` (to announce
    /// their deletion). Keys the baseline does not have are skipped.
    pub fn baseline_entities(&self, plugin: &str, keys: &[String]) -> Result<Vec<Entity>, DbError> {
        self.read_baseline(plugin, Vec::new(), |table| {
            let mut entities = Vec::with_capacity(keys.len());
            for key in keys {
                if let Some(value) = table.get(key.as_str()).map_err(dberr)? {
                    entities.push(Entity::decode(value.value().1)?);
                }
            }
            Ok(entities)
        })
    }

    /// Commits a diff's changes in one transaction: the plugin's baseline, the model and
    /// the outbox (`records`, the changes announced) move together, so a crash leaves all
    /// at the previous snapshot or all at this one.
    pub fn commit_collect(
        &self,
        plugin: &str,
        upserts: &[Upsert],
        deletes: &[String],
        records: &[Vec<u8>],
    ) -> Result<(), DbError> {
        let name = baseline_table(plugin);
        let txn = self.db.begin_write().map_err(dberr)?;
        {
            let mut baseline = txn.open_table(baseline_def(&name)).map_err(dberr)?;
            let mut model = txn.open_table(MODEL).map_err(dberr)?;
            let mut buf = Vec::new();
            for upsert in upserts {
                buf.clear();
                upsert.entity.encode(&mut buf);
                baseline
                    .insert(upsert.entity.key(), (upsert.hash, buf.as_slice()))
                    .map_err(dberr)?;
                model
                    .insert(upsert.entity.key(), buf.as_slice())
                    .map_err(dberr)?;
            }
            for key in deletes {
                baseline.remove(key.as_str()).map_err(dberr)?;
                model.remove(key.as_str()).map_err(dberr)?;
            }
        }
        let last = outbox::append(&txn, records.iter().map(Vec::as_slice))?;
        txn.commit().map_err(dberr)?;
        self.outbox.committed(last);
        Ok(())
    }

    /// Every entry of the baseline of `plugin`, in key order (Vitrage's "get all").
    pub fn list_baseline(&self, plugin: &str) -> Result<Vec<BaselineEntry>, DbError> {
        self.read_baseline(plugin, Vec::new(), |table| {
            let mut entries = Vec::new();
            for row in table.iter().map_err(dberr)? {
                let (_, value) = row.map_err(dberr)?;
                let (hash, bytes) = value.value();
                entries.push(BaselineEntry {
                    hash,
                    entity: Entity::decode(bytes)?,
                });
            }
            Ok(entries)
        })
    }

    /// Forgets the baseline of `plugin`, so its next collect announces everything as
    /// CREATE. The model keeps its entities. Returns how many entries were dropped.
    pub fn reset_baseline(&self, plugin: &str) -> Result<u64, DbError> {
        let name = baseline_table(plugin);
        let txn = self.db.begin_write().map_err(dberr)?;
        let dropped = match txn.open_table(baseline_def(&name)) {
            Ok(table) => table.len().map_err(dberr)?,
            Err(e) => return Err(dberr(e)),
        };
        txn.delete_table(baseline_def(&name)).map_err(dberr)?;
        txn.commit().map_err(dberr)?;
        Ok(dropped)
    }

    /// The plugins that have a baseline.
    pub fn baselines(&self) -> Result<Vec<String>, DbError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let names = txn.list_tables().map_err(dberr)?;
        Ok(names
            .filter_map(|t| t.name().strip_prefix("baseline/").map(str::to_owned))
            .collect())
    }

    /// The model's entity under `key`.
    pub fn model_get(&self, key: &str) -> Result<Option<Entity>, DbError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let table = txn.open_table(MODEL).map_err(dberr)?;
        let found = table.get(key).map_err(dberr)?;
        Ok(match found {
            Some(value) => Some(Entity::decode(value.value())?),
            None => None,
        })
    }

    /// Up to `limit` entities of `kind` (any kind when `None`) with keys after
    /// `after_key`, in key order. Scans the model: fine for the sizes plugins page through.
    pub fn model_query(
        &self,
        kind: Option<&str>,
        after_key: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entity>, DbError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let table = txn.open_table(MODEL).map_err(dberr)?;
        let range = match after_key {
            Some(after) => {
                table.range::<&str>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            }
            None => table.range::<&str>(..),
        }
        .map_err(dberr)?;
        let mut out = Vec::new();
        for row in range {
            if out.len() >= limit {
                break;
            }
            let (_, value) = row.map_err(dberr)?;
            let entity = Entity::decode(value.value())?;
            if kind.is_none_or(|k| k == entity.kind()) {
                out.push(entity);
            }
        }
        Ok(out)
    }

    /// Writes `entity` into the model unless it would replace an entity that
    /// `may_replace` refuses, and appends the change `record` makes of the entity it
    /// replaces (`None`: nothing to announce), in one transaction: what is checked is what
    /// is replaced, and what is written is announced.
    pub fn model_put(
        &self,
        entity: &Entity,
        may_replace: impl FnOnce(&Entity) -> bool,
        record: impl FnOnce(Option<&Entity>) -> Option<Vec<u8>>,
    ) -> Result<Write, DbError> {
        let txn = self.db.begin_write().map_err(dberr)?;
        let previous = {
            let mut table = txn.open_table(MODEL).map_err(dberr)?;
            let existing = match table.get(entity.key()).map_err(dberr)? {
                Some(bytes) => Some(Entity::decode(bytes.value())?),
                None => None,
            };
            if existing.as_ref().is_some_and(|e| !may_replace(e)) {
                return Ok(Write::Refused);
            }
            table
                .insert(entity.key(), entity.to_canonical().as_slice())
                .map_err(dberr)?;
            existing
        };
        self.commit_with(txn, record(previous.as_ref()))?;
        Ok(Write::Done { previous })
    }

    /// Removes `key` from the model unless `may_delete` refuses the entity there, and
    /// appends the change `record` makes of it, in one transaction.
    pub fn model_delete(
        &self,
        key: &str,
        may_delete: impl FnOnce(&Entity) -> bool,
        record: impl FnOnce(&Entity) -> Vec<u8>,
    ) -> Result<Write, DbError> {
        let txn = self.db.begin_write().map_err(dberr)?;
        let previous = {
            let mut table = txn.open_table(MODEL).map_err(dberr)?;
            let existing = match table.get(key).map_err(dberr)? {
                Some(bytes) => Entity::decode(bytes.value())?,
                None => return Ok(Write::Done { previous: None }),
            };
            if !may_delete(&existing) {
                return Ok(Write::Refused);
            }
            table.remove(key).map_err(dberr)?;
            existing
        };
        self.commit_with(txn, Some(record(&previous)))?;
        Ok(Write::Done {
            previous: Some(previous),
        })
    }

    /// Appends `record` (if any) to the outbox in `txn`, then commits.
    fn commit_with(
        &self,
        txn: redb::WriteTransaction,
        record: Option<Vec<u8>>,
    ) -> Result<(), DbError> {
        let last = outbox::append(&txn, record.as_deref())?;
        txn.commit().map_err(dberr)?;
        self.outbox.committed(last);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use synchro_model::{Completeness, Diff, Outcome};

    fn entity(key: &str, props: &str) -> Entity {
        Entity::new(key.into(), "pserver".into(), props.into(), None, None).unwrap()
    }

    fn collect(state: &Db, snapshot: &[(&str, &str)]) -> Outcome {
        let mut diff = Diff::new(state.load_baseline("p").unwrap());
        for (key, props) in snapshot {
            diff.add(entity(key, props)).unwrap();
        }
        diff.finish(Completeness::Complete)
    }

    #[test]
    fn a_restart_emits_nothing_for_unchanged_data() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = Db::open(dir.path()).unwrap();
            let outcome = collect(&state, &[("a", "{}"), ("b", r#"{"x":1}"#)]);
            assert_eq!(outcome.upserts.len(), 2);
            state
                .commit_collect("p", &outcome.upserts, &outcome.deletes, &[])
                .unwrap();
        }
        let state = Db::open(dir.path()).unwrap();
        let outcome = collect(&state, &[("b", r#"{"x":1}"#), ("a", "{}")]);
        assert!(outcome.is_empty(), "no CREATE storm after a restart");
        assert_eq!(
            state.model_get("b").unwrap().unwrap().properties(),
            r#"{"x":1}"#
        );
    }

    #[test]
    fn a_crash_before_the_commit_finds_that_batch_again() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = Db::open(dir.path()).unwrap();
            let first = collect(&state, &[("a", "{}"), ("b", "{}")]);
            state
                .commit_collect("p", &first.upserts, &first.deletes, &[])
                .unwrap();
            // The second batch is diffed, then the host dies before committing.
            let second = collect(&state, &[("a", r#"{"v":2}"#)]);
            assert_eq!(second.upserts.len() + second.deletes.len(), 2);
        }
        let state = Db::open(dir.path()).unwrap();
        let again = collect(&state, &[("a", r#"{"v":2}"#)]);
        assert_eq!(again.upserts.len(), 1, "the UPDATE is announced again");
        assert_eq!(again.deletes, ["b"], "the DELETE is announced again");
        let gone = state.baseline_entities("p", &again.deletes).unwrap();
        assert_eq!(gone[0].key(), "b", "a DELETE carries the last known entity");
        state
            .commit_collect("p", &again.upserts, &again.deletes, &[])
            .unwrap();
        assert!(collect(&state, &[("a", r#"{"v":2}"#)]).is_empty());
    }

    #[test]
    fn list_and_reset_a_baseline() {
        let dir = tempfile::tempdir().unwrap();
        let state = Db::open(dir.path()).unwrap();
        let outcome = collect(&state, &[("b", "{}"), ("a", r#"{"x":1}"#)]);
        state
            .commit_collect("p", &outcome.upserts, &outcome.deletes, &[])
            .unwrap();
        let listed = state.list_baseline("p").unwrap();
        assert_eq!(
            listed.iter().map(|e| e.entity.key()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(state.baselines().unwrap(), ["p"]);
        assert_eq!(state.reset_baseline("p").unwrap(), 2);
        assert!(state.load_baseline("p").unwrap().is_empty());
        assert_eq!(
            collect(&state, &[("a", r#"{"x":1}"#)]).upserts.len(),
            1,
            "reset forces a full re-emit"
        );
        assert!(
            state.model_get("a").unwrap().is_some(),
            "the model keeps its entities"
        );
    }

    #[test]
    fn a_second_process_is_told_the_database_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Db::open(dir.path()).unwrap();
        let error = Db::open(dir.path()).err().unwrap();
        assert!(
            error
                .to_string()
                .contains("in use by another synchro process"),
            "{error}"
        );
    }

    #[test]
    fn model_query_pages_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let state = Db::open(dir.path()).unwrap();
        for (key, kind) in [("a", "x"), ("b", "y"), ("c", "x"), ("d", "x")] {
            state
                .model_put(
                    &Entity::new(key.into(), kind.into(), "{}".into(), None, None).unwrap(),
                    |_| true,
                    |_| None,
                )
                .unwrap();
        }
        let keys = |v: Vec<Entity>| v.iter().map(|e| e.key().to_owned()).collect::<Vec<_>>();
        assert_eq!(
            keys(state.model_query(Some("x"), None, 2).unwrap()),
            ["a", "c"]
        );
        assert_eq!(
            keys(state.model_query(Some("x"), Some("c"), 2).unwrap()),
            ["d"]
        );
        let deleted = state.model_delete("a", |_| true, |_| Vec::new()).unwrap();
        assert!(matches!(deleted, Write::Done { previous: Some(e) } if e.key() == "a"));
        assert_eq!(
            keys(state.model_query(None, None, 10).unwrap()),
            ["b", "c", "d"]
        );
    }

    #[test]
    fn a_write_and_its_change_commit_together_in_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(Db::open(dir.path()).unwrap());
        let mut reader = state.cursor("r", Start::Saved).unwrap();
        let outcome = collect(&state, &[("a", "{}")]);
        state
            .commit_collect("p", &outcome.upserts, &[], &[b"create a".to_vec()])
            .unwrap();
        let write = state
            .model_put(
                &entity("b", "{}"),
                |_| true,
                |previous| {
                    assert!(previous.is_none());
                    Some(b"create b".to_vec())
                },
            )
            .unwrap();
        assert_eq!(write, Write::Done { previous: None });
        // Refused: neither the write nor its change.
        let refused = state
            .model_put(
                &entity("b", r#"{"x":1}"#),
                |_| false,
                |_| Some(b"no".to_vec()),
            )
            .unwrap();
        assert_eq!(refused, Write::Refused);
        assert_eq!(state.model_get("b").unwrap().unwrap().properties(), "{}");
        // Unchanged: written, nothing announced.
        state
            .model_put(&entity("b", "{}"), |_| true, |_| None)
            .unwrap();
        state
            .model_delete("b", |_| true, |_| b"delete b".to_vec())
            .unwrap();
        state.append_changes(&[b"emitted".to_vec()]).unwrap();
        assert_eq!(state.last_change(), 4);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let seen = runtime.block_on(reader.next_batch(10)).unwrap();
        assert_eq!(
            seen,
            [
                (1, b"create a".to_vec()),
                (2, b"create b".to_vec()),
                (3, b"delete b".to_vec()),
                (4, b"emitted".to_vec())
            ]
        );
        drop(reader);
        assert!(
            state.cursor("fresh", Start::Saved).unwrap().position() == 4,
            "a new reader starts at the end"
        );
        drop(state);
        // The numbering survives a restart.
        let state = Db::open(dir.path()).unwrap();
        assert_eq!(state.last_change(), 4);
    }

    #[test]
    fn a_reader_resumes_after_what_it_handled_and_trimming_keeps_what_it_has_not() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        {
            let state = Arc::new(Db::open(dir.path()).unwrap());
            let mut slow = state.cursor("slow", Start::Saved).unwrap();
            let mut fast = state.cursor("fast", Start::Saved).unwrap();
            for i in 0..5u8 {
                state.append_changes(&[vec![i]]).unwrap();
            }
            runtime.block_on(async {
                let all = fast.next_batch(100).await.unwrap();
                assert_eq!(
                    all.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
                    [1, 2, 3, 4, 5]
                );
                fast.handled(5).await.unwrap();
                let two = slow.next_batch(2).await.unwrap();
                assert_eq!(two, [(1, vec![0]), (2, vec![1])]);
                slow.handled(2).await.unwrap();
            });
            assert_eq!(
                state.trim_changes().unwrap(),
                2,
                "what the slow reader passed"
            );
            drop(slow);
            drop(fast);
            state.sync().unwrap();
        }
        let state = Arc::new(Db::open(dir.path()).unwrap());
        let mut slow = state.cursor("slow", Start::Saved).unwrap();
        assert_eq!(slow.position(), 2);
        let rest = runtime.block_on(slow.next_batch(100)).unwrap();
        assert_eq!(rest.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 4, 5]);
        // Trimmed to nothing, the numbering goes on.
        runtime.block_on(slow.handled(5)).unwrap();
        assert_eq!(state.trim_changes().unwrap(), 3);
        assert_eq!(state.append_changes(&[vec![9]]).unwrap(), 6);
    }

    #[test]
    fn queued_changes_are_durable_when_their_ticket_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Db::open(dir.path()).unwrap());
        let appender = Appender::new(state.clone());
        runtime.block_on(async {
            let mut last = 0;
            for i in 0..1000u32 {
                last = appender.append(i.to_le_bytes().to_vec()).await;
            }
            assert_eq!(last, 1000);
            assert_eq!(appender.issued(), 1000);
            appender.durable(last).await;
            assert!(appender.written() >= 1000);
        });
        assert_eq!(
            state.last_change(),
            1000,
            "every record, in as many transactions as it took"
        );
    }
}
