//! An outside system for sync steps to push to: an HTTP server on a free loopback port
//! that takes `PUT` and `DELETE` on `/{kind}/{key}` and `POST` on `/{kind}` (it names
//! what is created: `{"id": "N"}`, N counting from 1), records every request, and answers
//! what a test scripts for a path, or holds its requests until the test lets them go.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};

/// One request the backend received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// `/{kind}/{key}`, decoded.
    pub path: String,
    pub body: String,
    pub at: Instant,
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    /// Path → the statuses of its next answers, first first (200 once they are spent).
    script: HashMap<String, Vec<u16>>,
    /// Paths whose requests are received but not answered until released.
    held: HashSet<String>,
    /// The ids `POST` gave so far.
    created: u64,
}

/// An HTTP backend on 127.0.0.1, stopped with the test process.
#[derive(Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl Backend {
    pub fn start() -> Backend {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = shared.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = axum::Router::new()
                    .route("/{kind}/{key}", axum::routing::put(answer).delete(answer))
                    .route("/{kind}", axum::routing::post(create))
                    .with_state(state);
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Backend { addr, shared }
    }

    /// The base URL a sync step's `url` setting takes, and its `poll` grant's host.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next requests for `path` with `statuses`, in order.
    pub fn script(&self, path: &str, statuses: &[u16]) {
        let mut shared = self.shared.lock().unwrap();
        shared.script.insert(path.to_owned(), statuses.to_vec());
    }

    /// Holds every next request for `path` unanswered (it is received at once) until
    /// [`Backend::release`]: a sync step's call stays in flight, for a test to kill its
    /// host there.
    pub fn hold(&self, path: &str) {
        self.shared.lock().unwrap().held.insert(path.to_owned());
    }

    pub fn release(&self, path: &str) {
        self.shared.lock().unwrap().held.remove(path);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }

    /// The requests for `path` with `method`.
    pub fn requests(&self, method: &str, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    /// Waits until `method` `path` was received `n` times; panics after `timeout`.
    pub fn wait_for(&self, method: &str, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.requests(method, path);
            if seen.len() >= n {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "{method} {path}: {} of {n} requests in {timeout:?}; received: {:?}",
                seen.len(),
                self.received()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn answer(
    State(shared): State<Arc<Mutex<Shared>>>,
    method: Method,
    Path((kind, key)): Path<(String, String)>,
    body: String,
) -> (StatusCode, String) {
    let path = format!("/{kind}/{key}");
    let status = {
        let mut shared = shared.lock().unwrap();
        let status = shared
            .script
            .get_mut(&path)
            .filter(|statuses| !statuses.is_empty())
            .map_or(200, |statuses| statuses.remove(0));
        shared.received.push(Received {
            method: method.to_string(),
            path: path.clone(),
            body,
            at: Instant::now(),
        });
        status
    };
    while shared.lock().unwrap().held.contains(&path) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = StatusCode::from_u16(status).unwrap();
    (status, format!("backend says {}", status.as_u16()))
}

/// `POST /{kind}`: creates, and names what it created.
async fn create(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path(kind): Path<String>,
    body: String,
) -> (StatusCode, String) {
    let mut shared = shared.lock().unwrap();
    shared.created += 1;
    let id = shared.created;
    shared.received.push(Received {
        method: "POST".into(),
        path: format!("/{kind}"),
        body,
        at: Instant::now(),
    });
    (StatusCode::CREATED, format!("{{\"id\":\"{id}\"}}"))
}
