//! The change feed as Server-Sent Events. A change is framed once, by the host's reader,
//! for every subscriber it goes to ([`ChangeEvent`]); each connection's body then only
//! gathers what is ready into one write, so that a hundred subscribers cost a hundred
//! copies of the bytes, not a hundred encodings and a system call per change.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use crate::FeedEvent;

/// How often an idle feed sends a comment, so that neither end takes it for dead.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The most bytes of events gathered into one write.
const GATHER: usize = 64 * 1024;

/// A change framed as a Server-Sent Event: `id` its sequence number, `event: change`,
/// `data` its notification. Cloning shares the bytes.
#[derive(Debug, Clone)]
pub struct ChangeEvent(Bytes);

impl ChangeEvent {
    /// The event of change `seq`, whose notification is `json`.
    pub fn new(seq: u64, json: &[u8]) -> ChangeEvent {
        let mut frame = Vec::with_capacity(json.len() + 48);
        frame.extend_from_slice(format!("id: {seq}\nevent: change\n").as_bytes());
        data_lines(&mut frame, json);
        frame.push(b'\n');
        ChangeEvent(frame.into())
    }
}

/// `text` as `data:` lines: an event's data holds no line break (CR, LF and CRLF each
/// end a line), so a text of several lines takes one line each, which the client joins
/// with LF again.
fn data_lines(frame: &mut Vec<u8>, text: &[u8]) {
    let mut rest = text;
    loop {
        let end = rest
            .iter()
            .position(|b| *b == b'\n' || *b == b'\r')
            .unwrap_or(rest.len());
        frame.extend_from_slice(b"data: ");
        frame.extend_from_slice(&rest[..end]);
        frame.push(b'\n');
        if end == rest.len() {
            return;
        }
        let skip = if rest[end..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
}

fn frame(event: FeedEvent) -> Bytes {
    match event {
        FeedEvent::Change(change) => change.0,
        FeedEvent::Lost { missed } => format!(
            "event: lost\ndata: {missed} changes were dropped from the outbox before this \
             subscriber was sent them; subscribe again without Last-Event-ID\n\n"
        )
        .into(),
    }
}

/// The streaming response of a subscription: its events as they come, a comment after
/// [`KEEP_ALIVE`] without one; it ends when the feed does.
pub fn response(events: mpsc::Receiver<FeedEvent>) -> Response {
    let mut keep_alive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let body = Body::from_stream(Frames { events, keep_alive });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

struct Frames {
    events: mpsc::Receiver<FeedEvent>,
    keep_alive: tokio::time::Interval,
}

impl tokio_stream::Stream for Frames {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let first = match self.events.poll_recv(cx) {
            Poll::Ready(Some(event)) => frame(event),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {
                return match self.keep_alive.poll_tick(cx) {
                    Poll::Ready(_) => Poll::Ready(Some(Ok(Bytes::from_static(b":\n\n")))),
                    Poll::Pending => Poll::Pending,
                };
            }
        };
        self.keep_alive.reset();
        // What else is ready goes in the same write.
        let mut gathered: Option<Vec<u8>> = None;
        while gathered.as_ref().map_or(first.len(), Vec::len) < GATHER {
            let Poll::Ready(Some(event)) = self.events.poll_recv(cx) else {
                break;
            };
            gathered
                .get_or_insert_with(|| first.to_vec())
                .extend_from_slice(&frame(event));
        }
        Poll::Ready(Some(Ok(gathered.map_or(first, Bytes::from))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_holds_each_line_of_its_data_on_a_line_of_its_own() {
        let event = ChangeEvent::new(7, br#"{"a":1}"#);
        assert_eq!(&event.0[..], b"id: 7\nevent: change\ndata: {\"a\":1}\n\n");
        let lines = ChangeEvent::new(8, b"a\r\nb\rc\nd");
        assert_eq!(
            &lines.0[..],
            b"id: 8\nevent: change\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }
}
