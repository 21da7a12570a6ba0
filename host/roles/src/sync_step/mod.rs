//! The sync-step role: pushes the model to an outside system (XOS sync steps).
//!
//! ```toml
//! [sync]
//! kinds = ["pserver"]     # the kinds it enacts
//! rate = 100              # calls a second at most, whatever fails (default 100)
//! backoff = "1s"          # an entity's first pause after a failure; doubles on each next one
//! max-backoff = "5m"      # the longest pause of an entity
//! ```
//!
//! An entity needs a sync when its data (or a policy's write) is newer than what was last
//! enacted, and it is not `no-sync`; see `synchro_model::bookkeeping`. `sync-record`
//! enacts it; a deleted entity stays in the model until `delete-record` succeeds. Several
//! steps may enact one kind (to several outside systems): each keeps its own progress on
//! the entity, and the deletion waits for every one that enacted it.

mod call;

pub use call::Enact;

use anyhow::Context;
use synchro_capability::CallContext;
use synchro_engine::CallError;
use synchro_manifest::{Manifest, ManifestError};
use synchro_wit::exports::synchro::plugin::sync_step::GuestIndices;

use crate::model_work::ModelWork;
use crate::{Linked, Plugin, PluginEngine};

/// The sync step's manifest section.
pub(crate) const SECTION: &str = "sync";

/// One call of `plugin`'s sync step outside any runner, in an instance of its own, as a
/// runner makes it; `handling` names the entity its writes may touch (see
/// [`synchro_model::Handling`]). For `synchro plugin test`'s fixtures.
pub async fn enact_once(
    plugin: &Plugin,
    engine: &PluginEngine,
    context: CallContext,
    call: &Enact,
    handling: Option<synchro_model::Handling>,
) -> Result<(), CallError> {
    crate::model_work::call_once::<SyncStep>(plugin, engine, context, call, handling).await
}

/// Runs a plugin's sync step.
pub type Runner = crate::model_work::Runner<SyncStep>;

/// A plugin's sync-step role: what it enacts and, once linked, its export.
pub struct SyncStep {
    pub sync: ModelWork,
    guest: GuestIndices,
}

impl SyncStep {
    /// Reads the role's section of `manifest`.
    pub(crate) fn section(manifest: &Manifest) -> Result<ModelWork, ManifestError> {
        ModelWork::section(manifest, SECTION, "sync step")
    }

    /// The role of a component linked as `linked`, which must export its interface.
    pub(crate) fn link(sync: ModelWork, linked: &Linked) -> anyhow::Result<SyncStep> {
        Ok(SyncStep {
            sync,
            guest: guest(linked)?,
        })
    }
}

/// Where the sync-step export's functions are in `linked`, if it has the export.
pub(crate) fn guest(linked: &Linked) -> anyhow::Result<GuestIndices> {
    GuestIndices::new(linked)
        .map_err(anyhow::Error::from)
        .context(
            "it does not export `synchro:plugin/sync-step@0.2.0` as the sync-step role requires",
        )
}
