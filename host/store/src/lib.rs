//! The host's durable state in one embedded redb database: each collector's baseline,
//! the entity store (the model) and the outbox of changes to both. The only crate that
//! knows redb.
//!
//! redb over SQLite: it is pure Rust (no C toolchain in the build), its write
//! transactions are ACID with an fsync per commit, and the access pattern here — point
//! lookups and ordered scans by key — is exactly a B-tree's.

mod api;
mod appender;
mod baseline;
mod bookkeeping;
mod edges;
mod graph;
mod migrate;
mod model;
mod outbox;
mod policed;
mod snapshot;
mod sources;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::Database;

use synchro_model::{EntityError, ErrorKind};

pub use api::{ApiRefusal, ApiResult, ApiWrite, Applied, merge_patch};
pub use appender::{Appender, Ticket};
pub use baseline::BaselineEntry;
pub use graph::{Cascaded, GraphRefusal};
pub use model::{
    Collected, Enacted, Planned, Policed, Recorded, Refusal, Stored, Swept, Write, Writer,
};
pub use outbox::{Cursor, Retention, Start, wait_handled};
pub use sources::Sources;

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

pub struct Db {
    db: snapshot::Store,
    outbox: outbox::Outbox,
    /// The operator's ranking of the sources of kinds several plugins describe.
    sources: std::sync::RwLock<Arc<Sources>>,
    /// The kinds a model policy runs for.
    policies: std::sync::RwLock<model::Policies>,
}

impl Db {
    /// Opens (creating if needed) the state in `data_dir`. State written by a synchro
    /// whose model had no owners is migrated in the same transaction.
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
        let db = snapshot::Store::new(db);
        let txn = db.begin_write()?;
        if let Some(migrated) = migrate::unowned_model(&txn)? {
            tracing::info!(
                path = %path.display(),
                entities = migrated.entities,
                unclaimed = migrated.unclaimed,
                baselines = migrated.baselines,
                "state migrated: entities are identified by kind and key and have owners"
            );
        }
        if let Some(rewritten) = migrate::canonical_form(&txn)?
            && rewritten > 0
        {
            tracing::info!(
                path = %path.display(),
                rewritten,
                "state migrated: stored entities rewritten in today's canonical form (numbers by value)"
            );
        }
        txn.open_table(model::ENTITIES).map_err(dberr)?;
        if let Some(indexed) = edges::build_if_missing(&txn)?
            && indexed > 0
        {
            tracing::info!(path = %path.display(), indexed, "state migrated: edges indexed by their ends");
        }
        txn.open_table(bookkeeping::BOOKKEEPING).map_err(dberr)?;
        if let Some(moved) = policed::migrate(&txn)? {
            tracing::info!(path = %path.display(), moved, "state migrated: what a policy handled is kept per policy");
        }
        txn.open_table(sources::CONTRIBUTIONS).map_err(dberr)?;
        txn.open_table(outbox::CHANGES).map_err(dberr)?;
        txn.open_table(outbox::CURSORS).map_err(dberr)?;
        let last = outbox::last_seq(&txn)?;
        txn.commit().map_err(dberr)?;
        Ok(Db {
            db,
            outbox: outbox::Outbox::new(last),
            sources: Default::default(),
            policies: Default::default(),
        })
    }

    /// A write transaction; its commit makes the shared read stale.
    pub(crate) fn begin_write(&self) -> Result<snapshot::WriteTxn<'_>, DbError> {
        self.db.begin_write()
    }

    /// Ranks the sources of kinds several plugins describe (the host config's
    /// `[sources]`); see `sources`.
    pub fn set_sources(&self, sources: Sources) {
        *self.sources.write().expect("sources lock") = Arc::new(sources);
    }

    pub(crate) fn policies(&self) -> model::Policies {
        self.policies.read().expect("policies lock").clone()
    }

    pub(crate) fn sources(&self) -> Arc<Sources> {
        self.sources.read().expect("sources lock").clone()
    }

    /// Makes every earlier commit durable (the outbox's cursors are saved without an
    /// fsync of their own, and the API's writes may be), and announces their changes.
    pub fn sync(&self) -> Result<(), DbError> {
        let txn = self.begin_write()?;
        let last = outbox::last_seq(&txn)?;
        txn.commit().map_err(dberr)?;
        self.outbox.committed(last);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use synchro_model::{Completeness, Diff, Entity, Id, Operation, Outcome};

    fn entity(key: &str, props: &str) -> Entity {
        Entity::new(key.into(), "pserver".into(), props.into(), None, None).unwrap()
    }

    fn id(key: &str) -> Id {
        Id::new("pserver", key)
    }

    /// Plugins' readers held `max_plugin_lag` behind at most; no window.
    fn lag(max_plugin_lag: u64) -> Retention {
        Retention {
            max_plugin_lag,
            window: 0,
        }
    }

    fn collect_as(state: &Db, plugin: &str, snapshot: &[(&str, &str)]) -> Outcome {
        let mut diff = Diff::new(state.load_baseline(plugin).unwrap());
        for (key, props) in snapshot {
            diff.add(entity(key, props)).unwrap();
        }
        diff.finish(Completeness::Complete)
    }

    fn collect(state: &Db, snapshot: &[(&str, &str)]) -> Outcome {
        collect_as(state, "p", snapshot)
    }

    /// Commits `outcome` for `plugin`, recording each change as `OP key`.
    fn commit(state: &Db, plugin: &str, outcome: &Outcome) -> Collected {
        state
            .commit_collect(plugin, &outcome.upserts, &outcome.deletes, true, |op, e| {
                format!("{} {}", op.as_str(), e.key()).into_bytes()
            })
            .unwrap()
    }

    fn source(plugin: &str) -> Writer<'_> {
        Writer {
            plugin,
            acting: synchro_model::Acting::Source,
            handling: None,
        }
    }

    fn put(state: &Db, writer: &str, e: &Entity) -> Write {
        state
            .model_put(source(writer), e, |_, _| Vec::new())
            .unwrap()
    }

    fn props(state: &Db, id: &Id) -> Option<String> {
        let stored = state.model_get(id).unwrap();
        stored.map(|s| s.entity.properties().to_owned())
    }

    #[test]
    fn a_restart_emits_nothing_for_unchanged_data() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = Db::open(dir.path()).unwrap();
            let outcome = collect(&state, &[("a", "{}"), ("b", r#"{"x":1}"#)]);
            assert_eq!(outcome.upserts.len(), 2);
            commit(&state, "p", &outcome);
        }
        let state = Db::open(dir.path()).unwrap();
        let outcome = collect(&state, &[("b", r#"{"x":1}"#), ("a", "{}")]);
        assert!(outcome.is_empty(), "no CREATE storm after a restart");
        assert_eq!(props(&state, &id("b")).unwrap(), r#"{"x":1}"#);
        let owner = state.model_get(&id("b")).unwrap().unwrap().owner;
        assert_eq!(owner.as_deref(), Some("p"));
    }

    #[test]
    fn a_crash_before_the_commit_finds_that_batch_again() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = Db::open(dir.path()).unwrap();
            let first = collect(&state, &[("a", "{}"), ("b", "{}")]);
            commit(&state, "p", &first);
            // The second batch is diffed, then the host dies before committing.
            let second = collect(&state, &[("a", r#"{"v":2}"#)]);
            assert_eq!(second.upserts.len() + second.deletes.len(), 2);
        }
        let state = Db::open(dir.path()).unwrap();
        let again = collect(&state, &[("a", r#"{"v":2}"#)]);
        assert_eq!(again.upserts.len(), 1, "the UPDATE is announced again");
        assert_eq!(again.deletes, [id("b")], "the DELETE is announced again");
        let mut recorded = Vec::new();
        state
            .commit_collect("p", &again.upserts, &again.deletes, true, |op, e| {
                recorded.push((op, e.clone()));
                Vec::new()
            })
            .unwrap();
        assert_eq!(
            recorded[1],
            (Operation::Delete, entity("b", "{}")),
            "a DELETE carries the last known entity"
        );
        assert!(collect(&state, &[("a", r#"{"v":2}"#)]).is_empty());
    }

    #[test]
    fn list_and_reset_a_baseline() {
        let dir = tempfile::tempdir().unwrap();
        let state = Db::open(dir.path()).unwrap();
        let outcome = collect(&state, &[("b", "{}"), ("a", r#"{"x":1}"#)]);
        commit(&state, "p", &outcome);
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
            state.model_get(&id("a")).unwrap().is_some(),
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
    fn model_query_pages_by_kind_then_key() {
        let dir = tempfile::tempdir().unwrap();
        let state = Db::open(dir.path()).unwrap();
        for (key, kind) in [("a", "x"), ("b", "y"), ("c", "x"), ("d", "x"), ("a", "xx")] {
            let e = Entity::new(key.into(), kind.into(), "{}".into(), None, None).unwrap();
            put(&state, "w", &e);
        }
        let ids = |v: Vec<Stored>| {
            v.iter()
                .map(|s| {
                    assert_eq!(s.owner.as_deref(), Some("w"), "a page says who owns each");
                    s.entity.id().to_string()
                })
                .collect::<Vec<_>>()
        };
        let query = |kind, after: Option<(&str, &str)>, limit| {
            let after = after.map(|(kind, key)| Id::new(kind, key));
            ids(state
                .model_query(kind, None, after.as_ref(), |_, _| true, limit)
                .unwrap())
        };
        assert_eq!(query(Some("x"), None, 2), ["x `a`", "x `c`"]);
        assert_eq!(query(Some("x"), Some(("x", "c")), 2), ["x `d`"], "not `xx`");
        assert_eq!(query(Some("x"), Some(("a", "z")), 1), ["x `a`"]);
        assert!(query(Some("x"), Some(("y", "a")), 9).is_empty());
        assert_eq!(query(None, Some(("x", "d")), 9), ["xx `a`", "y `b`"]);
        let deleted = state
            .model_delete(source("w"), &Id::new("x", "a"), |_, _| Vec::new())
            .unwrap();
        assert!(matches!(deleted, Write::Done { version: Some(_) }));
        assert_eq!(query(None, None, 3), ["x `c`", "x `d`", "xx `a`"]);
    }

    #[test]
    fn one_key_of_two_kinds_is_two_entities() {
        let dir = tempfile::tempdir().unwrap();
        let state = Db::open(dir.path()).unwrap();
        let server = entity("k", r#"{"secret":true}"#);
        let person = Entity::new("k".into(), "person".into(), "{}".into(), None, None).unwrap();
        put(&state, "a", &server);
        assert_eq!(
            put(&state, "b", &person),
            Write::Done { version: Some(2) },
            "another kind, another entity"
        );
        assert_eq!(
            state.model_get(server.id()).unwrap().unwrap().entity,
            server
        );
        assert_eq!(
            state.model_get(person.id()).unwrap().unwrap().entity,
            person
        );
    }

    #[test]
    fn a_plugin_writes_replaces_and_deletes_only_what_it_owns() {
        let dir = tempfile::tempdir().unwrap();
        let state = Db::open(dir.path()).unwrap();
        commit(
            &state,
            "owner",
            &collect_as(&state, "owner", &[("a", "{}"), ("b", "{}")]),
        );
        // Another collector reports `a` changed and `c`, then nothing at all.
        let intruder = collect_as(&state, "intruder", &[("a", r#"{"forged":1}"#), ("c", "{}")]);
        let collected = commit(&state, "intruder", &intruder);
        assert_eq!(collected.announced, 1, "only `c`");
        assert_eq!(
            collected.refused,
            [Refusal {
                id: id("a"),
                owner: "owner".into()
            }]
        );
        assert_eq!(props(&state, &id("a")).unwrap(), "{}");
        let baseline = state.load_baseline("intruder").unwrap();
        assert!(
            !baseline.contains_key(&id("a")),
            "refused, so not in its baseline"
        );
        let empty = collect_as(&state, "intruder", &[]);
        assert_eq!(empty.deletes, [id("c")], "it never had `a` to delete");
        commit(&state, "intruder", &empty);
        assert!(props(&state, &id("a")).is_some() && props(&state, &id("b")).is_some());
        // `store` writes: the same rule.
        assert_eq!(put(&state, "intruder", &entity("b", "{}")), Write::Refused);
        let refused = state
            .model_delete(source("intruder"), &id("b"), |_, _| Vec::new())
            .unwrap();
        assert_eq!(refused, Write::Refused);
        assert!(matches!(
            put(&state, "owner", &entity("b", r#"{"v":2}"#)),
            Write::Done { .. }
        ));
        // The owner's own snapshot still deletes what it owns.
        commit(&state, "owner", &collect_as(&state, "owner", &[]));
        assert_eq!(
            state
                .model_query(None, None, None, |_, _| true, 10)
                .unwrap(),
            []
        );
    }

    /// State from before owners: `model` keyed by key, baselines keyed by key.
    #[test]
    fn state_from_before_owners_is_migrated_without_announcing_anything() {
        const OLD_MODEL: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("model");
        let dir = tempfile::tempdir().unwrap();
        let collected = entity("srv-1", r#"{"v":1}"#);
        let overwritten = entity("srv-2", r#"{"by":"b"}"#);
        let saved = Entity::new("p1".into(), "person".into(), "{}".into(), None, None).unwrap();
        {
            let db = redb::Database::create(dir.path().join(FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut model = txn.open_table(OLD_MODEL).unwrap();
                let mut a = txn.open_table(baseline::def("baseline/a")).unwrap();
                let mut b = txn.open_table(baseline::def("baseline/b")).unwrap();
                let mut scratch = Vec::new();
                for e in [&collected, &overwritten, &saved] {
                    model.insert(e.key(), e.to_canonical().as_slice()).unwrap();
                }
                let mut row = |table: &mut redb::Table<&str, (u64, &[u8])>, e: &Entity| {
                    let hash = e.hash_with(&mut scratch);
                    table
                        .insert(e.key(), (hash, e.to_canonical().as_slice()))
                        .unwrap();
                };
                row(&mut a, &collected);
                row(&mut a, &entity("srv-2", r#"{"by":"a"}"#));
                row(&mut b, &overwritten);
                // Written in the old canonical form (numbers as serde_json wrote them).
                let old = br#"{"key":"srv-3","kind":"pserver","properties":{"v":1.0}}"#;
                model.insert("srv-3", old.as_slice()).unwrap();
                a.insert("srv-3", (42, old.as_slice())).unwrap();
            }
            txn.commit().unwrap();
        }
        let state = Db::open(dir.path()).unwrap();
        let owner = |e: &Entity| state.model_get(e.id()).unwrap().unwrap().owner;
        assert_eq!(owner(&collected).as_deref(), Some("a"));
        assert_eq!(
            owner(&overwritten).as_deref(),
            Some("b"),
            "the baseline matching the model"
        );
        assert_eq!(owner(&saved), None, "written through store: unclaimed");
        let snapshot = [
            ("srv-1", r#"{"v":1}"#),
            ("srv-2", r#"{"by":"a"}"#),
            ("srv-3", r#"{"v":1}"#),
        ];
        assert!(
            collect_as(&state, "a", &snapshot).is_empty(),
            "baselines carried over and re-hashed in today's form: nothing to announce"
        );
        assert_eq!(props(&state, &id("srv-3")).unwrap(), r#"{"v":1}"#);
        assert!(
            matches!(put(&state, "c", &saved), Write::Done { .. }),
            "claimed"
        );
        assert_eq!(owner(&saved).as_deref(), Some("c"));
        drop(state);
        let state = Db::open(dir.path()).unwrap();
        assert_eq!(state.load_baseline("b").unwrap().len(), 1, "migrated once");
    }

    #[test]
    fn a_write_and_its_change_commit_together_in_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(Db::open(dir.path()).unwrap());
        let mut reader = state.cursor("r", Start::Saved).unwrap();
        let outcome = collect(&state, &[("a", "{}")]);
        commit(&state, "p", &outcome);
        let write = state
            .model_put(source("w"), &entity("b", "{}"), |operation, _| {
                assert_eq!(operation, Operation::Create);
                b"CREATE b".to_vec()
            })
            .unwrap();
        assert_eq!(write, Write::Done { version: Some(2) });
        // Refused: neither the write nor its change.
        let refused = state
            .model_put(source("x"), &entity("b", r#"{"x":1}"#), |_, _| {
                b"no".to_vec()
            })
            .unwrap();
        assert_eq!(refused, Write::Refused);
        assert_eq!(props(&state, &id("b")).unwrap(), "{}");
        // Unchanged: written, nothing announced.
        put(&state, "w", &entity("b", "{}"));
        state
            .model_delete(source("w"), &id("b"), |_, _| b"DELETE b".to_vec())
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
                (1, b"CREATE a".to_vec()),
                (2, b"CREATE b".to_vec()),
                (3, b"DELETE b".to_vec()),
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
                state.trim_changes(|_| false, lag(1000)).unwrap(),
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
        assert_eq!(state.trim_changes(|_| false, lag(1000)).unwrap(), 3);
        assert_eq!(state.append_changes(&[vec![9]]).unwrap(), 6);
    }

    #[test]
    fn many_changes_are_trimmed_a_chunk_at_a_time_up_to_what_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(Db::open(dir.path()).unwrap());
        const { assert!(9_900 > 2 * outbox::TRIM_CHUNK, "several chunks") };
        let changes: Vec<Vec<u8>> = (0..10_000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        state.append_changes(&changes).unwrap();
        // A reader that has passed them all; the window keeps the last hundred.
        let _passed = state.cursor("printer", Start::End).unwrap();
        let keep = Retention {
            max_plugin_lag: 1000,
            window: 100,
        };
        assert_eq!(state.trim_changes(|_| false, keep).unwrap(), 9_900);
        assert_eq!(state.trim_changes(|_| false, keep).unwrap(), 0);
        let mut oldest = state.cursor("late", Start::SavedElseOldest).unwrap();
        assert_eq!(oldest.position(), 9_900);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let kept = runtime.block_on(oldest.next_batch(1000)).unwrap();
        assert_eq!(kept.len(), 100);
        assert_eq!(kept[0], (9_901, 9_900u32.to_be_bytes().to_vec()));
    }

    #[test]
    fn a_reader_reads_on_before_it_handles_and_a_returning_one_keeps_what_it_has_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let state = Arc::new(Db::open(dir.path()).unwrap());
        for i in 0..4u8 {
            state.append_changes(&[vec![i]]).unwrap();
        }
        // A group that starts at `earliest` reads what the outbox keeps.
        let mut group = state.cursor("group", Start::SavedElseOldest).unwrap();
        runtime.block_on(async {
            let first = group.next_batch(2).await.unwrap();
            let then = group.next_batch(2).await.unwrap();
            assert_eq!(first, [(1, vec![0]), (2, vec![1])]);
            assert_eq!(
                then,
                [(3, vec![2]), (4, vec![3])],
                "not the same batch again"
            );
            group.handled(1).await.unwrap();
        });
        drop(group);
        let printer = state.cursor("printer", Start::Saved).unwrap();
        assert_eq!(printer.position(), 4);
        assert_eq!(
            state
                .trim_changes(|name| name == "group", lag(1000))
                .unwrap(),
            1,
            "the group is not attached, but will come back: only what it handled goes"
        );
        assert_eq!(state.trim_changes(|_| false, lag(1000)).unwrap(), 3);
        let late = state.cursor("late", Start::SavedElseOldest).unwrap();
        assert_eq!(
            late.position(),
            4,
            "with nothing kept, a new group starts at the end"
        );
    }

    #[test]
    fn the_window_keeps_the_last_changes_every_reader_passed() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let state = Arc::new(Db::open(dir.path()).unwrap());
        let mut printer = state.cursor("printer", Start::Saved).unwrap();
        let gone = state.cursor("feed:0", Start::After(0)).unwrap();
        for i in 0..10u8 {
            state.append_changes(&[vec![i]]).unwrap();
        }
        runtime.block_on(async {
            printer.next_batch(100).await.unwrap();
            printer.handled(10).await.unwrap();
        });
        drop(gone);
        let window = |window| Retention {
            max_plugin_lag: 1000,
            window,
        };
        let plugins = |name: &str| name.starts_with("feed:");
        assert_eq!(state.trim_changes(plugins, window(4)).unwrap(), 6);
        assert_eq!(state.oldest_change().unwrap(), Some(7));
        assert_eq!(
            state.trim_changes(plugins, window(4)).unwrap(),
            0,
            "the last 4 stay"
        );
        assert_eq!(state.trim_changes(plugins, window(0)).unwrap(), 4);
    }

    #[test]
    fn a_plugin_reader_is_held_within_its_lag_and_the_hosts_readers_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let state = Arc::new(Db::open(dir.path()).unwrap());
        let mut step = state.cursor("synchro.step", Start::Saved).unwrap();
        let printer = state.cursor("printer", Start::Saved).unwrap();
        for i in 0..10u8 {
            state.append_changes(&[vec![i]]).unwrap();
        }
        let plugins = |name: &str| name.starts_with("synchro.");
        assert_eq!(
            state.trim_changes(plugins, lag(3)).unwrap(),
            0,
            "the printer has read nothing: everything stays"
        );
        drop(printer);
        assert_eq!(
            state.trim_changes(plugins, lag(3)).unwrap(),
            7,
            "the step, 10 behind, keeps only the last 3"
        );
        let rest = runtime.block_on(step.next_batch(100)).unwrap();
        assert_eq!(
            rest.first().map(|(seq, _)| *seq),
            Some(8),
            "it reads on after the gap"
        );
    }

    #[test]
    fn waiting_for_a_reader_says_how_far_behind_it_stopped() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (tx, mut progress) = tokio::sync::watch::channel(3u64);
            let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(50);
            assert_eq!(wait_handled(&mut progress, 10, soon).await, 7);
            tx.send_replace(10);
            let later = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
            assert_eq!(wait_handled(&mut progress, 10, later).await, 0);
        });
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

    #[test]
    fn writes_move_the_bookkeeping_to_their_change_and_deletes_wait_for_what_was_enacted() {
        use synchro_model::bookkeeping::{Failure, State};
        use synchro_model::{Acting, ErrorKind};
        let dir = tempfile::tempdir().unwrap();
        let state = Db::open(dir.path()).unwrap();
        let books = |key: &str| state.model_get(&id(key)).unwrap().map(|s| s.bookkeeping);
        // Announces a change unless the entity is saved unchanged, as `store.save` does.
        let write = |acting, key: &str, props: &str| {
            let writer = Writer {
                plugin: "w",
                acting,
                handling: None,
            };
            let e = entity(key, props);
            state
                .model_put(writer, &e, |_, _| b"change".to_vec())
                .unwrap();
        };

        // A collector's data: change 1, never synced outward.
        commit(&state, "c", &collect_as(&state, "c", &[("seen", "{}")]));
        let seen = books("seen").unwrap();
        assert_eq!(
            (seen.updated, seen.no_sync, seen.needs_sync("push")),
            (1, true, false)
        );

        // A source's write: change 2, to be synced and policed.
        write(Acting::Source, "a", "{}");
        let a = books("a").unwrap();
        assert_eq!(a.updated, 2);
        assert!(a.needs_sync("push") && a.needs_policy("stamp"));
        let dirty = |select: fn(&Id, &synchro_model::Bookkeeping) -> bool| {
            let page = state.model_query(None, None, None, select, 10).unwrap();
            page.into_iter()
                .map(|s| s.entity.key().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            dirty(|_, b| b.needs_sync("push") || b.needs_policy("stamp")),
            ["a", "seen"],
            "`seen` is not policed yet"
        );

        // A step's write moves `changed_by_step` only; unchanged data moves nothing.
        let record = |key: &str, outcome: Enacted| {
            state.record_syncs("push", &[(id(key), outcome)]).unwrap()[0]
        };
        record("a", Enacted::Synced { seen: 2 });
        write(Acting::Step, "a", r#"{"outside-id":7}"#);
        write(Acting::Step, "a", r#"{"outside-id":7}"#);
        let state_of_a = books("a").unwrap();
        assert_eq!(
            (state_of_a.updated, state_of_a.changed_by_step),
            (2, Some(3))
        );
        assert!(!state_of_a.needs_sync("push"));

        // A failure is kept on the entity.
        let failure = Failure {
            kind: ErrorKind::Failed,
            message: "HTTP 500".into(),
        };
        record("a", Enacted::Failed(failure));
        fn failed(_: &Id, b: &synchro_model::Bookkeeping) -> bool {
            b.steps
                .of("push")
                .is_some_and(|p| p.status.state == State::Failed)
        }
        assert_eq!(dirty(failed), ["a"]);
        assert!(failed(&id("a"), &books("a").unwrap()));

        // Enacted: a deletion is soft, hidden from plugins, until purged.
        let deleted = state
            .model_delete(source("w"), &id("a"), |_, _| b"DELETE a".to_vec())
            .unwrap();
        assert!(matches!(deleted, Write::Done { version: Some(_) }));
        let a = books("a").unwrap();
        assert!(a.deleted && a.updated == 4 && a.needs_sync("push"));
        assert!(dirty(|_, b| !b.deleted).iter().all(|k| k != "a"));
        assert_eq!(
            state
                .model_delete(source("w"), &id("a"), |_, _| b"again".to_vec())
                .unwrap(),
            Write::Done { version: None },
            "deleting a deleted entity announces nothing"
        );
        assert_eq!(state.last_change(), 4);
        let rewritten = record("a", Enacted::Removed { seen: 3 });
        assert_eq!(rewritten, Recorded::Rewritten, "written since 3");
        assert_eq!(record("a", Enacted::Removed { seen: 4 }), Recorded::Done);
        assert_eq!(books("a"), None);
        assert_eq!(record("a", Enacted::Synced { seen: 4 }), Recorded::Gone);

        // Never enacted: purged at once. Written again while soft-deleted: back, as new.
        write(Acting::Source, "b", "{}");
        state
            .model_delete(source("w"), &id("b"), |_, _| b"DELETE b".to_vec())
            .unwrap();
        assert_eq!(books("b"), None);
        write(Acting::Source, "d", "{}");
        record("d", Enacted::Synced { seen: 7 });
        state
            .model_delete(source("w"), &id("d"), |_, _| b"DELETE d".to_vec())
            .unwrap();
        let recreated = state
            .model_put(source("w"), &entity("d", "{}"), |operation, _| {
                assert_eq!(
                    operation,
                    Operation::Create,
                    "a deleted entity is not replaced"
                );
                b"CREATE d".to_vec()
            })
            .unwrap();
        assert_eq!(recreated, Write::Done { version: Some(9) });
        let d = books("d").unwrap();
        assert!(!d.deleted && d.updated == 9 && d.needs_sync("push"));
        assert_eq!(
            record("d", Enacted::Removed { seen: 8 }),
            Recorded::Rewritten,
            "live again"
        );
    }

    #[test]
    fn a_policy_sees_what_it_last_handled_may_write_what_it_handles_and_sees_it_go() {
        use synchro_model::{Acting, Handling};
        let dir = tempfile::tempdir().unwrap();
        let state = Db::open(dir.path()).unwrap();
        let books = |key: &str| state.model_get(&id(key)).unwrap().map(|s| s.bookkeeping);
        let announce = |_: Operation, _: &Entity| b"change".to_vec();
        state
            .model_put(source("api"), &entity("a", r#"{"v":1}"#), announce)
            .unwrap();
        let previous = |key: &str| state.model_get_policed("stamp", &[id(key)]).unwrap()[0].clone();
        assert_eq!(previous("a").map(|(_, p)| p), Some(None));
        let record = |outcome| {
            state
                .record_policies("stamp", &[(id("a"), outcome)])
                .unwrap()[0]
        };
        let handled = Policed::Handled {
            seen: 1,
            entity: entity("a", r#"{"v":1}"#),
        };
        assert_eq!(record(handled), Recorded::Done);
        assert_eq!(
            previous("a").map(|(_, p)| p),
            Some(Some(entity("a", r#"{"v":1}"#)))
        );
        assert!(!books("a").unwrap().needs_policy("stamp"));
        assert!(
            books("a").unwrap().needs_policy("another"),
            "it has its own"
        );
        assert_eq!(
            state.model_get_policed("another", &[id("a")]).unwrap()[0]
                .as_ref()
                .map(|(_, p)| p.clone()),
            Some(None),
            "nor has it handled it"
        );

        // The policy writes the entity its call handles, though `api` owns it; once a
        // source changed it, the write would undo that change, and is refused.
        let handling = Handling {
            id: id("a"),
            seen: 1,
        };
        let policy = Writer {
            plugin: "stamp",
            acting: Acting::Policy,
            handling: Some(&handling),
        };
        let polished = entity("a", r#"{"v":1,"policed":true}"#);
        assert!(matches!(
            state.model_put(policy, &polished, announce).unwrap(),
            Write::Done {
                version: Some(2),
                ..
            }
        ));
        let a = state.model_get(&id("a")).unwrap().unwrap();
        assert_eq!(a.owner.as_deref(), Some("api"), "the owner stays");
        assert_eq!(a.bookkeeping.changed_by_policy, Some(2));
        assert!(
            !a.bookkeeping.needs_policy("stamp"),
            "its own write (SEBA-79)"
        );
        assert_eq!(
            state.model_put(policy, &polished, announce).unwrap(),
            Write::Stale,
            "a call that wrote again from what it read first would undo what it wrote \
             meanwhile (or what another policy of the kind wrote)"
        );
        let other = Writer {
            handling: None,
            ..policy
        };
        assert_eq!(
            state.model_put(other, &polished, announce).unwrap(),
            Write::Refused,
            "not what it handles"
        );
        state
            .model_put(source("api"), &entity("a", r#"{"v":2}"#), announce)
            .unwrap();
        assert_eq!(
            state.model_put(policy, &polished, announce).unwrap(),
            Write::Stale
        );

        // Purged while a call handled it: the handler's write does not bring it back.
        let gone = Handling {
            id: id("gone"),
            seen: 1,
        };
        let late = Writer {
            handling: Some(&gone),
            ..policy
        };
        assert_eq!(
            state
                .model_put(late, &entity("gone", "{}"), announce)
                .unwrap(),
            Write::Stale
        );
        assert_eq!(state.model_get(&id("gone")).unwrap(), None);

        // Policed, its deletion waits for `handle-delete`.
        state
            .model_delete(source("api"), &id("a"), |_, _| b"DELETE a".to_vec())
            .unwrap();
        let a = books("a").unwrap();
        assert!(a.deleted && a.needs_policy("stamp") && !a.needs_sync("push"));
        assert_eq!(record(Policed::Deleted { seen: 3 }), Recorded::Rewritten);
        assert_eq!(record(Policed::Deleted { seen: 4 }), Recorded::Done);
        assert_eq!(books("a"), None, "purged");
        assert_eq!(previous("a"), None);
        let txn = state.db.begin_read().unwrap();
        let policed = txn.open_table(policed::POLICED_AS).unwrap();
        assert!(
            policed.get("stamp\0pserver\0a").unwrap().is_none(),
            "purged with it"
        );
    }

    #[test]
    fn a_policys_progress_from_before_several_policies_goes_to_the_kinds_one_policy() {
        use redb::TableDefinition;
        let dir = tempfile::tempdir().unwrap();
        let handled = entity("a", r#"{"v":1}"#);
        {
            let state = Db::open(dir.path()).unwrap();
            put(&state, "api", &handled);
            put(&state, "api", &entity("b", "{}"));
            // As an older host left it: one policed-as row by id, and bookkeeping
            // format 1 (updated 1, policed 1, policy done).
            let txn = state.begin_write().unwrap();
            {
                let legacy: TableDefinition<&str, &[u8]> = TableDefinition::new("policed-as");
                let mut table = txn.open_table(legacy).unwrap();
                let mut buf = Vec::new();
                handled.encode(&mut buf);
                table.insert(id("a").as_str(), buf.as_slice()).unwrap();
                let mut row = vec![1];
                for v in [1u64, 0, 0, 1, 0] {
                    row.extend_from_slice(&v.to_le_bytes());
                }
                row.extend_from_slice(&[0, 1, 0, 0, 0]);
                let mut books = txn.open_table(bookkeeping::BOOKKEEPING).unwrap();
                books.insert(id("a").as_str(), row.as_slice()).unwrap();
                books.insert(id("b").as_str(), row.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let state = Db::open(dir.path()).unwrap();
        let read = |policy: &str| {
            let found = state.model_get_policed(policy, &[id("a")]).unwrap();
            let (stored, previous) = found[0].clone().unwrap();
            (stored.bookkeeping.needs_policy(policy), previous)
        };
        assert_eq!(read("stamp"), (true, None), "nobody's until the host says");
        state
            .model_delete(source("api"), &id("b"), |_, _| b"DELETE b".to_vec())
            .unwrap();
        assert!(
            state.model_get(&id("b")).unwrap().is_some(),
            "policed by an older host: it waits while the host has not said"
        );
        let handlers = |names: &[&str]| {
            let names = names.iter().map(|n| n.to_string()).collect();
            std::collections::BTreeMap::from([("pserver".to_owned(), names)])
        };
        let none = std::collections::BTreeMap::new();
        let swept = state.set_handlers(handlers(&["p", "q"]), &none).unwrap();
        assert_eq!(
            (swept.purged, state.model_get(&id("b")).unwrap()),
            (1, None),
            "two policies: neither waits for a handle-delete it cannot tell was its own"
        );
        assert_eq!(
            swept.attributed, 0,
            "two policies: neither can tell it was theirs"
        );
        let swept = state.set_handlers(handlers(&["stamp"]), &none).unwrap();
        assert_eq!(swept.attributed, 1);
        assert_eq!(
            read("stamp"),
            (false, Some(handled.clone())),
            "the kind's one policy's"
        );
        let outcome = Policed::Handled {
            seen: 1,
            entity: handled.clone(),
        };
        state
            .record_policies("stamp", &[(id("a"), outcome)])
            .unwrap();
        assert_eq!(read("stamp"), (false, Some(handled)));
        assert_eq!(
            read("other"),
            (true, None),
            "another policy never handled it"
        );
        let swept = state.set_handlers(handlers(&["stamp"]), &none).unwrap();
        assert_eq!(swept, Swept::default(), "nothing left to attribute");
    }

    #[test]
    fn edges_are_indexed_by_their_ends_through_every_write_and_rebuilt_for_old_state() {
        use synchro_model::{EdgeEnds, EntityRef};
        let dir = tempfile::tempdir().unwrap();
        let state = Db::open(dir.path()).unwrap();
        let end = |key: &str| EntityRef {
            key: key.into(),
            kind: "pserver".into(),
        };
        let edge = |key: &str, from: &str, to: &str| {
            let ends = EdgeEnds {
                source: end(from),
                target: end(to),
            };
            Entity::new(key.into(), "link".into(), "{}".into(), None, Some(ends)).unwrap()
        };
        let link = |key: &str| Id::new("link", key);
        let edges_of = |key: &str| state.edges_of(&id(key)).unwrap();
        let announce = |_: Operation, _: &Entity| b"change".to_vec();

        state
            .model_put(source("api"), &edge("e", "a", "b"), announce)
            .unwrap();
        assert_eq!(
            (edges_of("a"), edges_of("b")),
            (vec![link("e")], vec![link("e")])
        );
        // Moved to another end.
        state
            .model_put(source("api"), &edge("e", "a", "c"), announce)
            .unwrap();
        assert_eq!((edges_of("b"), edges_of("c")), (vec![], vec![link("e")]));
        // A collector's edge, and its deletion (purged: nothing held it).
        let upsert = |e: Entity| synchro_model::Upsert {
            operation: Operation::Create,
            entity: e,
            hash: 1,
        };
        let record = |_: Operation, _: &Entity| b"change".to_vec();
        state
            .commit_collect("c", &[upsert(edge("f", "c", "a"))], &[], true, record)
            .unwrap();
        let mut of_a = edges_of("a");
        of_a.sort();
        assert_eq!(of_a, [link("e"), link("f")]);
        state
            .commit_collect("c", &[], &[link("f")], true, record)
            .unwrap();
        assert_eq!(edges_of("a"), [link("e")]);
        state
            .model_delete(source("api"), &link("e"), |_, _| b"DELETE".to_vec())
            .unwrap();
        assert!(edges_of("a").is_empty() && edges_of("c").is_empty());

        // State from before the index: rebuilt at open.
        state
            .model_put(source("api"), &edge("g", "a", "b"), announce)
            .unwrap();
        let txn = state.begin_write().unwrap();
        txn.delete_multimap_table(edges::EDGES).unwrap();
        txn.commit().unwrap();
        drop(state);
        let state = Db::open(dir.path()).unwrap();
        assert_eq!(state.edges_of(&id("b")).unwrap(), [link("g")]);
    }

    #[test]
    fn ranked_sources_merge_property_by_property_and_a_losing_write_takes_over() {
        let dir = tempfile::tempdir().unwrap();
        let state = Db::open(dir.path()).unwrap();
        let ranking = [(
            "pserver".to_owned(),
            vec!["cmdb".to_owned(), "scan".to_owned()],
        )];
        state.set_sources(Sources::new(ranking.into()).unwrap());
        let announced = |plugin: &str, snapshot: &[(&str, &str)]| {
            let outcome = collect_as(&state, plugin, snapshot);
            let mut records = Vec::new();
            let collected = state
                .commit_collect(plugin, &outcome.upserts, &outcome.deletes, true, |op, e| {
                    records.push(format!("{} {}", op.as_str(), e.properties()));
                    Vec::new()
                })
                .unwrap();
            (records, collected.refused.len())
        };
        let model = || {
            let a = state.model_get(&id("a")).unwrap()?;
            Some((a.owner.unwrap(), a.entity.properties().to_owned()))
        };

        let (records, _) = announced("scan", &[("a", r#"{"ip":"10.0.0.1","name":"a-01"}"#)]);
        assert_eq!(records, [r#"CREATE {"ip":"10.0.0.1","name":"a-01"}"#]);
        let (records, _) = announced("cmdb", &[("a", r#"{"name":"alpha","team":"ops"}"#)]);
        assert_eq!(
            records,
            [r#"UPDATE {"ip":"10.0.0.1","name":"alpha","team":"ops"}"#],
            "cmdb's name wins; scan's ip stays"
        );
        assert_eq!(model().unwrap().0, "cmdb");
        // The losing write changes nothing visible, and is kept.
        let (records, _) = announced("scan", &[("a", r#"{"ip":"10.0.0.1","name":"a-02"}"#)]);
        assert!(records.is_empty(), "{records:?}");
        let sources = state.model_sources(&id("a")).unwrap();
        assert_eq!(sources.len(), 2);
        assert_eq!(
            sources[1].1.properties(),
            r#"{"ip":"10.0.0.1","name":"a-02"}"#
        );
        // A plugin the operator does not rank is refused, as ownership says.
        assert_eq!(announced("other", &[("a", "{}")]).1, 1);
        // cmdb no longer reports it: scan's write takes over, not a deletion.
        let (records, _) = announced("cmdb", &[]);
        assert_eq!(records, [r#"UPDATE {"ip":"10.0.0.1","name":"a-02"}"#]);
        assert_eq!(model().unwrap().0, "scan");
        // The last source deletes it.
        let (records, _) = announced("scan", &[]);
        assert_eq!(records, [r#"DELETE {"ip":"10.0.0.1","name":"a-02"}"#]);
        assert_eq!(model(), None);
        assert!(state.model_sources(&id("a")).unwrap().is_empty());
    }

    /// The collector-and-the-API case: a source that writes through `store` (an event
    /// step, the API) is ranked like a collector, its write merged, its delete withdrawn.
    #[test]
    fn a_ranked_source_writing_through_store_is_merged_with_a_collectors_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let state = Db::open(dir.path()).unwrap();
        let ranking = [(
            "pserver".to_owned(),
            vec!["api".to_owned(), "scan".to_owned()],
        )];
        state.set_sources(Sources::new(ranking.into()).unwrap());
        let records = std::cell::RefCell::new(Vec::new());
        let record = |op: Operation, e: &Entity| {
            records
                .borrow_mut()
                .push(format!("{} {}", op.as_str(), e.properties()));
            Vec::new()
        };
        let take = || std::mem::take(&mut *records.borrow_mut());
        let model = || {
            let a = state.model_get(&id("a")).unwrap()?;
            Some((a.owner.unwrap(), a.entity.properties().to_owned()))
        };

        let outcome = collect_as(
            &state,
            "scan",
            &[("a", r#"{"ip":"10.0.0.1","name":"a-01"}"#)],
        );
        state
            .commit_collect("scan", &outcome.upserts, &outcome.deletes, true, record)
            .unwrap();
        assert_eq!(take(), [r#"CREATE {"ip":"10.0.0.1","name":"a-01"}"#]);
        let api = entity("a", r#"{"name":"alpha"}"#);
        let write = state.model_put(source("api"), &api, record).unwrap();
        assert_eq!(write, Write::Done { version: Some(2) });
        assert_eq!(take(), [r#"UPDATE {"ip":"10.0.0.1","name":"alpha"}"#]);
        assert_eq!(
            model().unwrap().0,
            "api",
            "the higher source owns the merge"
        );
        let books = state.model_get(&id("a")).unwrap().unwrap().bookkeeping;
        assert!(!books.no_sync, "a write through store wants it synced");
        // Saving the same again changes nothing.
        let write = state.model_put(source("api"), &api, record).unwrap();
        assert_eq!(write, Write::Done { version: None });
        assert!(take().is_empty());
        // The lower source's snapshot is kept, and loses to the API on `name`.
        let outcome = collect_as(
            &state,
            "scan",
            &[("a", r#"{"ip":"10.0.0.2","name":"a-02"}"#)],
        );
        state
            .commit_collect("scan", &outcome.upserts, &outcome.deletes, true, record)
            .unwrap();
        assert_eq!(take(), [r#"UPDATE {"ip":"10.0.0.2","name":"alpha"}"#]);
        // A source the operator does not rank for the kind may not write over it.
        let intruder = entity("a", "{}");
        assert_eq!(
            state.model_put(source("other"), &intruder, record).unwrap(),
            Write::Refused
        );
        assert_eq!(
            state
                .model_delete(source("other"), &id("a"), record)
                .unwrap(),
            Write::Refused
        );
        // The API's delete withdraws its write: the collector's stays, not a deletion.
        let write = state.model_delete(source("api"), &id("a"), record).unwrap();
        assert_eq!(write, Write::Done { version: Some(4) });
        assert_eq!(take(), [r#"UPDATE {"ip":"10.0.0.2","name":"a-02"}"#]);
        assert_eq!(model().unwrap().0, "scan");
        let write = state.model_delete(source("api"), &id("a"), record).unwrap();
        assert_eq!(write, Write::Done { version: None }, "withdrawn already");
        // The last source's delete deletes it.
        let outcome = collect_as(&state, "scan", &[]);
        state
            .commit_collect("scan", &outcome.upserts, &outcome.deletes, true, record)
            .unwrap();
        assert_eq!(take(), [r#"DELETE {"ip":"10.0.0.2","name":"a-02"}"#]);
        assert_eq!(model(), None);
    }
}
