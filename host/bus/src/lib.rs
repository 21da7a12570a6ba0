//! The message bus: one abstraction, two implementations — the embedded in-process log
//! (the default) and Kafka (the only crate that knows rdkafka).
//!
//! Both offer the same semantics, checked by one behavioural test suite: publish;
//! consumer groups that resume from their committed offsets, where each group sees every message and a message is committed only when its
//! consumer says so; and responses correlated by id.

mod changes;
mod correlate;
mod embedded;
pub mod kafka;

use std::sync::Arc;
use std::time::Duration;

pub use changes::{
    CHANGES, ChangeFilter, DamagedRecord, RecordHead, change_message, change_record, is_host_topic,
    record_id, record_message,
};
pub use correlate::{CorrelationId, JsonPaths};
use synchro_model::ErrorKind;

/// The header that carries a response's correlation id by default.
pub const CORRELATION_HEADER: &str = "correlation-id";

/// A message on the bus. Its key and header values are bytes, as Kafka's are: the host
/// carries what a producer wrote to plugins and dead letters unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
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

    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Message {
        self.key = Some(key.into());
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Message {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The first header called `name`, if its value is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Bytes of the payload, the key and the headers: what message limits count.
    pub fn size(&self) -> usize {
        self.payload.len()
            + self.key.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
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
    #[error("invalid topic pattern `{pattern}`: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("Kafka ({brokers}): {reason}")]
    Kafka { brokers: String, reason: String },
    #[error(
        "a message of {size} bytes does not fit topic `{topic}`, which keeps at most {limit} bytes (bus.max-topic-mb)"
    )]
    TooLarge {
        topic: String,
        size: u64,
        limit: u64,
    },
}

impl BusError {
    /// What kind of failure this is at a boundary: a broker that cannot be reached is the
    /// bus's trouble, not the caller's.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BusError::TimedOut { .. } => ErrorKind::TimedOut,
            BusError::AlreadyAwaited { .. } => ErrorKind::Conflict,
            BusError::BadPattern { .. } | BusError::TooLarge { .. } => ErrorKind::InvalidInput,
            BusError::Kafka { .. } => ErrorKind::Unavailable,
        }
    }
}

impl From<BusError> for synchro_model::Error {
    fn from(error: BusError) -> synchro_model::Error {
        synchro_model::Error::new(error.kind(), error.to_string())
    }
}

/// Which bus the host uses: `[bus]` with `kind = "embedded"` (the default) or
/// `kind = "kafka"` and the Kafka settings.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BusSettings {
    Embedded(EmbeddedSettings),
    Kafka(kafka::KafkaSettings),
}

impl Default for BusSettings {
    fn default() -> Self {
        BusSettings::Embedded(EmbeddedSettings::default())
    }
}

/// `[bus]` with `kind = "embedded"`: how much the in-process log keeps. Any other key is a
/// mistake (such as a Kafka `brokers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct EmbeddedSettings {
    /// The most one topic keeps, in MiB.
    pub max_topic_mb: u64,
    /// The most all topics keep together, in MiB.
    pub max_total_mb: u64,
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        EmbeddedSettings {
            max_topic_mb: 64,
            max_total_mb: 256,
        }
    }
}

impl EmbeddedSettings {
    /// Checks the bounds; errors start with the field's name.
    pub fn check(&self) -> Result<(), String> {
        if self.max_topic_mb == 0 || self.max_topic_mb > 1 << 20 {
            return Err("max-topic-mb`: must be 1 to 1048576".into());
        }
        if self.max_total_mb < self.max_topic_mb || self.max_total_mb > 1 << 20 {
            return Err("max-total-mb`: must be at least max-topic-mb and at most 1048576".into());
        }
        Ok(())
    }
}

/// The topics a consumer group reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topics {
    Names(Vec<String>),
    /// A regular expression over topic names, matched whole; topics created later that
    /// match are read too.
    Pattern(String),
}

impl Topics {
    /// Whether `topic` is one of these (a pattern that does not compile matches nothing;
    /// joining with it says why).
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Topics::Names(names) => names.iter().any(|n| n == topic),
            Topics::Pattern(pattern) => compile_pattern(pattern).is_ok_and(|re| re.is_match(topic)),
        }
    }
}

/// Where a consumer group that has never committed starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartFrom {
    Earliest,
    #[default]
    Latest,
}

/// A message handed to a consumer, with the position to commit once it is processed.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<Message>,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Clone)]
pub enum Bus {
    Embedded(embedded::Embedded),
    Kafka(kafka::Kafka),
}

impl Default for Bus {
    fn default() -> Self {
        Bus::embedded()
    }
}

impl Bus {
    /// The in-process bus, with the default bounds.
    pub fn embedded() -> Bus {
        Bus::Embedded(embedded::Embedded::new(&EmbeddedSettings::default()))
    }

    /// The bus the host configuration asks for; `member` is who the host is to Kafka.
    pub fn from_settings(settings: &BusSettings, member: kafka::Member) -> Result<Bus, BusError> {
        match settings {
            BusSettings::Embedded(settings) => Ok(Bus::Embedded(embedded::Embedded::new(settings))),
            BusSettings::Kafka(kafka) => kafka::Kafka::new(kafka.clone(), member).map(Bus::Kafka),
        }
    }

    /// The largest message (payload, key and headers, a topic name of up to 256 bytes)
    /// this bus carries: what every limit on messages must stay within.
    pub fn max_message_bytes(&self) -> usize {
        match self {
            Bus::Embedded(bus) => bus.max_message_bytes(),
            Bus::Kafka(bus) => bus.max_message_bytes(),
        }
    }

    /// Publishes `message`, waiting while the log is full (embedded) or for the broker.
    pub async fn publish(&self, message: Message) -> Result<(), BusError> {
        match self {
            Bus::Embedded(bus) => bus.publish(message).await,
            Bus::Kafka(bus) => bus.publish(message).await,
        }
    }

    /// Makes sure `topic` exists: creates it on Kafka if the broker does not have it (the
    /// embedded bus has every topic). A consumer group that subscribes to a topic that
    /// does not exist yet joins, finds nothing to read, and joins again once its metadata
    /// shows the topic — seconds later on a busy broker; declaring first saves that.
    pub async fn declare(&self, topic: &str) -> Result<(), BusError> {
        match self {
            Bus::Embedded(_) => Ok(()),
            Bus::Kafka(bus) => bus.ensure_topic(topic).await,
        }
    }

    /// Joins consumer group `group` on `topics`.
    pub fn consume(
        &self,
        group: &str,
        topics: Topics,
        start: StartFrom,
    ) -> Result<Consumer, BusError> {
        match self {
            Bus::Embedded(bus) => bus.consume(group, topics, start).map(Consumer::Embedded),
            Bus::Kafka(bus) => bus.consume(group, topics, start).map(Consumer::Kafka),
        }
    }

    /// Declares that `topic` carries responses whose ids `id` finds, so that a response
    /// published before its waiter starts waiting is kept for it.
    pub async fn expect_responses(&self, topic: &str, id: CorrelationId) -> Result<(), BusError> {
        match self {
            Bus::Embedded(bus) => {
                bus.correlator().declare(topic, id);
                Ok(())
            }
            Bus::Kafka(bus) => bus.expect_responses(topic, id).await,
        }
    }

    /// Waits for the message on `topic` whose correlation id is `id`.
    pub async fn await_response(
        &self,
        topic: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<Arc<Message>, BusError> {
        let correlator = match self {
            Bus::Embedded(bus) => bus.correlator(),
            Bus::Kafka(bus) => {
                bus.expect_responses(topic, CorrelationId::default())
                    .await?;
                bus.correlator()
            }
        };
        correlator.wait(topic, id, timeout).await
    }

    /// What became of the responses this host has seen.
    pub fn response_stats(&self) -> synchro_status::Responses {
        self.correlator().stats()
    }

    /// How long this host's answered `await-response` waits waited.
    pub fn response_waits(&self) -> synchro_status::Durations {
        self.correlator().waits().clone()
    }

    fn correlator(&self) -> &correlate::Correlator {
        match self {
            Bus::Embedded(bus) => bus.correlator(),
            Bus::Kafka(bus) => bus.correlator(),
        }
    }
}

/// A member of a consumer group.
pub enum Consumer {
    Embedded(embedded::Consumer),
    Kafka(kafka::Consumer),
}

impl Consumer {
    /// The next message, in order within its partition.
    pub async fn next(&mut self) -> Result<Delivery, BusError> {
        match self {
            Consumer::Embedded(c) => Ok(c.next().await),
            Consumer::Kafka(c) => c.next().await,
        }
    }

    /// Messages on the topics this consumer reads that it has not been handed yet.
    pub fn lag(&self) -> u64 {
        match self {
            Consumer::Embedded(c) => c.lag(),
            Consumer::Kafka(c) => c.lag(),
        }
    }

    /// Commits `delivery` and everything before it in its partition: the group resumes
    /// after it.
    pub fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        match self {
            Consumer::Embedded(c) => {
                c.commit(delivery);
                Ok(())
            }
            Consumer::Kafka(c) => c.commit(delivery),
        }
    }
}

/// Compiles a topic pattern, anchored to match whole names.
fn compile_pattern(pattern: &str) -> Result<regex::Regex, BusError> {
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| BusError::BadPattern {
        pattern: pattern.to_owned(),
        reason: e.to_string(),
    })
}
