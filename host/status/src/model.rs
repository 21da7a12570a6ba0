//! The model and the baselines, as the admin API and `synchro model` show them.

use serde::{Deserialize, Serialize};

/// An entity of the model, as `synchro model` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModelEntity {
    pub kind: String,
    pub key: String,
    /// The plugin that wrote it and alone may change it; absent while unclaimed (state
    /// migrated from before owners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Its canonical JSON, as it was hashed: kept as text, so that no number is rounded on
    /// its way to the operator.
    pub properties: Box<serde_json::value::RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    /// The ends of an edge; absent for a vertex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<ModelEdge>,
    /// The ends of an edge that are not in the model (yet): `source`, `target`. A
    /// collector may report an edge before another reports the vertex it points to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dangling: Vec<String>,
    /// For a kind whose sources the operator ranks, what each last wrote, by plugin: the
    /// merge above is made of them, the losing writes included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<ModelSource>,
    pub bookkeeping: ModelBookkeeping,
}

/// One source's last write of an entity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSource {
    pub plugin: String,
    pub properties: Box<serde_json::value::RawValue>,
}

/// XOS's bookkeeping of an entity. Versions are sequence numbers of the change stream:
/// they order every write, and never depend on a clock.
///
/// Each policy and sync step keeps its own progress (`policies`, `steps`); `policed`,
/// `enacted`, `policy` and `sync` sum them up for the role, as XOS showed its one value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModelBookkeeping {
    /// The last change by a source (a collector, an event step, the API).
    pub updated: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by_policy: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by_step: Option<u64>,
    /// What every model policy has handled; absent: one never did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policed: Option<u64>,
    /// What every sync step has enacted outside; absent: one never did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enacted: Option<u64>,
    /// Whether a deployed sync step has work on it.
    pub needs_sync: bool,
    /// Whether a deployed model policy has work on it.
    #[serde(default)]
    pub needs_policy: bool,
    /// The sync steps' last outcome (XOS's backend status): the worst of theirs.
    pub sync: RoleOutcome,
    /// The model policies' last outcome: the worst of theirs.
    pub policy: RoleOutcome,
    /// Each sync step's progress, by plugin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<ModelProgress>,
    /// Each model policy's progress, by plugin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<ModelProgress>,
    /// Deleted, and kept until every sync step has removed it outside and every model
    /// policy that handled it has seen it go.
    pub deleted: bool,
    /// Never pushed outward (observed data).
    pub no_sync: bool,
    /// No model policy runs for it.
    #[serde(default)]
    pub no_policy: bool,
    /// Policies and sync steps may not write it.
    #[serde(default)]
    pub write_protect: bool,
}

/// The operator's flags on an entity of the model (`synchro model flag`, `POST
/// /v1/model/KIND/KEY/flags`); an absent one is left as it is. (`no-sync` is the
/// writer's, set with each write; the operator's hold on syncs is a mode.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ModelFlags {
    /// No model policy runs for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_policy: Option<bool>,
    /// Policies and sync steps may not write it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_protect: Option<bool>,
}

/// An entity the operator writes into the model (`synchro model put`, `PUT
/// /v1/model/KIND/KEY`), owned by the API: its properties, and the ends of an edge, which
/// must both be in the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ModelWrite {
    pub properties: Box<serde_json::value::RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<ModelEdge>,
}

/// What the operator's deletion of an entity (`synchro model delete`, `DELETE
/// /v1/model/KIND/KEY`) deleted: the edges a cascade took with it, then the entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelDeleted {
    pub deleted: Vec<ModelRef>,
}

/// One model policy's or sync step's progress on an entity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModelProgress {
    pub plugin: String,
    /// The version it last handled (policed or enacted); absent: never, or removed
    /// outside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Whether it is deployed and has work on the entity.
    pub needs: bool,
    #[serde(flatten)]
    pub outcome: RoleOutcome,
}

impl ModelProgress {
    /// The version every one of `all` reached; `None` if one never did (or there are
    /// none).
    pub fn reached(all: &[ModelProgress]) -> Option<u64> {
        all.iter().map(|p| p.version).min().flatten()
    }

    /// The worst outcome of `all`: failed, then deferred, then pending, then done.
    pub fn worst(all: &[ModelProgress]) -> RoleOutcome {
        let rank = |state: &str| match state {
            "failed" => 0,
            "deferred" => 1,
            "pending" => 2,
            _ => 3,
        };
        all.iter()
            .min_by_key(|p| rank(&p.outcome.state))
            .map(|p| p.outcome.clone())
            .unwrap_or_else(|| RoleOutcome {
                state: "pending".into(),
                errors: Vec::new(),
            })
    }
}

/// A role's last outcome for an entity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleOutcome {
    /// `pending` (never run), `done`, `deferred` (try later) or `failed`.
    pub state: String,
    /// The last two distinct errors, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RoleError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleError {
    /// The error's kind (the WIT `error-code` names).
    pub kind: String,
    pub message: String,
}

/// Which entities a page of the model holds besides its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelFilter {
    /// Those a deployed sync step still has to handle.
    Dirty,
    /// Those whose last sync failed.
    Failed,
}

impl ModelFilter {
    /// Its name in the admin API's `only` parameter.
    pub fn name(self) -> &'static str {
        match self {
            ModelFilter::Dirty => "dirty",
            ModelFilter::Failed => "failed",
        }
    }
}

/// The ends of an edge of the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEdge {
    pub source: ModelRef,
    pub target: ModelRef,
}

/// An entity of the model by its identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    pub kind: String,
    pub key: String,
}

/// One entry of a collector's baseline: the entity of its last committed snapshot and the
/// hash the next snapshot is diffed against.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BaselineEntry {
    pub kind: String,
    pub key: String,
    /// The xxh3 hash of the entity's canonical form, in hexadecimal.
    pub hash: String,
    pub properties: Box<serde_json::value::RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<ModelEdge>,
}

/// One page of a collector's baseline, by kind, then key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselinePage {
    pub entries: Vec<BaselineEntry>,
    /// The last entry of a full page, after which the next page starts; absent on the
    /// last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<ModelRef>,
}

/// One page of the model's entities, by kind, then key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelPage {
    pub entities: Vec<ModelEntity>,
    /// The last entity of a full page, after which the next page starts; absent on the
    /// last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<ModelRef>,
}
