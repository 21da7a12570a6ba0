//! `publish` and `await-response`: granted per topic.
//!
//! ```toml
//! [capabilities]
//! bus = { publish = ["requests"], await = ["responses"] }
//! ```

use std::time::{Duration, Instant};

use super::{CallContext, NameList, Services, denied, parse_entry};
use crate::bus::Message;
use crate::manifest::{Manifest, ManifestError};
pub(super) use crate::runtime::bindings::synchro::plugin::bus as wit;
use crate::runtime::convert::{self, ErrorCode, WitError};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    #[serde(default)]
    publish: NameList,
    #[serde(default, rename = "await")]
    await_: NameList,
}

impl super::Grant for Grant {
    fn parse(manifest: &Manifest, entry: Option<&toml::Value>) -> Result<Self, ManifestError> {
        entry.map_or_else(|| Ok(Grant::default()), |e| parse_entry(manifest, "bus", e))
    }

    /// Response topics keep responses that arrive before their waiter.
    fn activate(&self, services: &Services) {
        for topic in &self.await_.0 {
            if topic != "*" {
                services.bus.expect_responses(topic);
            }
        }
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
        key: Option<String>,
        payload: Vec<u8>,
        headers: Vec<(String, String)>,
    ) -> Result<(), WitError> {
        if !self.call.grants.bus.publish.allows(&topic) {
            return Err(denied(
                &self.call.plugin,
                "bus",
                format_args!("publishing to topic `{topic}`"),
            ));
        }
        let message = Message {
            topic,
            key,
            payload,
            headers,
            timestamp: 0,
        };
        self.call.services.bus.publish(message).await;
        Ok(())
    }

    async fn await_response(
        &mut self,
        topic: String,
        correlation_id: String,
        timeout_ms: u32,
    ) -> Result<wit::Message, WitError> {
        if !self.call.grants.bus.await_.allows(&topic) {
            return Err(denied(
                &self.call.plugin,
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
            Ok(message) => Ok(convert::message_to_wit(&message)),
            Err(e @ crate::bus::BusError::TimedOut { .. }) => {
                Err(convert::error(ErrorCode::TimedOut, e.to_string()))
            }
            Err(e) => Err(convert::error(ErrorCode::InvalidInput, e.to_string())),
        }
    }
}
