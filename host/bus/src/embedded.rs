//! The embedded bus: an in-process log per topic, with consumer groups and committed
//! offsets like Kafka's (one partition per topic) and correlated responses. Nothing survives the process.
//!
//! Memory is bounded: a topic keeps at most [`LOG_CAPACITY`] messages and `max-topic-mb`,
//! all topics together `max-total-mb`. To make room, messages every group reading their
//! topic has committed are dropped, oldest first (a topic no group reads drops its oldest
//! messages); when a group still needs them, publishers wait for it to commit
//! (back-pressure) rather than lose them. A message larger than a topic may hold is
//! refused with an error that says so.

use std::collections::{HashMap, VecDeque};

/// Maps by topic or group name, looked up on every publish, read and commit: foldhash
/// rather than std's SipHash, which showed in the event step's profile.
type ByName<V> = HashMap<String, V, foldhash::fast::RandomState>;
use std::pin::pin;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::correlate::Correlator;
use super::{BusError, Delivery, EmbeddedSettings, Message, StartFrom, Topics, compile_pattern};

/// Messages one topic keeps.
const LOG_CAPACITY: usize = 100_000;

#[derive(Clone)]
pub struct Embedded {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    bounds: Bounds,
    /// Woken on every publish: consumers waiting for messages.
    published: Notify,
    /// Woken on every commit: publishers waiting for room.
    committed: Notify,
    correlator: Correlator,
}

/// What the logs may hold, in bytes.
#[derive(Clone, Copy)]
struct Bounds {
    topic: u64,
    total: u64,
}

#[derive(Default)]
struct State {
    logs: ByName<Log>,
    /// Bytes of every log together.
    bytes: u64,
    groups: ByName<Group>,
}

#[derive(Default)]
struct Log {
    /// Offset of `messages[0]`.
    base: u64,
    messages: VecDeque<Arc<Message>>,
    /// Bytes of `messages`.
    bytes: u64,
}

impl Log {
    fn end(&self) -> u64 {
        self.base + self.messages.len() as u64
    }

    /// Drops the oldest message if no group needs it (`needed`: the lowest offset a group
    /// reading this topic has not committed); returns its size.
    fn drop_oldest(&mut self, needed: Option<u64>) -> Option<u64> {
        if needed.is_some_and(|n| n <= self.base) {
            return None;
        }
        let message = self.messages.pop_front()?;
        self.base += 1;
        let size = size(&message);
        self.bytes -= size;
        Some(size)
    }
}

/// What a message costs the log: its bytes, and a little for its bookkeeping.
fn size(message: &Message) -> u64 {
    (message.topic.len() + message.size() + 64) as u64
}

/// Whether a message could be appended.
enum Append {
    Done,
    /// Not now: groups still need what would have to go.
    Full,
}

struct Group {
    matcher: Matcher,
    /// Topic → the next offset to read.
    committed: ByName<u64>,
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

    /// Appends `message` if there is room within `bounds` after dropping what no group
    /// needs: from its own topic first, then the oldest of every topic.
    fn try_append(&mut self, message: &Arc<Message>, bounds: Bounds) -> Result<Append, BusError> {
        let size = size(message);
        if size > bounds.topic {
            return Err(BusError::TooLarge {
                topic: message.topic.clone(),
                size,
                limit: bounds.topic,
            });
        }
        let needed = self.needed_from(&message.topic);
        let log = self.logs.entry(message.topic.clone()).or_default();
        while log.messages.len() >= LOG_CAPACITY || log.bytes + size > bounds.topic {
            let Some(freed) = log.drop_oldest(needed) else {
                return Ok(Append::Full);
            };
            self.bytes -= freed;
        }
        if self.bytes + size > bounds.total {
            let needs: ByName<Option<u64>> = self
                .logs
                .keys()
                .map(|topic| (topic.clone(), self.needed_from(topic)))
                .collect();
            for (topic, log) in &mut self.logs {
                while self.bytes + size > bounds.total {
                    let Some(freed) = log.drop_oldest(needs[topic]) else {
                        break;
                    };
                    self.bytes -= freed;
                }
            }
            if self.bytes + size > bounds.total {
                return Ok(Append::Full);
            }
        }
        let log = self.logs.get_mut(&message.topic).expect("created above");
        log.messages.push_back(message.clone());
        log.bytes += size;
        self.bytes += size;
        Ok(Append::Done)
    }
}

impl Embedded {
    pub fn new(settings: &EmbeddedSettings) -> Embedded {
        Embedded {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                bounds: Bounds {
                    topic: settings.max_topic_mb << 20,
                    total: settings.max_total_mb << 20,
                },
                published: Notify::new(),
                committed: Notify::new(),
                correlator: Correlator::default(),
            }),
        }
    }

    pub fn correlator(&self) -> &Correlator {
        &self.inner.correlator
    }

    /// The largest message (payload, key and headers) a topic takes.
    pub fn max_message_bytes(&self) -> usize {
        (self.inner.bounds.topic as usize).saturating_sub(64 + 256)
    }

    pub async fn publish(&self, mut message: Message) -> Result<(), BusError> {
        if message.timestamp == 0 {
            message.timestamp = synchro_model::now_millis();
        }
        let message = Arc::new(message);
        loop {
            let mut room = pin!(self.inner.committed.notified());
            room.as_mut().enable();
            {
                let mut state = self.inner.state.lock().expect("bus lock");
                if let Append::Done = state.try_append(&message, self.inner.bounds)? {
                    break;
                }
            }
            tracing::debug!(topic = %message.topic, "the bus is full; waiting for a consumer group to commit");
            room.await;
        }
        self.inner.published.notify_waiters();
        self.inner.correlator.offer(&message.topic, &message);
        Ok(())
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
        let starts: ByName<u64> = state
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
                committed: ByName::default(),
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
    positions: ByName<u64>,
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

    /// Messages on the group's topics not handed out yet.
    pub fn lag(&self) -> u64 {
        let state = self.inner.state.lock().expect("bus lock");
        let Some(group) = state.groups.get(&self.group) else {
            return 0;
        };
        state
            .logs
            .iter()
            .filter(|(topic, _)| group.matcher.matches(topic))
            .map(|(topic, log)| {
                let position = self.positions.get(topic).copied().unwrap_or(log.base);
                log.end().saturating_sub(position.max(log.base))
            })
            .sum()
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn bus(topic_mb: u64, total_mb: u64) -> Embedded {
        Embedded::new(&EmbeddedSettings {
            max_topic_mb: topic_mb,
            max_total_mb: total_mb,
        })
    }

    fn mib(topic: &str) -> Message {
        Message::new(topic, vec![7; 1 << 20])
    }

    fn held(bus: &Embedded) -> (u64, HashMap<String, u64>) {
        let state = bus.inner.state.lock().unwrap();
        let per_topic = state
            .logs
            .iter()
            .map(|(t, l)| (t.clone(), l.bytes >> 20))
            .collect();
        (state.bytes >> 20, per_topic)
    }

    #[tokio::test]
    async fn topics_nobody_reads_keep_at_most_their_bytes_and_all_together_the_total() {
        let bus = bus(8, 12);
        for _ in 0..50 {
            bus.publish(mib("a")).await.unwrap();
        }
        let (total, topics) = held(&bus);
        assert!(topics["a"] <= 8 && total <= 8, "{topics:?}");
        for _ in 0..50 {
            bus.publish(mib("b")).await.unwrap();
        }
        let (total, topics) = held(&bus);
        assert!(total <= 12, "{total} MiB held: {topics:?}");
        assert!(topics["b"] <= 8, "{topics:?}");

        let error = bus
            .publish(Message::new("a", vec![0; 9 << 20]))
            .await
            .unwrap_err();
        assert!(
            error.to_string().starts_with("a message of 9437249 bytes does not fit topic `a`, which keeps at most 8388608 bytes"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn what_a_group_still_needs_holds_publishers_back_until_it_commits() {
        let bus = bus(4, 64);
        let mut consumer = bus
            .consume("g", Topics::Names(vec!["t".into()]), StartFrom::Earliest)
            .unwrap();
        for _ in 0..3 {
            bus.publish(mib("t")).await.unwrap();
        }
        // A fourth MiB (with its bookkeeping) does not fit while the group needs the first.
        let blocked = tokio::time::timeout(Duration::from_millis(200), bus.publish(mib("t"))).await;
        assert!(blocked.is_err(), "published over a group's unread messages");
        let first = consumer.next().await;
        consumer.commit(&first);
        tokio::time::timeout(Duration::from_secs(10), bus.publish(mib("t")))
            .await
            .expect("room once the group committed")
            .unwrap();
        let (_, topics) = held(&bus);
        assert!(topics["t"] <= 4, "{topics:?}");
    }
}
