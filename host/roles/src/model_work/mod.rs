//! What the model's roles — model policies and sync steps — share: a manifest section
//! naming the kinds they handle and their pace, a client-go-like work queue, and a runner
//! that lists the entities with work, follows the change stream for more, and records
//! each call's outcome on the entity's bookkeeping.
//!
//! ```toml
//! [sync]                  # or [policy]
//! kinds = ["pserver"]     # the kinds it handles
//! rate = 100              # calls a second at most, whatever fails (default 100)
//! backoff = "1s"          # an entity's first pause after a failure; doubles on each next one
//! max-backoff = "5m"      # the longest pause of an entity
//!
//! [sync.depends-on]       # a sync step's only: what it enacts first
//! instance = { slice = "slice" }   # an instance's property `slice` names a `slice`
//! ```
//!
//! A role says what is work for it, how to call the plugin and how to record the outcome
//! ([`Handler`]); the runner does the rest the same way for both.

mod queue;
mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use serde::Deserialize;
use synchro_capability::CallContext;
use synchro_engine::CallError;
use synchro_manifest::{Manifest, ManifestError};
use synchro_model::bookkeeping::Failure;
use synchro_model::{Bookkeeping, Handling, Id};
use synchro_status::ModelRole;
use synchro_store::{Db, DbError, Recorded};

pub use run::Runner;

use crate::{Plugin, PluginEngine};

/// `[sync]` or `[policy]`: the kinds a model role handles and how it paces itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelWork {
    pub kinds: BTreeSet<String>,
    /// Calls a second at most.
    pub rate: f64,
    /// An entity's first pause after a failure; doubles on each next one.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// The operator's modes for the kinds that are not [`Mode::Managed`] (a sync step's
    /// only; see [`Modes`]).
    pub modes: BTreeMap<String, Mode>,
    /// Dependencies declared beside the graph's edges (a sync step's only): for a kind
    /// it handles, which property holds the key of an entity of which kind, to be
    /// enacted before it and removed after it (XOS's model dependencies).
    pub depends_on: BTreeMap<String, BTreeMap<String, String>>,
}

/// How far a sync step manages a kind outward: the operator's choice, per kind or per
/// plugin (the host config's `[modes]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Created, updated and deleted outside as the model says.
    #[default]
    Managed,
    /// Never synced nor deleted outside: the model only watches it.
    ObserveOnly,
    /// Synced, but a deletion removes only the model's entity; the outside one stays.
    OrphanOnDelete,
    /// Nothing is enacted until the mode changes; the work waits, dirty.
    Paused,
}

/// The host config's `[modes]`: a mode per kind, and per sync-step plugin for all of its
/// kinds; a kind's own mode wins.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Modes {
    pub kinds: BTreeMap<String, Mode>,
    pub plugins: BTreeMap<String, Mode>,
}

impl Modes {
    /// The modes of `kinds`, handled by the sync step `plugin`, that are not
    /// [`Mode::Managed`].
    pub fn of(&self, plugin: &str, kinds: &BTreeSet<String>) -> BTreeMap<String, Mode> {
        kinds
            .iter()
            .map(|kind| {
                let mode = self.kinds.get(kind).or_else(|| self.plugins.get(plugin));
                (kind.clone(), mode.copied().unwrap_or_default())
            })
            .filter(|(_, mode)| *mode != Mode::Managed)
            .collect()
    }
}

impl ModelWork {
    /// The operator's mode for `kind`.
    pub fn mode(&self, kind: &str) -> Mode {
        self.modes.get(kind).copied().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawWork {
    kinds: Vec<String>,
    #[serde(default = "default_rate")]
    rate: f64,
    #[serde(default = "default_backoff", with = "humantime_serde")]
    backoff: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    max_backoff: Duration,
    #[serde(default)]
    depends_on: BTreeMap<String, BTreeMap<String, String>>,
}

fn default_rate() -> f64 {
    100.0
}

fn default_backoff() -> Duration {
    Duration::from_secs(1)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}

impl ModelWork {
    /// Reads the section `section` of `manifest`, which a plugin with the role `role`
    /// must have.
    pub(crate) fn section(
        manifest: &Manifest,
        section: &str,
        role: &str,
    ) -> Result<ModelWork, ManifestError> {
        let Some(table) = manifest.sections.get(section) else {
            return Err(manifest.error(format!(
                "a {role} needs a `[{section}]` with the `kinds` it handles"
            )));
        };
        let raw: RawWork = table.clone().try_into().map_err(|e: toml::de::Error| {
            manifest.error(format!("field `{section}`: {}", e.message()))
        })?;
        if section != "sync" && !raw.depends_on.is_empty() {
            return Err(manifest.error(format!(
                "field `{section}.depends-on`: only a sync step orders its work"
            )));
        }
        ModelWork::of(raw).map_err(|m| manifest.error(format!("field `{section}.{m}")))
    }

    /// Validates a section; errors start with the field name (after the section's).
    fn of(raw: RawWork) -> Result<ModelWork, String> {
        if raw.kinds.is_empty() || raw.kinds.iter().any(|k| k.is_empty() || k.contains('\0')) {
            return Err("kinds`: list at least one kind, and no empty name".into());
        }
        if !(raw.rate.is_finite() && raw.rate >= 0.01 && raw.rate <= 1e6) {
            return Err(format!(
                "rate`: must be 0.01 to 1000000 calls a second, not {}",
                raw.rate
            ));
        }
        let day = Duration::from_secs(24 * 3600);
        if raw.backoff.is_zero() || raw.backoff > day {
            return Err("backoff`: must be longer than zero and at most a day".into());
        }
        if raw.max_backoff < raw.backoff || raw.max_backoff > day {
            return Err("max-backoff`: must be at least `backoff` and at most a day".into());
        }
        for (kind, properties) in &raw.depends_on {
            if !raw.kinds.contains(kind) {
                return Err(format!(
                    "depends-on.{kind}`: `{kind}` is not one of the `kinds` it handles"
                ));
            }
            if let Some((property, _)) = properties
                .iter()
                .find(|(p, k)| p.is_empty() || k.is_empty() || k.contains('\0'))
            {
                return Err(format!(
                    "depends-on.{kind}`: `{property}` must name a property and a kind"
                ));
            }
        }
        Ok(ModelWork {
            kinds: raw.kinds.into_iter().collect(),
            rate: raw.rate,
            backoff: raw.backoff,
            max_backoff: raw.max_backoff,
            modes: BTreeMap::new(),
            depends_on: raw.depends_on,
        })
    }
}

/// What a runner does for an entity with work.
pub enum Plan<C, O> {
    /// Makes the call, and records the outcome if it succeeds.
    Call(C, O),
    /// Records the outcome without a call (a deletion the operator orphans outside).
    Record(O),
    /// Records the outcome without a call, and holds the entity until `blocker` is
    /// handled or changes (an edge whose end is not enacted yet).
    Hold { blocker: Id, outcome: O },
    /// Nothing, for now (the operator's mode holds it).
    Skip,
}

/// What a model role tells its [`Runner`].
pub trait Handler: Send + Sync + 'static {
    /// Which queue `synchro status` shows, and the prefix of the runner's change-stream
    /// reader.
    const ROLE: ModelRole;
    const READER: &'static str;
    /// What the role reads of an entity before calling for it.
    type Input: Send + 'static;
    /// A call to make, built from an input.
    type Call: Send + Sync + 'static;
    /// An outcome, as the store records it.
    type Outcome: Send + 'static;
    /// An instance of the plugin for consecutive calls.
    type Session: Send;

    /// The role's section of `plugin`, which has the role.
    fn work(plugin: &Plugin) -> &ModelWork;
    /// Reads what the calls of the plugin `plugin` for `ids` need, in one visit of the
    /// store, under the role's section `work`.
    fn read(
        db: &Db,
        plugin: &str,
        work: &ModelWork,
        ids: &[Id],
    ) -> Result<Vec<Option<Self::Input>>, DbError>;
    fn books(input: &Self::Input) -> &Bookkeeping;
    /// Whether an entity has work for the plugin `plugin` in the role.
    fn needs(books: &Bookkeeping, plugin: &str) -> bool;
    /// What to do for an input that needs work, under the role's section `work`.
    fn plan(work: &ModelWork, input: Self::Input) -> Plan<Self::Call, Self::Outcome>;
    fn failed(failure: Failure) -> Self::Outcome;
    /// Records the outcomes of `plugin`'s calls in one visit of the store.
    fn record(
        db: &Db,
        plugin: &str,
        outcomes: &[(Id, Self::Outcome)],
    ) -> Result<Vec<Recorded>, DbError>;
    /// A call that undoes a successful one whose entity was purged while it ran, under
    /// the role's section `work`.
    fn undo(work: &ModelWork, call: Self::Call) -> Option<Self::Call>;
    /// The export's function a call is made to, for logs.
    fn name(call: &Self::Call) -> &'static str;

    fn session(
        plugin: &Plugin,
        engine: &PluginEngine,
        call: CallContext,
    ) -> impl Future<Output = Result<Self::Session, CallError>> + Send;
    /// Makes `call` on `session`; its store writes may write the entity `handling`
    /// names (see [`Handling`]).
    fn invoke(
        session: &mut Self::Session,
        engine: &PluginEngine,
        call: &Self::Call,
        handling: Option<Handling>,
    ) -> impl Future<Output = Result<(), CallError>> + Send;
}

/// One call of `plugin`'s role `H` outside any runner: a fresh instance makes `call` as a
/// runner's session does, its writes to the entity `handling` names allowed as a
/// runner's are. `synchro plugin test` runs a policy's or a sync step's fixtures so.
pub(crate) async fn call_once<H: Handler>(
    plugin: &Plugin,
    engine: &PluginEngine,
    context: CallContext,
    call: &H::Call,
    handling: Option<Handling>,
) -> Result<(), CallError> {
    let mut session = H::session(plugin, engine, context).await?;
    H::invoke(&mut session, engine, call, handling).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: &str = r#"
        name = "push"
        version = "0.1.0"
        roles = ["sync-step"]
        [sync]
        kinds = ["pserver"]
    "#;

    #[test]
    fn a_model_roles_section_has_defaults_and_names_its_mistakes() {
        let manifest = crate::parse_manifest("push.toml", STEP).unwrap();
        let sync = ModelWork::section(&manifest, "sync", "sync step").unwrap();
        assert_eq!(sync.kinds, BTreeSet::from(["pserver".to_owned()]));
        assert_eq!((sync.rate, sync.backoff), (100.0, Duration::from_secs(1)));
        let cases = [
            ("kinds = [\"pserver\"]", "", "a sync step needs a `[sync]`"),
            (
                "kinds = [\"pserver\"]",
                "kinds = []",
                "field `sync.kinds`: list at least one kind",
            ),
            (
                "kinds = [\"pserver\"]",
                "kinds = [\"a\"]\nrate = 0",
                "field `sync.rate`: must be 0.01",
            ),
            (
                "kinds = [\"pserver\"]",
                "kinds = [\"a\"]\nbackoff = \"0s\"",
                "field `sync.backoff`",
            ),
            (
                "kinds = [\"pserver\"]",
                "kinds = [\"a\"]\nbackoff = \"2s\"\nmax-backoff = \"1s\"",
                "field `sync.max-backoff`: must be at least `backoff`",
            ),
            (
                "kinds = [\"pserver\"]",
                "kinds = [\"a\"]\nretries = 3",
                "unknown field `retries`",
            ),
            (
                "kinds = [\"pserver\"]",
                "kinds = [\"a\"]\ndepends-on = { b = { slice = \"slice\" } }",
                "field `sync.depends-on.b`: `b` is not one of the `kinds` it handles",
            ),
            (
                "kinds = [\"pserver\"]",
                "kinds = [\"a\"]\ndepends-on = { a = { slice = \"\" } }",
                "field `sync.depends-on.a`: `slice` must name a property and a kind",
            ),
        ];
        for (from, to, expected) in cases {
            let mut text = STEP.replace(from, to);
            if to.is_empty() {
                text = text.replace("[sync]", "");
            }
            let error = crate::parse_manifest("push.toml", &text).unwrap_err();
            assert!(
                error.contains(expected),
                "expected `{expected}` in: {error}"
            );
        }
    }
}
