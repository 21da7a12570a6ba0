//! The change feed of the admin API: each subscriber reads the outbox with a cursor of
//! its own, from where it says it was (`Last-Event-ID`) or from now, so a reconnect
//! resumes without a gap or a duplicate.
//!
//! A subscriber's cursor is attached while it reads, so the outbox keeps what it has not
//! been sent — up to `max-step-lag` changes, like an event step's: one that falls further
//! behind (a client that stopped reading) is sent `lost` and its feed ends, instead of the
//! host keeping the stream for it forever. Once its connection drops, the cursor is gone
//! with it; what it had been sent but not received is kept by the `feed-window` (the last
//! changes, whoever has passed them), so that it resumes where it was.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use synchro_admin::{FeedEvent, FeedRequest};
use synchro_model::{Error, ErrorKind};
use synchro_store::{Db, Start};
use tokio::sync::mpsc;

/// The prefix of a feed subscriber's cursor name.
pub const READER_PREFIX: &str = "feed:";
/// Changes read from the outbox at a time.
const BATCH: usize = 512;
/// Changes waiting for a slow subscriber's connection before its reader waits too.
const QUEUED: usize = 1024;

static SUBSCRIBERS: AtomicU64 = AtomicU64::new(0);

/// Whether `reader` is a feed subscriber's cursor.
pub fn is_feed(reader: &str) -> bool {
    reader.starts_with(READER_PREFIX)
}

/// Subscribes to the change stream as `request` asks; refused (with what to do) when
/// the changes after its position are no longer kept, or never were.
pub fn open(db: &Arc<Db>, request: FeedRequest) -> Result<mpsc::Receiver<FeedEvent>, Error> {
    let failed = |e: synchro_store::DbError| Error::new(e.kind(), e.to_string());
    let last = db.last_change();
    let after = request.after.unwrap_or(last);
    if after > last {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "change {after} is past this host's last ({last}): the stream it came from is \
                 not this one; subscribe again without Last-Event-ID"
            ),
        ));
    }
    let name = format!(
        "{READER_PREFIX}{}",
        SUBSCRIBERS.fetch_add(1, Ordering::Relaxed)
    );
    // Attached before the check: from now on, nothing after `after` is dropped.
    let mut cursor = db.cursor(&name, Start::After(after)).map_err(failed)?;
    let oldest = db.oldest_change().map_err(failed)?;
    if after < last && oldest.is_none_or(|oldest| oldest > after + 1) {
        let kept = oldest.map_or("the outbox keeps none now".to_owned(), |o| {
            format!("the oldest kept is {o}")
        });
        return Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "the changes after {after} are no longer kept ({kept}): subscribe again \
                 without Last-Event-ID, or with `after` one before the oldest kept"
            ),
        ));
    }
    let (events, feed) = mpsc::channel(QUEUED);
    let only = request.only;
    tokio::spawn(async move {
        let mut position = after;
        loop {
            let batch = tokio::select! {
                batch = cursor.next_batch(BATCH) => batch,
                () = events.closed() => return,
            };
            let batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(reader = name, "the change feed stopped: {error}");
                    return;
                }
            };
            for (seq, record) in batch {
                if seq > position + 1 {
                    let missed = seq - position - 1;
                    let _ = events.send(FeedEvent::Lost { missed }).await;
                    return;
                }
                position = seq;
                let Ok(message) = synchro_bus::record_message(&record) else {
                    tracing::error!(
                        reader = name,
                        seq,
                        "a change record in the outbox is damaged; skipped"
                    );
                    continue;
                };
                if !only.matches(&message) {
                    continue;
                }
                let change = FeedEvent::Change {
                    seq,
                    json: message.payload,
                };
                if events.send(change).await.is_err() {
                    return;
                }
            }
            // What the subscriber was sent (or did not want) need not be kept for it.
            if cursor.handled(position).await.is_err() {
                return;
            }
        }
    });
    Ok(feed)
}
