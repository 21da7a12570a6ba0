//! The admin API's listener: a bounded number of connections, each closed when its client
//! goes quiet.
//!
//! Without bounds a local client could hold thousands of connections open (each a file
//! descriptor of the host) or trickle a request's headers forever.

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

pub struct Bounded {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    idle: Duration,
}

impl Bounded {
    pub fn new(listener: TcpListener, connections: usize, idle: Duration) -> Bounded {
        Bounded {
            listener,
            slots: Arc::new(Semaphore::new(connections)),
            idle,
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
                        deadline: Box::pin(tokio::time::sleep(self.idle)),
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

/// A connection that fails its pending read once its client has sent nothing for `idle`,
/// holding one of the listener's slots until it is dropped.
pub struct Quiet {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl AsyncRead for Quiet {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                let idle = this.idle;
                this.deadline.as_mut().reset(Instant::now() + idle);
                Poll::Ready(result)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent nothing for too long",
                ))),
                Poll::Pending => Poll::Pending,
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
        Pin::new(&mut self.stream).poll_write(cx, buf)
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

    #[tokio::test]
    async fn a_quiet_client_is_cut_and_slots_bound_the_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut bounded = Bounded::new(listener, 1, Duration::from_millis(200));

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
}
