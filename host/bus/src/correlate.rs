//! Responses correlated by id, for both bus implementations (Gizmo's async mode, minus
//! the race where a response that beats its waiter is dropped).
//!
//! A waiter registers before it waits; a response whose waiter has not registered yet is
//! parked for a while, so publish-then-await never loses a fast response. Responses that
//! arrive after their waiter gave up (late), for an id already answered (duplicate), that
//! nobody ever claims (unknown), or that carry no id (malformed) are dropped and counted;
//! the counts are in the host's status.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use synchro_status::{Durations, Responses};

use super::{BusError, Message};

/// Responses kept for waiters that have not started waiting yet, per topic.
const PARKED: usize = 10_000;
/// How long a response nobody awaits is kept.
const PARKED_TTL: Duration = Duration::from_secs(60);
/// Ids remembered as answered or abandoned, to tell late and duplicate responses apart.
const REMEMBERED: usize = 10_000;

/// Where a response carries its correlation id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorrelationId {
    /// A header, `correlation-id` by default.
    Header(String),
    /// A string field of the JSON payload: Gizmo's responses carry it in
    /// `transaction-id`, its requests in `body.transaction-id`.
    JsonField(JsonPaths),
}

/// Dotted paths into a JSON document, as `A.B`; several, as `A|B`: the first that holds
/// a string. Split once, not for every message read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPaths {
    paths: Vec<Vec<String>>,
}

impl From<&str> for JsonPaths {
    fn from(text: &str) -> JsonPaths {
        JsonPaths {
            paths: text
                .split('|')
                .map(|path| path.split('.').map(str::to_owned).collect())
                .collect(),
        }
    }
}

impl std::fmt::Display for JsonPaths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let paths: Vec<String> = self.paths.iter().map(|path| path.join(".")).collect();
        f.write_str(&paths.join("|"))
    }
}

impl std::fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CorrelationId::Header(name) => write!(f, "header:{name}"),
            CorrelationId::JsonField(paths) => write!(f, "json:{paths}"),
        }
    }
}

impl Default for CorrelationId {
    fn default() -> Self {
        CorrelationId::Header(super::CORRELATION_HEADER.to_owned())
    }
}

impl CorrelationId {
    /// Parses `header:NAME` or `json:PATH`.
    pub fn parse(text: &str) -> Result<CorrelationId, String> {
        match text.split_once(':') {
            Some(("header", name)) if !name.is_empty() => {
                Ok(CorrelationId::Header(name.to_owned()))
            }
            Some(("json", path)) if !path.is_empty() => Ok(CorrelationId::JsonField(path.into())),
            _ => Err(format!(
                "`{text}`: expected `header:NAME` or `json:FIELD.PATH`"
            )),
        }
    }

    /// The id `message` carries, if any.
    pub fn of(&self, message: &Message) -> Option<String> {
        match self {
            CorrelationId::Header(name) => message.header(name).map(str::to_owned),
            CorrelationId::JsonField(paths) => paths
                .paths
                .iter()
                .find_map(|path| json_path::string_at(&message.payload, path)),
        }
    }
}

/// Reads one string of a JSON document without building the document: every response
/// of a topic is read for its id, under the correlator's lock, and a `serde_json::Value`
/// of the whole payload showed in the async Gizmo API's profile.
mod json_path {
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

    /// The string at `path` (field names, outermost first) of the document `json`, as
    /// `serde_json::Value` would find it (the last of duplicate fields counts); `None`
    /// when `json` is not a JSON document or holds no string there.
    pub fn string_at(json: &[u8], path: &[String]) -> Option<String> {
        let mut document = serde_json::Deserializer::from_slice(json);
        let found = At { path }.deserialize(&mut document).ok()?;
        document.end().ok()?;
        found
    }

    /// The value at `path` of what is being read: the string there, if it is one.
    struct At<'p> {
        path: &'p [String],
    }

    impl<'de> DeserializeSeed<'de> for At<'_> {
        type Value = Option<String>;

        fn deserialize<D: Deserializer<'de>>(self, value: D) -> Result<Self::Value, D::Error> {
            value.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for At<'_> {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
            Ok(self.path.is_empty().then(|| text.to_owned()))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(wanted) =
                map.next_key_seed(Named(self.path.first().map(String::as_str)))?
            {
                if wanted {
                    found = map.next_value_seed(At {
                        path: &self.path[1..],
                    })?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }

        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    /// A field's name: whether it is the one wanted (compared, never copied).
    struct Named<'p>(Option<&'p str>);

    impl<'de> DeserializeSeed<'de> for Named<'_> {
        type Value = bool;

        fn deserialize<D: Deserializer<'de>>(self, name: D) -> Result<bool, D::Error> {
            name.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for Named<'_> {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a field name")
        }

        fn visit_str<E>(self, name: &str) -> Result<bool, E> {
            Ok(self.0 == Some(name))
        }
    }
}

#[derive(Default)]
struct Topic {
    id: CorrelationId,
    waiting: HashMap<String, oneshot::Sender<Arc<Message>>>,
    parked: HashMap<String, Arc<Message>>,
    /// Arrival order of `parked`, to expire and cap it.
    arrivals: VecDeque<(Instant, String)>,
    answered: Remembered,
    abandoned: Remembered,
}

/// A bounded set of recent ids.
#[derive(Default)]
struct Remembered {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Remembered {
    fn insert(&mut self, id: &str) {
        if self.ids.insert(id.to_owned()) {
            self.order.push_back(id.to_owned());
            if self.order.len() > REMEMBERED {
                let old = self.order.pop_front().expect("not empty");
                self.ids.remove(&old);
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

/// The correlation state of every response topic of one host.
#[derive(Clone, Default)]
pub struct Correlator {
    topics: Arc<Mutex<HashMap<String, Topic>>>,
    stats: Arc<Mutex<Responses>>,
    /// How long each answered wait waited (one parked for it: none).
    waits: Durations,
}

impl Correlator {
    /// Declares `topic` as a response topic whose ids are found by `id`; returns whether
    /// it is new. The first declaration of a topic decides where its ids are.
    pub fn declare(&self, topic: &str, id: CorrelationId) -> bool {
        let mut topics = self.topics.lock().expect("correlator lock");
        if let Some(existing) = topics.get(topic) {
            if existing.id != id {
                tracing::warn!(
                    topic,
                    "response topic already declared with ids from {:?}; keeping that",
                    existing.id
                );
            }
            return false;
        }
        topics.insert(
            topic.to_owned(),
            Topic {
                id,
                ..Topic::default()
            },
        );
        true
    }

    pub fn is_declared(&self, topic: &str) -> bool {
        self.topics
            .lock()
            .expect("correlator lock")
            .contains_key(topic)
    }

    pub fn stats(&self) -> Responses {
        *self.stats.lock().expect("stats lock")
    }

    /// How long the waits that were answered waited.
    pub fn waits(&self) -> &Durations {
        &self.waits
    }

    /// Offers a message that arrived on `topic`; only declared topics and messages with a
    /// correlation id take part.
    pub fn offer(&self, topic: &str, message: &Arc<Message>) {
        let mut topics = self.topics.lock().expect("correlator lock");
        let Some(state) = topics.get_mut(topic) else {
            return;
        };
        let mut stats = self.stats.lock().expect("stats lock");
        let Some(id) = state.id.of(message) else {
            stats.malformed += 1;
            // Logged at 1, 2, 4, 8 …: visible, without a flood to drown the log.
            if stats.malformed.is_power_of_two() {
                tracing::warn!(
                    topic,
                    malformed = stats.malformed,
                    "dropped a response without a correlation id where `{}` says it is",
                    state.id
                );
            }
            return;
        };
        if let Some(waiter) = state.waiting.remove(&id)
            && waiter.send(message.clone()).is_ok()
        {
            stats.delivered += 1;
            state.answered.insert(&id);
            return;
        }
        if state.answered.contains(&id) {
            stats.duplicate += 1;
            tracing::debug!(topic, id, "dropped a duplicate response");
            return;
        }
        if state.abandoned.contains(&id) {
            stats.late += 1;
            tracing::info!(
                topic,
                id,
                "dropped a response that arrived after its waiter timed out"
            );
            return;
        }
        let now = Instant::now();
        while let Some((at, _)) = state.arrivals.front() {
            if now.duration_since(*at) < PARKED_TTL && state.arrivals.len() < PARKED {
                break;
            }
            let (_, old) = state.arrivals.pop_front().expect("front exists");
            if state.parked.remove(&old).is_some() {
                stats.unknown += 1;
            }
        }
        stats.early += 1;
        state.parked.insert(id.clone(), message.clone());
        state.arrivals.push_back((now, id));
    }

    /// Waits up to `timeout` for the response `id` on `topic`.
    pub async fn wait(
        &self,
        topic: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<Arc<Message>, BusError> {
        let rx = {
            let mut topics = self.topics.lock().expect("correlator lock");
            let state = topics.entry(topic.to_owned()).or_default();
            if let Some(message) = state.parked.remove(id) {
                state.answered.insert(id);
                self.stats.lock().expect("stats lock").delivered += 1;
                self.waits.observe(std::time::Duration::ZERO);
                return Ok(message);
            }
            if state.waiting.get(id).is_some_and(|w| !w.is_closed()) {
                return Err(BusError::AlreadyAwaited {
                    topic: topic.to_owned(),
                    id: id.to_owned(),
                });
            }
            let (tx, rx) = oneshot::channel();
            state.waiting.insert(id.to_owned(), tx);
            rx
        };
        let started = Instant::now();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(message)) => {
                self.waits.observe(started.elapsed());
                Ok(message)
            }
            _ => {
                let mut topics = self.topics.lock().expect("correlator lock");
                if let Some(state) = topics.get_mut(topic) {
                    state.waiting.remove(id);
                    state.abandoned.insert(id);
                }
                self.stats.lock().expect("stats lock").timed_out += 1;
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

    #[test]
    fn a_json_id_is_the_first_of_its_paths_that_holds_a_string() {
        let id = CorrelationId::parse("json:body.transaction-id|transaction-id").unwrap();
        assert_eq!(id.to_string(), "json:body.transaction-id|transaction-id");
        let of = |payload: &str| id.of(&Message::new("t", payload.as_bytes().to_vec()));
        assert_eq!(
            of(r#"{"body": {"transaction-id": "a"}}"#).as_deref(),
            Some("a")
        );
        assert_eq!(of(r#"{"transaction-id": "b"}"#).as_deref(), Some("b"));
        assert_eq!(
            of(r#"{"body": {"transaction-id": 5}, "transaction-id": "c"}"#).as_deref(),
            Some("c")
        );
        assert_eq!(of(r#"{"body": {}}"#), None);
        assert_eq!(of("not json"), None);
        // Read as a `serde_json::Value` reads it: escapes, the last of duplicate fields,
        // anything around, and a whole document only.
        assert_eq!(
            of(
                r#"{"a": [1, {"transaction-id": "x"}, null], "n": -1.5e3, "t": true,
                "transaction-\u0069d": "d\"1", "body": 7}"#
            )
            .as_deref(),
            Some("d\"1")
        );
        assert_eq!(
            of(r#"{"transaction-id": "e", "transaction-id": "f"}"#).as_deref(),
            Some("f")
        );
        assert_eq!(of(r#"{"transaction-id": "e", "transaction-id": 1}"#), None);
        assert_eq!(of(r#"{"transaction-id": "g"} trailing"#), None);
        assert_eq!(of(r#"{"transaction-id": "h""#), None);
        assert_eq!(of(r#""transaction-id""#), None);
    }
}
