//! The admin API of a running host ([`serve`]), and the client the CLI uses to reach it
//! ([`Client`]).
//!
//! HTTP on a loopback address (an ephemeral port unless configured): the host writes the
//! address it bound to `DATA_DIR/admin.addr` and a token new at every start to
//! `DATA_DIR/admin.token` (both 0600), so `synchro status --config FILE` finds the host
//! that runs with that config and proves it may use it. Every request needs the token
//! (`Authorization: Bearer`), a `Host` that is an IP address or `localhost` with the API's
//! port, and no `Origin` but the API's own, the dashboard's ([`access`]); at most 64 connections are served at once, each
//! closed after 30 s without a byte from its client.
//!
//! | request | does |
//! |---|---|
//! | `GET /ui/` | the dashboard, a page over this API (no token needed for the page itself; `/` leads there) |
//! | `GET /v1/health` | 200 while the host's loop answers (504 when it does not within 5 s) |
//! | `GET /v1/ready` | 200 once every plugin found has loaded or been refused (with `unhealthy`: the plugins neither starting nor ok), 503 naming those still loading |
//! | `GET /metrics` | the host's metrics in the OpenMetrics text format, for Prometheus |
//! | `GET /v1/plugins` | every plugin's health and counters, and the manifests refused |
//! | `POST /v1/plugins/NAME/reload` | loads NAME again from its files and swaps it in |
//! | `POST /v1/plugins/NAME/release` | ends NAME's quarantine |
//! | `GET /v1/plugins/NAME/runs` | its last runs, oldest first: a collector's collects (when, the collect's and the commit's durations, what it did, its error), a policy's or sync step's passes over its work |
//! | `POST /v1/plugins/NAME/approve-deletes?held=ID` | deletes the collector's held deletes (only if they are still the set `ID`, when given); answers `{"deleted": N}` |
//! | `POST /v1/plugins/NAME/plan` | collects once without committing: the changes a collect would make now, and what it would hold |
//! | `POST /v1/plugins/NAME/collect` | collects now, and answers what the collect did |
//! | `POST /v1/plugins/NAME/pause`, `.../resume` | stops and restarts the collector's schedule (its baseline stays) |
//! | `GET /v1/model/KIND/KEY` | one entity of the model, with its owner (404 if absent) |
//! | `POST /v1/model/KIND/KEY/flags` | sets the operator's flags on it (`{"no-policy": true}`, `write-protect`) and answers the entity |
//! | `GET /v1/changes?kind=K,…&operation=O,…&plugin=P,…&after=N` | the change stream as Server-Sent Events (`id` = the change's sequence number, `event: change`, `data` = its notification), from now or after `N`, resumed after the `Last-Event-ID` header without gap or duplicate |
//! | `GET /v1/model?kind=K&owner=P&only=dirty\|failed&after-kind=&after-key=&limit=N` | a page of the model's entities (of kind K, owned by P), by kind then key, after the given one; at most [`MAX_PAGE`] |
//! | `POST /v1/plugins/NAME/reset-baseline` | forgets the collector's baseline (between its collects): the next collect announces everything as CREATE; answers `{"forgotten": N}` |
//! | `GET /v1/plugins/NAME/baseline?kind=K&after-kind=&after-key=&limit=N` | a page of a collector's baseline: each entity with its hash |

mod access;
mod client;
mod dashboard;
mod listener;
mod server;
mod sse;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use synchro_model::Error;
use synchro_status::{
    BaselinePage, CollectPlan, CollectReport, HostReport, ModelDeleted, ModelEntity, ModelFilter,
    ModelFlags, ModelPage, ModelRef, ModelWrite, Reloaded, RunRecord,
};
use tokio::sync::{mpsc, oneshot};

pub use access::{TOKEN_FILE, from_a_page};
pub use client::Client;
pub use dashboard::PATH as DASHBOARD_PATH;
pub use listener::{ANSWER, Bounded, IDLE};
pub use server::{serve, spawn_serving};
pub use sse::ChangeEvent;

/// The file, in the data directory, that holds the address of the running host's API.
pub const ADDRESS_FILE: &str = "admin.addr";

/// Host-side settings of the admin API: `[admin]` in the host config.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AdminSettings {
    pub enabled: bool,
    /// Port 0 picks a free one; the CLI finds it through `admin.addr`.
    pub listen: SocketAddr,
    /// Connections served at once (each subscriber of the change feed holds one).
    pub max_connections: usize,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_connections: listener::MAX_CONNECTIONS,
        }
    }
}

/// Entities in a page of the model when the request names no `limit`.
pub const DEFAULT_PAGE: usize = 100;
/// The most entities one page of the model holds.
pub const MAX_PAGE: usize = 1000;

/// A request for the host, which answers on the enclosed channel.
pub enum Request {
    Status(oneshot::Sender<HostReport>),
    /// The metrics text (OpenMetrics).
    Metrics(oneshot::Sender<String>),
    Reload(String, oneshot::Sender<Result<Reloaded, Error>>),
    Release(String, oneshot::Sender<Result<(), Error>>),
    /// A plugin's last runs, oldest first.
    Runs(String, oneshot::Sender<Result<Vec<RunRecord>, Error>>),
    /// To a collector: deletes its held set (if it is the one named).
    ApproveDeletes(String, Option<String>, oneshot::Sender<Result<u64, Error>>),
    /// To a collector: forgets its baseline; answers how many entries it had.
    ResetBaseline(String, oneshot::Sender<Result<u64, Error>>),
    /// To a collector: what a collect would do now.
    Plan(String, oneshot::Sender<Result<CollectPlan, Error>>),
    /// To a collector: collect now; answers what the collect did.
    CollectNow(String, oneshot::Sender<Result<CollectReport, Error>>),
    /// To a collector: stop (`true`) or restart collecting on its schedule.
    Pause(String, bool, oneshot::Sender<Result<(), Error>>),
    /// One entity of the model: not found when absent.
    Entity(ModelRef, oneshot::Sender<Result<ModelEntity, Error>>),
    /// A page of the model's entities.
    Entities(PageRequest, oneshot::Sender<Result<ModelPage, Error>>),
    /// A page of a collector's baseline (the request's `owner` and `only` are not set).
    Baseline(
        String,
        PageRequest,
        oneshot::Sender<Result<BaselinePage, Error>>,
    ),
    /// Sets the operator's flags on an entity: not found when absent.
    Flag(
        ModelRef,
        ModelFlags,
        oneshot::Sender<Result<ModelEntity, Error>>,
    ),
    /// Writes an entity as the API: an edge needs its ends.
    Put(
        ModelRef,
        ModelWrite,
        oneshot::Sender<Result<ModelEntity, Error>>,
    ),
    /// Deletes an entity as the API: not found when absent; a vertex with edges only
    /// with `cascade` (the `bool`).
    Delete(ModelRef, bool, oneshot::Sender<Result<ModelDeleted, Error>>),
    /// Subscribes to the change stream.
    Feed(
        FeedRequest,
        oneshot::Sender<Result<mpsc::Receiver<FeedEvent>, Error>>,
    ),
}

/// A subscription to the change stream: the changes after the sequence number `after`
/// (from now when `None`) that `only` takes.
#[derive(Debug, Clone, Default)]
pub struct FeedRequest {
    pub after: Option<u64>,
    pub only: synchro_bus::ChangeFilter,
}

/// What a subscriber of the change stream is sent.
#[derive(Debug)]
pub enum FeedEvent {
    /// A change, framed once and shared by every subscriber it is sent to.
    Change(ChangeEvent),
    /// The subscriber fell so far behind that the outbox dropped changes it had not been
    /// sent; the feed ends after this.
    Lost { missed: u64 },
}

/// Which page of the model's entities: of `kind` (every kind when `None`), of `owner`
/// (any when `None`), only those
/// `only` takes (every one when `None`), after `after`, at most `limit`
/// (1 ..= [`MAX_PAGE`]) of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub kind: Option<String>,
    /// Only the entities this plugin (or `api`) owns.
    pub owner: Option<String>,
    pub only: Option<ModelFilter>,
    pub after: Option<ModelRef>,
    pub limit: usize,
}

/// The body of an error answer.
#[derive(Debug, Serialize, Deserialize)]
struct ErrorBody {
    error: String,
    /// The error's kind ([`synchro_model::ErrorKind::label`]).
    #[serde(default)]
    kind: Option<String>,
}
