//! The relay: publishes the outbox, in order, to the bus topic `changes`, for the event
//! steps that read it there (and, on Kafka, for everyone else).
//!
//! On Kafka the relay's cursor is saved: a change committed while the broker was away
//! is published when it is back, and a restart resumes where the relay stopped (at least
//! once). The embedded bus forgets everything at exit, and its consumers with it, so there
//! the relay starts at the end of the outbox.

use std::sync::Arc;
use std::time::Duration;

use synchro_bus::Bus;
use synchro_store::{Cursor, Db, Start};
use tokio::sync::watch;

/// Changes read from the outbox at a time.
const BATCH: usize = 1024;
/// The longest pause between two attempts to publish a change the bus refused.
const MAX_PAUSE: Duration = Duration::from_secs(10);
/// How often the outbox drops what every reader has passed.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// The relay's cursor name.
const READER: &str = "relay";

/// A running relay: the last sequence number it published.
pub struct Relay {
    published: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub fn start(db: &Arc<Db>, bus: Bus) -> Result<Relay, synchro_store::DbError> {
        let start = match bus {
            Bus::Embedded(_) => Start::End,
            Bus::Kafka(_) => Start::Saved,
        };
        let cursor = db.cursor(READER, start)?;
        let (tx, published) = watch::channel(cursor.position());
        let db = db.clone();
        let task = tokio::spawn(async move { run(db, cursor, bus, tx).await });
        Ok(Relay { published, task })
    }

    /// Waits until `deadline` at most for the relay to publish every change committed so
    /// far, then stops it; what it did not publish, it publishes at the next start (Kafka).
    pub async fn drain(mut self, db: &Db, deadline: tokio::time::Instant) {
        let last = db.last_change();
        if tokio::time::timeout_at(deadline, self.published.wait_for(|p| *p >= last))
            .await
            .is_err()
        {
            tracing::warn!(
                "stopping with {} changes not yet relayed to the bus",
                last.saturating_sub(*self.published.borrow())
            );
        }
        self.task.abort();
    }
}

async fn run(db: Arc<Db>, mut cursor: Cursor, bus: Bus, published: watch::Sender<u64>) {
    let mut trim = tokio::time::interval(TRIM_EVERY);
    trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = tokio::select! {
            next = cursor.next_batch(BATCH) => next,
            _ = trim.tick() => {
                trim_outbox(&db).await;
                continue;
            }
        };
        let batch = match next {
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

/// Drops what every reader of the outbox has passed.
async fn trim_outbox(db: &Arc<Db>) {
    let db = db.clone();
    match tokio::task::spawn_blocking(move || db.trim_changes()).await {
        Ok(Ok(dropped)) => tracing::debug!(dropped, "outbox trimmed"),
        Ok(Err(error)) => tracing::warn!("trimming the outbox: {error}"),
        Err(error) => tracing::warn!("trimming the outbox: {error}"),
    }
}

/// Publishes `message`, retrying until the bus takes it: the changes after it wait.
async fn publish(bus: &Bus, message: synchro_bus::Message, seq: u64) {
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
