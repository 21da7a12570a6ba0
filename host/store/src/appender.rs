//! Group commit for changes that describe no write of the database (`emit-change`).
//!
//! One fsync per change would hold a plugin emitting in a loop to the disk's sync rate.
//! Instead a change is queued and a [`Ticket`] returned at once; one thread appends
//! everything queued in one transaction (one fsync), again and again, lingering a
//! millisecond for a batch to gather when little is queued. A caller that must
//! not go on before its changes are durable — an event step about to commit the offset of
//! the event that caused them — waits for its ticket with [`Appender::durable`]. The queue
//! is bounded in bytes: past it, callers wait for the disk (back-pressure).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::Db;

/// Bytes queued before callers wait for the queue to be written.
const MAX_QUEUED_BYTES: usize = 16 << 20;
/// Changes worth a transaction at once; below it, the writer waits [`LINGER`] for more.
const FULL_BATCH: usize = 1024;
const LINGER: Duration = Duration::from_millis(1);
/// The longest pause between two attempts to write the queue after a failure.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// The order of a queued change: durable once [`Appender::durable`] reaches it.
pub type Ticket = u64;

/// Queues change records and writes them to the outbox in batches.
pub struct Appender {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
    /// The last ticket written.
    durable: watch::Sender<Ticket>,
}

#[derive(Default)]
struct Queue {
    records: Vec<Vec<u8>>,
    bytes: usize,
    /// The last ticket given.
    issued: Ticket,
    closed: bool,
    /// The writer waits for work: only then does a caller need to wake it.
    idle: bool,
}

impl Appender {
    /// Starts the thread that writes to `db`.
    pub fn new(db: Arc<Db>) -> Appender {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            work: Condvar::new(),
            durable: watch::Sender::new(0),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("synchro-outbox".into())
            .spawn(move || writer.write_until_closed(&db))
            .expect("a thread for the outbox");
        Appender { shared }
    }

    /// Queues `record`, waiting while the queue is full; its ticket says when it is durable.
    pub async fn append(&self, record: Vec<u8>) -> Ticket {
        // Subscribed only once the queue was found full, and looked at again before any
        // wait: a write that ends in between is then still seen.
        let mut durable: Option<watch::Receiver<Ticket>> = None;
        loop {
            {
                let mut queue = self.shared.queue.lock().unwrap();
                if queue.bytes < MAX_QUEUED_BYTES {
                    queue.bytes += record.len();
                    queue.records.push(record);
                    queue.issued += 1;
                    if queue.idle {
                        self.shared.work.notify_one();
                    }
                    return queue.issued;
                }
            }
            match &mut durable {
                None => durable = Some(self.shared.durable.subscribe()),
                Some(durable) => {
                    let _ = durable.changed().await;
                }
            }
        }
    }

    /// The last ticket given: waiting for it covers every change queued so far.
    pub fn issued(&self) -> Ticket {
        self.shared.queue.lock().unwrap().issued
    }

    /// The last ticket durable now.
    pub fn written(&self) -> Ticket {
        *self.shared.durable.borrow()
    }

    /// Waits until the change of `ticket`, and every one before it, is durable.
    pub async fn durable(&self, ticket: Ticket) {
        let mut durable = self.shared.durable.subscribe();
        // The sender lives as long as `self`: waiting cannot fail.
        let _ = durable.wait_for(|done| *done >= ticket).await;
    }
}

impl Drop for Appender {
    /// Lets the thread write what is queued, then end.
    fn drop(&mut self) {
        self.shared.queue.lock().unwrap().closed = true;
        self.shared.work.notify_one();
    }
}

impl Shared {
    fn write_until_closed(&self, db: &Db) {
        let mut pause = Duration::from_millis(50);
        loop {
            let (records, last) = {
                let mut queue = self.queue.lock().unwrap();
                while queue.records.is_empty() && !queue.closed {
                    queue.idle = true;
                    queue = self.work.wait(queue).unwrap();
                    queue.idle = false;
                }
                if queue.records.is_empty() {
                    return;
                }
                if queue.records.len() < FULL_BATCH && !queue.closed {
                    // Let a batch gather: a writer woken for every change costs each
                    // caller a wake-up and writes batches of one.
                    drop(queue);
                    std::thread::sleep(LINGER);
                    queue = self.queue.lock().unwrap();
                }
                queue.bytes = 0;
                (std::mem::take(&mut queue.records), queue.issued)
            };
            // A failure (a full disk) keeps the batch: it is written when the disk takes
            // it, and meanwhile the queue fills and holds the callers back.
            while let Err(error) = db.append_changes(&records) {
                tracing::error!(
                    "writing {} changes to the outbox: {error}; retrying in {pause:?}",
                    records.len()
                );
                std::thread::sleep(pause);
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            }
            self.durable.send_replace(last);
        }
    }
}
