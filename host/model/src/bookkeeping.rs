//! XOS's bookkeeping of an entity, as versions of the data.
//!
//! A version is the outbox sequence number of the change that made it: it only grows, it
//! orders every write of every entity, and it never depends on a clock (XOS compared
//! wall-clock seconds and lost writes made within one second, SEBA-68). Three writers
//! move three versions:
//!
//! - a source (a collector, an event step, the API) moves `updated`: an important change;
//! - a model policy moves `changed_by_policy`, so its own writes never re-run it (XOS
//!   SEBA-79);
//! - a sync step moves `changed_by_step`, so its own writes never re-sync the entity.
//!
//! A policy runs when `policed` is behind `updated` or `changed_by_step`; a sync when
//! `enacted` is behind `updated` or `changed_by_policy`. Each success records the version
//! it saw, never "now": a write made while the call ran stays newer, so it is handled next.

use crate::ErrorKind;

/// The longest error message kept on an entity, in bytes.
pub const MAX_ERROR_BYTES: usize = 1024;

/// The outbox sequence number of a change; 0 is never a change's.
pub type Version = u64;

/// Who writes an entity, which decides the version the write moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acting {
    /// A collector, an event step or the API: the data itself changed.
    Source,
    /// A model policy reacting to a change.
    Policy,
    /// A sync step recording what the outside system did.
    Step,
}

/// The entity a policy's or a sync step's call handles, as the call read it: the one
/// entity of another writer that call may write (XOS's policies and steps write the models
/// they handle), and only while nobody else has changed it since — else the write, made
/// from what the call read, would undo that change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handling {
    pub id: crate::Id,
    /// The role's target when the call read it: [`Bookkeeping::policy_target`] for a
    /// policy, [`Bookkeeping::sync_target`] for a step. The role's own writes do not move
    /// it; everyone else's do.
    pub seen: Version,
}

impl Handling {
    /// Whether `acting`, handling the entity whose bookkeeping is `now`, may write it:
    /// it is still there, and nobody else wrote it since the call read it.
    pub fn still_current(&self, acting: Acting, now: &Bookkeeping) -> bool {
        let target = match acting {
            Acting::Source => return false,
            Acting::Policy => now.policy_target(),
            Acting::Step => now.sync_target(),
        };
        !now.deleted && target == self.seen
    }
}

/// What a role's last call for an entity returned. Whether the entity has work now is
/// [`Bookkeeping::needs_sync`] / [`Bookkeeping::needs_policy`]: a failed entity that
/// changed again is still shown failed until a call succeeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleStatus {
    pub state: State,
    /// The last two distinct errors, newest first: a step that fails differently on
    /// alternate tries shows both causes.
    pub errors: Vec<Failure>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum State {
    /// Never run.
    #[default]
    Pending,
    Done,
    /// The plugin said to try later (its error was `unavailable`): not a failure of the
    /// entity.
    Deferred,
    Failed,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Done => "done",
            State::Deferred => "deferred",
            State::Failed => "failed",
        }
    }
}

/// One error a call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl RoleStatus {
    /// Records a success.
    pub fn done(&mut self) {
        self.state = State::Done;
    }

    /// Records an error: deferred when the plugin says the outside system is not ready
    /// (`unavailable`), failed otherwise; kept unless it repeats the last one. A message is
    /// kept to [`MAX_ERROR_BYTES`]: a plugin's errors are stored on entities other plugins
    /// own.
    pub fn failed(&mut self, mut failure: Failure) {
        if failure.message.len() > MAX_ERROR_BYTES {
            let mut end = MAX_ERROR_BYTES;
            while !failure.message.is_char_boundary(end) {
                end -= 1;
            }
            failure.message.truncate(end);
            failure.message.push('…');
        }
        self.state = match failure.kind {
            ErrorKind::Unavailable => State::Deferred,
            _ => State::Failed,
        };
        if self.errors.first() != Some(&failure) {
            self.errors.retain(|e| *e != failure);
            self.errors.insert(0, failure);
            self.errors.truncate(2);
        }
    }
}

/// The bookkeeping of one entity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bookkeeping {
    /// The last important change by a source. Never moves backwards (XOS CORD-1867).
    pub updated: Version,
    pub changed_by_policy: Option<Version>,
    pub changed_by_step: Option<Version>,
    /// What the model policies last handled successfully.
    pub policed: Option<Version>,
    /// What the sync steps last enacted successfully.
    pub enacted: Option<Version>,
    pub policy: RoleStatus,
    pub backend: RoleStatus,
    /// Deleted from the model, kept until a sync step has removed it outside
    /// (`delete-record` succeeded; XOS CORD-2944) and a model policy that handled it has
    /// seen it go (`handle-delete`).
    pub deleted: bool,
    /// Never pushed outward: what a collector observed is not the model's to enact.
    pub no_sync: bool,
}

impl Bookkeeping {
    /// The bookkeeping of an entity created by version `at`.
    pub fn created(at: Version, no_sync: bool) -> Bookkeeping {
        Bookkeeping {
            updated: at,
            no_sync,
            ..Bookkeeping::default()
        }
    }

    /// Records a write of the entity's data by `acting` at version `at`. A create (or a
    /// write over a soft-deleted entity, which brings it back) is always important.
    pub fn write(&mut self, acting: Acting, at: Version) {
        let field = match acting {
            _ if self.deleted => {
                self.deleted = false;
                &mut self.updated
            }
            Acting::Source => &mut self.updated,
            Acting::Policy => self.changed_by_policy.get_or_insert(0),
            Acting::Step => self.changed_by_step.get_or_insert(0),
        };
        *field = (*field).max(at);
    }

    /// Records the deletion of the entity at version `at` (by anyone: a deletion is
    /// always important).
    pub fn delete(&mut self, at: Version) {
        self.deleted = true;
        self.updated = self.updated.max(at);
    }

    /// Whether a deletion must wait for a role: a sync step has something outside that
    /// `delete-record` must remove, or a model policy handled the entity and must see
    /// its deletion (`handle-delete`) — if a policy still runs for its kind
    /// (`policy_runs`). Otherwise the entity is purged at once.
    pub fn holds_delete(&self, policy_runs: bool) -> bool {
        self.is_outside() || (policy_runs && self.policed.is_some())
    }

    /// Whether a sync step enacted the entity outside, and nothing removed it since.
    pub fn is_outside(&self) -> bool {
        !self.no_sync && self.enacted.is_some()
    }

    /// Whether a deleted entity may go: no role has anything left to do with it (a
    /// policy's `handle-delete` is waited for only while one runs for its kind).
    pub fn purgeable(&self, policy_runs: bool) -> bool {
        self.deleted && !self.needs_sync() && !(policy_runs && self.needs_policy())
    }

    /// The version a sync must reach: the data's, or a policy's write after it.
    pub fn sync_target(&self) -> Version {
        self.updated.max(self.changed_by_policy.unwrap_or(0))
    }

    /// The version the policies must reach: the data's, or a sync step's write after it.
    pub fn policy_target(&self) -> Version {
        self.updated.max(self.changed_by_step.unwrap_or(0))
    }

    /// Whether a sync step has work: never enacted, or enacted before the last change
    /// by a source or a policy.
    /// A deleted entity needs one only while something enacted is outside.
    pub fn needs_sync(&self) -> bool {
        if self.deleted {
            return self.is_outside();
        }
        !self.no_sync && self.enacted.is_none_or(|e| e < self.sync_target())
    }

    /// Whether the model policies have work: never policed, or policed before the last
    /// change by a source or a step. A deleted entity needs `handle-delete` only if a
    /// policy saw it alive.
    pub fn needs_policy(&self) -> bool {
        if self.deleted {
            return self.policed.is_some_and(|p| p < self.updated);
        }
        self.policed.is_none_or(|p| p < self.policy_target())
    }

    /// A successful sync of the data as of `seen` (the target when the call started).
    pub fn enacted(&mut self, seen: Version) {
        self.enacted = Some(self.enacted.unwrap_or(0).max(seen));
        self.backend.done();
    }

    /// A successful `delete-record`: nothing is outside any more.
    pub fn removed(&mut self) {
        self.enacted = None;
        self.backend.done();
    }

    /// A successful policy run over the data as of `seen`.
    pub fn policed(&mut self, seen: Version) {
        self.policed = Some(self.policed.unwrap_or(0).max(seen));
        self.policy.done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steps_own_write_does_not_resync_and_a_policys_does_not_repolice() {
        let mut b = Bookkeeping::created(1, false);
        assert!(b.needs_sync() && b.needs_policy());
        b.policed(b.policy_target());
        b.enacted(b.sync_target());
        assert!(!b.needs_sync() && !b.needs_policy());

        b.write(Acting::Step, 5);
        assert!(!b.needs_sync(), "the step's own write");
        assert!(b.needs_policy(), "a policy reacts to what the step wrote");
        b.policed(b.policy_target());

        b.write(Acting::Policy, 7);
        assert!(!b.needs_policy(), "the policy's own write (SEBA-79)");
        assert!(b.needs_sync(), "the step enacts what the policy wrote");
        b.enacted(b.sync_target());
        assert!(!b.needs_sync() && !b.needs_policy());
        assert_eq!(b.backend.state, State::Done);
    }

    #[test]
    fn a_write_during_a_call_stays_newer_than_what_the_call_saw() {
        let mut b = Bookkeeping::created(1, false);
        let seen = b.sync_target();
        b.write(Acting::Source, 4);
        b.enacted(seen);
        assert!(b.needs_sync(), "the write at 4 is not enacted");
        b.enacted(3);
        assert_eq!(b.enacted, Some(3));
        b.enacted(2);
        assert_eq!(b.enacted, Some(3), "never backwards");
    }

    #[test]
    fn updated_never_moves_backwards() {
        let mut b = Bookkeeping::created(9, false);
        b.write(Acting::Source, 4);
        assert_eq!(b.updated, 9);
    }

    #[test]
    fn no_sync_entities_never_need_a_sync_nor_hold_a_delete() {
        let mut b = Bookkeeping::created(1, true);
        assert!(!b.needs_sync() && b.needs_policy());
        b.enacted = Some(1);
        assert!(!b.holds_delete(true));
    }

    #[test]
    fn a_delete_is_held_only_once_something_is_outside_and_a_write_brings_it_back() {
        let mut b = Bookkeeping::created(1, false);
        assert!(!b.holds_delete(true), "nothing outside yet");
        b.enacted(1);
        b.delete(3);
        assert!(b.holds_delete(true) && b.deleted && b.needs_sync());
        b.write(Acting::Policy, 5);
        assert!(
            !b.deleted && b.updated == 5,
            "a write over a deleted entity creates it"
        );
    }

    #[test]
    fn a_deleted_entity_goes_once_the_step_removed_it_and_the_policy_saw_it_go() {
        let mut b = Bookkeeping::created(1, false);
        b.policed(1);
        b.enacted(1);
        b.delete(4);
        assert!(b.holds_delete(true) && b.needs_sync() && b.needs_policy());
        b.removed();
        assert!(
            !b.needs_sync() && !b.purgeable(true),
            "handle-delete is still due"
        );
        assert!(
            b.purgeable(false),
            "no policy runs for it any more: nothing to wait for"
        );
        b.policed(4);
        assert!(b.purgeable(true));

        let mut never_policed = Bookkeeping::created(1, false);
        never_policed.enacted(1);
        never_policed.delete(2);
        assert!(
            !never_policed.needs_policy(),
            "no policy saw it: no handle-delete"
        );
        never_policed.removed();
        assert!(never_policed.purgeable(true));
        assert!(
            !Bookkeeping::created(1, true).holds_delete(true),
            "nothing to hold it"
        );
    }

    #[test]
    fn errors_keep_the_last_two_distinct_and_unavailable_is_deferred() {
        let failure = |kind, message: &str| Failure {
            kind,
            message: message.into(),
        };
        let mut s = RoleStatus::default();
        s.failed(failure(ErrorKind::Failed, "a"));
        s.failed(failure(ErrorKind::Failed, "a"));
        s.failed(failure(ErrorKind::Unavailable, "b"));
        assert_eq!(s.state, State::Deferred);
        s.failed(failure(ErrorKind::Failed, "a"));
        s.failed(failure(ErrorKind::Failed, "c"));
        assert_eq!(s.state, State::Failed);
        assert_eq!(
            s.errors,
            [
                failure(ErrorKind::Failed, "c"),
                failure(ErrorKind::Failed, "a")
            ]
        );
        s.done();
        assert_eq!(
            (s.state, s.errors.len()),
            (State::Done, 2),
            "kept for the record"
        );
    }
}
