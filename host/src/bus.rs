//! The embedded, in-process message bus: topics, filtered subscriptions, and responses
//! correlated by id (Gizmo's async mode).
//!
//! Subscribers have bounded queues, so a slow subscriber slows its publishers down
//! instead of growing memory without bound; nothing is dropped for a live subscriber.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

/// The header that carries a response's correlation id.
pub const CORRELATION_HEADER: &str = "correlation-id";

/// Messages a subscriber may have queued before publishers wait for it.
const SUBSCRIBER_QUEUE: usize = 1024;
/// Responses kept for waiters that have not started waiting yet, per topic.
const EARLY_RESPONSES: usize = 10_000;
/// How long a response nobody awaits is kept.
const EARLY_RESPONSE_TTL: Duration = Duration::from_secs(60);

/// A message on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// Milliseconds since the Unix epoch; stamped on publish when zero.
    pub timestamp: u64,
}

impl Message {
    pub fn new(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Message {
        Message {
            topic: topic.into(),
            key: None,
            payload: payload.into(),
            headers: Vec::new(),
            timestamp: 0,
        }
    }

    pub fn with_key(mut self, key: impl Into<String>) -> Message {
        self.key = Some(key.into());
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Message {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("no response with correlation id `{id}` on topic `{topic}` within {timeout:?}")]
    TimedOut {
        topic: String,
        id: String,
        timeout: Duration,
    },
    #[error("correlation id `{id}` on topic `{topic}` is already being awaited")]
    AlreadyAwaited { topic: String, id: String },
}

/// Which messages of a topic a subscriber wants.
#[derive(Debug, Clone, Default)]
pub enum Filter {
    /// Every message.
    #[default]
    All,
    /// Messages whose `kind` header is one of these (change notifications carry it).
    Kinds(HashSet<String>),
}

impl Filter {
    fn matches(&self, message: &Message) -> bool {
        match self {
            Filter::All => true,
            Filter::Kinds(kinds) => message.header("kind").is_some_and(|k| kinds.contains(k)),
        }
    }
}

/// A subscription's queue. Dropping it unsubscribes.
pub type Subscription = mpsc::Receiver<Arc<Message>>;

#[derive(Clone, Default)]
pub struct Bus {
    topics: Arc<Mutex<HashMap<String, Topic>>>,
}

#[derive(Default)]
struct Topic {
    subscribers: Vec<(mpsc::Sender<Arc<Message>>, Filter)>,
    responses: Option<Responses>,
}

/// Correlation state of a topic that carries responses.
#[derive(Default)]
struct Responses {
    waiting: HashMap<String, oneshot::Sender<Arc<Message>>>,
    early: HashMap<String, Arc<Message>>,
    /// Arrival order of `early`, to expire and cap it.
    arrivals: VecDeque<(Instant, String)>,
}

impl Responses {
    /// Hands `message` to its waiter, or keeps it for a waiter that has not come yet.
    fn deliver(&mut self, id: &str, message: &Arc<Message>) {
        if let Some(waiter) = self.waiting.remove(id) {
            // A waiter that timed out a moment ago has dropped its receiver: nothing to do.
            let _ = waiter.send(message.clone());
            return;
        }
        let now = Instant::now();
        while let Some((at, _)) = self.arrivals.front() {
            if now.duration_since(*at) < EARLY_RESPONSE_TTL && self.arrivals.len() < EARLY_RESPONSES
            {
                break;
            }
            let (_, old) = self.arrivals.pop_front().expect("front exists");
            self.early.remove(&old);
        }
        self.early.insert(id.to_owned(), message.clone());
        self.arrivals.push_back((now, id.to_owned()));
    }
}

impl Bus {
    pub fn new() -> Bus {
        Bus::default()
    }

    /// Publishes `message` to every subscriber of its topic, waiting while a subscriber's
    /// queue is full.
    pub async fn publish(&self, mut message: Message) {
        if message.timestamp == 0 {
            message.timestamp = crate::change::now_millis();
        }
        let message = Arc::new(message);
        let targets: Vec<_> = {
            let mut topics = self.topics.lock().expect("bus lock");
            let Some(topic) = topics.get_mut(&message.topic) else {
                return;
            };
            if let (Some(responses), Some(id)) =
                (&mut topic.responses, message.header(CORRELATION_HEADER))
            {
                responses.deliver(id, &message);
            }
            topic
                .subscribers
                .iter()
                .filter(|(_, filter)| filter.matches(&message))
                .map(|(tx, _)| tx.clone())
                .collect()
        };
        let mut closed = false;
        for tx in targets {
            closed |= tx.send(message.clone()).await.is_err();
        }
        if closed {
            let mut topics = self.topics.lock().expect("bus lock");
            if let Some(topic) = topics.get_mut(&message.topic) {
                topic.subscribers.retain(|(tx, _)| !tx.is_closed());
            }
        }
    }

    /// Subscribes to `topic`; messages published from now on that pass `filter` arrive
    /// in publish order.
    pub fn subscribe(&self, topic: &str, filter: Filter) -> Subscription {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let mut topics = self.topics.lock().expect("bus lock");
        topics
            .entry(topic.to_owned())
            .or_default()
            .subscribers
            .push((tx, filter));
        rx
    }

    /// Declares that `topic` carries responses, so that a response published before its
    /// waiter starts waiting is kept for it.
    pub fn expect_responses(&self, topic: &str) {
        let mut topics = self.topics.lock().expect("bus lock");
        topics
            .entry(topic.to_owned())
            .or_default()
            .responses
            .get_or_insert_with(Responses::default);
    }

    /// Waits for the message on `topic` whose correlation id is `id`.
    pub async fn await_response(
        &self,
        topic: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<Arc<Message>, BusError> {
        let rx = {
            let mut topics = self.topics.lock().expect("bus lock");
            let responses = topics
                .entry(topic.to_owned())
                .or_default()
                .responses
                .get_or_insert_with(Responses::default);
            if let Some(message) = responses.early.remove(id) {
                return Ok(message);
            }
            if responses.waiting.get(id).is_some_and(|w| !w.is_closed()) {
                return Err(BusError::AlreadyAwaited {
                    topic: topic.to_owned(),
                    id: id.to_owned(),
                });
            }
            let (tx, rx) = oneshot::channel();
            responses.waiting.insert(id.to_owned(), tx);
            rx
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(message)) => Ok(message),
            _ => {
                let mut topics = self.topics.lock().expect("bus lock");
                if let Some(responses) = topics.get_mut(topic).and_then(|t| t.responses.as_mut()) {
                    responses.waiting.remove(id);
                }
                Err(BusError::TimedOut {
                    topic: topic.to_owned(),
                    id: id.to_owned(),
                    timeout,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(id: &str) -> Message {
        Message::new("responses", id.as_bytes().to_vec()).with_header(CORRELATION_HEADER, id)
    }

    #[tokio::test]
    async fn subscribers_get_every_message_in_order_and_filters_apply() {
        let bus = Bus::new();
        let mut all = bus.subscribe("t", Filter::All);
        let mut servers = bus.subscribe("t", Filter::Kinds(["pserver".to_owned()].into()));
        for (i, kind) in ["pserver", "vserver", "pserver"].iter().enumerate() {
            bus.publish(Message::new("t", vec![i as u8]).with_header("kind", *kind))
                .await;
        }
        bus.publish(Message::new("other", vec![9])).await;
        for i in 0..3u8 {
            assert_eq!(all.recv().await.unwrap().payload, [i]);
        }
        assert_eq!(servers.recv().await.unwrap().payload, [0]);
        assert_eq!(servers.recv().await.unwrap().payload, [2]);
        assert!(all.try_recv().is_err() && servers.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_subscriber_applies_back_pressure_without_loss() {
        let bus = Bus::new();
        let mut sub = bus.subscribe("t", Filter::All);
        let publisher = {
            let bus = bus.clone();
            tokio::spawn(async move {
                for i in 0..(SUBSCRIBER_QUEUE as u32 * 3) {
                    bus.publish(Message::new("t", i.to_be_bytes().to_vec()))
                        .await;
                }
            })
        };
        for i in 0..(SUBSCRIBER_QUEUE as u32 * 3) {
            assert_eq!(sub.recv().await.unwrap().payload, i.to_be_bytes());
        }
        publisher.await.unwrap();
    }

    #[tokio::test]
    async fn a_response_that_arrives_before_the_waiter_is_not_lost() {
        let bus = Bus::new();
        bus.expect_responses("responses");
        bus.publish(response("early")).await;
        let got = bus
            .await_response("responses", "early", Duration::from_millis(10))
            .await
            .unwrap();
        assert_eq!(got.payload, b"early");
    }

    #[tokio::test]
    async fn a_waiter_gets_its_own_response_and_times_out_cleanly() {
        let bus = Bus::new();
        let waiter = {
            let bus = bus.clone();
            tokio::spawn(async move {
                bus.await_response("responses", "mine", Duration::from_secs(5))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        bus.publish(response("someone-else")).await;
        bus.publish(response("mine")).await;
        assert_eq!(waiter.await.unwrap().unwrap().payload, b"mine");

        let error = bus
            .await_response("responses", "never", Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(matches!(error, BusError::TimedOut { .. }), "{error}");
    }
}
