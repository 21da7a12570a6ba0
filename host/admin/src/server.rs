//! The API's HTTP side: axum on the configured address, each request forwarded to the
//! host's loop.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use synchro_model::Error;
use synchro_status::{
    BaselinePage, CollectPlan, CollectReport, HostReport, ModelDeleted, ModelEntity, ModelFilter,
    ModelFlags, ModelPage, ModelRef, ModelWrite, Reloaded, RunRecord,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::access::{self, Access, TOKEN_FILE};
use crate::dashboard;
use crate::listener::{ANSWER, Bounded, IDLE};
use crate::{ADDRESS_FILE, AdminSettings, DEFAULT_PAGE, ErrorBody, MAX_PAGE, PageRequest, Request};

type Reply<T> = Result<Json<T>, (StatusCode, Json<ErrorBody>)>;

/// Serves the API until `shutdown`, forwarding requests to `requests`; returns the bound
/// address once listening, and writes it to `ADDRESS_FILE` and a new token to
/// `TOKEN_FILE` in `data_dir`, both readable by this user only.
pub async fn serve(
    settings: &AdminSettings,
    data_dir: &Path,
    requests: mpsc::Sender<Request>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("admin API: cannot listen on {}", settings.listen))?;
    let address = listener.local_addr()?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let access = Access::new(address);
    let token_file = data_dir.join(TOKEN_FILE);
    access::write_private(&token_file, access.token())
        .with_context(|| format!("writing {}", token_file.display()))?;
    let file = data_dir.join(ADDRESS_FILE);
    access::write_private(&file, &address.to_string())
        .with_context(|| format!("writing {}", file.display()))?;
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/health", get(health))
        .route("/v1/ready", get(ready))
        .route("/v1/plugins", get(status))
        .route("/v1/plugins/{name}/reload", post(reload))
        .route("/v1/plugins/{name}/release", post(release))
        .route("/v1/plugins/{name}/approve-deletes", post(approve_deletes))
        .route("/v1/plugins/{name}/plan", post(plan))
        .route("/v1/plugins/{name}/runs", get(runs))
        .route("/v1/plugins/{name}/baseline", get(baseline))
        .route("/v1/plugins/{name}/reset-baseline", post(reset_baseline))
        .route("/v1/plugins/{name}/collect", post(collect_now))
        .route("/v1/plugins/{name}/pause", post(pause))
        .route("/v1/plugins/{name}/resume", post(resume))
        .route("/v1/model", get(entities))
        .route(
            "/v1/model/{kind}/{key}",
            get(entity).put(write).delete(delete),
        )
        .route("/v1/model/{kind}/{key}/flags", post(flag))
        .route("/v1/changes", get(changes))
        .with_state(requests)
        .layer(axum::middleware::from_fn_with_state(
            access.clone(),
            access::guard,
        ))
        .merge(
            dashboard::routes().layer(axum::middleware::from_fn_with_state(
                access,
                access::guard_host,
            )),
        );
    let listener = Bounded::new(listener, settings.max_connections.max(1), IDLE, ANSWER);
    spawn_serving(listener, app, shutdown, "admin API", vec![file, token_file]);
    tracing::info!(%address, "admin API listening");
    Ok(address)
}

/// Serves `app` on `listener` until `shutdown`, then removes `files` (those that tell
/// clients where `what` listens).
pub fn spawn_serving(
    listener: Bounded,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
    files: Vec<std::path::PathBuf>,
) {
    tokio::spawn(async move {
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!("{what} stopped: {error}");
        }
        for file in files {
            let _ = std::fs::remove_file(&file);
        }
    });
}

async fn ask<T>(
    requests: &mpsc::Sender<Request>,
    request: impl FnOnce(oneshot::Sender<T>) -> Request,
) -> Result<T, (StatusCode, Json<ErrorBody>)> {
    let (tx, rx) = oneshot::channel();
    let unavailable = || {
        refusal(Error::new(
            synchro_model::ErrorKind::Unavailable,
            "the host is stopping",
        ))
    };
    requests
        .send(request(tx))
        .await
        .map_err(|_| unavailable())?;
    rx.await.map_err(|_| unavailable())
}

/// An error answer: the status its kind maps to, its message and its kind.
fn refusal(error: Error) -> (StatusCode, Json<ErrorBody>) {
    let status =
        StatusCode::from_u16(error.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        Json(ErrorBody {
            error: error.message,
            kind: Some(error.kind.label().to_owned()),
        }),
    )
}

async fn status(State(requests): State<mpsc::Sender<Request>>) -> Reply<HostReport> {
    Ok(Json(ask(&requests, Request::Status).await?))
}

async fn metrics(
    State(requests): State<mpsc::Sender<Request>>,
) -> Result<axum::response::Response, (StatusCode, Json<ErrorBody>)> {
    use axum::response::IntoResponse;
    let text = ask(&requests, Request::Metrics).await?;
    let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok(([(axum::http::header::CONTENT_TYPE, kind)], text).into_response())
}

/// Live: the host's loop answers (a wedged loop times out instead).
async fn health(State(requests): State<mpsc::Sender<Request>>) -> Reply<serde_json::Value> {
    let report = tokio::time::timeout(LIVENESS, ask(&requests, Request::Status))
        .await
        .map_err(|_| {
            refusal(Error::new(
                synchro_model::ErrorKind::TimedOut,
                "the host's loop did not answer in time",
            ))
        })??;
    Ok(Json(serde_json::json!({
        "live": true,
        "plugins": report.plugins.len(),
    })))
}

/// Ready: every plugin found has loaded (or was refused); 503 naming those that load.
async fn ready(
    State(requests): State<mpsc::Sender<Request>>,
) -> Result<Json<serde_json::Value>, (StatusCode, Json<serde_json::Value>)> {
    let report = ask(&requests, Request::Status)
        .await
        .map_err(|(status, body)| {
            (
                status,
                Json(serde_json::json!({ "ready": false, "error": body.0.error })),
            )
        })?;
    let loading: Vec<String> = report.loading.iter().map(|l| l.manifest.clone()).collect();
    if !loading.is_empty() {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "ready": false, "loading": loading })),
        ));
    }
    let unhealthy: Vec<&str> = report
        .plugins
        .iter()
        .filter(|p| !p.health.is_healthy())
        .map(|p| p.name.as_str())
        .collect();
    Ok(Json(serde_json::json!({
        "ready": true,
        "plugins": report.plugins.len(),
        "unhealthy": unhealthy,
        "refused": report.refused.len(),
    })))
}

/// How long the liveness check waits for the host's loop.
const LIVENESS: std::time::Duration = std::time::Duration::from_secs(5);

async fn reload(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath(name): UrlPath<String>,
) -> Reply<Reloaded> {
    ask(&requests, |tx| Request::Reload(name, tx))
        .await?
        .map(Json)
        .map_err(refusal)
}

async fn release(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath(name): UrlPath<String>,
) -> Reply<serde_json::Value> {
    ask(&requests, |tx| Request::Release(name, tx))
        .await?
        .map(|()| Json(serde_json::json!({ "released": true })))
        .map_err(refusal)
}

/// `?held=ID`: the held set an approval is for.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Held {
    held: Option<String>,
}

async fn approve_deletes(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath(name): UrlPath<String>,
    query: Result<Query<Held>, axum::extract::rejection::QueryRejection>,
) -> Reply<serde_json::Value> {
    let Query(Held { held }) =
        query.map_err(|rejection| refusal(invalid(rejection.body_text())))?;
    ask(&requests, |tx| Request::ApproveDeletes(name, held, tx))
        .await?
        .map(|deleted| Json(serde_json::json!({ "deleted": deleted })))
        .map_err(refusal)
}

async fn runs(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath(name): UrlPath<String>,
) -> Reply<Vec<RunRecord>> {
    ask(&requests, |tx| Request::Runs(name, tx))
        .await?
        .map(Json)
        .map_err(refusal)
}

async fn plan(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath(name): UrlPath<String>,
) -> Reply<CollectPlan> {
    ask(&requests, |tx| Request::Plan(name, tx))
        .await?
        .map(Json)
        .map_err(refusal)
}

async fn collect_now(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath(name): UrlPath<String>,
) -> Reply<CollectReport> {
    ask(&requests, |tx| Request::CollectNow(name, tx))
        .await?
        .map(Json)
        .map_err(refusal)
}

async fn pause(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath(name): UrlPath<String>,
) -> Reply<serde_json::Value> {
    pausing(requests, name, true).await
}

async fn resume(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath(name): UrlPath<String>,
) -> Reply<serde_json::Value> {
    pausing(requests, name, false).await
}

async fn pausing(
    requests: mpsc::Sender<Request>,
    name: String,
    paused: bool,
) -> Reply<serde_json::Value> {
    ask(&requests, |tx| Request::Pause(name, paused, tx))
        .await?
        .map(|()| Json(serde_json::json!({ "paused": paused })))
        .map_err(refusal)
}

/// `GET /v1/changes`: which changes, as comma-separated lists.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    kind: Option<String>,
    operation: Option<String>,
    plugin: Option<String>,
    after: Option<u64>,
}

async fn changes(
    State(requests): State<mpsc::Sender<Request>>,
    headers: axum::http::HeaderMap,
    query: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, (StatusCode, Json<ErrorBody>)> {
    let Query(query) = query.map_err(|rejection| refusal(invalid(rejection.body_text())))?;
    let list = |text: Option<String>| -> Vec<String> {
        text.map(|t| t.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let operations = list(query.operation)
        .iter()
        .map(|o| synchro_bus::ChangeFilter::operation(o))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refusal(invalid(format!("parameter `operation`: {e}"))))?;
    // A reconnecting EventSource says where it was; that wins over `after`.
    let resumed = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    refusal(invalid(format!(
                        "header `Last-Event-ID`: {value:?} is not a change's sequence number"
                    )))
                })?,
        ),
    };
    let request = crate::FeedRequest {
        after: resumed.or(query.after),
        only: synchro_bus::ChangeFilter {
            kinds: list(query.kind),
            operations,
            sources: list(query.plugin),
        },
    };
    let feed = ask(&requests, |tx| Request::Feed(request, tx))
        .await?
        .map_err(refusal)?;
    Ok(crate::sse::response(feed))
}

async fn entity(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath((kind, key)): UrlPath<(String, String)>,
) -> Reply<ModelEntity> {
    ask(&requests, |tx| Request::Entity(ModelRef { kind, key }, tx))
        .await?
        .map(Json)
        .map_err(refusal)
}

async fn flag(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath((kind, key)): UrlPath<(String, String)>,
    flags: Result<Json<ModelFlags>, axum::extract::rejection::JsonRejection>,
) -> Reply<ModelEntity> {
    let Json(flags) = flags.map_err(|rejection| refusal(invalid(rejection.body_text())))?;
    ask(&requests, |tx| {
        Request::Flag(ModelRef { kind, key }, flags, tx)
    })
    .await?
    .map(Json)
    .map_err(refusal)
}

async fn write(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath((kind, key)): UrlPath<(String, String)>,
    body: Result<Json<ModelWrite>, axum::extract::rejection::JsonRejection>,
) -> Reply<ModelEntity> {
    let Json(body) = body.map_err(|rejection| refusal(invalid(rejection.body_text())))?;
    ask(&requests, |tx| {
        Request::Put(ModelRef { kind, key }, body, tx)
    })
    .await?
    .map(Json)
    .map_err(refusal)
}

/// The query of `DELETE /v1/model/KIND/KEY`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    cascade: bool,
}

async fn delete(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath((kind, key)): UrlPath<(String, String)>,
    query: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply<ModelDeleted> {
    let Query(query) = query.map_err(|rejection| refusal(invalid(rejection.body_text())))?;
    ask(&requests, |tx| {
        Request::Delete(ModelRef { kind, key }, query.cascade, tx)
    })
    .await?
    .map(Json)
    .map_err(refusal)
}

/// The query of `GET /v1/model`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct PageQuery {
    kind: Option<String>,
    owner: Option<String>,
    only: Option<ModelFilter>,
    after_kind: Option<String>,
    after_key: Option<String>,
    limit: Option<usize>,
}

impl PageQuery {
    fn request(self) -> Result<PageRequest, Error> {
        let after = match (self.after_kind, self.after_key) {
            (Some(kind), Some(key)) => Some(ModelRef { kind, key }),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "`after-kind` and `after-key` go together: they name the last entity of the previous page".into(),
                ));
            }
        };
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(invalid(format!(
                "`limit` must be 1 to {MAX_PAGE}, not {limit}"
            )));
        }
        Ok(PageRequest {
            kind: self.kind,
            owner: self.owner,
            only: self.only,
            after,
            limit,
        })
    }
}

async fn entities(
    State(requests): State<mpsc::Sender<Request>>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply<ModelPage> {
    let Query(query) = query.map_err(|rejection| refusal(invalid(rejection.body_text())))?;
    let page = query.request().map_err(refusal)?;
    ask(&requests, |tx| Request::Entities(page, tx))
        .await?
        .map(Json)
        .map_err(refusal)
}

async fn reset_baseline(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath(name): UrlPath<String>,
) -> Reply<serde_json::Value> {
    let forgotten = ask(&requests, |tx| Request::ResetBaseline(name, tx))
        .await?
        .map_err(refusal)?;
    Ok(Json(serde_json::json!({ "forgotten": forgotten })))
}

async fn baseline(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath(name): UrlPath<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply<BaselinePage> {
    let Query(query) = query.map_err(|rejection| refusal(invalid(rejection.body_text())))?;
    let page = query.request().map_err(refusal)?;
    if page.owner.is_some() || page.only.is_some() {
        return Err(refusal(invalid(
            "`owner` and `only` select entities of the model, not of a baseline (which is one collector's)".into(),
        )));
    }
    ask(&requests, |tx| Request::Baseline(name, page, tx))
        .await?
        .map(Json)
        .map_err(refusal)
}

/// A request's mistake, which `message` names.
fn invalid(message: String) -> Error {
    Error::new(synchro_model::ErrorKind::InvalidInput, message)
}
