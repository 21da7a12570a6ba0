//! The outbox: every change, in commit order, under a sequence number that only grows.
//!
//! A change is appended in the same transaction as the model (and the baseline) it
//! describes, so it is never committed-but-unannounced nor announced-but-uncommitted.
//! Readers keep a [`Cursor`]: the last sequence number they have handled, saved in the
//! database, so a restart resumes after it. Delivery is at least once: a reader that stops
//! between handling a change and saving its cursor handles that change again.
//!
//! The outbox keeps what some reader has not passed — an attached cursor, or the saved
//! cursor of a reader the caller says will come back — up to a bound for the readers the
//! caller names as plugins'; [`Db::trim_changes`] drops the rest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redb::{Durability, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::watch;

use crate::{Db, DbError, dberr};

/// Sequence number → change record (opaque bytes to this crate).
pub(crate) const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");
/// Reader name → the last sequence number it handled.
pub(crate) const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");
/// The last sequence number ever given, kept apart so that trimming every change does
/// not start the numbering again.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const LAST_SEQ: &str = "last-seq";
/// How often a reader's position is saved with an fsync; in between, without one.
const SYNC_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
/// The most changes dropped in one transaction: the database has one writer at a time,
/// and dropping a second's worth of the API's writes (~25 000) in one held every other
/// writer ~3 ms (on an idle machine; a chunk, ~0.3 ms).
pub(crate) const TRIM_CHUNK: u64 = 4096;
/// The pause between two such transactions.
const TRIM_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// What the outbox knows beyond the database: the last committed sequence number (for
/// readers to wait on) and where each attached reader is (for trimming).
/// What the outbox keeps besides what its readers have not passed.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// The most changes a plugin's reader holds back (see [`Db::trim_changes`]).
    pub max_plugin_lag: u64,
    /// The last changes kept even when every reader has passed them: a reader that is
    /// gone for a moment — an admin feed subscriber whose connection dropped with
    /// changes in flight — comes back to find what it had not received, since no cursor
    /// of the host can know what a client received.
    pub window: u64,
}

pub(crate) struct Outbox {
    committed: watch::Sender<u64>,
    /// Reader id → its name and position.
    attached: Mutex<HashMap<u64, (String, u64)>>,
    next_reader: std::sync::atomic::AtomicU64,
}

impl Outbox {
    pub(crate) fn new(last: u64) -> Outbox {
        Outbox {
            committed: watch::Sender::new(last),
            attached: Mutex::new(HashMap::new()),
            next_reader: Default::default(),
        }
    }

    /// Tells readers that changes up to `last` are committed.
    pub(crate) fn committed(&self, last: u64) {
        self.committed.send_if_modified(|seq| {
            let newer = last > *seq;
            *seq = (*seq).max(last);
            newer
        });
    }
}

/// The last sequence number given in `txn`'s snapshot.
pub(crate) fn last_seq(txn: &WriteTransaction) -> Result<u64, DbError> {
    let meta = txn.open_table(META).map_err(dberr)?;
    Ok(meta.get(LAST_SEQ).map_err(dberr)?.map_or(0, |v| v.value()))
}

/// Appends `records` in `txn`; returns the last sequence number given (the previous last
/// when `records` is empty). The caller reports it with [`Outbox::committed`] once the
/// transaction has committed.
pub(crate) fn append<'r>(
    txn: &WriteTransaction,
    records: impl IntoIterator<Item = &'r [u8]>,
) -> Result<u64, DbError> {
    let mut seq = last_seq(txn)?;
    let first = seq;
    {
        let mut changes = txn.open_table(CHANGES).map_err(dberr)?;
        for record in records {
            seq += 1;
            changes.insert(seq, record).map_err(dberr)?;
        }
    }
    if seq != first {
        let mut meta = txn.open_table(META).map_err(dberr)?;
        meta.insert(LAST_SEQ, seq).map_err(dberr)?;
    }
    Ok(seq)
}

/// Waits until a reader's progress (the last sequence number it handled, as it publishes
/// it) reaches `last`, or `deadline` passes; returns how many changes it is still behind —
/// what a stopping host says it leaves for the next start.
pub async fn wait_handled(
    progress: &mut watch::Receiver<u64>,
    last: u64,
    deadline: tokio::time::Instant,
) -> u64 {
    let caught_up = progress.wait_for(|handled| *handled >= last);
    if tokio::time::timeout_at(deadline, caught_up).await.is_ok() {
        return 0;
    }
    last.saturating_sub(*progress.borrow())
}

/// Where a reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After its saved cursor; a reader never seen before starts at the end, and its
    /// cursor is saved there.
    Saved,
    /// After its saved cursor; a reader never seen before starts at the oldest change the
    /// outbox keeps (a consumer group's `earliest`), and its cursor is saved there.
    SavedElseOldest,
    /// At the end, whatever was saved; its position is not saved either (a relay to a bus
    /// that forgets everything at exit).
    End,
    /// After the given sequence number (at most the end), not saved: a subscriber of the
    /// change feed that says where it was.
    After(u64),
}

impl Start {
    /// Whether the reader's position is saved in the database.
    fn saved(self) -> bool {
        matches!(self, Start::Saved | Start::SavedElseOldest)
    }
}

/// A reader of the outbox. Attached while it lives: what it has not passed is kept.
pub struct Cursor {
    db: Arc<Db>,
    name: String,
    id: u64,
    start: Start,
    /// The last sequence number handled.
    position: u64,
    /// The last sequence number returned by [`Cursor::next_batch`]: a reader may read on
    /// before it has handled what it read.
    read: u64,
    committed: watch::Receiver<u64>,
    /// When the position was last saved with an fsync.
    synced: std::time::Instant,
}

impl Db {
    /// Attaches the reader `name` to the outbox.
    pub fn cursor(self: &Arc<Db>, name: &str, start: Start) -> Result<Cursor, DbError> {
        let end = *self.outbox.committed.borrow();
        let position = match start {
            Start::End => end,
            Start::After(after) => after.min(end),
            Start::Saved | Start::SavedElseOldest => {
                // Saved at once when new: a reader that stops before it handles anything
                // resumes from here, not from a later end.
                let txn = self.begin_write()?;
                let position = {
                    let mut cursors = txn.open_table(CURSORS).map_err(dberr)?;
                    let saved = cursors.get(name).map_err(dberr)?.map(|v| v.value());
                    match saved {
                        Some(saved) => saved,
                        None => {
                            let new = match start {
                                Start::SavedElseOldest => {
                                    let changes = txn.open_table(CHANGES).map_err(dberr)?;
                                    let oldest = changes.first().map_err(dberr)?;
                                    oldest.map_or(end, |(seq, _)| seq.value() - 1)
                                }
                                _ => end,
                            };
                            cursors.insert(name, new).map_err(dberr)?;
                            new
                        }
                    }
                };
                txn.commit().map_err(dberr)?;
                position
            }
        };
        let id = self
            .outbox
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.outbox
            .attached
            .lock()
            .unwrap()
            .insert(id, (name.to_owned(), position));
        Ok(Cursor {
            db: self.clone(),
            name: name.to_owned(),
            id,
            start,
            position,
            read: position,
            committed: self.outbox.committed.subscribe(),
            synced: std::time::Instant::now(),
        })
    }

    /// The oldest change the outbox keeps, if any.
    pub fn oldest_change(&self) -> Result<Option<u64>, DbError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let changes = txn.open_table(CHANGES).map_err(dberr)?;
        let oldest = changes.first().map_err(dberr)?;
        Ok(oldest.map(|(seq, _)| seq.value()))
    }

    /// The last sequence number committed.
    pub fn last_change(&self) -> u64 {
        *self.outbox.committed.borrow()
    }

    /// Each attached reader's name and position (the furthest behind, for a name attached
    /// twice).
    pub fn readers(&self) -> Vec<(String, u64)> {
        let mut readers: HashMap<String, u64> = HashMap::new();
        for (name, position) in self.outbox.attached.lock().unwrap().values() {
            let least = readers.entry(name.clone()).or_insert(*position);
            *least = (*least).min(*position);
        }
        readers.into_iter().collect()
    }

    /// Appends change records that describe no write of the database (`emit-change`), in
    /// one transaction; returns the last sequence number given.
    pub fn append_changes(&self, records: &[Vec<u8>]) -> Result<u64, DbError> {
        let txn = self.begin_write()?;
        let last = append(&txn, records.iter().map(Vec::as_slice))?;
        txn.commit().map_err(dberr)?;
        self.outbox.committed(last);
        Ok(last)
    }

    /// Drops the changes that every attached reader has passed, and every reader that
    /// `plugins` names by its saved cursor (one that is not attached now but will be: an
    /// event step of the running host not yet joined, say), except the last
    /// `retention.window`; returns how many. With no such reader, nothing is dropped.
    ///
    /// A reader `plugins` names is kept at most `retention.max_plugin_lag` changes behind
    /// the last: one that falls further behind (a quarantined event step, a hostile one)
    /// loses the oldest, and is told how many when it reads on, instead of growing the
    /// database without bound. The host's own readers (the printer, the Kafka relay) lose
    /// nothing.
    pub fn trim_changes(
        &self,
        plugins: impl Fn(&str) -> bool,
        retention: Retention,
    ) -> Result<u64, DbError> {
        let last = self.last_change();
        let floor = last.saturating_sub(retention.max_plugin_lag);
        let held = |name: &str, position: u64| {
            if plugins(name) {
                position.max(floor)
            } else {
                position
            }
        };
        let attached = self
            .outbox
            .attached
            .lock()
            .unwrap()
            .values()
            .map(|(name, position)| held(name, *position))
            .min();
        let saved = {
            let txn = self.db.begin_read().map_err(dberr)?;
            let cursors = txn.open_table(CURSORS).map_err(dberr)?;
            let mut least: Option<u64> = None;
            for row in cursors.iter().map_err(dberr)? {
                let (name, position) = row.map_err(dberr)?;
                if plugins(name.value()) {
                    let position = held(name.value(), position.value());
                    least = Some(least.map_or(position, |l| l.min(position)));
                }
            }
            least
        };
        let Some(passed) = attached.into_iter().chain(saved).min() else {
            return Ok(0);
        };
        let passed = passed.min(last.saturating_sub(retention.window));
        let mut dropped = 0;
        while let Some(chunk) = self.drop_changes(passed)? {
            dropped += chunk;
            // Lets the writers waiting for the database go first: the API's writer,
            // the collectors.
            std::thread::sleep(TRIM_PAUSE);
        }
        Ok(dropped)
    }

    /// Drops up to [`TRIM_CHUNK`] of the oldest changes up to `passed`, in a
    /// transaction of their own; how many (`None` when there were none).
    fn drop_changes(&self, passed: u64) -> Result<Option<u64>, DbError> {
        let mut txn = self.begin_write()?;
        // Dropping needs no fsync of its own: a crash before the next durable commit
        // only keeps changes that were already handled.
        txn.set_durability(Durability::None).map_err(dberr)?;
        let mut dropped = 0;
        {
            let mut changes = txn.open_table(CHANGES).map_err(dberr)?;
            let first = changes.first().map_err(dberr)?.map(|(seq, _)| seq.value());
            let Some(first) = first.filter(|first| *first <= passed) else {
                drop(changes);
                txn.abort().map_err(dberr)?;
                return Ok(None);
            };
            // At most a chunk: the next so many sequence numbers.
            let upto = passed.min(first.saturating_add(TRIM_CHUNK - 1));
            changes
                .retain_in(first..=upto, |_, _| {
                    dropped += 1;
                    false
                })
                .map_err(dberr)?;
        }
        txn.commit().map_err(dberr)?;
        Ok(Some(dropped))
    }

    /// Changes after `after` and up to `last`, at most `limit` of them, in order.
    pub(crate) fn changes_after(
        &self,
        after: u64,
        last: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, DbError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let table = txn.open_table(CHANGES).map_err(dberr)?;
        let mut out = Vec::new();
        for row in table.range(after + 1..=last.max(after)).map_err(dberr)? {
            let (seq, record) = row.map_err(dberr)?;
            out.push((seq.value(), record.value().to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

impl Cursor {
    /// The last sequence number this reader handled.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Whether changes after the last one returned are committed.
    pub fn has_more(&self) -> bool {
        *self.committed.borrow() > self.read
    }

    /// Waits until [`Cursor::has_more`]. Cancel-safe.
    pub async fn wait(&mut self) {
        let read = self.read;
        // The sender lives in the database this cursor holds: waiting cannot fail.
        let _ = self.committed.wait_for(|last| *last > read).await;
    }

    /// Waits for changes after the last one returned, then returns up to `limit` of them.
    /// The position moves only with [`Cursor::handled`]. Cancel-safe: a batch not returned
    /// is read again.
    pub async fn next_batch(&mut self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, DbError> {
        self.wait().await;
        let position = self.read;
        // Not past what is announced: a change committed without an fsync (see
        // `Db::api_each`) is not durable yet, and must not be passed on before it is.
        let last = *self.committed.borrow();
        let db = self.db.clone();
        let batch = tokio::task::spawn_blocking(move || db.changes_after(position, last, limit))
            .await
            .expect("reading changes does not panic")?;
        if let Some((first, _)) = batch.first()
            && *first > position + 1
        {
            // Trimmed while this reader was not attached (it was not running).
            tracing::warn!(
                reader = self.name,
                missed = first - position - 1,
                "changes were dropped from the outbox before this reader read them"
            );
        }
        if let Some((last, _)) = batch.last() {
            self.read = *last;
        }
        Ok(batch)
    }

    /// Records that everything up to `seq` is handled; a reader with a saved cursor
    /// saves it — with an fsync at most every [`SYNC_EVERY`], so that a kill repeats at most
    /// that much (losing a save repeats changes, it never skips one).
    pub async fn handled(&mut self, seq: u64) -> Result<(), DbError> {
        if seq <= self.position {
            return Ok(());
        }
        if self.start.saved() {
            let db = self.db.clone();
            let name = self.name.clone();
            let sync = self.synced.elapsed() >= SYNC_EVERY;
            if sync {
                self.synced = std::time::Instant::now();
            }
            tokio::task::spawn_blocking(move || {
                let mut txn = db.begin_write()?;
                if !sync {
                    txn.set_durability(Durability::None).map_err(dberr)?;
                }
                txn.open_table(CURSORS)
                    .map_err(dberr)?
                    .insert(name.as_str(), seq)
                    .map_err(dberr)?;
                txn.commit().map_err(dberr)
            })
            .await
            .expect("saving a cursor does not panic")?;
        }
        self.position = seq;
        self.read = self.read.max(seq);
        if let Some((_, position)) = self.db.outbox.attached.lock().unwrap().get_mut(&self.id) {
            *position = seq;
        }
        Ok(())
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        self.db.outbox.attached.lock().unwrap().remove(&self.id);
    }
}
