//! XOS's bookkeeping of an entity, as versions of the data.
//!
//! A version is the outbox sequence number of the change that made it: it only grows, it
//! orders every write of every entity, and it never depends on a clock (XOS compared
//! wall-clock seconds and lost writes made within one second, SEBA-68). Three writers
//! move three versions:
//!
//! - a source (a collector, an event step, the API) moves `updated`: an important change;
//! - a model policy moves `changed_by_policy`, so that policies' own writes never re-run
//!   them (XOS SEBA-79);
//! - a sync step moves `changed_by_step`, so that steps' own writes never re-sync.
//!
//! Several policies and several sync steps may handle one kind, each at its own pace:
//! each keeps its own progress on the entity ([`Handlers`]). A policy runs when its
//! `policed` is behind `updated` or `changed_by_step`; a step when its `enacted` is behind
//! `updated` or `changed_by_policy`. Each success records the version it saw, never
//! "now": a write made while the call ran stays newer, so it is handled next.

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
/// from what the call read, would undo that change (another policy's of the same kind
/// included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handling {
    pub id: crate::Id,
    /// The entity's [`Bookkeeping::last_write`] when the call read it, or the version of
    /// the call's own last write of it since.
    pub seen: Version,
}

impl Handling {
    /// Whether a call handling the entity whose bookkeeping is `now` may write it: it is
    /// still there, and nobody wrote it since the call read it.
    pub fn still_current(&self, now: &Bookkeeping) -> bool {
        !now.deleted && now.last_write() == self.seen
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

/// One plugin's progress on an entity in its role (a policy's or a sync step's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The version it last handled successfully: `policed` for a policy, `enacted` for a
    /// step (`None` once a step removed the entity outside).
    pub done: Option<Version>,
    /// Its last call's outcome (XOS's policy or backend status).
    pub status: RoleStatus,
}

/// The name under which progress recorded before a kind could have several handlers is
/// kept. Once the host knows the kind's handlers, the one of the role takes it over
/// ([`Handlers::attribute`]); with several, none can tell it was theirs, and it only
/// keeps a deletion waiting for what may be outside.
pub const UNATTRIBUTED: &str = "";

/// Each plugin's progress in one role, by plugin name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handlers(Vec<(String, Progress)>);

impl Handlers {
    /// The progress of `plugin`.
    pub fn of(&self, plugin: &str) -> Option<&Progress> {
        self.position(plugin).map(|at| &self.0[at].1)
    }

    /// The progress of `plugin`, to record an outcome in.
    pub fn entry(&mut self, plugin: &str) -> &mut Progress {
        let at = self.position(plugin).unwrap_or_else(|| {
            self.0.push((plugin.to_owned(), Progress::default()));
            self.0.len() - 1
        });
        &mut self.0[at].1
    }

    /// Gives the progress recorded before handlers could be told apart to `plugin`, the
    /// one handler of the role now, unless it has its own since; whether there was any.
    pub fn attribute(&mut self, plugin: &str) -> bool {
        let Some(at) = self.position(UNATTRIBUTED) else {
            return false;
        };
        if self.position(plugin).is_some() {
            self.0.remove(at);
        } else {
            self.0[at].0 = plugin.to_owned();
        }
        true
    }

    /// Every recorded progress, by plugin name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Progress)> {
        self.0.iter().map(|(plugin, p)| (plugin.as_str(), p))
    }

    /// Progress as decoded: a name recorded twice (a damaged row) keeps its first.
    pub fn from_recorded(recorded: Vec<(String, Progress)>) -> Handlers {
        let mut handlers = Handlers(Vec::with_capacity(recorded.len()));
        for (plugin, progress) in recorded {
            if handlers.position(&plugin).is_none() {
                handlers.0.push((plugin, progress));
            }
        }
        handlers
    }

    fn position(&self, plugin: &str) -> Option<usize> {
        self.0.iter().position(|(p, _)| p == plugin)
    }
}

/// The bookkeeping of one entity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bookkeeping {
    /// The last important change by a source. Never moves backwards (XOS CORD-1867).
    pub updated: Version,
    pub changed_by_policy: Option<Version>,
    pub changed_by_step: Option<Version>,
    /// What each model policy last handled (`policed`), and how its last call went.
    pub policies: Handlers,
    /// What each sync step last enacted, and how its last call went.
    pub steps: Handlers,
    /// Deleted from the model, kept until every sync step that enacted it has removed it
    /// outside (`delete-record` succeeded; XOS CORD-2944) and every model policy that
    /// handled it has seen it go (`handle-delete`).
    pub deleted: bool,
    /// Never pushed outward: what a collector observed is not the model's to enact.
    pub no_sync: bool,
    /// No model policy runs for it (the operator's choice).
    pub no_policy: bool,
    /// Policies and sync steps may not write nor delete it, not even one that owns it
    /// (the operator's choice): only sources do.
    pub write_protect: bool,
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

    /// The version of the last write of the entity's data, by anyone.
    pub fn last_write(&self) -> Version {
        self.updated
            .max(self.changed_by_policy.unwrap_or(0))
            .max(self.changed_by_step.unwrap_or(0))
    }

    /// Whether a deletion must wait for a role: a sync step has something outside that
    /// `delete-record` must remove, or a model policy that still runs (`policy_runs`,
    /// by plugin name) handled the entity and must see its deletion (`handle-delete`).
    /// Otherwise the entity is purged at once.
    pub fn holds_delete(&self, policy_runs: impl Fn(&str) -> bool) -> bool {
        let policed = |(policy, p): (&str, &Progress)| p.done.is_some() && policy_runs(policy);
        self.is_outside() || (!self.no_policy && self.policies.iter().any(policed))
    }

    /// Whether a sync step enacted the entity outside, and has not removed it since.
    pub fn is_outside(&self) -> bool {
        !self.no_sync && self.steps.iter().any(|(_, p)| p.done.is_some())
    }

    /// Whether the sync step `step` enacted the entity outside, and has not removed it
    /// since.
    pub fn is_outside_for(&self, step: &str) -> bool {
        !self.no_sync && self.steps.of(step).is_some_and(|p| p.done.is_some())
    }

    /// Whether a deleted entity may go: no step has it outside, and no policy that
    /// still runs (`policy_runs`) has a `handle-delete` to make.
    pub fn purgeable(&self, policy_runs: impl Fn(&str) -> bool) -> bool {
        self.deleted
            && !self.is_outside()
            && !self
                .policies
                .iter()
                .any(|(policy, _)| policy_runs(policy) && self.needs_policy(policy))
    }

    /// The version a sync must reach: the data's, or a policy's write after it.
    pub fn sync_target(&self) -> Version {
        self.updated.max(self.changed_by_policy.unwrap_or(0))
    }

    /// The version the policies must reach: the data's, or a sync step's write after it.
    pub fn policy_target(&self) -> Version {
        self.updated.max(self.changed_by_step.unwrap_or(0))
    }

    /// Whether the sync step `step` has work: it never enacted the entity, or enacted
    /// it before the last change by a source or a policy. A deleted entity needs one
    /// only while the step has it outside.
    pub fn needs_sync(&self, step: &str) -> bool {
        if self.deleted {
            return self.is_outside_for(step);
        }
        let enacted = self.steps.of(step).and_then(|p| p.done);
        !self.no_sync && enacted.is_none_or(|e| e < self.sync_target())
    }

    /// Whether the model policy `policy` has work: it never handled the entity, or
    /// handled it before the last change by a source or a step. A deleted entity needs
    /// `handle-delete` only if the policy saw it alive.
    pub fn needs_policy(&self, policy: &str) -> bool {
        if self.no_policy {
            return false;
        }
        let policed = self.policies.of(policy).and_then(|p| p.done);
        if self.deleted {
            return policed.is_some_and(|p| p < self.updated);
        }
        policed.is_none_or(|p| p < self.policy_target())
    }

    /// A successful sync by `step` of the data as of `seen` (the target when the call
    /// started).
    pub fn enacted(&mut self, step: &str, seen: Version) {
        let progress = self.steps.entry(step);
        progress.done = Some(progress.done.unwrap_or(0).max(seen));
        progress.status.done();
    }

    /// A successful `delete-record` by `step`: nothing of it is outside any more.
    pub fn removed(&mut self, step: &str) {
        let progress = self.steps.entry(step);
        progress.done = None;
        progress.status.done();
    }

    /// A successful run of `policy` over the data as of `seen`.
    pub fn policed(&mut self, policy: &str, seen: Version) {
        let progress = self.policies.entry(policy);
        progress.done = Some(progress.done.unwrap_or(0).max(seen));
        progress.status.done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: &str = "push";
    const POLICY: &str = "stamp";

    fn runs(_: &str) -> bool {
        true
    }

    fn gone(_: &str) -> bool {
        false
    }

    #[test]
    fn a_steps_own_write_does_not_resync_and_a_policys_does_not_repolice() {
        let mut b = Bookkeeping::created(1, false);
        assert!(b.needs_sync(STEP) && b.needs_policy(POLICY));
        b.policed(POLICY, b.policy_target());
        b.enacted(STEP, b.sync_target());
        assert!(!b.needs_sync(STEP) && !b.needs_policy(POLICY));

        b.write(Acting::Step, 5);
        assert!(!b.needs_sync(STEP), "the step's own write");
        assert!(
            b.needs_policy(POLICY),
            "a policy reacts to what the step wrote"
        );
        b.policed(POLICY, b.policy_target());

        b.write(Acting::Policy, 7);
        assert!(!b.needs_policy(POLICY), "the policy's own write (SEBA-79)");
        assert!(b.needs_sync(STEP), "the step enacts what the policy wrote");
        b.enacted(STEP, b.sync_target());
        assert!(!b.needs_sync(STEP) && !b.needs_policy(POLICY));
        assert_eq!(b.steps.of(STEP).unwrap().status.state, State::Done);
    }

    #[test]
    fn each_handler_of_a_role_keeps_its_own_progress() {
        let mut b = Bookkeeping::created(1, false);
        b.enacted("cmdb", 1);
        assert!(!b.needs_sync("cmdb") && b.needs_sync("monitoring"));
        b.steps.entry("monitoring").status.failed(Failure {
            kind: ErrorKind::Failed,
            message: "down".into(),
        });
        assert_eq!(b.steps.of("cmdb").unwrap().status.state, State::Done);
        b.delete(3);
        assert!(b.needs_sync("cmdb") && !b.needs_sync("monitoring"));
        b.removed("cmdb");
        assert!(b.purgeable(runs), "nothing of it is outside any more");

        let mut b = Bookkeeping::created(1, false);
        b.policed("a", 1);
        b.write(Acting::Policy, 2);
        assert!(
            !b.needs_policy("a") && b.needs_policy("b"),
            "a policy's write does not re-run any policy; one that never ran still runs"
        );
    }

    #[test]
    fn progress_from_before_several_handlers_is_the_one_handlers_once_attributed() {
        let mut b = Bookkeeping::created(1, false);
        b.steps.entry(UNATTRIBUTED).done = Some(1);
        assert!(
            b.needs_sync("push") && b.is_outside(),
            "nobody's yet, but outside"
        );
        assert!(b.steps.attribute("push"));
        assert!(!b.needs_sync("push") && b.is_outside_for("push"));
        assert_eq!(b.steps.iter().map(|(p, _)| p).collect::<Vec<_>>(), ["push"]);
        assert!(b.needs_sync("other"), "the other step never enacted it");
        assert!(!b.steps.attribute("push"), "nothing left to attribute");

        let mut b = Bookkeeping::created(1, false);
        b.steps.entry(UNATTRIBUTED).done = Some(1);
        b.enacted("push", 1);
        assert!(b.steps.attribute("push"));
        assert_eq!(b.steps.iter().map(|(p, _)| p).collect::<Vec<_>>(), ["push"]);
    }

    #[test]
    fn a_write_during_a_call_stays_newer_than_what_the_call_saw() {
        let mut b = Bookkeeping::created(1, false);
        let seen = b.sync_target();
        b.write(Acting::Source, 4);
        b.enacted(STEP, seen);
        assert!(b.needs_sync(STEP), "the write at 4 is not enacted");
        b.enacted(STEP, 3);
        b.enacted(STEP, 2);
        assert_eq!(b.steps.of(STEP).unwrap().done, Some(3), "never backwards");
    }

    #[test]
    fn a_handled_write_is_current_only_while_nobody_else_wrote() {
        let mut b = Bookkeeping::created(1, false);
        let mut handling = Handling {
            id: crate::Id::new("pserver", "a"),
            seen: b.last_write(),
        };
        assert!(handling.still_current(&b));
        b.write(Acting::Policy, 2);
        assert!(
            !handling.still_current(&b),
            "another policy's write since the call read it"
        );
        handling.seen = 2;
        assert!(handling.still_current(&b));
    }

    #[test]
    fn updated_never_moves_backwards() {
        let mut b = Bookkeeping::created(9, false);
        b.write(Acting::Source, 4);
        assert_eq!(b.updated, 9);
    }

    #[test]
    fn no_sync_and_no_policy_entities_have_no_work_and_hold_no_delete() {
        let mut b = Bookkeeping::created(1, true);
        assert!(!b.needs_sync(STEP) && b.needs_policy(POLICY));
        b.steps.entry(STEP).done = Some(1);
        assert!(!b.holds_delete(gone));
        b.policed(POLICY, 1);
        b.no_policy = true;
        assert!(!b.needs_policy(POLICY) && !b.holds_delete(runs));
    }

    #[test]
    fn a_delete_is_held_only_once_something_is_outside_and_a_write_brings_it_back() {
        let mut b = Bookkeeping::created(1, false);
        assert!(!b.holds_delete(runs), "nothing outside yet");
        b.enacted(STEP, 1);
        b.delete(3);
        assert!(b.holds_delete(runs) && b.deleted && b.needs_sync(STEP));
        b.write(Acting::Policy, 5);
        assert!(
            !b.deleted && b.updated == 5,
            "a write over a deleted entity creates it"
        );
    }

    #[test]
    fn a_deleted_entity_goes_once_the_step_removed_it_and_the_policy_saw_it_go() {
        let mut b = Bookkeeping::created(1, false);
        b.policed(POLICY, 1);
        b.enacted(STEP, 1);
        b.delete(4);
        assert!(b.holds_delete(runs) && b.needs_sync(STEP) && b.needs_policy(POLICY));
        b.removed(STEP);
        assert!(
            !b.needs_sync(STEP) && !b.purgeable(runs),
            "handle-delete is still due"
        );
        assert!(
            b.purgeable(gone),
            "no policy runs for it any more: nothing to wait for"
        );
        b.policed(POLICY, 4);
        assert!(b.purgeable(runs));

        let mut never_policed = Bookkeeping::created(1, false);
        never_policed.enacted(STEP, 1);
        never_policed.delete(2);
        assert!(
            !never_policed.needs_policy(POLICY),
            "no policy saw it: no handle-delete"
        );
        never_policed.removed(STEP);
        assert!(never_policed.purgeable(runs));
        assert!(
            !Bookkeeping::created(1, true).holds_delete(runs),
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
