//! The relay: publishes the outbox, in order, to the Kafka topic `changes`, for the event
//! steps and everyone else that read it there.
//!
//! Its cursor is saved: a change committed while the broker was away is published when it
//! is back, and a restart resumes where the relay stopped (at least once). The embedded
//! bus has no relay: it forgets everything at exit, so event steps read `changes` from
//! the outbox itself (`synchro_roles`'s event-step input).

use std::sync::Arc;
use std::time::Duration;

use synchro_bus::kafka::Kafka;
use synchro_bus::{Bus, Message};
use synchro_store::{Cursor, Db, Start};
use tokio::sync::watch;

/// Changes read from the outbox at a time.
const BATCH: usize = 1024;
/// The longest pause between two attempts to publish a change the bus refused.
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// The relay's cursor name.
const READER: &str = "relay";

/// A running relay: the last sequence number it published.
pub struct Relay {
    published: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub fn start(db: &Arc<Db>, kafka: Kafka) -> Result<Relay, synchro_store::DbError> {
        let cursor = db.cursor(READER, Start::Saved)?;
        let (tx, published) = watch::channel(cursor.position());
        let task = tokio::spawn(async move { run(cursor, Bus::Kafka(kafka), tx).await });
        Ok(Relay { published, task })
    }

    /// Waits until `deadline` at most for the relay to publish every change committed so
    /// far, then stops it; what it did not publish, it publishes at the next start.
    pub async fn drain(mut self, db: &Db, deadline: tokio::time::Instant) {
        let left =
            synchro_store::wait_handled(&mut self.published, db.last_change(), deadline).await;
        if left > 0 {
            tracing::warn!("stopping with {left} changes not yet relayed to the bus");
        }
        self.task.abort();
    }
}

async fn run(mut cursor: Cursor, bus: Bus, published: watch::Sender<u64>) {
    loop {
        let batch = match cursor.next_batch(BATCH).await {
            Ok(batch) => batch,
            Err(error) => {
                tracing::error!("reading the outbox: {error}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for (seq, record) in &batch {
            match synchro_bus::record_message(record) {
                Ok(message) => publish(&bus, message, *seq).await,
                Err(error) => tracing::error!(seq, "{error}; it is skipped"),
            }
        }
        let Some((last, _)) = batch.last() else {
            continue;
        };
        if let Err(error) = cursor.handled(*last).await {
            tracing::warn!("saving the relay's position: {error}");
        }
        published.send_replace(*last);
    }
}

/// Publishes `message`, retrying until the bus takes it: the changes after it wait.
async fn publish(bus: &Bus, message: Message, seq: u64) {
    let mut pause = Duration::from_millis(100);
    loop {
        match bus.publish(message.clone()).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(seq, "publishing a change: {error}; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}
