//! `store`: the entity store (the model), readable and writable per entity kind.
//!
//! ```toml
//! [capabilities]
//! store = { read = ["*"], write = ["pserver"] }
//! ```
//!
//! A save or a delete appends its change, attributed to the plugin, to the outbox in the
//! same transaction as the write: a write is never unannounced.

use std::sync::Arc;

use serde::Deserialize;
use synchro_manifest::ManifestError;
use synchro_status::Counters;
use synchro_model::{Entity, ErrorKind, Operation};
use synchro_store::{Db, DbError, Write};
use synchro_wit::WitError;
pub(super) use synchro_wit::imports::store as wit;

use crate::{Asks, CallContext, NameList, check_message_size, denied, fail, parse_entry, raw};

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

impl crate::Grant for Grant {
    fn parse(asks: &Asks<'_>, entry: Option<&toml::Value>) -> Result<Self, ManifestError> {
        entry.map_or_else(
            || Ok(Grant::default()),
            |e| parse_entry(asks.manifest, "store", e),
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

    /// Runs a database operation off the async threads: redb commits fsync.
    async fn state<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Db) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, WitError> {
        let db: Arc<Db> = self.call.services.db.clone();
        match tokio::task::spawn_blocking(move || op(&db)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(fail(e.kind(), e.to_string())),
            Err(e) => Err(fail(
                ErrorKind::Failed,
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
            // Not found, to the plugin: a denial naming the entity (or its kind) would tell
            // it what it may not read. The operator sees the denial.
            Some(e) if !self.readable(&e) => {
                tracing::warn!(plugin = %self.call.plugin, capability = "store", key = e.key(), kind = e.kind(), "denied: reading an entity of a kind not granted; answered as not found");
                Counters::bump(&self.call.status.counters.denials);
                Ok(None)
            }
            found => Ok(found.map(synchro_wit::entity_to_wit)),
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
            .map(synchro_wit::entity_to_wit)
            .collect())
    }

    async fn save(&mut self, e: wit::Entity) -> Result<(), WitError> {
        // The entity is announced in a change notification: held to the message limit.
        check_message_size(
            "an entity",
            synchro_wit::entity_size(&e),
            self.call.message_limit(),
        )?;
        let entity = synchro_wit::entity_from_wit(e)
            .map_err(|e| fail(ErrorKind::InvalidInput, e.to_string()))?;
        if !self.call.grants.store.write.allows(entity.kind()) {
            return Err(denied(
                &self.call,
                "store",
                format_args!("writing kind `{}`", entity.kind()),
            ));
        }
        // The entity it would replace must be writable too: a grant for `person` is not one
        // to overwrite a `pserver` that has the same key. Its kind is not named.
        let grants = self.call.grants.clone();
        let call = self.call.clone();
        let key = entity.key().to_owned();
        let (write, announced) = self
            .state(move |s| {
                let mut announced = false;
                let write = s.model_put(
                    &entity,
                    |existing| grants.store.write.allows(existing.kind()),
                    |previous| {
                        let operation = match previous {
                            Some(previous) if *previous == entity => return None,
                            Some(_) => Operation::Update,
                            None => Operation::Create,
                        };
                        announced = true;
                        Some(call.change_record(operation, entity.clone(), None, None))
                    },
                )?;
                Ok((write, announced))
            })
            .await?;
        if announced {
            Counters::bump(&self.call.status.counters.changes);
        }
        match write {
            Write::Done { .. } => Ok(()),
            Write::Refused => Err(denied(
                &self.call,
                "store",
                format_args!("replacing entity `{key}`, which is of a kind it may not write,"),
            )),
        }
    }

    async fn delete(&mut self, key: String) -> Result<(), WitError> {
        let grants = self.call.grants.clone();
        let call = self.call.clone();
        let write = self
            .state(move |s| {
                s.model_delete(
                    &key,
                    |existing| grants.store.write.allows(existing.kind()),
                    |removed| call.change_record(Operation::Delete, removed.clone(), None, None),
                )
            })
            .await?;
        match write {
            Write::Done { previous } => {
                if previous.is_some() {
                    Counters::bump(&self.call.status.counters.changes);
                }
                Ok(())
            }
            // Not named: the plugin may not know what it cannot write.
            Write::Refused => Err(denied(
                &self.call,
                "store",
                "deleting an entity of a kind it may not write",
            )),
        }
    }
}
