//! The model-policy role: reacts to the model's writes (XOS model policies).
//!
//! ```toml
//! [policy]
//! kinds = ["slice"]       # the kinds it handles
//! rate = 100              # calls a second at most, whatever fails (default 100)
//! backoff = "1s"          # an entity's first pause after a failure; doubles on each next one
//! max-backoff = "5m"      # the longest pause of an entity
//! ```
//!
//! A policy runs `handle-create` for an entity it never handled, `handle-update` (with the
//! entity as it last handled it) when a source or a sync step changed it since, and
//! `handle-delete` when it is deleted: an entity a policy handled stays in the model,
//! hidden from plugins, until the policy has seen it go. Its own writes move
//! `changed-by-policy`, so they never run it (nor another policy) again (XOS SEBA-79); a
//! sync step enacts them. Every policy of a kind runs, each at its own pace with its own
//! progress on the entity, whether or not another fails.

mod call;

pub use call::React;

use anyhow::Context;
use synchro_capability::CallContext;
use synchro_engine::CallError;
use synchro_manifest::{Manifest, ManifestError};
use synchro_wit::exports::synchro::plugin::model_policy::GuestIndices;

use crate::model_work::ModelWork;
use crate::{Linked, Plugin, PluginEngine};

/// The model policy's manifest section.
pub(crate) const SECTION: &str = "policy";

/// One call of `plugin`'s policy outside any runner, in an instance of its own, as a
/// runner makes it; `handling` names the entity its writes may touch (see
/// [`synchro_model::Handling`]). For `synchro plugin test`'s fixtures.
pub async fn handle_once(
    plugin: &Plugin,
    engine: &PluginEngine,
    context: CallContext,
    call: &React,
    handling: Option<synchro_model::Handling>,
) -> Result<(), CallError> {
    crate::model_work::call_once::<ModelPolicy>(plugin, engine, context, call, handling).await
}

/// Runs a plugin's model policy.
pub type Runner = crate::model_work::Runner<ModelPolicy>;

/// A plugin's model-policy role: what it handles and, once linked, its export.
pub struct ModelPolicy {
    pub policy: ModelWork,
    guest: GuestIndices,
}

impl ModelPolicy {
    /// Reads the role's section of `manifest`.
    pub(crate) fn section(manifest: &Manifest) -> Result<ModelWork, ManifestError> {
        ModelWork::section(manifest, SECTION, "model policy")
    }

    /// The role of a component linked as `linked`, which must export its interface.
    pub(crate) fn link(policy: ModelWork, linked: &Linked) -> anyhow::Result<ModelPolicy> {
        Ok(ModelPolicy {
            policy,
            guest: guest(linked)?,
        })
    }
}

/// Where the model-policy export's functions are in `linked`, if it has the export.
pub(crate) fn guest(linked: &Linked) -> anyhow::Result<GuestIndices> {
    GuestIndices::new(linked)
        .map_err(anyhow::Error::from)
        .context(
            "it does not export `synchro:plugin/model-policy@0.2.0` as the model-policy role \
             requires",
        )
}
