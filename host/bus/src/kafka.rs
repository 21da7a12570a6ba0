//! The bus on Kafka, through rdkafka (librdkafka): the only module that knows it.
//!
//! Topic names on the wire carry the configured prefix; the rest of the host sees
//! logical names. Topics are created explicitly (with the configured partitions and
//! replication) before first use, as a careful deployment would, instead of relying on
//! broker auto-creation. Consumer groups commit only what their consumer commits.
//! Responses are read by one consumer per host in a group of its own, so hosts sharing a
//! response topic each see every response and keep those they await.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;

use super::correlate::{CorrelationId, Correlator};
use super::{BusError, Delivery, Message, StartFrom, Topics};

/// `[bus]` with `kind = "kafka"` in the host config.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KafkaSettings {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Prepended to every topic name on the wire, and to consumer group ids.
    #[serde(default)]
    pub topic_prefix: String,
    /// Partitions of the topics synchro creates.
    #[serde(default = "one")]
    pub partitions: i32,
    /// Replication factor of the topics synchro creates.
    #[serde(default = "one")]
    pub replication: i32,
    /// How long a publish may wait for the brokers to acknowledge it.
    #[serde(default = "delivery_timeout", with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// librdkafka properties passed through as they are (`security.protocol`, ...).
    #[serde(default)]
    pub properties: HashMap<String, String>,
}

impl KafkaSettings {
    /// Checks the values; errors start with the field's name.
    pub fn check(&self) -> Result<(), String> {
        if self.brokers.split(',').all(|b| b.trim().is_empty()) {
            return Err("brokers`: name at least one broker (`host:port[,host:port…]`)".into());
        }
        if self.partitions < 1 {
            return Err("partitions`: must be at least 1".into());
        }
        if self.replication < 1 {
            return Err("replication`: must be at least 1".into());
        }
        if self.delivery_timeout.is_zero() {
            return Err("delivery-timeout`: must be longer than zero".into());
        }
        // librdkafka takes it in milliseconds as an i32.
        if self.delivery_timeout.as_millis() > i32::MAX as u128 {
            return Err("delivery-timeout`: must be at most 24 days".into());
        }
        Ok(())
    }
}

fn one() -> i32 {
    1
}

fn delivery_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Clone)]
pub struct Kafka {
    inner: Arc<Inner>,
}

struct Inner {
    settings: KafkaSettings,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Topics known to exist (wire names).
    topics: tokio::sync::Mutex<HashSet<String>>,
    correlator: Correlator,
    responses: Mutex<Option<Arc<StreamConsumer>>>,
    /// Unique per host: names this host's private consumer groups and, when stable, its
    /// static membership of the others.
    host_id: String,
    static_member: bool,
}

impl Kafka {
    /// Connects lazily: a broker that is down now is retried by librdkafka with backoff;
    /// publishes fail after the delivery timeout with an error naming the brokers.
    pub fn new(settings: KafkaSettings, member: Member) -> Result<Kafka, BusError> {
        let producer: FutureProducer = client_config(&settings, &[("linger.ms", "1")])
            .set(
                "message.timeout.ms",
                settings.delivery_timeout.as_millis().to_string(),
            )
            .create()
            .map_err(|e| kafka_error(&settings, e))?;
        let admin = client_config(&settings, &[])
            .create()
            .map_err(|e| kafka_error(&settings, e))?;
        Ok(Kafka {
            inner: Arc::new(Inner {
                producer,
                admin,
                topics: Default::default(),
                correlator: Correlator::default(),
                responses: Mutex::new(None),
                static_member: matches!(member, Member::Stable(_)),
                host_id: match member {
                    Member::Stable(id) => id,
                    Member::Ephemeral => uuid::Uuid::new_v4().to_string(),
                },
                settings,
            }),
        })
    }

    pub fn correlator(&self) -> &Correlator {
        &self.inner.correlator
    }

    pub fn settings(&self) -> &KafkaSettings {
        &self.inner.settings
    }

    /// The largest message the producer sends: its `message.max.bytes` (librdkafka's
    /// default, 1 000 000, unless the operator's properties say otherwise), less what a
    /// record adds around the message.
    pub fn max_message_bytes(&self) -> usize {
        let configured = self
            .inner
            .settings
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1_000_000);
        configured.saturating_sub(RECORD_OVERHEAD)
    }

    fn wire(&self, topic: &str) -> String {
        format!("{}{topic}", self.inner.settings.topic_prefix)
    }

    fn error(&self, reason: impl std::fmt::Display) -> BusError {
        kafka_error(&self.inner.settings, reason)
    }

    /// Creates `topic` unless it is known to exist.
    pub async fn ensure_topic(&self, topic: &str) -> Result<(), BusError> {
        let wire = self.wire(topic);
        let mut known = self.inner.topics.lock().await;
        if known.contains(&wire) {
            return Ok(());
        }
        let settings = &self.inner.settings;
        let new = NewTopic::new(
            &wire,
            settings.partitions,
            TopicReplication::Fixed(settings.replication),
        );
        let options = AdminOptions::new()
            .operation_timeout(Some(settings.delivery_timeout))
            .request_timeout(Some(settings.delivery_timeout));
        let results = self
            .inner
            .admin
            .create_topics([&new], &options)
            .await
            .map_err(|e| self.error(format!("creating topic `{wire}`: {e}")))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(self.error(format!("creating topic `{name}`: {code}")));
                }
            }
        }
        known.insert(wire);
        Ok(())
    }

    pub async fn publish(&self, message: Message) -> Result<(), BusError> {
        self.ensure_topic(&message.topic).await?;
        let wire = self.wire(&message.topic);
        let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
        for (key, value) in &message.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_slice()),
            });
        }
        let mut record = FutureRecord::to(&wire)
            .payload(&message.payload)
            .headers(headers);
        if let Some(key) = &message.key {
            record = record.key(key.as_slice());
        }
        if message.timestamp != 0 {
            record = record.timestamp(message.timestamp as i64);
        }
        let sent = self
            .inner
            .producer
            .send(record, self.inner.settings.delivery_timeout)
            .await;
        if let Err((e, _)) = sent {
            // The topic may be gone (a broker that restarted empty, an operator's delete):
            // forget it, so that the next publish creates it again.
            self.inner.topics.lock().await.remove(&wire);
            return Err(self.error(format!("publishing to `{wire}`: {e}")));
        }
        Ok(())
    }

    fn consumer(&self, group: &str, start: StartFrom) -> Result<StreamConsumer, BusError> {
        // Fetch without waiting long for more data: responses and events are latency
        // sensitive, and librdkafka's default wait is 500 ms.
        let mut config = client_config(
            &self.inner.settings,
            &[
                ("fetch.wait.max.ms", "5"),
                // At least once, with a bounded duplicate window: a processed message's
                // offset is stored (`Consumer::commit`), and what is stored is committed
                // every COMMIT_EVERY, on a rebalance and on close. A kill repeats what was
                // handled in the last interval.
                ("enable.auto.offset.store", "false"),
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", COMMIT_EVERY_MS),
                // A member that dies (kill -9) holds its partitions this long before the
                // group hands them on, to the restarted host among others; librdkafka's
                // default is 45 s.
                ("session.timeout.ms", SESSION_TIMEOUT_MS),
                ("heartbeat.interval.ms", HEARTBEAT_MS),
            ],
        );
        config
            .set(
                "group.id",
                format!("{}{group}", self.inner.settings.topic_prefix),
            )
            .set(
                "auto.offset.reset",
                match start {
                    StartFrom::Earliest => "earliest",
                    StartFrom::Latest => "latest",
                },
            )
            // Subscribe to topics that do not exist yet without an error.
            .set("allow.auto.create.topics", "false")
            .set("topic.metadata.refresh.interval.ms", "1000");
        if self.inner.static_member {
            // A host restarted after a crash takes its place in the group back at once,
            // instead of waiting for the dead member's session to end (which a broker may
            // not even act on until some member joins).
            config.set(
                "group.instance.id",
                format!(
                    "{}{group}@{}",
                    self.inner.settings.topic_prefix, self.inner.host_id
                ),
            );
        }
        config.create().map_err(|e| self.error(e))
    }

    fn subscription_names(&self, topics: &Topics) -> Vec<String> {
        let prefix = &self.inner.settings.topic_prefix;
        match topics {
            Topics::Names(names) => names.iter().map(|n| format!("{prefix}{n}")).collect(),
            // librdkafka treats a name starting with `^` as a regular expression (its
            // own dialect: no `(?:`).
            Topics::Pattern(pattern) => vec![format!("^{}({pattern})$", regex::escape(prefix))],
        }
    }

    pub fn consume(
        &self,
        group: &str,
        topics: Topics,
        start: StartFrom,
    ) -> Result<Consumer, BusError> {
        if let Topics::Pattern(pattern) = &topics {
            super::compile_pattern(pattern)?;
        }
        let consumer = self.consumer(group, start)?;
        let names = self.subscription_names(&topics);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        consumer
            .subscribe(&refs)
            .map_err(|e| self.error(format!("subscribing to {names:?}: {e}")))?;
        Ok(Consumer {
            kafka: self.clone(),
            consumer,
        })
    }

    /// Assigns `consumer` every partition of `topic` at its high watermark, read now: from
    /// when this returns, `consumer` sees every message published to `topic`.
    async fn assign_at_end(
        &self,
        consumer: &Arc<StreamConsumer>,
        topic: &str,
    ) -> Result<(), BusError> {
        let consumer = consumer.clone();
        let wire = self.wire(topic);
        let timeout = self.inner.settings.delivery_timeout;
        let kafka = self.clone();
        tokio::task::spawn_blocking(move || -> Result<(), BusError> {
            let metadata = consumer
                .fetch_metadata(Some(&wire), timeout)
                .map_err(|e| kafka.error(format!("metadata of `{wire}`: {e}")))?;
            let mut list = TopicPartitionList::new();
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                let (_, high) = consumer
                    .fetch_watermarks(&wire, partition.id(), timeout)
                    .map_err(|e| kafka.error(format!("offsets of `{wire}`: {e}")))?;
                list.add_partition_offset(&wire, partition.id(), Offset::Offset(high))
                    .map_err(|e| kafka.error(e))?;
            }
            consumer
                .incremental_assign(&list)
                .map_err(|e| kafka.error(format!("reading `{wire}`: {e}")))
        })
        .await
        .expect("assigning does not panic")
    }

    /// Declares a response topic and makes this host's response reader read it from its
    /// current end. When this returns, every response published from then on is seen.
    ///
    /// The reader is in no consumer group: it assigns itself every partition of every
    /// response topic at the high watermark read synchronously here. (Subscribing at
    /// "latest" instead would lose responses published before the group's assignment
    /// completes — the race that drops Gizmo's fast responses.)
    pub async fn expect_responses(&self, topic: &str, id: CorrelationId) -> Result<(), BusError> {
        if self.inner.correlator.is_declared(topic) {
            return Ok(());
        }
        self.ensure_topic(topic).await?;
        let reader = self.response_reader()?;
        self.assign_at_end(&reader, topic).await?;
        self.inner.correlator.declare(topic, id);
        Ok(())
    }

    /// This host's response reader, started on first use.
    fn response_reader(&self) -> Result<Arc<StreamConsumer>, BusError> {
        let mut reader = self.inner.responses.lock().expect("responses lock");
        if let Some(consumer) = &*reader {
            return Ok(consumer.clone());
        }
        let group = format!("synchro-responses-{}", self.inner.host_id);
        let consumer = Arc::new(self.consumer(&group, StartFrom::Latest)?);
        let kafka = self.clone();
        let reading = consumer.clone();
        tokio::spawn(async move {
            loop {
                match reading.recv().await {
                    Ok(m) => {
                        let message = Arc::new(kafka.owned(&m));
                        kafka.inner.correlator.offer(&message.topic, &message);
                    }
                    Err(e) => {
                        tracing::warn!("Kafka response reader: {e}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        *reader = Some(consumer.clone());
        Ok(consumer)
    }

    /// An owned message with its logical topic name.
    fn owned(&self, m: &rdkafka::message::BorrowedMessage<'_>) -> Message {
        let prefix = &self.inner.settings.topic_prefix;
        Message {
            topic: m
                .topic()
                .strip_prefix(prefix.as_str())
                .unwrap_or(m.topic())
                .to_owned(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().unwrap_or_default().to_vec(),
            headers: m
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
            timestamp: m.timestamp().to_millis().unwrap_or(0).max(0) as u64,
        }
    }
}

/// A member of a Kafka consumer group.
pub struct Consumer {
    kafka: Kafka,
    consumer: StreamConsumer,
}

impl Consumer {
    pub async fn next(&mut self) -> Result<Delivery, BusError> {
        let m = loop {
            match self.consumer.recv().await {
                Ok(m) => break m,
                // A subscribed topic that does not exist yet: it will be created by its
                // first publish, and librdkafka picks it up on its next metadata refresh.
                Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                    tracing::debug!("waiting for a subscribed topic to be created");
                }
                Err(e) => return Err(self.kafka.error(e)),
            }
        };
        Ok(Delivery {
            message: Arc::new(self.kafka.owned(&m)),
            partition: m.partition(),
            offset: m.offset(),
        })
    }

    /// Messages on the partitions assigned to this member not handed out yet, from what
    /// librdkafka last heard of each partition's end (no request to the brokers).
    pub fn lag(&self) -> u64 {
        let Ok(positions) = self.consumer.position() else {
            return 0;
        };
        positions
            .elements()
            .iter()
            .filter_map(|element| {
                let Offset::Offset(position) = element.offset() else {
                    return None;
                };
                let high = self.cached_high_watermark(element.topic(), element.partition())?;
                u64::try_from(high - position).ok()
            })
            .sum()
    }

    /// The end of `topic`'s `partition` as librdkafka last heard it with a fetch
    /// (`rd_kafka_get_watermark_offsets`, which rdkafka does not wrap: its
    /// `fetch_watermarks` asks the broker).
    fn cached_high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        let topic = std::ffi::CString::new(topic).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer lives as long as `self.consumer`; `topic` is a valid
        // C string for the call; `low` and `high` are written by the call only.
        let error = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
                &mut low,
                &mut high,
            )
        };
        (error == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
            .then_some(high)
    }

    /// Stores `delivery`'s position for the next automatic commit (within
    /// [`COMMIT_EVERY_MS`], and at close). A partition this member no longer owns (after a
    /// rebalance) is skipped: its new owner gets the message again.
    pub fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(
            &self.kafka.wire(&delivery.message.topic),
            delivery.partition,
            Offset::Offset(delivery.offset + 1),
        )
        .map_err(|e| self.kafka.error(e))?;
        match self.consumer.store_offsets(&list) {
            Ok(()) => Ok(()),
            Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {
                tracing::debug!(
                    partition = delivery.partition,
                    "not storing an offset of a partition no longer assigned"
                );
                Ok(())
            }
            Err(error) => Err(self.kafka.error(error)),
        }
    }
}

/// Who a host is to the brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    /// An id unique per host and the same at each of its starts (`synchro run` keeps one in
    /// its data directory): a static member of its consumer groups, which a restarted host
    /// rejoins at once. Two hosts with one id fence each other out of their groups.
    Stable(String),
    /// A fresh id (tools, tests): a dynamic member, as Kafka clients are by default.
    Ephemeral,
}

/// How often a consumer commits the offsets of what it has processed.
const COMMIT_EVERY_MS: &str = "200";
/// How long a dead member keeps its partitions (see the consumer's config).
const SESSION_TIMEOUT_MS: &str = "10000";
const HEARTBEAT_MS: &str = "2000";

/// Bytes a record batch adds around one message, at most (its batch header, the record's
/// lengths and offsets), rounded up.
const RECORD_OVERHEAD: usize = 512;

/// A client config: the brokers, then `defaults`, then the operator's properties, which
/// override both.
fn client_config(settings: &KafkaSettings, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.brokers);
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in &settings.properties {
        config.set(key, value);
    }
    config
}

fn kafka_error(settings: &KafkaSettings, reason: impl std::fmt::Display) -> BusError {
    BusError::Kafka {
        brokers: settings.brokers.clone(),
        reason: reason.to_string(),
    }
}
