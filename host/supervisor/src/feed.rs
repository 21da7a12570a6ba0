//! The change feed of the admin API: each subscriber gets the change stream from where it
//! says it was (`Last-Event-ID`) or from now, so a reconnect resumes without a gap or a
//! duplicate.
//!
//! One reader of the host, the feed's *fan-out*, reads and decodes the outbox once for
//! every subscriber that is caught up, and broadcasts its batches; a subscriber that
//! starts in the past, or falls behind the broadcast (a slow client), reads the outbox
//! with a cursor of its own until it is caught up, then takes the broadcast again. So a
//! hundred subscribers cost one read and one decoding of each change, not a hundred.
//!
//! Every subscriber's cursor stays attached while it reads, so the outbox keeps what it
//! has not been sent — up to `max-step-lag` changes, like an event step's: one that falls
//! further behind (a client that stopped reading) is sent `lost` and its feed ends,
//! instead of the host keeping the stream for it forever. Once its connection drops, the
//! cursor is gone with it; what it had been sent but not received is kept by the
//! `feed-window` (the last changes, whoever has passed them), so that it resumes where it
//! was.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use synchro_admin::{ChangeEvent, FeedEvent, FeedRequest};
use synchro_bus::{ChangeFilter, RecordHead};
use synchro_model::{Error, ErrorKind, Operation};
use synchro_store::{Cursor, Db, DbError, Start};
use tokio::sync::{Notify, broadcast, mpsc};

/// The prefix of a feed subscriber's cursor name.
const READER_PREFIX: &str = "feed:";
/// The fan-out's cursor name.
const FAN_OUT: &str = "feed:fan-out";
/// Changes read from the outbox at a time.
const BATCH: usize = 512;
/// Changes waiting for a slow subscriber's connection before its reader waits too.
const QUEUED: usize = 1024;
/// Batches the fan-out keeps for subscribers that have not taken them yet: one that falls
/// further behind reads the outbox itself.
const SHARED_BATCHES: usize = 64;

static SUBSCRIBERS: AtomicU64 = AtomicU64::new(0);

/// Whether `reader` is a feed subscriber's cursor (or the fan-out's).
pub fn is_feed(reader: &str) -> bool {
    reader.starts_with(READER_PREFIX)
}

/// A change as the feed shares it: what the filters read, and its event, framed once.
struct FeedChange {
    seq: u64,
    kind: Box<str>,
    operation: Operation,
    source: Box<str>,
    event: ChangeEvent,
}

/// Changes read in one go, decoded: they follow change `from` and end with change `to`
/// (a damaged record among them is left out, logged once by whoever decoded it).
struct Batch {
    from: u64,
    to: u64,
    changes: Vec<FeedChange>,
}

impl Batch {
    /// Decodes what a cursor read; `None` for nothing read.
    fn decode(reader: &str, records: Vec<(u64, Vec<u8>)>) -> Option<Batch> {
        let from = records.first()?.0 - 1;
        let to = records.last()?.0;
        let changes = records
            .iter()
            .filter_map(|(seq, record)| match RecordHead::parse(record) {
                Ok(head) => Some(FeedChange {
                    seq: *seq,
                    kind: head.kind.into(),
                    operation: head.operation,
                    source: head.source.into(),
                    event: ChangeEvent::new(*seq, head.json),
                }),
                Err(_) => {
                    tracing::error!(
                        reader,
                        seq,
                        "a change record in the outbox is damaged; skipped"
                    );
                    None
                }
            })
            .collect();
        Some(Batch { from, to, changes })
    }
}

/// The fan-out's latest batch and the channel that shares the batches.
struct Live {
    /// The last change broadcast: a subscriber from now on receives what follows it.
    head: u64,
    batches: broadcast::Sender<Arc<Batch>>,
}

struct Shared {
    live: Mutex<Live>,
    /// Wakes an idle fan-out (nobody subscribed) when a subscriber comes.
    subscribed: Notify,
}

impl Shared {
    /// Takes the broadcast from here on, with the last change it sent before.
    fn subscribe(&self) -> (broadcast::Receiver<Arc<Batch>>, u64) {
        let live = self.live.lock().unwrap();
        let receiver = live.batches.subscribe();
        let head = live.head;
        drop(live);
        self.subscribed.notify_one();
        (receiver, head)
    }
}

/// The change feed: subscribes clients of the admin API to the change stream.
pub struct Feed {
    db: Arc<Db>,
    shared: Arc<Shared>,
    fan_out: tokio::task::JoinHandle<()>,
}

impl Feed {
    /// Starts the fan-out; it reads the outbox only while someone subscribes.
    pub fn start(db: &Arc<Db>) -> Feed {
        let shared = Arc::new(Shared {
            live: Mutex::new(Live {
                head: db.last_change(),
                batches: broadcast::channel(SHARED_BATCHES).0,
            }),
            subscribed: Notify::new(),
        });
        let fan_out = tokio::spawn(fan_out(db.clone(), shared.clone()));
        Feed {
            db: db.clone(),
            shared,
            fan_out,
        }
    }

    /// Subscribes to the change stream as `request` asks; refused (with what to do) when
    /// the changes after its position are no longer kept, or never were.
    pub fn open(&self, request: FeedRequest) -> Result<mpsc::Receiver<FeedEvent>, Error> {
        let failed = |e: DbError| Error::new(e.kind(), e.to_string());
        let db = &self.db;
        let last = db.last_change();
        let after = request.after.unwrap_or(last);
        if after > last {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "change {after} is past this host's last ({last}): the stream it came \
                     from is not this one; subscribe again without Last-Event-ID"
                ),
            ));
        }
        let name = format!(
            "{READER_PREFIX}{}",
            SUBSCRIBERS.fetch_add(1, Ordering::Relaxed)
        );
        // Attached before the check: from now on, nothing after `after` is dropped.
        let cursor = db.cursor(&name, Start::After(after)).map_err(failed)?;
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
        let subscriber = Subscriber {
            name,
            cursor,
            position: after,
            only: request.only,
            events,
        };
        tokio::spawn(subscriber.run(self.shared.clone()));
        Ok(feed)
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.fan_out.abort();
    }
}

/// Reads the outbox and broadcasts each batch while anyone subscribes; idle (no cursor,
/// holding nothing back) while nobody does.
async fn fan_out(db: Arc<Db>, shared: Arc<Shared>) {
    loop {
        while shared.live.lock().unwrap().batches.receiver_count() == 0 {
            shared.subscribed.notified().await;
        }
        // From the end: a subscriber behind it reads the rest with its own cursor.
        let cursor = match db.cursor(FAN_OUT, Start::End) {
            Ok(cursor) => cursor,
            Err(error) => {
                tracing::warn!("the change feed cannot read the outbox: {error}");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        shared.live.lock().unwrap().head = cursor.position();
        if let Err(error) = broadcast_while_subscribed(cursor, &shared).await {
            tracing::warn!("the change feed's reader stopped: {error}");
        }
    }
}

async fn broadcast_while_subscribed(mut cursor: Cursor, shared: &Shared) -> Result<(), DbError> {
    loop {
        let Some(batch) = Batch::decode(FAN_OUT, cursor.next_batch(BATCH).await?) else {
            continue;
        };
        let to = batch.to;
        let subscribed = {
            let mut live = shared.live.lock().unwrap();
            live.head = to;
            live.batches.send(Arc::new(batch)).is_ok()
        };
        cursor.handled(to).await?;
        if !subscribed {
            return Ok(());
        }
    }
}

/// One client's subscription.
struct Subscriber {
    name: String,
    /// Attached all along, at `position`: the outbox keeps what this one was not sent.
    cursor: Cursor,
    /// The last change this subscriber was sent or did not want.
    position: u64,
    only: ChangeFilter,
    events: mpsc::Sender<FeedEvent>,
}

/// What a subscriber does after a batch.
enum Next {
    Read,
    /// The batch starts after a change this subscriber has not had.
    Gap,
    /// The subscriber is gone, or its feed ended.
    Stop,
}

impl Subscriber {
    async fn run(mut self, shared: Arc<Shared>) {
        let events = self.events.clone();
        tokio::select! {
            () = self.serve(&shared) => {}
            () = events.closed() => {}
        }
    }

    async fn serve(&mut self, shared: &Shared) {
        loop {
            // Behind: from the outbox, until nothing more is committed.
            while self.cursor.has_more() {
                if !matches!(self.read_own().await, Next::Read) {
                    return;
                }
            }
            // Caught up: from the broadcast, after reading what it sent before.
            let (mut shared_batches, head) = shared.subscribe();
            while self.position < head {
                if !matches!(self.read_own().await, Next::Read) {
                    return;
                }
            }
            loop {
                match shared_batches.recv().await {
                    Ok(batch) => match self.take(&batch).await {
                        Next::Read => {}
                        Next::Gap => break,
                        Next::Stop => return,
                    },
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        tracing::debug!(
                            reader = self.name,
                            position = self.position,
                            "a subscriber fell behind the shared feed; it reads the outbox"
                        );
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }

    /// Reads and sends a batch from the outbox with this subscriber's own cursor; `Stop`
    /// (after `lost`) when the outbox dropped changes it was not sent.
    async fn read_own(&mut self) -> Next {
        let records = match self.cursor.next_batch(BATCH).await {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(reader = self.name, "the change feed stopped: {error}");
                return Next::Stop;
            }
        };
        let Some(batch) = Batch::decode(&self.name, records) else {
            return Next::Read;
        };
        if batch.from > self.position {
            let missed = batch.from - self.position;
            let _ = self.events.send(FeedEvent::Lost { missed }).await;
            return Next::Stop;
        }
        self.take(&batch).await
    }

    /// Sends what this subscriber wants of `batch` and has not had.
    async fn take(&mut self, batch: &Batch) -> Next {
        if batch.to <= self.position {
            return Next::Read;
        }
        if batch.from > self.position {
            return Next::Gap;
        }
        for change in &batch.changes {
            if change.seq <= self.position
                || !self
                    .only
                    .takes(&change.kind, change.operation, &change.source)
            {
                continue;
            }
            if self
                .events
                .send(FeedEvent::Change(change.event.clone()))
                .await
                .is_err()
            {
                return Next::Stop;
            }
        }
        self.position = batch.to;
        // What the subscriber was sent (or did not want) need not be kept for it.
        match self.cursor.handled(batch.to).await {
            Ok(()) => Next::Read,
            Err(_) => Next::Stop,
        }
    }
}
