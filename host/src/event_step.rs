//! Runs event steps (the XOS semantics, minus its bugs).
//!
//! Each event step is its own consumer group and handles its messages in order, one at
//! a time: a slow plugin slows its consumer, which applies back-pressure instead of
//! buffering without bound. A message is committed only after `process-event`
//! succeeded, or after it was published to the dead-letter topic once its retries were
//! spent: nothing is lost, and a poison message does not stop the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::bus::{Consumer, Delivery, Message};
use crate::capability::{CallContext, Services};
use crate::manifest::Events;
use crate::plugin::Plugin;
use crate::runtime::{CallError, EventSession, Runtime};

/// An instance idle this long is dropped; the next message gets a fresh one.
const IDLE: Duration = Duration::from_millis(200);
/// The longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct EventStep {
    plugin: Arc<Plugin>,
    runtime: Arc<Runtime>,
    services: Services,
    events: Events,
    stats: Arc<Stats>,
}

/// What an event step has done since it started.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages handled successfully and committed.
    pub processed: AtomicU64,
    /// Failed attempts that were retried.
    pub retried: AtomicU64,
    /// Messages sent to the dead-letter topic.
    pub dead_lettered: AtomicU64,
}

/// An instance and how many events it has handled.
struct Session {
    session: EventSession,
    served: usize,
}

enum Handled {
    /// Processed, or dead-lettered: commit it.
    Done,
    /// Shutdown came first: leave it uncommitted, to be delivered again.
    Stopped,
}

impl EventStep {
    pub fn new(plugin: Arc<Plugin>, runtime: Arc<Runtime>, services: Services) -> EventStep {
        let events = plugin
            .manifest
            .events
            .clone()
            .expect("event steps are validated to have [events]");
        EventStep {
            plugin,
            runtime,
            services,
            events,
            stats: Arc::default(),
        }
    }

    /// Counters that stay readable while the step runs.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Consumes until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let Some(mut consumer) = self.join(&mut shutdown).await else {
            return;
        };
        let mut session: Option<Session> = None;
        loop {
            let next = tokio::select! {
                next = consumer.next() => next,
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = tokio::time::sleep(IDLE), if session.is_some() => {
                    session = None;
                    continue;
                }
            };
            let delivery = match next {
                Ok(delivery) => delivery,
                Err(error) => {
                    tracing::warn!(plugin = %self.plugin.name, "consuming: {error}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            match self.handle(&mut session, &delivery, &mut shutdown).await {
                Handled::Done => {
                    if let Err(error) = consumer.commit(&delivery) {
                        // The message will be delivered again: handling is idempotent.
                        tracing::warn!(plugin = %self.plugin.name, "commit failed: {error}");
                    }
                }
                Handled::Stopped => return,
            }
        }
    }

    /// Joins the consumer group, retrying with backoff while the bus refuses.
    async fn join(&self, shutdown: &mut watch::Receiver<bool>) -> Option<Consumer> {
        let mut pause = self.events.backoff;
        loop {
            match self.services.bus.consume(
                &self.events.group,
                self.events.topics.clone(),
                self.events.start,
            ) {
                Ok(consumer) => return Some(consumer),
                Err(error) => {
                    tracing::warn!(plugin = %self.plugin.name, "cannot consume yet ({error}); retrying in {pause:?}")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => pause = (pause * 2).min(MAX_BACKOFF),
                _ = shutdown.wait_for(|stop| *stop) => return None,
            }
        }
    }

    async fn session<'s>(
        &self,
        session: &'s mut Option<Session>,
    ) -> Result<&'s mut Session, CallError> {
        if session.is_none() {
            let call = CallContext::new(&self.plugin, &self.services);
            let fresh = self
                .runtime
                .event_session(&self.plugin.prepared, call)
                .await?;
            *session = Some(Session {
                session: fresh,
                served: 0,
            });
        }
        Ok(session.as_mut().expect("just set"))
    }

    async fn handle(
        &self,
        session: &mut Option<Session>,
        delivery: &Delivery,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Handled {
        let mut attempt: u32 = 0;
        let mut pause = self.events.backoff;
        loop {
            attempt += 1;
            let result = match self.session(session).await {
                Ok(current) => {
                    let result = current.session.process(&delivery.message).await;
                    current.served += 1;
                    if result.is_ok() && current.served >= self.events.batch {
                        *session = None;
                    }
                    result
                }
                Err(error) => Err(error),
            };
            let Err(error) = result else {
                self.stats.processed.fetch_add(1, Ordering::Relaxed);
                return Handled::Done;
            };
            *session = None;
            let message = &delivery.message;
            if attempt > self.events.retries {
                tracing::warn!(plugin = %self.plugin.name, topic = %message.topic, offset = delivery.offset, attempt, "giving up: {error}");
                return self.dead_letter(delivery, &error, attempt, shutdown).await;
            }
            self.stats.retried.fetch_add(1, Ordering::Relaxed);
            tracing::info!(plugin = %self.plugin.name, topic = %message.topic, offset = delivery.offset, attempt, "{error}; retrying in {pause:?}");
            tokio::select! {
                _ = tokio::time::sleep(pause) => pause = (pause * 2).min(MAX_BACKOFF),
                _ = shutdown.wait_for(|stop| *stop) => return Handled::Stopped,
            }
        }
    }

    /// Publishes the message to the dead-letter topic, retrying until the bus takes it:
    /// a message is never committed without being handled or dead-lettered.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        error: &CallError,
        attempts: u32,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Handled {
        let original = &delivery.message;
        let mut message = Message {
            topic: self.events.dead_letter.clone(),
            ..Message::clone(original)
        };
        message.headers.extend([
            ("synchro-error".to_owned(), error.to_string()),
            ("synchro-plugin".to_owned(), self.plugin.name.to_string()),
            ("synchro-attempts".to_owned(), attempts.to_string()),
            ("synchro-topic".to_owned(), original.topic.clone()),
            (
                "synchro-partition".to_owned(),
                delivery.partition.to_string(),
            ),
            ("synchro-offset".to_owned(), delivery.offset.to_string()),
        ]);
        let mut pause = self.events.backoff;
        loop {
            match self.services.bus.publish(message.clone()).await {
                Ok(()) => {
                    self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    return Handled::Done;
                }
                Err(e) => {
                    tracing::warn!(plugin = %self.plugin.name, "dead-letter publish failed ({e}); retrying in {pause:?}")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => pause = (pause * 2).min(MAX_BACKOFF),
                _ = shutdown.wait_for(|stop| *stop) => return Handled::Stopped,
            }
        }
    }
}
