//! The safety rails on a collector's deletes: what a sample that came back empty or short
//! (an API answering `[]` with a 200) must not do to the model.
//!
//! - **Grace** (`limits.delete-after-absent`): an entity is deleted only once absent from
//!   that many complete snapshots in a row; until then it stays in the baseline as it was,
//!   so a source that drops it now and then makes no DELETE and CREATE of it.
//! - **Threshold** (`limits.max-deletes`, `limits.max-delete-percent`): when the deletes
//!   past their grace are more than either allows, all of them are held: they stay in the
//!   baseline and the model, the creates and updates of the same snapshot go through, and
//!   the operator is told. An approval deletes exactly the held set; a snapshot that shows
//!   them again, or lacks few enough of them, ends the hold.
//!
//! Both are decided on the collect's [`Outcome`] before anything is committed: a dry run
//! ([`Rails::plan`]) makes the same decision without moving the grace counts.

use std::collections::HashMap;

use synchro_manifest::Limits;
use synchro_model::{Completeness, Id, Outcome};
use synchro_status::HeldDeletes;

/// Entities of a held set the status shows.
const SAMPLE: usize = 20;

/// The rails' memory between collects of one collector. Kept in memory only: after a
/// restart grace counts start again (deleting later, never sooner) and a held set is
/// found again by the first collect.
#[derive(Debug, Default)]
pub struct Rails {
    /// Complete snapshots in a row each entity in grace has been absent from.
    absent: HashMap<Id, u32>,
    /// The deletes held now, all of them.
    held: Vec<Id>,
}

/// What the rails did to one collect's deletes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Deletes kept back for their grace.
    pub in_grace: usize,
    /// Deletes held for an operator, and why; `None` when nothing is held.
    pub held: Option<(Vec<Id>, String)>,
}

impl Rails {
    /// Applies the rails to `outcome`: takes the deletes in grace and the held ones out
    /// of it, and remembers what it held.
    pub fn apply(&mut self, outcome: &mut Outcome, limits: &Limits) -> Decision {
        if let Some(absent) = self.absences(outcome) {
            self.absent = absent;
        }
        let decision = decide(outcome, limits, &self.absent);
        self.held = decision
            .held
            .as_ref()
            .map(|(ids, _)| ids.clone())
            .unwrap_or_default();
        decision
    }

    /// What [`Rails::apply`] would decide, without changing what it remembers.
    pub fn plan(&self, outcome: &mut Outcome, limits: &Limits) -> Decision {
        let absent = self.absences(outcome).unwrap_or_default();
        decide(outcome, limits, &absent)
    }

    /// How many complete snapshots in a row each of `outcome`'s deletes has been absent
    /// from, counting this one; `None` for a partial snapshot, which says nothing of what
    /// it lacks (the counts stay as they are).
    fn absences(&self, outcome: &Outcome) -> Option<HashMap<Id, u32>> {
        (outcome.completeness == Completeness::Complete).then(|| {
            let times = |id: &Id| self.absent.get(id).copied().unwrap_or(0) + 1;
            outcome
                .deletes
                .iter()
                .map(|id| (id.clone(), times(id)))
                .collect()
        })
    }

    /// The deletes held now.
    pub fn held(&self) -> &[Id] {
        &self.held
    }

    /// Forgets the held set: its deletes were approved and made.
    pub fn approved(&mut self) {
        for id in std::mem::take(&mut self.held) {
            self.absent.remove(&id);
        }
    }
}

fn decide(outcome: &mut Outcome, limits: &Limits, absent: &HashMap<Id, u32>) -> Decision {
    let grace = limits.delete_after_absent;
    let in_grace = outcome
        .keep_deletes(|id| absent.get(id).copied().unwrap_or(grace) < grace)
        .len();
    let count = outcome.deletes.len() as u64;
    let baseline = outcome.previous as u64;
    let reason = if count > limits.max_deletes {
        Some(format!(
            "{count} deletes in one collect, more than limits.max-deletes = {}",
            limits.max_deletes
        ))
    } else if count * 100 > limits.max_delete_percent * baseline {
        Some(format!(
            "{count} deletes of a baseline of {baseline} ({}%), more than limits.max-delete-percent = {}",
            count * 100 / baseline.max(1),
            limits.max_delete_percent
        ))
    } else {
        None
    };
    let held = reason.map(|reason| (outcome.keep_deletes(|_| true), reason));
    Decision { in_grace, held }
}

/// The status of a held set: `ids` (sorted), held since `since`.
pub fn status(ids: &[Id], baseline: usize, reason: &str, since: u64) -> HeldDeletes {
    HeldDeletes {
        id: set_id(ids),
        count: ids.len() as u64,
        baseline: baseline as u64,
        reason: reason.to_owned(),
        sample: ids.iter().take(SAMPLE).map(ToString::to_string).collect(),
        since,
    }
}

/// The name of a set of deletes: the same ids, the same name.
pub fn set_id(ids: &[Id]) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for id in ids {
        hasher.update(id.as_str().as_bytes());
        hasher.update(&[0]);
    }
    format!("{:016x}", hasher.digest())
}

#[cfg(test)]
mod tests {
    use synchro_model::{Diff, Entity, Hashes};

    use super::*;

    fn snapshot(previous: Hashes, keys: &[&str], completeness: Completeness) -> Outcome {
        let mut diff = Diff::new(previous);
        for key in keys {
            let entity = Entity::new((*key).into(), "pserver".into(), "{}".into(), None, None);
            diff.add(entity.unwrap()).unwrap();
        }
        diff.finish(completeness)
    }

    fn full(keys: &[&str]) -> Hashes {
        snapshot(Hashes::default(), keys, Completeness::Complete).next
    }

    #[test]
    fn more_than_the_percent_is_held_and_the_percent_itself_is_not() {
        let limits = Limits::default();
        let four = full(&["a", "b", "c", "d"]);
        let mut half = snapshot(four.clone(), &["a", "b"], Completeness::Complete);
        let decision = Rails::default().apply(&mut half, &limits);
        assert_eq!(decision, Decision::default());
        assert_eq!(half.deletes.len(), 2);

        let mut most = snapshot(four, &["a"], Completeness::Complete);
        let mut rails = Rails::default();
        let decision = rails.apply(&mut most, &limits);
        let (held, reason) = decision.held.unwrap();
        assert_eq!(held.len(), 3);
        assert!(
            reason.contains("3 deletes of a baseline of 4 (75%)"),
            "{reason}"
        );
        assert!(most.deletes.is_empty());
        assert_eq!(most.next.len(), 4, "the held stay in the baseline");
        assert_eq!(rails.held(), held);
    }

    #[test]
    fn a_partial_snapshot_neither_counts_nor_resets_an_absence() {
        let limits = Limits {
            delete_after_absent: 2,
            max_delete_percent: 100,
            ..Limits::default()
        };
        let mut rails = Rails::default();
        let mut first = snapshot(full(&["a", "b"]), &["a"], Completeness::Complete);
        assert_eq!(rails.apply(&mut first, &limits).in_grace, 1);
        let mut partial = snapshot(first.next, &["a"], Completeness::Partial);
        assert_eq!(rails.apply(&mut partial, &limits), Decision::default());
        let mut planned = snapshot(partial.next.clone(), &["a"], Completeness::Complete);
        assert_eq!(rails.plan(&mut planned, &limits), Decision::default());
        assert_eq!(
            planned.deletes,
            [Id::new("pserver", "b")],
            "a plan decides as the collect would"
        );
        let mut second = snapshot(partial.next, &["a"], Completeness::Complete);
        assert_eq!(rails.apply(&mut second, &limits), Decision::default());
        assert_eq!(second.deletes, [Id::new("pserver", "b")]);
    }
}
