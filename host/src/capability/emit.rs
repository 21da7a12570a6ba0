//! `emit-change`: change notifications without a baseline diff.
//!
//! ```toml
//! [capabilities]
//! emit = true
//! ```

use super::{CallContext, denied, parse_entry, raw};
use crate::manifest::{Manifest, ManifestError};
pub(super) use crate::runtime::bindings::synchro::plugin::emit as wit;
use crate::runtime::convert::{self, ErrorCode, WitError};

pub struct Grant {
    allowed: bool,
}

impl super::Grant for Grant {
    fn parse(manifest: &Manifest, entry: Option<&toml::Value>) -> Result<Self, ManifestError> {
        let allowed = match entry {
            Some(e) => parse_entry(manifest, "emit", e)?,
            None => false,
        };
        Ok(Grant { allowed })
    }

    fn narrow(&mut self, operator: Option<&toml::Value>) -> Result<(), String> {
        let operator: bool = operator.map(raw).transpose()?.unwrap_or(false);
        self.allowed &= operator;
        Ok(())
    }

    fn describe(&self) -> Option<String> {
        self.allowed.then(|| "change notifications".to_owned())
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
    async fn emit_change(&mut self, c: wit::Change) -> Result<(), WitError> {
        if !self.call.grants.emit.allowed {
            return Err(denied(&self.call, "emit", "emitting changes"));
        }
        let size = c.entity.key.len() + c.entity.kind.len() + c.entity.properties.len();
        let limit = self.call.limits.max_message_bytes;
        if size > limit {
            return Err(convert::error(
                ErrorCode::InvalidInput,
                format!(
                    "a change of {size} bytes is over this plugin's limit of {limit} bytes (limits.max-message-kb)"
                ),
            ));
        }
        let entity = convert::entity_from_wit(c.entity)
            .map_err(|e| convert::error(ErrorCode::InvalidInput, e.to_string()))?;
        let timestamp = Some(c.timestamp).filter(|t| *t != 0);
        let transaction_id = Some(c.transaction_id).filter(|t| !t.is_empty());
        self.call
            .publish_change(
                convert::operation_from_wit(c.operation),
                entity,
                timestamp,
                transaction_id,
            )
            .await
    }
}
