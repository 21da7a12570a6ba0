//! The model: every entity by id (kind and key), with its owner — the plugin that wrote
//! it.
//!
//! Ownership is the rule that keeps plugins out of each other's data: an entity is
//! written, replaced and deleted only by its owner. A collector's snapshot skips (and
//! reports) what another plugin owns and deletes only what it owns; a `store` write of
//! another's entity is refused. The first writer of an id owns it. An entity whose writer
//! is unknown (state migrated from before owners, see `migrate`) is unclaimed: the next
//! writer permitted its kind claims it.
//!
//! Every write appends its change to the outbox in the same transaction, so what is
//! checked is what is replaced, and what is written is announced; the same transaction
//! moves the entity's bookkeeping to the change's sequence number (see `bookkeeping`).
//!
//! A deletion is soft while a role still has to see it go — a sync step enacted the
//! entity outside and must `delete-record` it, or a model policy handled it and must
//! `handle-delete` it: the entity stays, marked deleted and hidden from plugins, until
//! both are recorded ([`Db::record_syncs`], [`Db::record_policies`]). Anything else is
//! purged at once.
//!
//! The one exception to ownership: a model policy's or a sync step's call may write the
//! entity it handles, whoever owns it, if its `store` grant names the kind in `handle`
//! and nobody else changed the entity since the call read it ([`Writer::handling`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use synchro_model::bookkeeping::{Failure, UNATTRIBUTED};
use synchro_model::{Acting, Bookkeeping, Entity, Handling, Id, Operation, Upsert, Version};

use crate::bookkeeping::{self, BOOKKEEPING};
use crate::snapshot::WriteTxn;
use crate::sources::{self, Reconciled, Sources};
use crate::{Db, DbError, baseline, dberr, edges, outbox, policed};

/// id (see [`Id::as_str`]) → (owner, canonical entity); an empty owner is unclaimed.
pub(crate) const ENTITIES: TableDefinition<&str, (&str, &[u8])> = TableDefinition::new("entities");

/// Whether `writer` may write over an entity owned by `owner`.
fn may_write(owner: &str, writer: &str) -> bool {
    owner.is_empty() || owner == writer
}

/// An entity of the model, who owns it, and its bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub entity: Entity,
    /// The plugin that wrote it; `None` when unclaimed.
    pub owner: Option<String>,
    pub bookkeeping: Bookkeeping,
}

impl Stored {
    /// A row of the model — its owner (empty when unclaimed) and its encoded entity —
    /// with its bookkeeping.
    fn decode(owner: &str, bytes: &[u8], bookkeeping: Bookkeeping) -> Result<Stored, DbError> {
        Ok(Stored {
            entity: Entity::decode(bytes)?,
            owner: (!owner.is_empty()).then(|| owner.to_owned()),
            bookkeeping,
        })
    }
}

/// What a sync step's call for an entity did, as [`Db::record_syncs`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enacted {
    /// `sync-record` succeeded on the data as of version `seen`.
    Synced { seen: Version },
    /// `delete-record` succeeded on the entity deleted at version `seen`: purge it.
    Removed { seen: Version },
    /// The call failed.
    Failed(Failure),
}

/// What a model policy's call for an entity did, as [`Db::record_policies`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policed {
    /// `handle-create` or `handle-update` succeeded on `entity`, as of version `seen`.
    Handled { seen: Version, entity: Entity },
    /// `handle-delete` succeeded on the entity deleted at version `seen`.
    Deleted { seen: Version },
    /// The call failed.
    Failed(Failure),
}

/// What [`Db::set_handlers`] changed in the model.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Deleted entities purged: nothing waits for them any more.
    pub purged: u64,
    /// Entities whose progress from before several handlers per kind went to the kind's
    /// handler.
    pub attributed: u64,
}

/// What became of an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Done,
    /// The entity is no longer in the model: purged while the call ran.
    Gone,
    /// Not purged: written again since its deletion.
    Rewritten,
}

/// Who writes an entity: the plugin that will own it, and in which role.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub plugin: &'a str,
    pub acting: Acting,
    /// The entity a policy's or a step's call handles, which it may write whoever owns
    /// it (the owner stays).
    pub handling: Option<&'a Handling>,
}

impl Writer<'_> {
    /// Whether this write is of the entity the writer's call handles.
    fn handles(&self, id: &Id) -> Option<&Handling> {
        self.handling
            .filter(|h| self.acting != Acting::Source && h.id == *id)
    }

    /// Whether this writer may write over `existing`, owned by `owner`. The entity its
    /// call handles is written only while nobody else changed it since the call read it,
    /// whoever owns it: else the write would undo a change it did not see.
    fn may_write(&self, id: &Id, owner: &str, existing: &Bookkeeping) -> Permit {
        if existing.write_protect && self.acting != Acting::Source {
            return Permit::Protected;
        }
        if let Some(h) = self.handles(id) {
            return match h.still_current(existing) {
                false => Permit::Stale,
                true if may_write(owner, self.plugin) => Permit::Owner,
                true => Permit::Handling,
            };
        }
        if may_write(owner, self.plugin) {
            Permit::Owner
        } else {
            Permit::Refused
        }
    }
}

enum Permit {
    Owner,
    /// The entity the writer handles: written, and its owner kept.
    Handling,
    Stale,
    Refused,
    Protected,
}

/// What [`Db::model_put`] and [`Db::model_delete`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    /// Written: `version` is the one the write moved (`None`: it changed nothing).
    Done { version: Option<Version> },
    /// Not written: another plugin owns the entity.
    Refused,
    /// Not written: the entity the writer handles changed (or went) since its call read
    /// it; the call is made again on what it is now.
    Stale,
    /// Not written: the operator write-protected the entity, and the writer is a policy
    /// or a sync step.
    Protected,
}

/// An entity of a snapshot that was not written because another plugin owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub id: Id,
    pub owner: String,
}

/// What [`Db::commit_collect`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Changes appended to the outbox.
    pub announced: u64,
    /// Entities skipped: another plugin owns them. Not in the baseline either, so the
    /// next snapshot reports them again.
    pub refused: Vec<Refusal>,
}

/// What [`Db::plan_collect`] found a commit would do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Planned {
    /// The changes it would announce, in order.
    pub changes: Vec<(Operation, Entity)>,
    /// The entities it would leave to the plugins that own them.
    pub refused: Vec<Refusal>,
}

impl Db {
    /// Commits a diff's changes in one transaction: the plugin's baseline, the model and
    /// the outbox (the change `record` makes of each change written) move together, so a
    /// crash leaves all at the previous snapshot or all at this one. Entities another
    /// plugin owns are skipped and returned; a delete removes from the model only what
    /// `plugin` owns. What the collector writes is marked `no_sync` (never pushed
    /// outward) unless its manifest says otherwise.
    pub fn commit_collect(
        &self,
        plugin: &str,
        upserts: &[Upsert],
        deletes: &[Id],
        no_sync: bool,
        record: impl FnMut(Operation, &Entity) -> Vec<u8>,
    ) -> Result<Collected, DbError> {
        let txn = self.begin_write()?;
        let (records, refused) =
            self.stage_collect(&txn, plugin, upserts, deletes, no_sync, record)?;
        let announced = records.len() as u64;
        self.commit_with(txn, records.iter().map(Vec::as_slice))?;
        Ok(Collected { announced, refused })
    }

    /// What [`Db::commit_collect`] would do, found by the same code in a transaction
    /// that is then dropped: a dry run's plan cannot differ from the commit it stands
    /// for.
    pub fn plan_collect(
        &self,
        plugin: &str,
        upserts: &[Upsert],
        deletes: &[Id],
    ) -> Result<Planned, DbError> {
        let txn = self.begin_write()?;
        let mut changes = Vec::new();
        let (_, refused) = self.stage_collect(&txn, plugin, upserts, deletes, true, |op, e| {
            changes.push((op, e.clone()));
            Vec::new()
        })?;
        txn.abort().map_err(dberr)?;
        Ok(Planned { changes, refused })
    }

    /// Writes a diff's changes into `txn`: the change records to append, and the
    /// entities refused.
    fn stage_collect(
        &self,
        txn: &redb::WriteTransaction,
        plugin: &str,
        upserts: &[Upsert],
        deletes: &[Id],
        no_sync: bool,
        mut record: impl FnMut(Operation, &Entity) -> Vec<u8>,
    ) -> Result<(Vec<Vec<u8>>, Vec<Refusal>), DbError> {
        let name = baseline::table_name(plugin);
        let mut refused = Vec::new();
        let mut records = Vec::with_capacity(upserts.len() + deletes.len());
        // The sequence number the next record will get.
        let first = outbox::last_seq(txn)? + 1;
        {
            let mut baseline = txn.open_table(baseline::def(&name)).map_err(dberr)?;
            let mut rows = Rows::open(txn, self.policies())?;
            let sources = self.sources();
            let mut buf = Vec::new();
            for upsert in upserts {
                let id = upsert.entity.id();
                buf.clear();
                upsert.entity.encode(&mut buf);
                if sources.rank(id.kind(), plugin).is_some() {
                    let at = first + records.len() as Version;
                    let entity = Some(&upsert.entity);
                    match rows.reconcile(&sources, id, plugin, entity, at, no_sync)? {
                        Change::Refused(owner) => {
                            refused.push(Refusal {
                                id: id.clone(),
                                owner,
                            });
                            continue;
                        }
                        Change::Changed(operation, merged) => {
                            records.push(record(operation, &merged));
                        }
                        Change::Unchanged => {}
                    }
                    baseline
                        .insert(id.as_str(), (upsert.hash, buf.as_slice()))
                        .map_err(dberr)?;
                    continue;
                }
                // One B-tree operation in the common case: write, and put the previous
                // row back when it belongs to another plugin (rare).
                let (theirs, old_edge) = match rows
                    .model
                    .insert(id.as_str(), (plugin, buf.as_slice()))
                    .map_err(dberr)?
                {
                    Some(old) => {
                        let (owner, bytes) = old.value();
                        let theirs =
                            (!may_write(owner, plugin)).then(|| (owner.to_owned(), bytes.to_vec()));
                        let edge = edges::is_edge(bytes).then(|| Entity::decode(bytes));
                        (theirs, edge.transpose()?)
                    }
                    None => (None, None),
                };
                if let Some((owner, bytes)) = theirs {
                    rows.model
                        .insert(id.as_str(), (owner.as_str(), bytes.as_slice()))
                        .map_err(dberr)?;
                    refused.push(Refusal {
                        id: id.clone(),
                        owner,
                    });
                    continue;
                }
                edges::replace(&mut rows.edges, id, old_edge.as_ref(), Some(&upsert.entity))?;
                baseline
                    .insert(id.as_str(), (upsert.hash, buf.as_slice()))
                    .map_err(dberr)?;
                let at = first + records.len() as Version;
                let mut books_of = bookkeeping::get(&rows.books, id)?;
                books_of.write(Acting::Source, at);
                books_of.no_sync = no_sync;
                bookkeeping::put(&mut rows.books, id, &books_of)?;
                records.push(record(upsert.operation, &upsert.entity));
            }
            for id in deletes {
                let Some(last) = baseline.remove(id.as_str()).map_err(dberr)? else {
                    continue;
                };
                let last = Entity::decode(last.value().1)?;
                if sources.rank(id.kind(), plugin).is_some() {
                    let at = first + records.len() as Version;
                    if let Change::Changed(operation, entity) =
                        rows.reconcile(&sources, id, plugin, None, at, no_sync)?
                    {
                        records.push(record(operation, &entity));
                    }
                    continue;
                }
                let owned = rows
                    .model
                    .get(id.as_str())
                    .map_err(dberr)?
                    .is_some_and(|row| may_write(row.value().0, plugin));
                if owned {
                    let at = first + records.len() as Version;
                    rows.delete(id, at)?;
                    records.push(record(Operation::Delete, &last));
                }
            }
        }
        Ok((records, refused))
    }

    /// The model's entity under `id`.
    pub fn model_get(&self, id: &Id) -> Result<Option<Stored>, DbError> {
        let mut found = self.model_get_many(std::slice::from_ref(id))?;
        Ok(found.pop().flatten())
    }

    /// Up to `limit` entities of `kind` (any kind when `None`) owned by `owner` (any
    /// owner when `None`; `""` for the unclaimed) after the entity `after` that `select`
    /// takes, by kind, then key, with their owners. Scans the model: fine for the sizes
    /// plugins and operators page through.
    pub fn model_query(
        &self,
        kind: Option<&str>,
        owner: Option<&str>,
        after: Option<&Id>,
        select: impl Fn(&Id, &Bookkeeping) -> bool,
        limit: usize,
    ) -> Result<Vec<Stored>, DbError> {
        self.model_scan(
            kind,
            after,
            select,
            limit,
            |_, row_owner, bytes, books_of| {
                if owner.is_some_and(|owner| owner != row_owner) {
                    return Ok(None);
                }
                Stored::decode(row_owner, bytes, books_of).map(Some)
            },
        )
    }

    /// The ids [`Db::model_query`] would return, without decoding an entity: what a
    /// model role lists its work with, every entity of its kinds at start.
    pub fn model_ids(
        &self,
        kind: &str,
        after: Option<&Id>,
        select: impl Fn(&Id, &Bookkeeping) -> bool,
        limit: usize,
    ) -> Result<Vec<Id>, DbError> {
        self.model_scan(Some(kind), after, select, limit, |id, _, _, _| Ok(Some(id)))
    }

    /// What `take` makes of rows of the model as [`Db::model_query`] selects them, until
    /// it made `limit` (it may pass a row by).
    pub(crate) fn model_scan<T>(
        &self,
        kind: Option<&str>,
        after: Option<&Id>,
        select: impl Fn(&Id, &Bookkeeping) -> bool,
        limit: usize,
        take: impl Fn(Id, &str, &[u8], Bookkeeping) -> Result<Option<T>, DbError>,
    ) -> Result<Vec<T>, DbError> {
        let first_of_kind = kind.map(|k| Id::new(k, ""));
        let Some(lower) = lower_bound(kind, first_of_kind.as_ref(), after) else {
            return Ok(Vec::new());
        };
        let read = self.db.model()?;
        let books = &read.books;
        let mut out = Vec::new();
        for row in read
            .entities
            .range::<&str>((lower, Bound::Unbounded))
            .map_err(dberr)?
        {
            if out.len() >= limit {
                break;
            }
            let (id, value) = row.map_err(dberr)?;
            let id = Id::parse(id.value().to_owned())
                .ok_or_else(|| corrupt(format!("a model key is not an id: {:?}", id.value())))?;
            if kind.is_some_and(|k| k != id.kind()) {
                break;
            }
            let books_of = bookkeeping::get(books, &id)?;
            if !select(&id, &books_of) {
                continue;
            }
            let (owner, bytes) = value.value();
            out.extend(take(id, owner, bytes, books_of)?);
        }
        Ok(out)
    }

    /// Writes `entity`, owned by `writer`, unless another plugin owns the entity it would
    /// replace, and appends the change `record` makes of what the model then holds, in
    /// one transaction. Saving what is there already changes nothing, announces nothing
    /// and leaves the bookkeeping be. A soft-deleted entity is not there to replace:
    /// writing it creates it again. A source the operator ranks for the kind contributes
    /// its write, and the model holds the merge of every contribution (see `sources`).
    pub fn model_put(
        &self,
        writer: Writer<'_>,
        entity: &Entity,
        record: impl FnOnce(Operation, &Entity) -> Vec<u8>,
    ) -> Result<Write, DbError> {
        self.model_apply(writer, entity.id(), Some(entity), record)
    }

    /// Removes the entity `id` unless another plugin than `writer` owns it (or the
    /// operator write-protected it and the writer is a policy or a step), and appends the
    /// change `record` makes of it, in one transaction. An absent entity is done. A
    /// source the operator ranks for the kind withdraws its contribution: the entity goes
    /// with the last one.
    pub fn model_delete(
        &self,
        writer: Writer<'_>,
        id: &Id,
        record: impl FnOnce(Operation, &Entity) -> Vec<u8>,
    ) -> Result<Write, DbError> {
        self.model_apply(writer, id, None, record)
    }

    /// `writer`'s write (`Some`) or deletion (`None`) of `id`, in a transaction of its
    /// own.
    fn model_apply(
        &self,
        writer: Writer<'_>,
        id: &Id,
        entity: Option<&Entity>,
        record: impl FnOnce(Operation, &Entity) -> Vec<u8>,
    ) -> Result<Write, DbError> {
        let txn = self.begin_write()?;
        let at = outbox::last_seq(&txn)? + 1;
        let change = {
            let mut rows = Rows::open(&txn, self.policies())?;
            match rows.apply(&self.sources(), writer, id, entity, at)? {
                Ok(change) => change,
                Err(refused) => return Ok(refused),
            }
        };
        self.commit_announcing(txn, change, at, record)
    }

    /// Commits `txn` with the record of `change`, made at version `at`.
    pub(crate) fn commit_announcing(
        &self,
        txn: WriteTxn<'_>,
        change: Change,
        at: Version,
        record: impl FnOnce(Operation, &Entity) -> Vec<u8>,
    ) -> Result<Write, DbError> {
        let (record, version) = match change {
            Change::Refused(_) => return Ok(Write::Refused),
            Change::Changed(operation, entity) => (Some(record(operation, &entity)), Some(at)),
            Change::Unchanged => (None, None),
        };
        self.commit_with(txn, record.as_deref())?;
        Ok(Write::Done { version })
    }

    /// The entities under `ids`, in one read: what a model role handles next.
    pub fn model_get_many(&self, ids: &[Id]) -> Result<Vec<Option<Stored>>, DbError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        get_many(&txn, ids)
    }

    /// The entities under `ids`, each with what the model policy `policy` last handled
    /// of it (the `previous` of a `handle-update`), in one read.
    #[allow(clippy::type_complexity)]
    pub fn model_get_policed(
        &self,
        policy: &str,
        ids: &[Id],
    ) -> Result<Vec<Option<(Stored, Option<Entity>)>>, DbError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let policed = txn.open_table(policed::POLICED_AS).map_err(dberr)?;
        let stored = get_many(&txn, ids)?;
        ids.iter()
            .zip(stored)
            .map(|(id, stored)| {
                let Some(stored) = stored else {
                    return Ok(None);
                };
                Ok(Some((stored, policed::get(&policed, id, policy)?)))
            })
            .collect()
    }

    /// Records what the sync step `step`'s calls did, in one transaction; says for each
    /// what became of it. Bookkeeping only: nothing is announced.
    ///
    /// Without an fsync of its own (the next durable commit carries it): a record lost to
    /// a crash only makes the step enact the entity again, which it must bear anyway (a
    /// crash between its call and this record does the same), and an fsync per batch
    /// would cap a step far below what its outside system takes.
    pub fn record_syncs(
        &self,
        step: &str,
        outcomes: &[(Id, Enacted)],
    ) -> Result<Vec<Recorded>, DbError> {
        self.record(outcomes, |rows, id, books_of, outcome| {
            Ok(match outcome {
                Enacted::Synced { seen } => {
                    books_of.enacted(step, *seen);
                    Recorded::Done
                }
                // Written again since: live, and synced next.
                Enacted::Removed { seen } if !books_of.deleted || books_of.updated != *seen => {
                    Recorded::Rewritten
                }
                Enacted::Removed { .. } => {
                    books_of.removed(step);
                    rows.purge_if_done(id, books_of)?;
                    Recorded::Done
                }
                Enacted::Failed(failure) => {
                    books_of.steps.entry(step).status.failed(failure.clone());
                    Recorded::Done
                }
            })
        })
    }

    /// Records what the model policy `policy`'s calls did, in one transaction, as
    /// [`Db::record_syncs`] does for a sync step (and without an fsync, for the same
    /// reason: a lost record only runs the policy again).
    pub fn record_policies(
        &self,
        policy: &str,
        outcomes: &[(Id, Policed)],
    ) -> Result<Vec<Recorded>, DbError> {
        self.record(outcomes, |rows, id, books_of, outcome| {
            Ok(match outcome {
                Policed::Handled { seen, entity } => {
                    policed::put(&mut rows.policed, id, policy, entity)?;
                    books_of.policed(policy, *seen);
                    Recorded::Done
                }
                Policed::Deleted { seen } if !books_of.deleted || books_of.updated != *seen => {
                    Recorded::Rewritten
                }
                Policed::Deleted { seen } => {
                    books_of.policed(policy, *seen);
                    rows.purge_if_done(id, books_of)?;
                    Recorded::Done
                }
                Policed::Failed(failure) => {
                    books_of
                        .policies
                        .entry(policy)
                        .status
                        .failed(failure.clone());
                    Recorded::Done
                }
            })
        })
    }

    /// Says which model policies and which sync steps run for each kind, once the
    /// plugins are loaded. Returns what that changed in the model:
    ///
    /// - the deleted entities that waited only for the `handle-delete` of a policy no
    ///   longer running (one removed from the host) are purged;
    /// - progress from before several handlers per kind goes to the kind's one policy or
    ///   step (see `synchro_model::bookkeeping::UNATTRIBUTED`).
    ///
    /// Until the host first says, every policed entity's deletion waits.
    pub fn set_handlers(
        &self,
        policies: BTreeMap<String, BTreeSet<String>>,
        steps: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<Swept, DbError> {
        let running = Arc::new(policies);
        let policies = Policies::Running(running.clone());
        *self.policies.write().expect("policies lock") = policies.clone();
        let one = |handlers: &BTreeMap<String, BTreeSet<String>>, kind: &str| {
            let of_kind = handlers.get(kind)?;
            (of_kind.len() == 1)
                .then(|| of_kind.first().cloned())
                .flatten()
        };
        let txn = self.begin_write()?;
        let mut swept = Swept::default();
        {
            let mut rows = Rows::open(&txn, policies.clone())?;
            let mut ids = Vec::new();
            for row in rows.books.iter().map_err(dberr)? {
                let (id, _) = row.map_err(dberr)?;
                ids.push(id.value().to_owned());
            }
            for id in ids {
                let id = Id::parse(id)
                    .ok_or_else(|| corrupt("a bookkeeping key is not an id".into()))?;
                let mut books_of = bookkeeping::get(&rows.books, &id)?;
                let before = books_of.clone();
                if let Some(policy) = one(&running, id.kind())
                    && books_of.policies.attribute(&policy)
                {
                    policed::attribute(&mut rows.policed, &id, &policy)?;
                }
                if let Some(step) = one(steps, id.kind()) {
                    books_of.steps.attribute(&step);
                }
                if books_of != before {
                    swept.attributed += 1;
                    bookkeeping::put(&mut rows.books, &id, &books_of)?;
                }
                if books_of.deleted {
                    rows.purged = false;
                    rows.purge_if_done(&id, &books_of)?;
                    swept.purged += u64::from(rows.purged);
                }
            }
        }
        txn.commit().map_err(dberr)?;
        Ok(swept)
    }

    /// Changes the flags of the entity `id` with `set` (the operator's: `no-policy`,
    /// `write-protect`); whether there is such an entity. Bookkeeping only:
    /// nothing is announced. A deleted entity that nothing waits for any more is purged.
    pub fn model_set_flags(
        &self,
        id: &Id,
        set: impl FnOnce(&mut Bookkeeping),
    ) -> Result<bool, DbError> {
        let txn = self.begin_write()?;
        {
            let mut rows = Rows::open(&txn, self.policies())?;
            if rows.model.get(id.as_str()).map_err(dberr)?.is_none() {
                return Ok(false);
            }
            let mut books_of = bookkeeping::get(&rows.books, id)?;
            set(&mut books_of);
            bookkeeping::put(&mut rows.books, id, &books_of)?;
            rows.purge_if_done(id, &books_of)?;
        }
        txn.commit().map_err(dberr)?;
        Ok(true)
    }

    /// What each source the operator ranks for `id`'s kind last wrote of it, by plugin
    /// name: the writes the merge in the model is made of, the losing ones included.
    pub fn model_sources(&self, id: &Id) -> Result<Vec<(String, Entity)>, DbError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let table = txn.open_table(sources::CONTRIBUTIONS).map_err(dberr)?;
        sources::of(&table, id)
    }

    /// The ids of the edges with `vertex` as an end, soft-deleted ones included (they
    /// are still outside).
    pub fn edges_of(&self, vertex: &Id) -> Result<Vec<Id>, DbError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let table = txn.open_multimap_table(edges::EDGES).map_err(dberr)?;
        edges::of(&table, vertex)
    }

    /// Applies `apply` to the bookkeeping of each outcome's entity in one transaction
    /// without an fsync, and writes it back unless the entity was purged.
    fn record<O>(
        &self,
        outcomes: &[(Id, O)],
        mut apply: impl FnMut(&mut Rows<'_>, &Id, &mut Bookkeeping, &O) -> Result<Recorded, DbError>,
    ) -> Result<Vec<Recorded>, DbError> {
        let mut txn = self.begin_write()?;
        txn.set_durability(redb::Durability::None).map_err(dberr)?;
        let mut recorded = Vec::with_capacity(outcomes.len());
        {
            let mut rows = Rows::open(&txn, self.policies())?;
            for (id, outcome) in outcomes {
                if rows.model.get(id.as_str()).map_err(dberr)?.is_none() {
                    recorded.push(Recorded::Gone);
                    continue;
                }
                let mut books_of = bookkeeping::get(&rows.books, id)?;
                let before = books_of.clone();
                rows.purged = false;
                let result = apply(&mut rows, id, &mut books_of, outcome)?;
                if !rows.purged && books_of != before {
                    bookkeeping::put(&mut rows.books, id, &books_of)?;
                }
                recorded.push(result);
            }
        }
        txn.commit().map_err(dberr)?;
        Ok(recorded)
    }

    /// Appends `records` to the outbox in `txn`, then commits.
    pub(crate) fn commit_with<'r>(
        &self,
        txn: WriteTxn<'_>,
        records: impl IntoIterator<Item = &'r [u8]>,
    ) -> Result<(), DbError> {
        let last = outbox::append(&txn, records)?;
        txn.commit().map_err(dberr)?;
        self.outbox.committed(last);
        Ok(())
    }
}

/// The model's tables in one write transaction.
pub(crate) struct Rows<'txn> {
    model: redb::Table<'txn, &'static str, (&'static str, &'static [u8])>,
    books: redb::Table<'txn, &'static str, &'static [u8]>,
    policed: policed::PolicedAs<'txn>,
    edges: edges::Edges<'txn>,
    contributions: sources::Contributions<'txn>,
    /// The model policies that run for each kind, whose `handle-delete` a deletion
    /// waits for.
    policies: Policies,
    /// Whether the last entity worked on was purged.
    purged: bool,
}

/// The model policies that run for each kind, as the host last said.
#[derive(Debug, Clone, Default)]
pub(crate) enum Policies {
    /// Not said yet (the plugins are loading): every policed entity's deletion waits.
    #[default]
    Unknown,
    Running(Arc<BTreeMap<String, BTreeSet<String>>>),
}

impl Policies {
    /// Whether `policy` runs for `kind`. Progress recorded before policies could be
    /// told apart is nobody's once the host has said (the kind's one policy took it
    /// over; with several, none can): it keeps no deletion waiting.
    fn runs(&self, kind: &str, policy: &str) -> bool {
        match self {
            Policies::Unknown => true,
            Policies::Running(_) if policy == UNATTRIBUTED => false,
            Policies::Running(kinds) => kinds.get(kind).is_some_and(|p| p.contains(policy)),
        }
    }
}

/// What a write did to the model.
pub(crate) enum Change {
    /// Not written: a plugin the operator does not rank for the kind owns the entity (a
    /// ranked source's write; see `sources`).
    Refused(String),
    /// The merge changed: announce this.
    Changed(Operation, Entity),
    /// The source's contribution is kept; the merge is what it was.
    Unchanged,
}

impl<'txn> Rows<'txn> {
    pub(crate) fn open(
        txn: &'txn WriteTransaction,
        policies: Policies,
    ) -> Result<Rows<'txn>, DbError> {
        Ok(Rows {
            model: txn.open_table(ENTITIES).map_err(dberr)?,
            books: txn.open_table(BOOKKEEPING).map_err(dberr)?,
            policed: txn.open_table(policed::POLICED_AS).map_err(dberr)?,
            edges: txn.open_multimap_table(edges::EDGES).map_err(dberr)?,
            contributions: txn.open_table(sources::CONTRIBUTIONS).map_err(dberr)?,
            policies,
            purged: false,
        })
    }

    /// The entity `id` and its owner (empty while unclaimed), if the model holds it and
    /// it is not deleted.
    pub(crate) fn live(&self, id: &Id) -> Result<Option<(String, Entity)>, DbError> {
        let Some(row) = self.model.get(id.as_str()).map_err(dberr)? else {
            return Ok(None);
        };
        let (owner, bytes) = row.value();
        if bookkeeping::get(&self.books, id)?.deleted {
            return Ok(None);
        }
        Ok(Some((owner.to_owned(), Entity::decode(bytes)?)))
    }

    /// The owner of `id` (empty while unclaimed), if the model holds it and it is not
    /// deleted.
    pub(crate) fn live_owner(&self, id: &Id) -> Result<Option<String>, DbError> {
        let Some(row) = self.model.get(id.as_str()).map_err(dberr)? else {
            return Ok(None);
        };
        let owner = row.value().0.to_owned();
        Ok((!bookkeeping::get(&self.books, id)?.deleted).then_some(owner))
    }

    /// The edges with `vertex` as an end that are not deleted.
    pub(crate) fn live_edges_of(&self, vertex: &Id) -> Result<Vec<Id>, DbError> {
        let mut live = Vec::new();
        for edge in edges::of(&self.edges, vertex)? {
            if self.live_owner(&edge)?.is_some() {
                live.push(edge);
            }
        }
        Ok(live)
    }

    /// Deletes `id` from the model at version `at`: softly while a role still has to
    /// see it go, at once otherwise.
    fn delete(&mut self, id: &Id, at: Version) -> Result<(), DbError> {
        let mut books_of = bookkeeping::get(&self.books, id)?;
        if books_of.holds_delete(|policy| self.policies.runs(id.kind(), policy)) {
            books_of.delete(at);
            bookkeeping::put(&mut self.books, id, &books_of)
        } else {
            self.purge(id, &books_of)
        }
    }

    /// Purges the deleted entity `id` once no role has anything left to do with it.
    fn purge_if_done(&mut self, id: &Id, books_of: &Bookkeeping) -> Result<(), DbError> {
        if books_of.purgeable(|policy| self.policies.runs(id.kind(), policy)) {
            self.purge(id, books_of)?;
        }
        Ok(())
    }

    /// Purges `id`, whose bookkeeping is `books_of`.
    fn purge(&mut self, id: &Id, books_of: &Bookkeeping) -> Result<(), DbError> {
        let edge = match self.model.remove(id.as_str()).map_err(dberr)? {
            Some(row) if edges::is_edge(row.value().1) => Some(Entity::decode(row.value().1)?),
            _ => None,
        };
        edges::replace(&mut self.edges, id, edge.as_ref(), None)?;
        self.books.remove(id.as_str()).map_err(dberr)?;
        policed::remove_all(&mut self.policed, id, books_of)?;
        for (plugin, _) in sources::of(&self.contributions, id)? {
            self.contributions
                .remove((id.as_str(), plugin.as_str()))
                .map_err(dberr)?;
        }
        self.purged = true;
        Ok(())
    }

    /// `writer`'s write (`Some`) or deletion (`None`) of `id` at version `at`, or why it
    /// may not (`Err`): a source the operator ranks for the kind contributes it to the
    /// merge, any other writer writes the entity itself.
    pub(crate) fn apply(
        &mut self,
        sources: &Sources,
        writer: Writer<'_>,
        id: &Id,
        entity: Option<&Entity>,
        at: Version,
    ) -> Result<Result<Change, Write>, DbError> {
        if writer.acting == Acting::Source && sources.rank(id.kind(), writer.plugin).is_some() {
            // Sources still write what the operator write-protected.
            return Ok(Ok(self.reconcile(
                sources,
                id,
                writer.plugin,
                entity,
                at,
                false,
            )?));
        }
        match entity {
            Some(entity) => self.put(writer, entity, at),
            None => self.remove(writer, id, at),
        }
    }

    /// `writer`'s write of `entity` at version `at`, or why it may not (`Err`).
    fn put(
        &mut self,
        writer: Writer<'_>,
        entity: &Entity,
        at: Version,
    ) -> Result<Result<Change, Write>, DbError> {
        let id = entity.id();
        let mut owner = writer.plugin.to_owned();
        let mut claims = true;
        let existing = match self.model.get(id.as_str()).map_err(dberr)? {
            Some(row) => {
                let (theirs, bytes) = row.value();
                let books_of = bookkeeping::get(&self.books, id)?;
                match writer.may_write(id, theirs, &books_of) {
                    Permit::Owner => claims = theirs != owner,
                    Permit::Handling => (owner, claims) = (theirs.to_owned(), false),
                    Permit::Stale => return Ok(Err(Write::Stale)),
                    Permit::Refused => return Ok(Err(Write::Refused)),
                    Permit::Protected => return Ok(Err(Write::Protected)),
                }
                Some((Entity::decode(bytes)?, books_of))
            }
            // Purged while the call ran: writing it would bring it back.
            None if writer.handles(id).is_some() => return Ok(Err(Write::Stale)),
            None => None,
        };
        let live = existing
            .as_ref()
            .filter(|(_, books_of)| !books_of.deleted)
            .map(|(entity, _)| entity);
        let unchanged = live == Some(entity);
        if unchanged && !claims {
            return Ok(Ok(Change::Unchanged));
        }
        self.model
            .insert(
                id.as_str(),
                (owner.as_str(), entity.to_canonical().as_slice()),
            )
            .map_err(dberr)?;
        let operation = match live {
            // An entity from before owners, claimed: nothing else to do.
            Some(_) if unchanged => return Ok(Ok(Change::Unchanged)),
            Some(_) => Operation::Update,
            None => Operation::Create,
        };
        let old = existing.as_ref().map(|(entity, _)| entity);
        edges::replace(&mut self.edges, id, old, Some(entity))?;
        let books_of = match existing {
            Some((_, mut books_of)) => {
                books_of.write(writer.acting, at);
                // A source writing through the store wants it synced, whatever the
                // entity was before (observed data from before bookkeeping).
                books_of.no_sync &= writer.acting != Acting::Source;
                books_of
            }
            None => Bookkeeping::created(at, false),
        };
        bookkeeping::put(&mut self.books, id, &books_of)?;
        Ok(Ok(Change::Changed(operation, entity.clone())))
    }

    /// `writer`'s deletion of `id` at version `at`, or why it may not (`Err`).
    fn remove(
        &mut self,
        writer: Writer<'_>,
        id: &Id,
        at: Version,
    ) -> Result<Result<Change, Write>, DbError> {
        let existing = match self.model.get(id.as_str()).map_err(dberr)? {
            Some(row) => {
                let (owner, bytes) = row.value();
                if !may_write(owner, writer.plugin) {
                    return Ok(Err(Write::Refused));
                }
                Entity::decode(bytes)?
            }
            None => return Ok(Ok(Change::Unchanged)),
        };
        let books_of = bookkeeping::get(&self.books, id)?;
        if books_of.deleted {
            return Ok(Ok(Change::Unchanged));
        }
        if books_of.write_protect && writer.acting != Acting::Source {
            return Ok(Err(Write::Protected));
        }
        self.delete(id, at)?;
        Ok(Ok(Change::Changed(Operation::Delete, existing)))
    }

    /// `plugin`'s write (`Some`) or deletion (`None`) of `id`, a source the operator
    /// ranks for its kind, at version `at`: its contribution is kept and the model's
    /// entity becomes the merge of all. `no_sync` is the writer's wish for what it
    /// writes.
    fn reconcile(
        &mut self,
        sources: &Sources,
        id: &Id,
        plugin: &str,
        entity: Option<&Entity>,
        at: Version,
        no_sync: bool,
    ) -> Result<Change, DbError> {
        let existing = match self.model.get(id.as_str()).map_err(dberr)? {
            Some(row) => {
                let (owner, bytes) = row.value();
                Some((owner.to_owned(), Entity::decode(bytes)?))
            }
            None => None,
        };
        if let Some((owner, _)) = &existing
            && !may_write(owner, plugin)
            && sources.rank(id.kind(), owner).is_none()
        {
            return Ok(Change::Refused(owner.clone()));
        }
        let books_of = bookkeeping::get(&self.books, id)?;
        let old = existing.map(|(_, entity)| entity);
        let live = old.as_ref().filter(|_| !books_of.deleted);
        match sources::contribute(&mut self.contributions, sources, id, plugin, entity)? {
            Reconciled::Merged { owner, entity } => {
                self.model
                    .insert(
                        id.as_str(),
                        (owner.as_str(), entity.to_canonical().as_slice()),
                    )
                    .map_err(dberr)?;
                edges::replace(&mut self.edges, id, old.as_ref(), Some(&entity))?;
                if live == Some(&entity) {
                    return Ok(Change::Unchanged);
                }
                let operation = match live {
                    Some(_) => Operation::Update,
                    None => Operation::Create,
                };
                let mut books_of = books_of;
                books_of.write(Acting::Source, at);
                books_of.no_sync = no_sync;
                bookkeeping::put(&mut self.books, id, &books_of)?;
                Ok(Change::Changed(operation, entity))
            }
            Reconciled::Gone => match live {
                Some(last) => {
                    let last = last.clone();
                    self.delete(id, at)?;
                    Ok(Change::Changed(Operation::Delete, last))
                }
                None => Ok(Change::Unchanged),
            },
        }
    }
}

/// The entities under `ids` as `txn` reads them.
fn get_many(txn: &redb::ReadTransaction, ids: &[Id]) -> Result<Vec<Option<Stored>>, DbError> {
    let table = txn.open_table(ENTITIES).map_err(dberr)?;
    let books = txn.open_table(BOOKKEEPING).map_err(dberr)?;
    ids.iter()
        .map(|id| {
            let Some(row) = table.get(id.as_str()).map_err(dberr)? else {
                return Ok(None);
            };
            let (owner, bytes) = row.value();
            Ok(Some(Stored::decode(
                owner,
                bytes,
                bookkeeping::get(&books, id)?,
            )?))
        })
        .collect()
}

fn corrupt(why: String) -> DbError {
    DbError::Corrupt(synchro_model::EntityError::Corrupt(why))
}

/// Where a scan of a table keyed by [`Id`] starts, for the rows of `kind` (every kind when
/// `None`; `first_of_kind` is `Id::new(kind, "")`) after `after`: `None` when there are
/// none (`after` is past the kind).
pub(crate) fn lower_bound<'a>(
    kind: Option<&str>,
    first_of_kind: Option<&'a Id>,
    after: Option<&'a Id>,
) -> Option<Bound<&'a str>> {
    Some(match (kind, after) {
        (Some(k), Some(after)) if after.kind() > k => return None,
        (Some(k), Some(after)) if after.kind() == k => Bound::Excluded(after.as_str()),
        (None, Some(after)) => Bound::Excluded(after.as_str()),
        (_, _) => first_of_kind.map_or(Bound::Unbounded, |first| Bound::Included(first.as_str())),
    })
}
