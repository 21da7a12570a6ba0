//! `store`: the entity store (the model), readable and writable per entity kind.
//!
//! ```toml
//! [capabilities]
//! store = { read = ["*"], write = ["pserver"], handle = ["pserver"] }
//! ```
//!
//! Entities are identified by kind and key, and owned by the plugin that wrote them: a
//! plugin replaces or deletes only its own (see `synchro_store`'s model). `handle` is the
//! one exception, and must be asked for (and granted) by name: a model policy's or a sync
//! step's call may write the entity of those kinds it handles, whoever owns it. A save or a
//! delete appends its change, attributed to the plugin, to the outbox in the same
//! transaction as the write: a write is never unannounced.

use std::sync::Arc;

use serde::Deserialize;
use synchro_manifest::ManifestError;
use synchro_status::events;
use synchro_model::{ErrorKind, Id};
use synchro_store::{Db, DbError, Write, Writer};
use synchro_wit::WitError;
pub(super) use synchro_wit::imports::store as wit;

use crate::{Asks, CallContext, NameList, check_message_size, denied, deny, fail, parse_entry, raw};

/// Most entities one `query` returns.
const MAX_PAGE: u32 = 1000;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    #[serde(default)]
    read: NameList,
    #[serde(default)]
    write: NameList,
    /// Kinds whose entity a policy's or a step's call may write while it handles it,
    /// whoever owns it.
    #[serde(default)]
    handle: NameList,
}

impl Grant {
    /// Whether entities of `kind` may be read.
    pub fn may_read(&self, kind: &str) -> bool {
        self.read.allows(kind)
    }
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
        self.handle = self.handle.narrow(&operator.handle);
        Ok(())
    }

    fn describe(&self) -> Option<String> {
        match (self.read.is_empty(), self.write.is_empty()) {
            (true, true) => None,
            _ if self.handle.is_empty() => {
                Some(format!("read {}; write {}", self.read, self.write))
            }
            _ => Some(format!(
                "read {}; write {}; write what it handles of {}",
                self.read, self.write, self.handle
            )),
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

    /// Denies reading `kind` unless granted. The plugin names the kind itself, so the
    /// denial tells it nothing about what the store holds.
    fn check_read(&self, kind: &str) -> Result<(), WitError> {
        if self.call.grants.store.read.allows(kind) {
            return Ok(());
        }
        Err(denied(&self.call, "store", format_args!("reading kind `{kind}`")))
    }

    fn check_write(&self, kind: &str, doing: &str) -> Result<(), WitError> {
        if self.call.grants.store.write.allows(kind) {
            return Ok(());
        }
        Err(denied(&self.call, "store", format_args!("{doing} kind `{kind}`")))
    }

    /// The denial of writing over an entity another plugin wrote. It says no more than
    /// that: not which plugin, nor what the entity holds.
    fn not_owned(&self, doing: &str, id: &Id) -> WitError {
        deny(
            &self.call,
            "store",
            format_args!("{doing} {id}: another plugin wrote it, and only its writer may"),
        )
    }

    /// The denial of a policy's or a step's write of an entity the operator
    /// write-protected.
    fn protected(&self, doing: &str, id: &Id) -> WitError {
        deny(
            &self.call,
            "store",
            format_args!("{doing} {id}: the operator write-protected it"),
        )
    }
}

impl wit::Host for Capability {
    async fn get(&mut self, kind: String, key: String) -> Result<Option<wit::Entity>, WitError> {
        self.check_read(&kind)?;
        let id = Id::new(&kind, &key);
        let found = self.state(move |s| s.model_get(&id)).await?;
        Ok(found
            .filter(|stored| !stored.bookkeeping.deleted)
            .map(|stored| synchro_wit::entity_to_wit(stored.entity)))
    }

    async fn query(&mut self, f: wit::Filter) -> Result<Vec<wit::Entity>, WitError> {
        if let Some(kind) = &f.kind {
            self.check_read(kind)?;
        }
        let limit = f.limit.min(MAX_PAGE) as usize;
        let after = f.after.map(|r| Id::new(&r.kind, &r.key));
        let page = self
            .state(move |s| s.model_query(f.kind.as_deref(), None, after.as_ref(), |_, b| !b.deleted, limit))
            .await?;
        let read = &self.call.grants.store.read;
        Ok(page
            .into_iter()
            .filter(|stored| read.allows(stored.entity.kind()))
            .map(|stored| synchro_wit::entity_to_wit(stored.entity))
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
        self.check_write(entity.kind(), "writing")?;
        let call = self.call.clone();
        let id = entity.id().clone();
        let write = self
            .state(move |s| {
                let writer = Writer {
                    plugin: &call.plugin,
                    acting: call.acting,
                    handling: call
                        .handling
                        .as_ref()
                        .filter(|h| call.grants.store.handle.allows(h.id.kind())),
                };
                s.model_put(writer, &entity, |operation, written| {
                    call.change_record(operation, written.clone(), None, None)
                })
            })
            .await?;
        match write {
            Write::Done { version } => {
                if version.is_some() {
                    self.call.status.emit(events::ChangesCommitted(1));
                }
                // The call's own write is no change it did not see: its next write of the
                // entity it handles is still current.
                if let (Some(handling), Some(version)) = (&mut self.call.handling, version)
                    && handling.id == id
                {
                    handling.seen = version;
                }
                Ok(())
            }
            Write::Refused => Err(self.not_owned("replacing", &id)),
            Write::Protected => Err(self.protected("replacing", &id)),
            Write::Stale => Err(fail(
                ErrorKind::Unavailable,
                format!(
                    "{id} changed since this call read it: not written; the call is made again \
                     on what it is now"
                ),
            )),
        }
    }

    async fn delete(&mut self, kind: String, key: String) -> Result<(), WitError> {
        self.check_write(&kind, "deleting")?;
        let call = self.call.clone();
        let id = Id::new(&kind, &key);
        let target = id.clone();
        let write = self
            .state(move |s| {
                let writer = Writer {
                    plugin: &call.plugin,
                    acting: call.acting,
                    handling: None,
                };
                s.model_delete(writer, &target, |operation, removed| {
                    call.change_record(operation, removed.clone(), None, None)
                })
            })
            .await?;
        match write {
            Write::Done { version } => {
                if version.is_some() {
                    self.call.status.emit(events::ChangesCommitted(1));
                }
                Ok(())
            }
            Write::Refused | Write::Stale => Err(self.not_owned("deleting", &id)),
            Write::Protected => Err(self.protected("deleting", &id)),
        }
    }
}
