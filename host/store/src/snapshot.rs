//! Lookups of the model (the API's GETs and lists, the admin API's) share one read until
//! the next commit: opening a read transaction and its three tables for every GET was a
//! quarter of its host CPU.
//!
//! A shared read must never be older than what a lookup already returned, nor than a
//! commit that returned. So every write transaction is a [`WriteTxn`] (clippy refuses
//! `redb::Database::begin_write` elsewhere, and only this module can commit), whose
//! commit drops the shared read when it begins and again when it ends; and a lookup that
//! opens a read keeps it for the others only if no commit began or ended while it did.
//! A read opened during a commit may be from before it or after it, and serves only
//! the lookup that opened it.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{Database, ReadOnlyMultimapTable, ReadOnlyTable, ReadableDatabase, WriteTransaction};

use crate::bookkeeping::BOOKKEEPING;
use crate::model::ENTITIES;
use crate::{DbError, dberr, edges};

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
pub(crate) struct Snapshots {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Moved when a commit begins and when it ends: odd while one is under way.
    commits: u64,
    shared: Option<Arc<Snapshot>>,
}

impl Snapshots {
    /// The shared read, or a new one (then shared if no commit overlapped its opening).
    pub(crate) fn get(&self, db: &Database) -> Result<Arc<Snapshot>, DbError> {
        let seen = match self.shared() {
            Ok(shared) => return Ok(shared),
            Err(seen) => seen,
        };
        let snapshot = Arc::new(Snapshot::open(db)?);
        self.share(seen, &snapshot);
        Ok(snapshot)
    }

    /// The shared read; if there is none, how many times a commit began or ended so far.
    fn shared(&self) -> Result<Arc<Snapshot>, u64> {
        let state = self.lock();
        state.shared.clone().ok_or(state.commits)
    }

    /// Shares `snapshot`, opened after `seen` was read, if no commit began or ended since.
    fn share(&self, seen: u64, snapshot: &Arc<Snapshot>) {
        let mut state = self.lock();
        if state.commits == seen && seen.is_multiple_of(2) {
            state.shared = Some(snapshot.clone());
        }
    }

    /// Opens a write transaction on `db`, whose commit makes the shared read stale.
    pub(crate) fn begin_write<'a>(&'a self, db: &Database) -> Result<WriteTxn<'a>, DbError> {
        #[allow(clippy::disallowed_methods)] // The one place that may: see the module doc.
        let txn = db.begin_write().map_err(dberr)?;
        Ok(WriteTxn {
            txn,
            snapshots: self,
        })
    }

    /// A commit begins or ends: the shared read is dropped, and none opened meanwhile
    /// is shared.
    fn committing(&self) {
        let stale = {
            let mut state = self.lock();
            state.commits += 1;
            state.shared.take()
        };
        // Outside the lock: closing a read takes redb's own.
        drop(stale);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("snapshots lock")
    }
}

/// A redb write transaction whose commit drops the shared read.
pub(crate) struct WriteTxn<'a> {
    txn: WriteTransaction,
    snapshots: &'a Snapshots,
}

impl WriteTxn<'_> {
    pub(crate) fn commit(self) -> Result<(), redb::CommitError> {
        self.snapshots.committing();
        let committed = self.txn.commit();
        self.snapshots.committing();
        committed
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
        let shared = db.snapshots.get(&db.db).unwrap();
        assert!(Arc::ptr_eq(&shared, &db.snapshots.get(&db.db).unwrap()));
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

    #[test]
    fn a_read_opened_while_a_commit_runs_is_not_shared() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        // Undisturbed, a read is shared: the race below is what keeps it from it.
        let seen = db.snapshots.shared().err().unwrap();
        let read = Arc::new(Snapshot::open(&db.db).unwrap());
        db.snapshots.share(seen, &read);
        assert!(Arc::ptr_eq(&read, &db.snapshots.shared().unwrap()));

        // A write commits: the shared read goes.
        write(&db, ApiWrite::Create(server("a", "{}")), true);
        let seen = db.snapshots.shared().err().unwrap();
        // A lookup opens its read before the next commit, and shares it after.
        let stale = Arc::new(Snapshot::open(&db.db).unwrap());
        write(&db, ApiWrite::Create(server("b", "{}")), true);
        db.snapshots.share(seen, &stale);
        assert!(db.snapshots.shared().is_err());
        assert_eq!(props(&db, "b").as_deref(), Some("{}"));

        // One that read how many commits ran while one was under way never shares.
        let state = db.snapshots.lock().commits;
        db.snapshots.committing();
        let during = Arc::new(Snapshot::open(&db.db).unwrap());
        db.snapshots.share(state + 1, &during);
        assert!(db.snapshots.shared().is_err());
        db.snapshots.committing();
    }
}
