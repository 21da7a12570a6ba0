//! `emit-change`: change notifications without a baseline diff, group-committed to the
//! outbox.
//!
//! ```toml
//! [capabilities]
//! emit = true
//! ```

use synchro_manifest::ManifestError;
use synchro_model::ErrorKind;
use synchro_status::events;
use synchro_wit::WitError;
pub(super) use synchro_wit::imports::emit as wit;

use crate::{Asks, CallContext, check_message_size, denied, fail, parse_entry, raw};

pub struct Grant {
    allowed: bool,
}

impl crate::Grant for Grant {
    fn parse(asks: &Asks<'_>, entry: Option<&toml::Value>) -> Result<Self, ManifestError> {
        let allowed = match entry {
            Some(e) => parse_entry(asks.manifest, "emit", e)?,
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
        check_message_size(
            "a change",
            synchro_wit::entity_size(&c.entity) + c.transaction_id.len(),
            self.call.message_limit(),
        )?;
        let entity = synchro_wit::entity_from_wit(c.entity)
            .map_err(|e| fail(ErrorKind::InvalidInput, e.to_string()))?;
        let timestamp = Some(c.timestamp).filter(|t| *t != 0);
        let transaction_id = Some(c.transaction_id).filter(|t| !t.is_empty());
        let record = self.call.change_record(
            synchro_wit::operation_from_wit(c.operation),
            entity,
            timestamp,
            transaction_id,
        );
        // Queued, not yet durable: whoever commits the input that caused it waits for
        // the outbox first (see `Appender`).
        self.call.services.outbox.append(record).await;
        self.call.status.emit(events::ChangesCommitted(1));
        Ok(())
    }
}
