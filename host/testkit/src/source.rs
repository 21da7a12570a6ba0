//! An HTTP source on a free loopback port whose status, body and delay a test sets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An HTTP source whose status and body the test sets.
#[derive(Clone)]
pub struct Source {
    pub addr: SocketAddr,
    content: Arc<Mutex<(u16, String)>>,
    delay: Arc<Mutex<Duration>>,
    requests: Arc<Mutex<Vec<Instant>>>,
}

impl Source {
    /// Serves `body` with status 200 at `/inventory.json` on a free loopback port.
    pub fn start(body: &str) -> Source {
        let content = Arc::new(Mutex::new((200, body.to_owned())));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let shared = content.clone();
        let shared_delay = delay.clone();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = axum::Router::new().route(
                    "/inventory.json",
                    axum::routing::get(move || {
                        seen.lock().unwrap().push(Instant::now());
                        let (status, body) = shared.lock().unwrap().clone();
                        let delay = *shared_delay.lock().unwrap();
                        async move {
                            tokio::time::sleep(delay).await;
                            (axum::http::StatusCode::from_u16(status).unwrap(), body)
                        }
                    }),
                );
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Source {
            addr,
            content,
            delay,
            requests,
        }
    }

    /// Delays every response by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// When each request so far arrived.
    pub fn requests(&self) -> Vec<Instant> {
        self.requests.lock().unwrap().clone()
    }

    pub fn set(&self, status: u16, body: &str) {
        *self.content.lock().unwrap() = (status, body.to_owned());
    }

    pub fn url(&self) -> String {
        format!("http://{}/inventory.json", self.addr)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}
