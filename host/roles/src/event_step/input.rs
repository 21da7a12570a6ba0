//! What an event step reads: its topics on the bus — and, on the embedded bus, the host
//! topic `changes` straight from the outbox.
//!
//! The embedded bus forgets everything at exit, so a change relayed into it and not yet
//! handled would be lost by a crash. There the outbox is the durable log of changes: a
//! step reading `changes` keeps a cursor in it under its consumer group's name, moved when
//! a change is committed, exactly as a Kafka group's offset. On Kafka the relay publishes
//! the outbox to the `changes` topic and the step reads it there like any topic.

use std::collections::VecDeque;
use std::sync::Arc;

use synchro_bus::{Bus, BusError, CHANGES, Consumer, Delivery, StartFrom, Topics};
use synchro_store::{Cursor, Db, DbError, Start};

use super::Events;

/// Changes read from the outbox at a time.
const BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("reading the change stream: {0}")]
    Outbox(#[from] DbError),
}

pub struct Input {
    /// `None` when every topic the step reads is `changes` from the outbox.
    bus: Option<Consumer>,
    changes: Option<Changes>,
}

/// The step's cursor in the outbox and the changes read but not yet handed out.
struct Changes {
    cursor: Cursor,
    read: VecDeque<(u64, Vec<u8>)>,
}

/// Where the step starts in the outbox when it reads `changes` from it (on the embedded
/// bus); `None` when it does not.
fn outbox_start(bus: &Bus, events: &Events) -> Option<Start> {
    let from_outbox = matches!(bus, Bus::Embedded(_)) && events.topics.matches(CHANGES);
    from_outbox.then_some(match events.start {
        StartFrom::Earliest => Start::SavedElseOldest,
        StartFrom::Latest => Start::Saved,
    })
}

/// Saves the step's place in the outbox, when it reads `changes` from there, before its
/// runner joins: from then on the outbox keeps for it every change after that place. A
/// trim between the step's load and its first read would otherwise drop what a step that
/// starts at `earliest` must see (changes a collector made while it loaded).
pub fn reserve(bus: &Bus, db: &Arc<Db>, events: &Events) -> Result<(), DbError> {
    if let Some(start) = outbox_start(bus, events) {
        db.cursor(&events.group, start)?;
    }
    Ok(())
}

impl Input {
    /// Joins `events.group` on the bus, and attaches its cursor in the outbox when the
    /// step reads `changes` from it.
    pub fn join(bus: &Bus, db: &Arc<Db>, events: &Events) -> Result<Input, InputError> {
        let from_outbox = outbox_start(bus, events);
        let changes = match from_outbox {
            Some(start) => Some(Changes {
                cursor: db.cursor(&events.group, start)?,
                read: VecDeque::new(),
            }),
            None => None,
        };
        let from_outbox = from_outbox.is_some();
        let topics = match &events.topics {
            Topics::Names(names) if from_outbox => {
                let rest: Vec<String> = names.iter().filter(|n| *n != CHANGES).cloned().collect();
                (!rest.is_empty()).then_some(Topics::Names(rest))
            }
            topics => Some(topics.clone()),
        };
        let bus = topics
            .map(|topics| bus.consume(&events.group, topics, events.start))
            .transpose()?;
        Ok(Input { bus, changes })
    }

    /// Messages on the bus topics the step reads that it has not been handed yet (what it
    /// reads of `changes` from the outbox is its cursor's lag, reported with the outbox).
    pub fn bus_lag(&self) -> u64 {
        self.bus.as_ref().map_or(0, Consumer::lag)
    }

    /// The next message, from whichever source has one first. Cancel-safe.
    pub async fn next(&mut self) -> Result<Delivery, InputError> {
        loop {
            if let Some(delivery) = self.buffered() {
                return Ok(delivery);
            }
            let Input { bus, changes } = self;
            let from_bus = async {
                match bus.as_mut() {
                    Some(consumer) => consumer.next().await,
                    None => std::future::pending().await,
                }
            };
            let from_outbox = async {
                match changes.as_mut() {
                    Some(changes) => changes.cursor.next_batch(BATCH).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                delivery = from_bus => return Ok(delivery?),
                batch = from_outbox => {
                    let batch = batch?;
                    changes.as_mut().expect("read from it").read.extend(batch);
                }
            }
        }
    }

    /// The next message if one is at hand: a change already read from the outbox, or a
    /// message the bus has ready. Waits for nothing and starts no read of the outbox (a
    /// read begun and dropped would be begun again by [`Input::next`]).
    pub fn next_ready(&mut self) -> Option<Result<Delivery, InputError>> {
        if let Some(delivery) = self.buffered() {
            return Some(Ok(delivery));
        }
        let consumer = self.bus.as_mut()?;
        ready_now(consumer.next()).map(|next| next.map_err(InputError::from))
    }

    /// The oldest change read from the outbox and not yet handed out.
    fn buffered(&mut self) -> Option<Delivery> {
        let changes = self.changes.as_mut()?;
        while let Some((seq, record)) = changes.read.pop_front() {
            match synchro_bus::record_message(&record) {
                Ok(message) => {
                    return Some(Delivery {
                        message: Arc::new(message),
                        partition: 0,
                        offset: seq as i64,
                    });
                }
                // Handled by the next commit after it; it cannot be handed to a plugin.
                Err(error) => tracing::error!(seq, "{error}; it is skipped"),
            }
        }
        None
    }

    /// Commits `delivery` and everything before it from its source.
    pub async fn commit(&mut self, delivery: &Delivery) -> Result<(), InputError> {
        match (&mut self.changes, &mut self.bus) {
            (Some(changes), _) if delivery.message.topic == CHANGES => {
                Ok(changes.cursor.handled(delivery.offset as u64).await?)
            }
            (_, Some(consumer)) => Ok(consumer.commit(delivery)?),
            (_, None) => Ok(()),
        }
    }
}

/// The output of `future` if it is ready without waiting; dropped otherwise (the bus's
/// `next` is cancel-safe: a dropped call loses nothing).
fn ready_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}
