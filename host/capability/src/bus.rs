//! `publish` and `await-response`: granted per topic.
//!
//! ```toml
//! [capabilities]
//! bus = { publish = ["requests"], await = ["responses"] }
//! ```
//!
//! An event step's subscription is asked for in its `[events]`; the operator's grants
//! allow it with `subscribe = [...]` (a topic pattern needs `"*"`).

use std::time::{Duration, Instant};

use serde::Deserialize;
use synchro_bus::{CorrelationId, Message, Topics};
use synchro_manifest::ManifestError;
use synchro_wit::WitError;
pub(super) use synchro_wit::imports::bus as wit;

use crate::{
    Asks, CallContext, NameList, Services, check_message_size, denied, fail, parse_entry, raw,
};

#[derive(Debug, Default)]
pub struct Grant {
    publish: NameList,
    await_: NameList,
    /// Where the responses on the `await` topics carry their correlation id.
    correlation: CorrelationId,
    /// The topics an event step's `[events]` reads.
    subscribe: Option<Topics>,
}

/// The `bus` entry, in a manifest or in the operator's grants.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    publish: NameList,
    #[serde(default, rename = "await")]
    await_: NameList,
    correlation: Option<String>,
    /// Only in the operator's grants: what `[events]` may read.
    subscribe: Option<NameList>,
}

impl crate::Grant for Grant {
    /// `bus = { publish = [...], await = [...], correlation = "header:NAME" | "json:PATH" }`
    fn parse(asks: &Asks<'_>, entry: Option<&toml::Value>) -> Result<Self, ManifestError> {
        let subscribe = asks.subscribes.cloned();
        let Some(entry) = entry else {
            return Ok(Grant {
                subscribe,
                ..Grant::default()
            });
        };
        let raw: Raw = parse_entry(asks.manifest, "bus", entry)?;
        if let Some(topic) = raw.publish.names().find(|t| synchro_bus::is_host_topic(t)) {
            return Err(asks.manifest.error(format!(
                "field `capabilities.bus.publish`: `{topic}` is the host's own topic; no plugin publishes there"
            )));
        }
        if raw.await_.allows("*") {
            return Err(asks.manifest.error(
                "field `capabilities.bus.await`: list the response topics by name; each is one plugin's own (`*` would claim every topic)",
            ));
        }
        if raw.subscribe.is_some() {
            return Err(asks.manifest.error(
                "field `capabilities.bus.subscribe`: an event step's topics are declared in `[events]`",
            ));
        }
        let correlation = match raw.correlation {
            Some(text) => CorrelationId::parse(&text).map_err(|e| {
                asks.manifest
                    .error(format!("field `capabilities.bus.correlation`: {e}"))
            })?,
            None => CorrelationId::default(),
        };
        Ok(Grant {
            publish: raw.publish,
            await_: raw.await_,
            correlation,
            subscribe,
        })
    }

    fn narrow(&mut self, operator: Option<&toml::Value>) -> Result<(), String> {
        let operator: Raw = operator.map(raw).transpose()?.unwrap_or_default();
        if operator.correlation.is_some() {
            return Err("`correlation` is the plugin's to choose, not a grant".into());
        }
        self.publish = self.publish.narrow(&operator.publish);
        self.await_ = self.await_.narrow(&operator.await_);
        // Reading is not narrowed but checked: an event step reading less than its
        // `[events]` say would silently skip events.
        let allowed = operator.subscribe.unwrap_or_default();
        match &self.subscribe {
            Some(Topics::Names(topics)) => {
                if let Some(topic) = topics.iter().find(|t| !allowed.allows(t)) {
                    return Err(format!(
                        "does not grant reading topic `{topic}`, which `[events]` asks for (add it to `subscribe`)"
                    ));
                }
            }
            Some(Topics::Pattern(pattern)) if !allowed.allows("*") => {
                return Err(format!(
                    "does not grant reading the topics matching `{pattern}`, which `[events]` asks for (that needs `subscribe = [\"*\"]`)"
                ));
            }
            _ => {}
        }
        Ok(())
    }

    fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        match &self.subscribe {
            Some(Topics::Names(topics)) => parts.push(format!("subscribe [{}]", topics.join(", "))),
            Some(Topics::Pattern(pattern)) => parts.push(format!("subscribe /{pattern}/")),
            None => {}
        }
        if !self.publish.is_empty() {
            parts.push(format!("publish {}", self.publish));
        }
        if !self.await_.is_empty() {
            parts.push(format!("await {} ({})", self.await_, self.correlation));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Response topics keep responses that arrive before their waiter.
    async fn activate(&self, services: &Services) -> Result<(), synchro_model::Error> {
        for topic in self.await_.names() {
            services
                .bus
                .expect_responses(topic, self.correlation.clone())
                .await?;
        }
        Ok(())
    }
}

impl Grant {
    /// The topics the plugin awaits responses on: its own in this host, since a correlation
    /// id is the requester's to choose and another plugin on the topic could take or
    /// block its responses.
    pub fn awaits(&self) -> impl Iterator<Item = &str> {
        self.await_.names()
    }

    /// Whether the plugin may publish to `topic`: granted, and not a topic the host alone
    /// writes (which `*` does not grant).
    pub fn may_publish(&self, topic: &str) -> bool {
        !synchro_bus::is_host_topic(topic) && self.publish.allows(topic)
    }
}

pub struct Capability {
    call: CallContext,
}

impl Capability {
    pub fn new(call: &CallContext) -> Capability {
        Capability { call: call.clone() }
    }
}

impl wit::Host for Capability {
    async fn publish(
        &mut self,
        topic: String,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        headers: Vec<(String, Vec<u8>)>,
    ) -> Result<(), WitError> {
        if !self.call.grants.bus.may_publish(&topic) {
            let whose = if synchro_bus::is_host_topic(&topic) {
                "the host's own topic"
            } else {
                "topic"
            };
            return Err(denied(
                &self.call,
                "bus",
                format_args!("publishing to {whose} `{topic}`"),
            ));
        }
        let message = Message {
            topic,
            key,
            payload,
            headers,
            timestamp: 0,
        };
        check_message_size(
            "a message",
            message.size(),
            self.call.message_limit(),
        )?;
        self.call
            .services
            .bus
            .publish(message)
            .await
            .map_err(|e| fail(e.kind(), e.to_string()))
    }

    async fn await_response(
        &mut self,
        topic: String,
        correlation_id: String,
        timeout_ms: u32,
    ) -> Result<wit::Message, WitError> {
        if !self.call.grants.bus.await_.allows(&topic) {
            return Err(denied(
                &self.call,
                "bus",
                format_args!("awaiting responses on topic `{topic}`"),
            ));
        }
        let remaining = self.call.deadline.saturating_duration_since(Instant::now());
        let timeout = Duration::from_millis(timeout_ms.into()).min(remaining);
        match self
            .call
            .services
            .bus
            .await_response(&topic, &correlation_id, timeout)
            .await
        {
            Ok(message) => Ok(synchro_wit::message_to_wit(&message)),
            Err(e) => Err(fail(e.kind(), e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_over_the_limit_are_refused_counting_every_part() {
        let message = Message::new("t", vec![0; 1000])
            .with_key("k")
            .with_header("h", "v");
        assert_eq!(message.size(), 1003);
        assert!(check_message_size("a message", 1003, 1003).is_ok());
        let error = check_message_size("a message", 1003, 1002).unwrap_err();
        assert_eq!(error.code, synchro_wit::ErrorCode::InvalidInput);
        assert!(
            error
                .message
                .contains("a message of 1003 bytes is over this plugin's limit of 1002 bytes")
        );
    }
}
