//! A model role's work queue, client-go's workqueue in miniature: an entity is never
//! handed out twice at once, repeated changes collapse into one item, a failed entity
//! waits out its backoff whatever changes meanwhile (XOS computed `next_run` and never
//! read it), and every call, whichever entity it is for, keeps to the plugin's rate.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use synchro_model::Id;
use synchro_status::WorkQueue;

use crate::Backoff;

pub struct Queue {
    /// Ready, in the order they became so.
    ready: VecDeque<Id>,
    /// In `ready`, or changed while being handled (then queued again when done).
    dirty: HashSet<Id>,
    handling: HashSet<Id>,
    /// Backing off: until when, and how many failures in a row.
    waiting: HashMap<Id, (Instant, u32)>,
    /// `waiting`, by when.
    due: BTreeSet<(Instant, Id)>,
    /// Held until another entity is handled or changes, by that entity.
    held: HashMap<Id, Vec<Id>>,
    backoff: Duration,
    max_backoff: Duration,
    rate: Rate,
}

impl Queue {
    pub fn new(rate: f64, backoff: Duration, max_backoff: Duration) -> Queue {
        Queue {
            ready: VecDeque::new(),
            dirty: HashSet::new(),
            handling: HashSet::new(),
            waiting: HashMap::new(),
            due: BTreeSet::new(),
            held: HashMap::new(),
            backoff,
            max_backoff,
            rate: Rate::new(rate),
        }
    }

    /// Asks for `id` to be handled. A no-op when it is already queued or backing off; when
    /// it is being handled, it is queued again once that is done.
    pub fn add(&mut self, id: Id) {
        if self.waiting.contains_key(&id) || !self.dirty.insert(id.clone()) {
            return;
        }
        if !self.handling.contains(&id) {
            self.ready.push_back(id);
        }
    }

    /// Queues `id` now, out of its backoff and with its failures forgotten: the operator
    /// changed what they were about (a flag on the entity).
    pub fn forgive(&mut self, id: Id) {
        if let Some((at, _)) = self.waiting.remove(&id) {
            self.due.remove(&(at, id.clone()));
        }
        self.add(id);
    }

    /// When the next entity may be handled: now, a moment to keep to the rate, the end of
    /// a backoff, or never (`None`: nothing to do).
    pub fn next_at(&self, now: Instant) -> Option<Instant> {
        let first = if self.ready.is_empty() {
            self.due.first().map(|(at, _)| *at)?
        } else {
            now
        };
        Some(self.rate.next_at().map_or(first, |at| first.max(at)))
    }

    /// The next entity to handle, if one may be handled at `now`; it is handled until
    /// [`Queue::done`].
    pub fn take(&mut self, now: Instant) -> Option<Id> {
        while let Some((at, _)) = self.due.first()
            && *at <= now
        {
            let (_, id) = self.due.pop_first().expect("not empty");
            if self.dirty.insert(id.clone()) {
                self.ready.push_back(id);
            }
        }
        if self.ready.is_empty() || self.rate.next_at().is_some_and(|at| at > now) {
            return None;
        }
        let id = self.ready.pop_front()?;
        self.dirty.remove(&id);
        self.handling.insert(id.clone());
        self.rate.spend(now);
        Some(id)
    }

    /// Up to `max` entities that may be handled at `now`, each as [`Queue::take`] gives it.
    pub fn take_batch(&mut self, now: Instant, max: usize) -> Vec<Id> {
        std::iter::from_fn(|| self.take(now)).take(max).collect()
    }

    /// Ends the handling of `id`: a success (its failure count starts again), or a failure
    /// that keeps it back for its backoff, changed meanwhile or not. Returns that pause.
    pub fn done(&mut self, id: &Id, succeeded: bool, now: Instant) -> Option<Duration> {
        self.handling.remove(id);
        let failures = match self.waiting.remove(id) {
            Some((at, failures)) => {
                self.due.remove(&(at, id.clone()));
                failures
            }
            None => 0,
        };
        if succeeded {
            if self.dirty.contains(id) {
                self.ready.push_back(id.clone());
            }
            return None;
        }
        let pause = Backoff::after(self.backoff, failures, self.max_backoff);
        self.dirty.remove(id);
        self.waiting.insert(id.clone(), (now + pause, failures + 1));
        self.due.insert((now + pause, id.clone()));
        Some(pause)
    }

    /// Holds `id`, just [done](Queue::done), until `blocker` is [released](Queue::release):
    /// an edge waits for its ends, a deleted vertex for its edges. No backoff: it goes
    /// again as soon as what it waits for moves.
    pub fn hold(&mut self, id: Id, blocker: Id) {
        self.held.entry(blocker).or_default().push(id);
    }

    /// Queues again what waits for `blocker`, which was handled or changed.
    pub fn release(&mut self, blocker: &Id) {
        for id in self.held.remove(blocker).into_iter().flatten() {
            self.add(id);
        }
    }

    /// Gives back the rate token of an entity that turned out to need no call (observed
    /// data, a role's own write, an entity held for another): only calls count against the rate.
    pub fn refund(&mut self) {
        self.rate.refund();
    }

    /// How many entities the queue holds, for `synchro status`.
    pub fn depth(&self) -> WorkQueue {
        WorkQueue {
            ready: self.ready.len(),
            in_flight: self.handling.len(),
            backing_off: self.waiting.len(),
            held: self.held.values().map(Vec::len).sum(),
        }
    }
}

/// A rate limit over all of a plugin's calls, with a burst of one second's worth (GCRA:
/// a theoretical arrival time that moves by one interval per call).
struct Rate {
    interval: Duration,
    burst: Duration,
    /// When the call after the next burst may start.
    tat: Option<Instant>,
}

impl Rate {
    fn new(per_second: f64) -> Rate {
        let interval = Duration::from_secs_f64(1.0 / per_second);
        Rate {
            interval,
            burst: Duration::from_secs(1).max(interval) - interval,
            tat: None,
        }
    }

    /// When the next call may start; `None`: at any time.
    fn next_at(&self) -> Option<Instant> {
        self.tat.and_then(|tat| tat.checked_sub(self.burst))
    }

    fn refund(&mut self) {
        self.tat = self.tat.map(|tat| tat - self.interval);
    }

    fn spend(&mut self, now: Instant) {
        self.tat = Some(self.tat.map_or(now, |tat| tat.max(now)) + self.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: &str) -> Id {
        Id::new("pserver", key)
    }

    fn fast() -> Queue {
        Queue::new(1e6, Duration::from_secs(1), Duration::from_secs(4))
    }

    #[test]
    fn repeated_changes_collapse_and_an_entity_is_never_handled_twice_at_once() {
        let now = Instant::now();
        let mut q = fast();
        q.add(id("a"));
        q.add(id("a"));
        q.add(id("b"));
        assert_eq!(q.take(now), Some(id("a")));
        q.add(id("a"));
        assert_eq!(q.take(now), Some(id("b")), "`a` is being handled");
        assert_eq!(q.take(now), None);
        assert_eq!(q.done(&id("a"), true, now), None);
        assert_eq!(q.take(now), Some(id("a")), "changed while handled: again");
        q.done(&id("a"), true, now);
        q.done(&id("b"), true, now);
        assert_eq!((q.take(now), q.next_at(now)), (None, None));
    }

    #[test]
    fn a_held_entity_goes_again_when_what_it_waits_for_moves_and_not_before() {
        let now = Instant::now();
        let mut q = fast();
        q.add(id("edge"));
        assert_eq!(q.take(now), Some(id("edge")));
        q.done(&id("edge"), true, now);
        q.hold(id("edge"), id("end"));
        assert_eq!(
            (q.take(now), q.next_at(now), q.depth().held),
            (None, None, 1)
        );
        q.release(&id("other"));
        assert_eq!(q.take(now), None);
        q.release(&id("end"));
        assert_eq!(q.take(now), Some(id("edge")), "no backoff");
        assert_eq!(q.depth().held, 0);
    }

    #[test]
    fn a_failing_entity_waits_out_its_backoff_whatever_changes_and_others_go_on() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut q = fast();
        q.add(id("a"));
        q.add(id("b"));
        let a = q.take(t0).unwrap();
        assert_eq!(q.done(&a, false, t0), Some(s(1)));
        q.add(id("a"));
        assert_eq!(q.take(t0), Some(id("b")), "others go on");
        q.done(&id("b"), true, t0);
        assert_eq!(q.take(t0), None, "a change does not cut the backoff short");
        assert_eq!(q.next_at(t0), Some(t0 + s(1)));
        assert_eq!(q.depth().backing_off, 1);
        let t1 = t0 + s(1);
        assert_eq!(q.take(t1), Some(id("a")));
        assert_eq!(q.done(&id("a"), false, t1), Some(s(2)), "doubles");
        let t3 = t1 + s(2);
        assert_eq!(q.take(t3), Some(id("a")));
        assert_eq!(q.done(&id("a"), false, t3), Some(s(4)));
        let t7 = t3 + s(4);
        assert_eq!(q.take(t7), Some(id("a")));
        assert_eq!(q.done(&id("a"), false, t7), Some(s(4)), "capped");
        let t11 = t7 + s(4);
        assert_eq!(q.take(t11), Some(id("a")));
        assert_eq!(q.done(&id("a"), true, t11), None);
        q.add(id("a"));
        assert_eq!(q.take(t11), Some(id("a")), "a success resets the count");
        assert_eq!(q.done(&id("a"), false, t11), Some(s(1)));
        assert_eq!(q.done(&id("a"), false, t11), Some(s(2)));
        q.forgive(id("a"));
        assert_eq!(q.take(t11), Some(id("a")), "the operator's change: at once");
        assert_eq!(
            q.done(&id("a"), false, t11),
            Some(s(1)),
            "failures forgotten"
        );
    }

    #[test]
    fn every_call_keeps_to_the_rate_after_a_burst_of_one_second() {
        let t0 = Instant::now();
        let mut q = Queue::new(4.0, Duration::from_secs(1), Duration::from_secs(1));
        for key in 0..10 {
            q.add(id(&key.to_string()));
        }
        let mut taken = 0;
        while let Some(id) = q.take(t0) {
            q.done(&id, true, t0);
            taken += 1;
        }
        assert_eq!(taken, 4, "a second's worth at once");
        let next = q.next_at(t0).unwrap();
        assert_eq!(next - t0, Duration::from_millis(250));
        assert!(q.take(next).is_some());
        assert!(q.take(next).is_none());
        q.refund();
        assert!(q.take(next).is_some(), "a refunded token is spent again");
    }
}
