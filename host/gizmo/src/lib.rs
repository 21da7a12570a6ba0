//! The model as a service: ONAP A&AI Gizmo's CRUD API (vertices, edges, bulk) over
//! synchro's model, so a Gizmo client can point at synchro unchanged.
//!
//! In sync mode a request writes the model and answers; in async mode it is published as
//! Gizmo's request on the bus and answered when the correlated response arrives, and an
//! in-host responder (ONAP Champ's part) makes the writes. Writes are owned by the API
//! (`synchro_manifest::API_WRITER`): model policies and sync steps run on them, and they
//! appear on the change stream like any source's. See README, "The Gizmo API".

mod answer;
mod backend;
mod bulk;
mod remote;
mod responder;
mod routes;
mod schema;
mod wire;
mod writer;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use synchro_bus::Bus;
use synchro_store::Db;
use tokio::sync::watch;

pub use routes::{DEFAULT_PAGE, MAX_PAGE};

/// The file, in the data directory, that holds the address the API listens on.
pub const ADDRESS_FILE: &str = "gizmo.addr";

/// Where the API listens unless `[gizmo] listen` says: Gizmo's own port, on loopback.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9520);

/// How writes are made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A request writes the model and answers.
    #[default]
    Sync,
    /// A request is published on `request-topic` and answered from `response-topic`.
    Async,
}

/// `[gizmo]` in the host config.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct GizmoSettings {
    pub enabled: bool,
    /// A loopback address (until the API has a token); [`DEFAULT_LISTEN`] when unset.
    pub listen: Option<SocketAddr>,
    pub mode: Mode,
    /// The largest request body, in KiB; a larger one is answered 413.
    pub max_body_kb: usize,
    /// Connections served at once; the next wait to be accepted.
    pub max_connections: usize,
    /// A JSON Schema file per kind (relative to the config file). With any, the kinds
    /// are these: another is unknown (404).
    pub schemas: BTreeMap<String, PathBuf>,
    /// Where async mode publishes Gizmo's requests.
    pub request_topic: String,
    /// Where async mode awaits their responses.
    pub response_topic: String,
    /// Whether this host answers the requests itself (async mode); `false` leaves them
    /// to a responder of the operator's.
    pub responder: bool,
    /// How long an async-mode request waits for its response.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for GizmoSettings {
    fn default() -> Self {
        GizmoSettings {
            enabled: true,
            listen: None,
            mode: Mode::Sync,
            max_body_kb: 10 * 1024,
            max_connections: 1024,
            schemas: BTreeMap::new(),
            request_topic: "gizmo-requests".into(),
            response_topic: "gizmo-responses".into(),
            responder: true,
            timeout: Duration::from_secs(30),
        }
    }
}

impl GizmoSettings {
    /// Checks the values; errors start with the field's name.
    pub fn check(&self) -> Result<(), String> {
        if let Some(listen) = self.listen
            && !listen.ip().is_loopback()
        {
            return Err(format!(
                "listen`: {listen} is not a loopback address; the Gizmo API has no access \
                 control yet, so it serves this machine only"
            ));
        }
        if !(1..=1024 * 1024).contains(&self.max_body_kb) {
            return Err("max-body-kb`: must be 1 to 1048576".into());
        }
        if !(1..=65_536).contains(&self.max_connections) {
            return Err("max-connections`: must be 1 to 65536".into());
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(3600) {
            return Err("timeout`: must be more than 0 and at most an hour".into());
        }
        for (field, topic) in [
            ("request-topic", &self.request_topic),
            ("response-topic", &self.response_topic),
        ] {
            if topic.is_empty() || synchro_bus::is_host_topic(topic) {
                return Err(format!(
                    "{field}`: `{topic}` is empty or a topic of the host's own"
                ));
            }
        }
        if self.request_topic == self.response_topic {
            return Err("response-topic`: must differ from request-topic".into());
        }
        Ok(())
    }
}

/// Serves the API until `shutdown`; schema files are relative to `base`. Returns the
/// bound address, also written to `ADDRESS_FILE` in `data_dir` — or `None` when the
/// default port is taken (another host on this machine has it): the host runs on without
/// the API, and the log says how to give it a port. A configured address that cannot be
/// bound is an error.
pub async fn serve(
    settings: &GizmoSettings,
    base: &Path,
    data_dir: &Path,
    db: Arc<Db>,
    bus: Bus,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<SocketAddr>> {
    let schemas = Arc::new(
        schema::Schemas::load(&settings.schemas, base)
            .map_err(|e| anyhow::anyhow!("gizmo.schemas: {e}"))?,
    );
    let listen = settings.listen.unwrap_or(DEFAULT_LISTEN);
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error)
            if settings.listen.is_none() && error.kind() == std::io::ErrorKind::AddrInUse =>
        {
            tracing::warn!(
                "Gizmo API not served: {listen} is in use (another synchro on this machine?); \
                 set [gizmo] listen to another port (0 for any free one), or enabled = false"
            );
            return Ok(None);
        }
        Err(error) => {
            return Err(error).with_context(|| {
                format!(
                    "Gizmo API: cannot listen on {listen} (set [gizmo] listen to another port, \
                     0 for any free one, or enabled = false)"
                )
            });
        }
    };
    let address = listener.local_addr()?;
    let file = data_dir.join(ADDRESS_FILE);
    std::fs::write(&file, address.to_string())
        .with_context(|| format!("writing {}", file.display()))?;
    let backend = match settings.mode {
        Mode::Sync => backend::Backend::Sync(writer::Writer::start(db.clone())),
        Mode::Async => {
            if settings.responder {
                responder::spawn(
                    bus.clone(),
                    db.clone(),
                    writer::Writer::start(db.clone()),
                    schemas.clone(),
                    &settings.request_topic,
                    settings.response_topic.clone(),
                    shutdown.clone(),
                )
                .await?;
            }
            let remote = remote::Remote::start(
                bus,
                settings.request_topic.clone(),
                settings.response_topic.clone(),
                settings.timeout,
            )
            .await?;
            backend::Backend::Async(remote, db.clone())
        }
    };
    let api = Arc::new(routes::Api {
        db,
        schemas,
        backend,
    });
    let app = routes::router(api)
        .layer(axum::extract::DefaultBodyLimit::max(
            settings.max_body_kb * 1024,
        ))
        .layer(axum::middleware::from_fn(answer::transaction_id))
        .layer(axum::middleware::from_fn_with_state(
            address.port(),
            answer::local_only,
        ));
    let listener = synchro_admin::Bounded::new(
        listener,
        settings.max_connections,
        synchro_admin::IDLE,
        synchro_admin::ANSWER,
    );
    synchro_admin::spawn_serving(listener, app, shutdown, "Gizmo API", vec![file]);
    tracing::info!(%address, mode = ?settings.mode, "Gizmo API listening");
    Ok(Some(address))
}
