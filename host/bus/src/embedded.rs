//! The embedded bus: an in-process log per topic, with consumer groups and committed
//! offsets like Kafka's (one partition per topic), live subscriptions and correlated
//! responses. Nothing survives the process.
//!
//! Memory is bounded: a topic keeps at most [`LOG_CAPACITY`] messages. Messages every
//! group reading the topic has committed are dropped first; when a group still needs the
//! oldest message of a full log, publishers wait for it to commit (back-pressure) rather
//! than lose it. A topic no group reads drops its oldest messages.

use std::collections::{HashMap, VecDeque};
use std::pin::pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};

use super::correlate::Correlator;
use super::{
    BusError, Delivery, Filter, Message, StartFrom, Subscription, Topics, compile_pattern,
};

/// Messages one topic keeps.
const LOG_CAPACITY: usize = 100_000;
/// Messages a live subscriber may have queued before publishers wait for it.
const SUBSCRIBER_QUEUE: usize = 1024;

#[derive(Clone)]
pub struct Embedded {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Woken on every publish: consumers waiting for messages.
    published: Notify,
    /// Woken on every commit: publishers waiting for room.
    committed: Notify,
    correlator: Correlator,
}

/// A live subscriber's queue and what it wants.
type Subscriber = (mpsc::Sender<Arc<Message>>, Filter);

#[derive(Default)]
struct State {
    logs: HashMap<String, Log>,
    subscribers: HashMap<String, Vec<Subscriber>>,
    groups: HashMap<String, Group>,
}

#[derive(Default)]
struct Log {
    /// Offset of `messages[0]`.
    base: u64,
    messages: VecDeque<Arc<Message>>,
}

impl Log {
    fn end(&self) -> u64 {
        self.base + self.messages.len() as u64
    }
}

struct Group {
    matcher: Matcher,
    /// Topic → the next offset to read.
    committed: HashMap<String, u64>,
}

enum Matcher {
    Names(Vec<String>),
    Pattern(regex::Regex),
}

impl Matcher {
    fn matches(&self, topic: &str) -> bool {
        match self {
            Matcher::Names(names) => names.iter().any(|n| n == topic),
            Matcher::Pattern(re) => re.is_match(topic),
        }
    }
}

impl State {
    /// The lowest offset of `topic` some group still needs, if any group reads it.
    fn needed_from(&self, topic: &str) -> Option<u64> {
        let base = self.logs.get(topic).map_or(0, |l| l.base);
        self.groups
            .values()
            .filter(|g| g.matcher.matches(topic))
            .map(|g| g.committed.get(topic).copied().unwrap_or(base))
            .min()
    }

    /// Appends `message` if the log has room (after dropping what no group needs).
    fn try_append(&mut self, message: &Arc<Message>) -> bool {
        let needed = self.needed_from(&message.topic);
        let log = self.logs.entry(message.topic.clone()).or_default();
        while log.messages.len() >= LOG_CAPACITY && needed.is_none_or(|n| n > log.base) {
            log.messages.pop_front();
            log.base += 1;
        }
        if log.messages.len() >= LOG_CAPACITY {
            return false;
        }
        log.messages.push_back(message.clone());
        true
    }
}

impl Embedded {
    pub fn new() -> Embedded {
        Embedded {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                published: Notify::new(),
                committed: Notify::new(),
                correlator: Correlator::default(),
            }),
        }
    }

    pub fn correlator(&self) -> &Correlator {
        &self.inner.correlator
    }

    pub async fn publish(&self, mut message: Message) {
        if message.timestamp == 0 {
            message.timestamp = synchro_model::now_millis();
        }
        let message = Arc::new(message);
        let targets: Vec<_> = loop {
            let mut room = pin!(self.inner.committed.notified());
            room.as_mut().enable();
            {
                let mut state = self.inner.state.lock().expect("bus lock");
                if state.try_append(&message) {
                    break state
                        .subscribers
                        .get(&message.topic)
                        .into_iter()
                        .flatten()
                        .filter(|(_, filter)| filter.matches(&message))
                        .map(|(tx, _)| tx.clone())
                        .collect();
                }
            }
            tracing::debug!(topic = %message.topic, "topic log full; waiting for a consumer group to commit");
            room.await;
        };
        self.inner.published.notify_waiters();
        self.inner.correlator.offer(&message.topic, &message);
        let mut closed = false;
        for tx in targets {
            closed |= tx.send(message.clone()).await.is_err();
        }
        if closed {
            let mut state = self.inner.state.lock().expect("bus lock");
            if let Some(subscribers) = state.subscribers.get_mut(&message.topic) {
                subscribers.retain(|(tx, _)| !tx.is_closed());
            }
        }
    }

    pub fn subscribe(&self, topic: &str, filter: Filter) -> Subscription {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let mut state = self.inner.state.lock().expect("bus lock");
        state
            .subscribers
            .entry(topic.to_owned())
            .or_default()
            .push((tx, filter));
        rx
    }

    /// Joins `group`. A group seen before resumes from its committed offsets; a new one
    /// starts at `start` on the topics that exist now, and at the beginning of topics
    /// created later.
    pub fn consume(
        &self,
        group: &str,
        topics: Topics,
        start: StartFrom,
    ) -> Result<Consumer, BusError> {
        let matcher = match topics {
            Topics::Names(names) => Matcher::Names(names),
            Topics::Pattern(pattern) => Matcher::Pattern(compile_pattern(&pattern)?),
        };
        let mut state = self.inner.state.lock().expect("bus lock");
        let starts: HashMap<String, u64> = state
            .logs
            .iter()
            .filter(|(topic, _)| matcher.matches(topic))
            .map(|(topic, log)| {
                let at = match start {
                    StartFrom::Earliest => log.base,
                    StartFrom::Latest => log.end(),
                };
                (topic.clone(), at)
            })
            .collect();
        let entry = state
            .groups
            .entry(group.to_owned())
            .or_insert_with(|| Group {
                matcher: Matcher::Names(Vec::new()),
                committed: HashMap::new(),
            });
        for (topic, at) in starts {
            entry.committed.entry(topic).or_insert(at);
        }
        entry.matcher = matcher;
        let positions = entry.committed.clone();
        Ok(Consumer {
            inner: self.inner.clone(),
            group: group.to_owned(),
            positions,
            turn: 0,
        })
    }
}

/// A consumer of one group. A group has one member at a time on the embedded bus.
pub struct Consumer {
    inner: Arc<Inner>,
    group: String,
    /// Topic → next offset to hand out (ahead of the committed offset while processing).
    positions: HashMap<String, u64>,
    /// Rotates the topic scanned first, so one busy topic does not starve the others.
    turn: usize,
}

impl Consumer {
    pub async fn next(&mut self) -> Delivery {
        let inner = self.inner.clone();
        loop {
            let mut published = pin!(inner.published.notified());
            published.as_mut().enable();
            if let Some(delivery) = self.poll() {
                return delivery;
            }
            published.await;
        }
    }

    fn poll(&mut self) -> Option<Delivery> {
        let state = self.inner.state.lock().expect("bus lock");
        let group = state
            .groups
            .get(&self.group)
            .expect("a consumer's group exists");
        let mut topics: Vec<&String> = state
            .logs
            .keys()
            .filter(|t| group.matcher.matches(t))
            .collect();
        if topics.is_empty() {
            return None;
        }
        topics.sort();
        self.turn = (self.turn + 1) % topics.len();
        for topic in topics.iter().cycle().skip(self.turn).take(topics.len()) {
            let log = &state.logs[*topic];
            let position = self.positions.entry((*topic).clone()).or_insert(log.base);
            if *position < log.base {
                tracing::warn!(group = %self.group, topic = %topic, lost = log.base - *position, "messages dropped from the log before this group read them");
                *position = log.base;
            }
            if *position < log.end() {
                let message = log.messages[(*position - log.base) as usize].clone();
                let delivery = Delivery {
                    message,
                    partition: 0,
                    offset: *position as i64,
                };
                *position += 1;
                return Some(delivery);
            }
        }
        None
    }

    pub fn commit(&mut self, delivery: &Delivery) {
        {
            let mut state = self.inner.state.lock().expect("bus lock");
            let group = state
                .groups
                .get_mut(&self.group)
                .expect("a consumer's group exists");
            let next = delivery.offset as u64 + 1;
            let committed = group
                .committed
                .entry(delivery.message.topic.clone())
                .or_insert(next);
            *committed = (*committed).max(next);
        }
        self.inner.committed.notify_waiters();
    }
}
