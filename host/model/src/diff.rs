//! Turns a snapshot into change notifications against a baseline of hashes (the
//! Vitrage semantics).
//!
//! A [`Diff`] is fed entities one batch at a time while the collector runs, so the host
//! holds one hash per entity plus only the entities that changed — never the snapshot.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::entity::{Entity, EntityError, Id};

/// The baseline of one plugin: entity id (kind and key) → hash of its canonical form.
///
/// foldhash instead of std's SipHash: several times faster on short keys, which this map
/// hashes twice per entity per collect, and still seeded at random per map, so keys chosen
/// by a plugin cannot be crafted to collide.
pub type Hashes = HashMap<Id, u64, foldhash::fast::RandomState>;

/// What a changed entity became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// Whether a snapshot covers the whole outside system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    /// Entities absent from the snapshot were deleted.
    Complete,
    /// The snapshot says nothing about absent entities.
    Partial,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    #[error(transparent)]
    Entity(#[from] EntityError),
    #[error("{0} appears twice in one snapshot")]
    Duplicate(Id),
}

/// A created or updated entity and the hash the baseline will record for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upsert {
    pub operation: Operation,
    pub entity: Entity,
    pub hash: u64,
}

/// The result of a finished diff: what to publish, and the baseline to commit after.
#[derive(Debug)]
pub struct Outcome {
    /// Entities to announce as CREATE or UPDATE, in snapshot order.
    pub upserts: Vec<Upsert>,
    /// Entities to announce as DELETE (complete snapshots only), sorted.
    pub deletes: Vec<Id>,
    /// The baseline once these changes are committed.
    pub next: Hashes,
    /// Entities in the baseline the snapshot was diffed against.
    pub previous: usize,
    pub completeness: Completeness,
    /// The baseline's hash of each of `deletes`, in the same order: what
    /// [`Outcome::keep_deletes`] puts back.
    deleted_hashes: Vec<u64>,
}

impl Outcome {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }

    /// Takes the deletes `keep` picks back out of this outcome: they stay in the next
    /// baseline with the hash they had, as if the snapshot had shown them unchanged, so
    /// the next snapshot that lacks them finds them again. Returns them, sorted.
    pub fn keep_deletes(&mut self, mut keep: impl FnMut(&Id) -> bool) -> Vec<Id> {
        let mut kept = Vec::new();
        let mut deletes = Vec::with_capacity(self.deletes.len());
        let mut hashes = Vec::with_capacity(self.deletes.len());
        let gone = std::mem::take(&mut self.deletes).into_iter();
        for (id, hash) in gone.zip(std::mem::take(&mut self.deleted_hashes)) {
            if keep(&id) {
                self.next.insert(id.clone(), hash);
                kept.push(id);
            } else {
                deletes.push(id);
                hashes.push(hash);
            }
        }
        self.deletes = deletes;
        self.deleted_hashes = hashes;
        kept
    }
}

/// An in-progress diff of one snapshot against the previous baseline.
#[derive(Debug)]
pub struct Diff {
    previous: Hashes,
    seen: Hashes,
    upserts: Vec<Upsert>,
    scratch: Vec<u8>,
}

impl Diff {
    pub fn new(previous: Hashes) -> Diff {
        let capacity = previous.len();
        Diff {
            previous,
            seen: Hashes::with_capacity_and_hasher(capacity, Default::default()),
            upserts: Vec::new(),
            scratch: Vec::with_capacity(1024),
        }
    }

    /// Adds one entity of the snapshot. An entity twice (same kind and key) is an error
    /// of the whole snapshot.
    pub fn add(&mut self, entity: Entity) -> Result<(), DiffError> {
        let hash = entity.hash_with(&mut self.scratch);
        let operation = match self.previous.get(entity.id()) {
            None => Some(Operation::Create),
            Some(&old) if old != hash => Some(Operation::Update),
            Some(_) => None,
        };
        match operation {
            None => match self.seen.entry(entity.into_id()) {
                Entry::Occupied(e) => return Err(DiffError::Duplicate(e.key().clone())),
                Entry::Vacant(e) => {
                    e.insert(hash);
                }
            },
            Some(operation) => {
                match self.seen.entry(entity.id().clone()) {
                    Entry::Occupied(e) => return Err(DiffError::Duplicate(e.key().clone())),
                    Entry::Vacant(e) => {
                        e.insert(hash);
                    }
                }
                self.upserts.push(Upsert {
                    operation,
                    entity,
                    hash,
                });
            }
        }
        Ok(())
    }

    /// Number of entities added so far.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Ends the snapshot. Only a complete snapshot deletes what it did not mention.
    pub fn finish(self, completeness: Completeness) -> Outcome {
        let Diff {
            previous,
            mut seen,
            upserts,
            ..
        } = self;
        let before = previous.len();
        let (deletes, deleted_hashes) = match completeness {
            Completeness::Complete => {
                let mut gone: Vec<(Id, u64)> = previous
                    .into_iter()
                    .filter(|(key, _)| !seen.contains_key(key))
                    .collect();
                gone.sort_unstable();
                gone.into_iter().unzip()
            }
            Completeness::Partial => {
                for (key, hash) in previous {
                    seen.entry(key).or_insert(hash);
                }
                (Vec::new(), Vec::new())
            }
        };
        Outcome {
            upserts,
            deletes,
            next: seen,
            previous: before,
            completeness,
            deleted_hashes,
        }
    }

    /// Abandons the snapshot (the collect failed): the previous baseline, untouched.
    pub fn abandon(self) -> Hashes {
        self.previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(key: &str, props: &str) -> Entity {
        Entity::new(key.into(), "pserver".into(), props.into(), None, None).unwrap()
    }

    fn run(previous: Hashes, snapshot: &[(&str, &str)], completeness: Completeness) -> Outcome {
        let mut diff = Diff::new(previous);
        for (key, props) in snapshot {
            diff.add(entity(key, props)).unwrap();
        }
        diff.finish(completeness)
    }

    fn ops(outcome: &Outcome) -> Vec<(Operation, String)> {
        let mut ops: Vec<_> = outcome
            .upserts
            .iter()
            .map(|u| (u.operation, u.entity.key().to_owned()))
            .chain(
                outcome
                    .deletes
                    .iter()
                    .map(|id| (Operation::Delete, id.key().to_owned())),
            )
            .collect();
        ops.sort_by(|a, b| a.1.cmp(&b.1));
        ops
    }

    #[test]
    fn create_update_delete_and_silence() {
        let first = run(
            Hashes::default(),
            &[("a", "{}"), ("b", r#"{"x":1}"#), ("c", "{}")],
            Completeness::Complete,
        );
        assert_eq!(
            ops(&first),
            [
                (Operation::Create, "a".into()),
                (Operation::Create, "b".into()),
                (Operation::Create, "c".into())
            ]
        );
        let second = run(
            first.next,
            &[("a", "{}"), ("b", r#"{"x":2}"#), ("d", "{}")],
            Completeness::Complete,
        );
        assert_eq!(
            ops(&second),
            [
                (Operation::Update, "b".into()),
                (Operation::Delete, "c".into()),
                (Operation::Create, "d".into())
            ]
        );
        let third = run(
            second.next.clone(),
            &[("d", "{}"), ("b", r#"{ "x" : 2 }"#), ("a", "{}")],
            Completeness::Complete,
        );
        assert!(
            third.is_empty(),
            "unchanged entities are never re-emitted: {:?}",
            ops(&third)
        );
        assert_eq!(third.next, second.next);
    }

    #[test]
    fn partial_snapshots_never_delete() {
        let first = run(
            Hashes::default(),
            &[("a", "{}"), ("b", "{}")],
            Completeness::Complete,
        );
        let partial = run(
            first.next.clone(),
            &[("b", r#"{"x":1}"#)],
            Completeness::Partial,
        );
        assert_eq!(ops(&partial), [(Operation::Update, "b".into())]);
        assert!(
            partial.next.contains_key(&Id::new("pserver", "a")),
            "a partial snapshot keeps what it did not mention"
        );
        let b = Id::new("pserver", "b");
        assert_ne!(partial.next[&b], first.next[&b]);
    }

    #[test]
    fn an_abandoned_diff_returns_the_baseline_untouched() {
        let first = run(
            Hashes::default(),
            &[("a", "{}"), ("b", "{}")],
            Completeness::Complete,
        );
        let mut diff = Diff::new(first.next.clone());
        diff.add(entity("a", r#"{"changed":true}"#)).unwrap();
        assert_eq!(
            diff.abandon(),
            first.next,
            "a failed collect changes nothing"
        );
    }

    #[test]
    fn duplicate_keys_fail_the_snapshot() {
        for previous in [
            Hashes::default(),
            run(Hashes::default(), &[("a", "{}")], Completeness::Complete).next,
        ] {
            let mut diff = Diff::new(previous);
            diff.add(entity("a", "{}")).unwrap();
            assert_eq!(
                diff.add(entity("a", r#"{"x":1}"#)),
                Err(DiffError::Duplicate(Id::new("pserver", "a")))
            );
        }
        let mut diff = Diff::new(Hashes::default());
        diff.add(entity("a", "{}")).unwrap();
        let other_kind = Entity::new("a".into(), "vserver".into(), "{}".into(), None, None);
        diff.add(other_kind.unwrap())
            .expect("one key under two kinds is two entities");
    }

    #[test]
    fn a_change_of_kind_is_a_delete_and_a_create() {
        let first = run(Hashes::default(), &[("a", "{}")], Completeness::Complete);
        let mut diff = Diff::new(first.next);
        diff.add(Entity::new("a".into(), "vserver".into(), "{}".into(), None, None).unwrap())
            .unwrap();
        let outcome = diff.finish(Completeness::Complete);
        assert_eq!(outcome.deletes, [Id::new("pserver", "a")]);
        assert_eq!(outcome.upserts[0].operation, Operation::Create);
        assert_eq!(outcome.upserts[0].entity.kind(), "vserver");
    }

    #[test]
    fn an_empty_complete_snapshot_deletes_everything() {
        let first = run(
            Hashes::default(),
            &[("a", "{}"), ("b", "{}")],
            Completeness::Complete,
        );
        let empty = run(first.next, &[], Completeness::Complete);
        assert_eq!(
            ops(&empty),
            [
                (Operation::Delete, "a".into()),
                (Operation::Delete, "b".into())
            ]
        );
        assert!(empty.next.is_empty());
        assert_eq!(empty.previous, 2);
    }

    #[test]
    fn kept_deletes_stay_in_the_baseline_as_they_were() {
        let first = run(
            Hashes::default(),
            &[("a", "{}"), ("b", "{}"), ("c", "{}")],
            Completeness::Complete,
        );
        let mut empty = run(first.next.clone(), &[], Completeness::Complete);
        let kept = empty.keep_deletes(|id| id.key() != "b");
        assert_eq!(kept, [Id::new("pserver", "a"), Id::new("pserver", "c")]);
        assert_eq!(empty.deletes, [Id::new("pserver", "b")]);
        let mut expected = first.next.clone();
        expected.remove(&Id::new("pserver", "b"));
        assert_eq!(empty.next, expected, "kept with the hashes they had");
        let again = run(empty.next, &[], Completeness::Complete);
        assert_eq!(
            ops(&again),
            [
                (Operation::Delete, "a".into()),
                (Operation::Delete, "c".into())
            ],
            "the next snapshot lacking them finds them again"
        );
        let back = run(
            expected,
            &[("a", "{}"), ("c", "{}")],
            Completeness::Complete,
        );
        assert!(back.is_empty(), "shown back, they are unchanged");
    }
}
