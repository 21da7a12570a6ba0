//! The admin API's listener: a bounded number of connections, each closed when its client
//! goes quiet.
//!
//! Without bounds a local client could hold thousands of connections open (each a file
//! descriptor of the host) or trickle a request's headers forever. A client whose request
//! is complete and which waits for the answer — a reload compiling a large component for a
//! minute — is not quiet: from the end of its request's headers until the server writes,
//! the connection is held to the longer [`ANSWER`] instead.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Connections served at once; the next wait to be accepted.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may send nothing while the server waits to read from it — a
/// request's headers, or the next request — before it is closed.
pub const IDLE: Duration = Duration::from_secs(30);
/// How long a connection may send nothing once its request's headers are in, while the
/// server prepares the answer (or reads the request's body).
pub const ANSWER: Duration = Duration::from_secs(600);

pub struct Bounded {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    idle: Duration,
    answer: Duration,
}

impl Bounded {
    /// `idle`: how long a client may be silent while the server waits for a request;
    /// `answer`: while the server answers one.
    pub fn new(
        listener: TcpListener,
        connections: usize,
        idle: Duration,
        answer: Duration,
    ) -> Bounded {
        Bounded {
            listener,
            slots: Arc::new(Semaphore::new(connections)),
            idle,
            answer,
        }
    }
}

impl axum::serve::Listener for Bounded {
    type Io = Quiet;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Quiet, Self::Addr) {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            match self.listener.accept().await {
                Ok((stream, address)) => {
                    let quiet = Quiet {
                        stream,
                        _slot: slot,
                        idle: self.idle,
                        answer: self.answer,
                        deadline: Instant::now() + self.idle,
                        timer: Box::pin(tokio::time::sleep(self.idle)),
                        answering: false,
                        tail: Vec::with_capacity(6),
                    };
                    return (quiet, address);
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait, as axum's own does.
                    tracing::warn!("admin API: accepting a connection failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A connection that fails its pending read once its client has sent nothing for `idle`
/// since the server last wrote to it (`answer` once its request's headers are in, until
/// the server writes), holding one of the listener's slots until it is dropped.
pub struct Quiet {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle: Duration,
    answer: Duration,
    /// When the connection has been quiet too long, as of the last read or write.
    deadline: Instant,
    /// Wakes the pending read at `deadline` or earlier: it is moved only when it fires
    /// early or the deadline comes closer, not on every read and write (resetting a
    /// timer takes the timer wheel's lock; it showed in the Gizmo API's profile).
    timer: Pin<Box<Sleep>>,
    /// Whether a request's headers are in and its answer is not yet being written.
    answering: bool,
    /// The last bytes read (at most 3), to find the end of the headers across reads.
    tail: Vec<u8>,
}

/// The end of a request's headers.
const HEADERS_END: &[u8] = b"\r\n\r\n";

impl Quiet {
    /// Takes note of `read`, the bytes just read: the end of a request's headers
    /// (`\r\n\r\n`) means its client now waits for the answer.
    fn saw(&mut self, read: &[u8]) {
        if self.answering || read.is_empty() {
            return;
        }
        // The end may straddle two reads: the last bytes before and the first now.
        self.tail.extend_from_slice(&read[..read.len().min(3)]);
        self.answering = self.tail.windows(4).any(|w| w == HEADERS_END)
            || read.windows(4).any(|w| w == HEADERS_END);
        if read.len() >= 3 {
            self.tail.clear();
            self.tail.extend_from_slice(&read[read.len() - 3..]);
        } else {
            let older = self.tail.len().saturating_sub(3);
            self.tail.drain(..older);
        }
    }

    /// The client did something: it may now be quiet for `limit`.
    fn active(&mut self, limit: Duration) {
        self.deadline = Instant::now() + limit;
        if self.deadline < self.timer.deadline() {
            self.timer.as_mut().reset(self.deadline);
        }
    }
}

impl AsyncRead for Quiet {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if result.is_ok() {
                    this.saw(&buf.filled()[before..]);
                }
                let limit = if this.answering {
                    this.answer
                } else {
                    this.idle
                };
                this.active(limit);
                Poll::Ready(result)
            }
            Poll::Pending => loop {
                match this.timer.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) if Instant::now() >= this.deadline => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client sent nothing for too long",
                        )));
                    }
                    // Early: the client was active since it was set.
                    Poll::Ready(()) => {
                        let deadline = this.deadline;
                        this.timer.as_mut().reset(deadline);
                    }
                }
            },
        }
    }
}

impl AsyncWrite for Quiet {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            if this.answering {
                // The answer goes out: from now on the client owes the next request.
                this.answering = false;
                this.tail.clear();
            }
            // A long answer (the change feed's stream, with its keep-alives) keeps the
            // connection: the client is reading, not quiet.
            let idle = this.idle;
            this.active(idle);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A listener on a free port with `slots`, quiet clients cut after `idle` ms and
    /// answers awaited `answer` ms at most; its address.
    async fn listening(slots: usize, idle: u64, answer: u64) -> (Bounded, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let idle = Duration::from_millis(idle);
        let answer = Duration::from_millis(answer);
        (Bounded::new(listener, slots, idle, answer), address)
    }

    #[tokio::test]
    async fn a_quiet_client_is_cut_and_slots_bound_the_connections() {
        let (mut bounded, address) = listening(1, 200, 600_000).await;

        let mut talker = TcpStream::connect(address).await.unwrap();
        let (mut first, _) = bounded.accept().await;
        talker.write_all(b"GET").await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(first.read(&mut buf).await.unwrap(), 3);
        let started = std::time::Instant::now();
        let error = first.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));

        // The one slot is taken until `first` is dropped.
        let _second_client = TcpStream::connect(address).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(300), bounded.accept()).await;
        assert!(waiting.is_err(), "a second connection was accepted");
        drop(first);
        let accepted = tokio::time::timeout(Duration::from_secs(10), bounded.accept()).await;
        assert!(accepted.is_ok());
    }

    /// A client that keeps sending, however slowly, is not cut: only silence counts,
    /// and the end of a request's headers is found however the reads split it.
    #[tokio::test]
    async fn a_client_that_keeps_talking_is_not_cut() {
        let (mut bounded, address) = listening(1, 300, 600_000).await;
        let mut talker = TcpStream::connect(address).await.unwrap();
        let (mut served, _) = bounded.accept().await;
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut buf = [0u8; 64];
        // A byte every 100 ms: 3 s in all, ten times the idle limit.
        for byte in request.iter().cycle().take(30) {
            talker.write_all(&[*byte]).await.unwrap();
            assert_eq!(served.read(&mut buf).await.unwrap(), 1);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            served.answering,
            "the headers' end, one byte a read, was missed"
        );
        served.saw(b"x");
        assert!(served.answering);
        // Then quiet after an answer: cut at the idle limit, not the answer's.
        served.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        assert!(!served.answering);
        let started = std::time::Instant::now();
        let error = served.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    /// A client waiting for a slow answer (a reload compiling a large component) sends
    /// nothing meanwhile: it is not quiet, and gets its answer.
    #[tokio::test]
    async fn a_request_answered_later_than_the_idle_limit_is_answered() {
        let (bounded, address) = listening(4, 200, 5_000).await;
        let app = axum::Router::new().route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(1200)).await;
                "done"
            }),
        );
        tokio::spawn(async move { axum::serve(bounded, app).await });
        let client = reqwest::Client::new();
        let url = format!("http://{address}/slow");
        let answer = client.get(&url).send().await.unwrap();
        assert_eq!(answer.text().await.unwrap(), "done");
        // Again on the same connection: after an answer, the client is held to `idle`
        // again, and a quick next request is served.
        let answer = client.get(&url).send().await.unwrap();
        assert_eq!(answer.text().await.unwrap(), "done");

        // Headers begun and never ended are still cut at `idle`, even after an answer.
        let mut raw = TcpStream::connect(address).await.unwrap();
        raw.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), raw.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "a half-sent request was not cut");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
}
