//! `store`: the entity store (the model), readable and writable per entity kind.
//!
//! ```toml
//! [capabilities]
//! store = { read = ["*"], write = ["pserver"] }
//! ```
//!
//! A save or a delete publishes the change notification, attributed to the plugin.

use std::sync::Arc;

use super::{CallContext, NameList, denied, parse_entry, raw};
use crate::diff::Operation;
use crate::entity::Entity;
use crate::manifest::{Manifest, ManifestError};
pub(super) use crate::runtime::bindings::synchro::plugin::store as wit;
use crate::runtime::convert::{self, ErrorCode, WitError};
use crate::state::{State, StateError};
use serde::Deserialize;

/// Most entities one `query` returns.
const MAX_PAGE: u32 = 1000;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    #[serde(default)]
    read: NameList,
    #[serde(default)]
    write: NameList,
}

impl super::Grant for Grant {
    fn parse(manifest: &Manifest, entry: Option<&toml::Value>) -> Result<Self, ManifestError> {
        entry.map_or_else(
            || Ok(Grant::default()),
            |e| parse_entry(manifest, "store", e),
        )
    }

    fn narrow(&mut self, operator: Option<&toml::Value>) -> Result<(), String> {
        let operator: Grant = operator.map(raw).transpose()?.unwrap_or_default();
        self.read = self.read.narrow(&operator.read);
        self.write = self.write.narrow(&operator.write);
        Ok(())
    }

    fn describe(&self) -> Option<String> {
        match (self.read.is_empty(), self.write.is_empty()) {
            (true, true) => None,
            _ => Some(format!("read {}; write {}", self.read, self.write)),
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

    /// Runs a state operation off the async threads: redb commits fsync.
    async fn state<T: Send + 'static>(
        &self,
        op: impl FnOnce(&State) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, WitError> {
        let state: Arc<State> = self.call.services.state.clone();
        match tokio::task::spawn_blocking(move || op(&state)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(convert::error(ErrorCode::Failed, e.to_string())),
            Err(e) => Err(convert::error(
                ErrorCode::Failed,
                format!("store operation failed: {e}"),
            )),
        }
    }

    fn readable(&self, entity: &Entity) -> bool {
        self.call.grants.store.read.allows(entity.kind())
    }
}

impl wit::Host for Capability {
    async fn get(&mut self, key: String) -> Result<Option<wit::Entity>, WitError> {
        let found = self.state(move |s| s.model_get(&key)).await?;
        match found {
            Some(e) if !self.readable(&e) => Err(denied(
                &self.call,
                "store",
                format_args!("reading kind `{}`", e.kind()),
            )),
            found => Ok(found.map(convert::entity_to_wit)),
        }
    }

    async fn query(&mut self, f: wit::Filter) -> Result<Vec<wit::Entity>, WitError> {
        if let Some(kind) = &f.kind
            && !self.call.grants.store.read.allows(kind)
        {
            return Err(denied(
                &self.call,
                "store",
                format_args!("reading kind `{kind}`"),
            ));
        }
        let limit = f.limit.min(MAX_PAGE) as usize;
        let page = self
            .state(move |s| s.model_query(f.kind.as_deref(), f.after_key.as_deref(), limit))
            .await?;
        Ok(page
            .into_iter()
            .filter(|e| self.readable(e))
            .map(convert::entity_to_wit)
            .collect())
    }

    async fn save(&mut self, e: wit::Entity) -> Result<(), WitError> {
        let entity = convert::entity_from_wit(e)
            .map_err(|e| convert::error(ErrorCode::InvalidInput, e.to_string()))?;
        if !self.call.grants.store.write.allows(entity.kind()) {
            return Err(denied(
                &self.call,
                "store",
                format_args!("writing kind `{}`", entity.kind()),
            ));
        }
        let saved = entity.clone();
        let previous = self.state(move |s| s.model_put(&saved)).await?;
        match previous {
            Some(previous) if previous == entity => {}
            Some(_) => {
                self.call
                    .publish_change(Operation::Update, entity, None, None)
                    .await?
            }
            None => {
                self.call
                    .publish_change(Operation::Create, entity, None, None)
                    .await?
            }
        }
        Ok(())
    }

    async fn delete(&mut self, key: String) -> Result<(), WitError> {
        let lookup = key.clone();
        let Some(existing) = self.state(move |s| s.model_get(&lookup)).await? else {
            return Ok(());
        };
        if !self.call.grants.store.write.allows(existing.kind()) {
            return Err(denied(
                &self.call,
                "store",
                format_args!("deleting kind `{}`", existing.kind()),
            ));
        }
        if let Some(removed) = self.state(move |s| s.model_delete(&key)).await? {
            self.call
                .publish_change(Operation::Delete, removed, None, None)
                .await?;
        }
        Ok(())
    }
}
