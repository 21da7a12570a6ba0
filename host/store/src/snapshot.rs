//! The state database, which only this module can write, and the read lookups of the
//! model (the API's GETs and lists, the admin API's) share until the next commit: opening a
//! read transaction and its three tables for every GET was a quarter of its host CPU.
//!
//! A shared read must never be older than a commit that returned, nor than what a lookup
//! already returned. So [`Store`] keeps redb's database to itself: its write transactions
//! are [`WriteTxn`]s (a redb commit cannot be reached through one), whose commit drops the
//! shared read when it begins and when it ends; and a lookup keeps the read it opened for
//! the others only if no commit was under way when it began and none began or ended
//! since. Commits may overlap — redb lets the next writer begin as soon as one commit is
//! made, before this one has said it ended — so what is counted is the commits under way,
//! not whether one is. A read opened during a commit may be from before it or after it,
//! and serves only the lookup that opened it.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{
    Database, ReadOnlyMultimapTable, ReadOnlyTable, ReadTransaction, ReadableDatabase,
    WriteTransaction,
};

use crate::bookkeeping::BOOKKEEPING;
use crate::model::ENTITIES;
use crate::{DbError, dberr, edges};

/// The state database: read as redb's, written only through [`WriteTxn`]s.
pub(crate) struct Store {
    /// Declared first, to be closed before the database is.
    snapshots: Snapshots,
    db: Database,
}

impl Store {
    pub(crate) fn new(db: Database) -> Store {
        Store {
            snapshots: Snapshots::default(),
            db,
        }
    }

    /// A read of its own, for what the shared read does not hold.
    pub(crate) fn begin_read(&self) -> Result<ReadTransaction, redb::TransactionError> {
        self.db.begin_read()
    }

    /// A write transaction, whose commit makes the shared read stale.
    pub(crate) fn begin_write(&self) -> Result<WriteTxn<'_>, DbError> {
        let txn = self.db.begin_write().map_err(dberr)?;
        Ok(WriteTxn {
            txn,
            snapshots: &self.snapshots,
        })
    }

    /// The shared read of the model, or a new one (shared if it may be).
    pub(crate) fn model(&self) -> Result<Arc<Snapshot>, DbError> {
        let seen = match self.snapshots.lookup() {
            Lookup::Shared(shared) => return Ok(shared),
            Lookup::Shareable(seen) => Some(seen),
            Lookup::Private => None,
        };
        let snapshot = Arc::new(Snapshot::open(&self.db)?);
        if let Some(seen) = seen {
            self.snapshots.share(seen, &snapshot);
        }
        Ok(snapshot)
    }
}

/// The model's tables as one commit left them.
pub(crate) struct Snapshot {
    pub(crate) entities: ReadOnlyTable<&'static str, (&'static str, &'static [u8])>,
    pub(crate) books: ReadOnlyTable<&'static str, &'static [u8]>,
    pub(crate) edges: ReadOnlyMultimapTable<&'static str, &'static str>,
}

impl Snapshot {
    fn open(db: &Database) -> Result<Snapshot, DbError> {
        let txn = db.begin_read().map_err(dberr)?;
        Ok(Snapshot {
            entities: txn.open_table(ENTITIES).map_err(dberr)?,
            books: txn.open_table(BOOKKEEPING).map_err(dberr)?,
            edges: txn.open_multimap_table(edges::EDGES).map_err(dberr)?,
        })
    }
}

/// The shared read, and the commits that make it stale.
#[derive(Default)]
struct Snapshots {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// How many times a commit began or ended.
    moves: u64,
    /// The commits begun and not ended.
    under_way: u32,
    shared: Option<Arc<Snapshot>>,
}

/// What a lookup finds.
enum Lookup {
    Shared(Arc<Snapshot>),
    /// No shared read, and no commit under way: a read opened now is shared if the
    /// commits have not moved from here meanwhile.
    Shareable(u64),
    /// No shared read, and a commit under way: a read opened now serves only its lookup.
    Private,
}

impl Snapshots {
    fn lookup(&self) -> Lookup {
        let state = self.lock();
        match (&state.shared, state.under_way) {
            (Some(shared), _) => Lookup::Shared(shared.clone()),
            (None, 0) => Lookup::Shareable(state.moves),
            (None, _) => Lookup::Private,
        }
    }

    /// Shares `snapshot`, opened after `seen` was looked up, if no commit began or ended
    /// since.
    fn share(&self, seen: u64, snapshot: &Arc<Snapshot>) {
        let mut state = self.lock();
        if state.moves == seen && state.under_way == 0 {
            state.shared = Some(snapshot.clone());
        }
    }

    /// A commit begins: the shared read is dropped, and none is shared until the commit
    /// (and any other under way) has ended, when it is dropped again.
    fn committing(&self) -> Committing<'_> {
        self.moved(|state| state.under_way += 1);
        Committing(self)
    }

    fn moved(&self, change: impl FnOnce(&mut State)) {
        let stale = {
            let mut state = self.lock();
            change(&mut state);
            state.moves += 1;
            state.shared.take()
        };
        // Outside the lock: closing a read takes redb's own.
        drop(stale);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("snapshots lock")
    }
}

/// A commit under way, until dropped (a panicking commit ends too).
struct Committing<'a>(&'a Snapshots);

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        self.0.moved(|state| state.under_way -= 1);
    }
}

/// A redb write transaction whose commit drops the shared read.
pub(crate) struct WriteTxn<'a> {
    txn: WriteTransaction,
    snapshots: &'a Snapshots,
}

impl WriteTxn<'_> {
    pub(crate) fn commit(self) -> Result<(), redb::CommitError> {
        let _under_way = self.snapshots.committing();
        self.txn.commit()
    }

    /// Drops what it wrote; the shared read stays fresh.
    pub(crate) fn abort(self) -> Result<(), redb::StorageError> {
        self.txn.abort()
    }
}

impl Deref for WriteTxn<'_> {
    type Target = WriteTransaction;

    fn deref(&self) -> &WriteTransaction {
        &self.txn
    }
}

impl DerefMut for WriteTxn<'_> {
    fn deref_mut(&mut self) -> &mut WriteTransaction {
        &mut self.txn
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Map;
    use synchro_model::{Completeness, Diff, Entity, Id};

    use super::*;
    use crate::{ApiWrite, Db};

    fn server(key: &str, props: &str) -> Entity {
        Entity::new(key.into(), "pserver".into(), props.into(), None, None).unwrap()
    }

    fn write(db: &Db, write: ApiWrite, durable: bool) {
        let done = db.api_each("api", &[write], durable, |_, _, _| b"{}".to_vec());
        assert!(done.unwrap()[0].is_ok());
    }

    fn props(db: &Db, key: &str) -> Option<String> {
        let found = db.api_get(&Id::new("pserver", key)).unwrap();
        found.map(|(entity, _)| entity.properties().to_string())
    }

    #[test]
    fn every_write_is_read_after_it_commits() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(props(&db, "a"), None);
        write(&db, ApiWrite::Create(server("a", r#"{"v":1}"#)), true);
        assert_eq!(props(&db, "a").as_deref(), Some(r#"{"v":1}"#));
        // The read is shared now; each commit after must be seen all the same.
        let shared = db.db.model().unwrap();
        assert!(Arc::ptr_eq(&shared, &db.db.model().unwrap()));
        write(&db, ApiWrite::Replace(server("a", r#"{"v":2}"#)), false);
        assert_eq!(props(&db, "a").as_deref(), Some(r#"{"v":2}"#));
        let mut patch = Map::new();
        patch.insert("w".into(), 3.into());
        write(
            &db,
            ApiWrite::Patch {
                id: Id::new("pserver", "a"),
                properties: patch,
            },
            true,
        );
        assert_eq!(props(&db, "a").as_deref(), Some(r#"{"v":2,"w":3}"#));
        let mut collected = Diff::new(db.load_baseline("p").unwrap());
        collected.add(server("b", "{}")).unwrap();
        let collected = collected.finish(Completeness::Complete);
        db.commit_collect(
            "p",
            &collected.upserts,
            &collected.deletes,
            false,
            |_, _| Vec::new(),
        )
        .unwrap();
        assert_eq!(props(&db, "b").as_deref(), Some("{}"));
        write(&db, ApiWrite::Delete(Id::new("pserver", "a")), true);
        assert_eq!(props(&db, "a"), None);
    }

    fn shareable(store: &Store) -> u64 {
        match store.snapshots.lookup() {
            Lookup::Shareable(seen) => seen,
            Lookup::Shared(_) => panic!("a read is shared"),
            Lookup::Private => panic!("a commit is under way"),
        }
    }

    fn shared(store: &Store) -> Option<Arc<Snapshot>> {
        match store.snapshots.lookup() {
            Lookup::Shared(shared) => Some(shared),
            _ => None,
        }
    }

    #[test]
    fn a_read_opened_while_a_commit_runs_is_not_shared() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let store = &db.db;
        // Undisturbed, a read is shared: the races below are what keep it from it.
        let seen = shareable(store);
        let read = Arc::new(Snapshot::open(&store.db).unwrap());
        store.snapshots.share(seen, &read);
        assert!(Arc::ptr_eq(&read, &shared(store).unwrap()));

        // A write commits: the shared read goes.
        write(&db, ApiWrite::Create(server("a", "{}")), true);
        let seen = shareable(store);
        // A lookup opens its read before the next commit, and would share it after.
        let stale = Arc::new(Snapshot::open(&store.db).unwrap());
        write(&db, ApiWrite::Create(server("b", "{}")), true);
        store.snapshots.share(seen, &stale);
        assert!(shared(store).is_none());
        assert_eq!(props(&db, "b").as_deref(), Some("{}"));

        // Two commits overlap (redb lets the second writer begin once the first commit
        // is made, before it has ended here): nothing is shared until both have ended.
        let first = store.snapshots.committing();
        let second = store.snapshots.committing();
        assert!(matches!(store.snapshots.lookup(), Lookup::Private));
        drop(first);
        assert!(matches!(store.snapshots.lookup(), Lookup::Private));
        let seen = store.snapshots.lock().moves;
        store
            .snapshots
            .share(seen, &Arc::new(Snapshot::open(&store.db).unwrap()));
        assert!(shared(store).is_none());
        drop(second);
        let seen = shareable(store);
        store
            .snapshots
            .share(seen, &Arc::new(Snapshot::open(&store.db).unwrap()));
        assert!(shared(store).is_some());
    }
}
