//! The admin API of a running host, and the client the CLI uses to reach it.
//!
//! HTTP on a loopback address (an ephemeral port unless configured): the host writes the
//! address it bound to `DATA_DIR/admin.addr`, so `synchro status --config FILE` finds the
//! host that runs with that config. There is no authentication: anyone who can reach the
//! address can reload and release plugins, so keep it on loopback.
//!
//! | request | does |
//! |---|---|
//! | `GET /v1/plugins` | every plugin's health and counters, and the manifests refused |
//! | `POST /v1/plugins/NAME/reload` | loads NAME again from its files and swaps it in |
//! | `POST /v1/plugins/NAME/release` | ends NAME's quarantine |

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::registry::Reloaded;
use crate::status::HostReport;

/// The file, in the data directory, that holds the address of the running host's API.
pub const ADDRESS_FILE: &str = "admin.addr";

/// Host-side settings of the admin API.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AdminSettings {
    pub enabled: bool,
    /// Port 0 picks a free one; the CLI finds it through `admin.addr`.
    pub listen: SocketAddr,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// A request for the host, which answers on the enclosed channel.
pub enum Request {
    Status(oneshot::Sender<HostReport>),
    Reload(String, oneshot::Sender<Result<Reloaded, String>>),
    Release(String, oneshot::Sender<Result<(), String>>),
}

#[derive(Debug, Serialize, Deserialize)]
struct ErrorBody {
    error: String,
}

type Reply<T> = Result<Json<T>, (StatusCode, Json<ErrorBody>)>;

/// Serves the API until `shutdown`, forwarding requests to `requests`; returns the bound
/// address once listening, and writes it to `ADDRESS_FILE` in `data_dir`.
pub async fn serve(
    settings: &AdminSettings,
    data_dir: &Path,
    requests: mpsc::Sender<Request>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("admin API: cannot listen on {}", settings.listen))?;
    let address = listener.local_addr()?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let file = data_dir.join(ADDRESS_FILE);
    std::fs::write(&file, address.to_string())
        .with_context(|| format!("writing {}", file.display()))?;
    let app = axum::Router::new()
        .route("/v1/plugins", get(status))
        .route("/v1/plugins/{name}/reload", post(reload))
        .route("/v1/plugins/{name}/release", post(release))
        .with_state(requests);
    tokio::spawn(async move {
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!("admin API stopped: {error}");
        }
        let _ = std::fs::remove_file(&file);
    });
    tracing::info!(%address, "admin API listening");
    Ok(address)
}

async fn ask<T>(
    requests: &mpsc::Sender<Request>,
    request: impl FnOnce(oneshot::Sender<T>) -> Request,
) -> Result<T, (StatusCode, Json<ErrorBody>)> {
    let (tx, rx) = oneshot::channel();
    let unavailable = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ErrorBody {
                error: "the host is stopping".into(),
            }),
        )
    };
    requests
        .send(request(tx))
        .await
        .map_err(|_| unavailable())?;
    rx.await.map_err(|_| unavailable())
}

fn refused<T>(status: StatusCode, error: String) -> Reply<T> {
    Err((status, Json(ErrorBody { error })))
}

async fn status(State(requests): State<mpsc::Sender<Request>>) -> Reply<HostReport> {
    Ok(Json(ask(&requests, Request::Status).await?))
}

async fn reload(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath(name): UrlPath<String>,
) -> Reply<Reloaded> {
    match ask(&requests, |tx| Request::Reload(name, tx)).await? {
        Ok(reloaded) => Ok(Json(reloaded)),
        Err(error) => refused(StatusCode::UNPROCESSABLE_ENTITY, error),
    }
}

async fn release(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath(name): UrlPath<String>,
) -> Reply<serde_json::Value> {
    match ask(&requests, |tx| Request::Release(name, tx)).await? {
        Ok(()) => Ok(Json(serde_json::json!({ "released": true }))),
        Err(error) => refused(StatusCode::CONFLICT, error),
    }
}

/// The CLI's side: finds the running host through its data directory.
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn for_data_dir(data_dir: &Path) -> anyhow::Result<Client> {
        let file: PathBuf = data_dir.join(ADDRESS_FILE);
        let address = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "no running host uses the data directory {} ({} is missing); pass the --config of the running host",
                data_dir.display(),
                file.display()
            )
        })?;
        Ok(Client {
            base: format!("http://{}", address.trim()),
            http: reqwest::Client::new(),
        })
    }

    pub async fn status(&self) -> anyhow::Result<HostReport> {
        self.call(self.http.get(format!("{}/v1/plugins", self.base)))
            .await
    }

    pub async fn reload(&self, name: &str) -> anyhow::Result<Reloaded> {
        self.call(
            self.http
                .post(format!("{}/v1/plugins/{name}/reload", self.base)),
        )
        .await
    }

    pub async fn release(&self, name: &str) -> anyhow::Result<()> {
        self.call::<serde_json::Value>(
            self.http
                .post(format!("{}/v1/plugins/{name}/release", self.base)),
        )
        .await
        .map(drop)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the host at {} (has it stopped?)", self.base))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .context("reading the host's answer")?;
        if status.is_success() {
            return serde_json::from_slice(&body).context("the host's answer is not understood");
        }
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(ErrorBody { error }) => anyhow::bail!("{error}"),
            Err(_) => anyhow::bail!("the host answered {status}"),
        }
    }
}
