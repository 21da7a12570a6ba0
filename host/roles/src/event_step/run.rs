//! Runs an event step (the XOS semantics, minus its bugs).
//!
//! Each event step is its own consumer group and handles its messages in order, one at
//! a time: a slow plugin slows its consumer, which applies back-pressure instead of
//! buffering without bound. A message is committed only after `process-event`
//! succeeded, or after it was published to the dead-letter topic once its retries were
//! spent: nothing is lost, and a poison message does not stop the stream.
//!
//! "Processed" includes the changes the plugin emitted: a message is committed only once
//! the outbox has them on disk. The step does not wait for that before the next message
//! (the outbox writes in batches, one fsync each); the commits follow, in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use synchro_bus::{Delivery, Message};
use synchro_capability::Services;
use synchro_engine::CallError;
use synchro_status::events::{self, Delivered};
use synchro_store::Ticket;

use super::input::Input;
use super::{Events, Session as Instance};
use crate::failure::{Tracker, Verdict};
use crate::{Backoff, CallFailure, Deployment, Plugin, PluginEngine};

/// An instance idle this long is dropped; the next message gets a fresh one.
const IDLE: Duration = Duration::from_millis(200);
/// The longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Handled messages waiting for the outbox before they are committed; past it, the step
/// waits for the disk before it reads more.
const MAX_UNCOMMITTED: usize = 10_000;
/// How long a stopping step waits for the outbox to take what its handled messages
/// emitted; what is not committed by then is delivered again.
const SETTLE: Duration = Duration::from_secs(2);

pub struct Runner {
    deployment: Arc<Deployment>,
    engine: Arc<PluginEngine>,
    services: Services,
    /// The `[events]` the consumer was joined with; a version with others re-joins.
    events: Events,
}

/// An instance of one version and how many events it has handled.
struct Session {
    session: Instance,
    plugin: Arc<Plugin>,
    served: usize,
}

/// Handled messages, oldest first, each with the outbox ticket it waits for.
type Uncommitted = VecDeque<(Delivery, Ticket)>;

enum Handled {
    /// Processed: commit it.
    Done,
    /// Retries spent and dead-lettered: commit it, and count a failure of the plugin.
    DeadLettered(CallError),
    /// Shutdown came first: leave it uncommitted, to be delivered again.
    Stopped,
}

impl Runner {
    pub fn new(
        deployment: Arc<Deployment>,
        engine: Arc<PluginEngine>,
        services: Services,
    ) -> Runner {
        let events = events_of(&deployment.current());
        Runner {
            deployment,
            engine,
            services,
            events,
        }
    }

    /// The running version, which a reload replaces between two events.
    pub fn deployment(&self) -> &Arc<Deployment> {
        &self.deployment
    }

    /// Consumes until `shutdown` turns true. Consecutive events that end dead-lettered
    /// count as failures of the plugin: past `quarantine-after` it is quarantined and
    /// the rest of the stream waits, uncommitted, on the bus.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let Some(mut consumer) = self.join(&mut shutdown).await else {
            return;
        };
        let mut versions = self.deployment.versions();
        let mut failures = Tracker::default();
        let mut session: Option<Session> = None;
        let mut handled = Uncommitted::new();
        // The bus lag is measured every LAG_EVERY messages, and every second while the
        // step waits (when it is likely 0, which the status must come to say).
        let mut lag_tick = tokio::time::interval(Duration::from_secs(1));
        lag_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut since_lag = 0;
        loop {
            let outbox = &self.services.outbox;
            // Most of the time the next message is ready and nothing else wants attention:
            // it is taken as it is, without building the select below (which registers and
            // drops a waiter on three channels per message).
            let quiet = handled.len() < MAX_UNCOMMITTED
                && !*shutdown.borrow()
                && matches!(versions.has_changed(), Ok(false));
            let ready = if quiet { consumer.next_ready() } else { None };
            // Biased: a swap that has happened is acted on before the next message, so a
            // message read after the swap is never read under the old `[events]`.
            let next = if let Some(next) = ready {
                Some(next)
            } else {
                tokio::select! {
                    biased;
                    // The guard is dropped at once: held across `settle` it makes this !Send.
                    _ = async { drop(shutdown.wait_for(|stop| *stop).await) } => {
                        self.settle(&mut consumer, &mut handled).await;
                        return;
                    }
                    _ = outbox.durable(handled.front().map_or(0, |(_, t)| *t)), if !handled.is_empty() => {
                        self.commit_durable(&mut consumer, &mut handled).await;
                        continue;
                    }
                    _ = versions.changed() => None,
                    next = consumer.next(), if handled.len() < MAX_UNCOMMITTED => Some(next),
                    _ = tokio::time::sleep(IDLE), if session.is_some() => {
                        session = None;
                        continue;
                    }
                    _ = lag_tick.tick() => {
                        self.measure_lag(&consumer, &mut since_lag);
                        continue;
                    }
                }
            };
            let Some(next) = next else {
                // A new version: fresh instances, a fresh failure count, and the consumer
                // joined again only if its `[events]` changed.
                session = None;
                failures = Default::default();
                let events = events_of(&versions.borrow_and_update());
                if events != self.events {
                    tracing::info!(plugin = %self.deployment.current().name, "[events] changed: joining again");
                    self.settle(&mut consumer, &mut handled).await;
                    drop(consumer);
                    self.events = events;
                    let Some(joined) = self.join(&mut shutdown).await else {
                        return;
                    };
                    consumer = joined;
                }
                continue;
            };
            let delivery = match next {
                Ok(delivery) => delivery,
                Err(error) => {
                    tracing::warn!(plugin = %self.deployment.current().name, "consuming: {error}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let failed = match self.handle(&mut session, &delivery, &mut shutdown).await {
                Handled::Done => None,
                Handled::DeadLettered(error) => Some(CallFailure::of(&error)),
                Handled::Stopped => {
                    self.settle(&mut consumer, &mut handled).await;
                    return;
                }
            };
            // Every change queued so far, this message's among them, is durable by then.
            handled.push_back((delivery, outbox.issued()));
            since_lag += 1;
            if since_lag >= synchro_status::LAG_EVERY {
                self.measure_lag(&consumer, &mut since_lag);
            }
            self.commit_durable(&mut consumer, &mut handled).await;
            let policy = self.deployment.current().limits;
            match failures.record(&policy, failed.is_none(), Duration::ZERO) {
                Verdict::Continue { .. } => {
                    self.deployment.record(failures.consecutive(), failed);
                }
                Verdict::Quarantine { failures: count } => {
                    session = None;
                    // What is handled is committed before the wait, not held through it.
                    self.settle(&mut consumer, &mut handled).await;
                    // What waits for the release, as the status shows it meanwhile.
                    self.measure_lag(&consumer, &mut since_lag);
                    let reason = failed.map(|f| f.message).unwrap_or_default();
                    if !self
                        .deployment
                        .quarantine(count, reason, &mut shutdown)
                        .await
                    {
                        return;
                    }
                    failures = Default::default();
                }
            }
        }
    }

    /// Commits, in order, the handled messages whose changes the outbox has on disk.
    async fn commit_durable(&self, consumer: &mut Input, handled: &mut Uncommitted) {
        let written = self.services.outbox.written();
        while let Some((delivery, _)) = handled.pop_front_if(|(_, ticket)| *ticket <= written) {
            if let Err(error) = consumer.commit(&delivery).await {
                // The message will be delivered again: handling is idempotent.
                tracing::warn!(plugin = %self.deployment.current().name, "commit failed: {error}");
            }
        }
    }

    /// Before the consumer goes: commits what the outbox takes within [`SETTLE`]; the rest
    /// is delivered again.
    async fn settle(&self, consumer: &mut Input, handled: &mut Uncommitted) {
        if let Some((_, last)) = handled.back() {
            let _ = tokio::time::timeout(SETTLE, self.services.outbox.durable(*last)).await;
            self.commit_durable(consumer, handled).await;
        }
        handled.clear();
    }

    /// Joins the consumer group, retrying with backoff while the bus refuses.
    async fn join(&self, shutdown: &mut watch::Receiver<bool>) -> Option<Input> {
        let mut backoff = Backoff::new(self.events.backoff, MAX_BACKOFF);
        let mut attempts = 0;
        loop {
            let pause = backoff.next_pause();
            match Input::join(&self.services.bus, &self.services.db, &self.events) {
                Ok(consumer) => {
                    self.deployment.record(0, None);
                    return Some(consumer);
                }
                Err(error) => {
                    attempts += 1;
                    let why = format!("cannot consume yet ({error})");
                    tracing::warn!(plugin = %self.deployment.current().name, "{why}; retrying in {pause:?}");
                    self.deployment
                        .record(attempts, Some(CallFailure::recoverable(why)));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.wait_for(|stop| *stop) => return None,
            }
        }
    }

    fn measure_lag(&self, consumer: &Input, since_lag: &mut u64) {
        *since_lag = 0;
        (self.deployment.status.bus_lag).store(consumer.bus_lag(), Ordering::Relaxed);
    }

    /// The instance to call: the current one, or a fresh one of the current version.
    async fn session<'s>(
        &self,
        session: &'s mut Option<Session>,
    ) -> Result<&'s mut Session, CallError> {
        let plugin = self.deployment.current();
        if session
            .as_ref()
            .is_none_or(|s| !Arc::ptr_eq(&s.plugin, &plugin))
        {
            *session = None;
            let call = plugin.call_context(&self.deployment.status, &self.services);
            let step = plugin
                .roles
                .event_step
                .as_ref()
                .expect("an event-step runner runs event steps");
            let fresh = step.session(&self.engine, &plugin.linked, call).await?;
            *session = Some(Session {
                session: fresh,
                plugin,
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
        let status = &self.deployment.status;
        let mut attempt: u32 = 0;
        let mut backoff = Backoff::new(self.events.backoff, MAX_BACKOFF);
        loop {
            attempt += 1;
            status.emit(events::Called);
            let result = match self.session(session).await {
                Ok(current) => {
                    let result = current
                        .session
                        .process(&self.engine, &delivery.message)
                        .await;
                    current.served += 1;
                    if result.is_ok() && current.served >= self.events.batch {
                        *session = None;
                    }
                    result
                }
                Err(error) => Err(error),
            };
            let Err(error) = result else {
                status.emit(events::Processed);
                return Handled::Done;
            };
            *session = None;
            let name = self.deployment.current().name.clone();
            let event = Delivered {
                topic: &delivery.message.topic,
                offset: delivery.offset,
                attempt,
            };
            if attempt > self.events.retries {
                status.emit(events::EventGivenUp {
                    plugin: &name,
                    event,
                    error: &error,
                });
                return match self.dead_letter(delivery, &error, attempt, shutdown).await {
                    Handled::Done => Handled::DeadLettered(error),
                    other => other,
                };
            }
            let pause = backoff.next_pause();
            status.emit(events::EventRetried {
                plugin: &name,
                event,
                error: &error,
                pause,
            });
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.wait_for(|stop| *stop) => return Handled::Stopped,
            }
        }
    }

    /// Publishes the message to the dead-letter topic, retrying until the bus takes it:
    /// a message is never committed without being handled or dead-lettered. While the bus
    /// refuses it, the step's health says so.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        error: &CallError,
        attempts: u32,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Handled {
        let plugin = self.deployment.current().name.clone();
        let message = dead_letter(
            delivery,
            &self.events.dead_letter,
            &plugin,
            error,
            attempts,
            self.services.bus.max_message_bytes(),
        );
        let mut backoff = Backoff::new(self.events.backoff, MAX_BACKOFF);
        let mut failures = 0;
        loop {
            let pause = backoff.next_pause();
            match self.services.bus.publish(message.clone()).await {
                Ok(()) => {
                    self.deployment.status.emit(events::DeadLettered {
                        plugin: &plugin,
                        topic: &self.events.dead_letter,
                    });
                    if failures > 0 {
                        self.deployment.record(0, None);
                    }
                    return Handled::Done;
                }
                Err(e) => {
                    failures += 1;
                    let why = format!(
                        "the dead letter of {}/{} offset {} could not be published to `{}`: {e}; \
                         the stream waits and the publish is retried",
                        delivery.message.topic,
                        delivery.partition,
                        delivery.offset,
                        self.events.dead_letter
                    );
                    tracing::warn!(plugin = %plugin, "{why} in {pause:?}");
                    self.deployment
                        .record(failures, Some(CallFailure::recoverable(why)));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.wait_for(|stop| *stop) => return Handled::Stopped,
            }
        }
    }
}

/// Bytes of the `synchro-error` header kept: a plugin's error can be any length.
const ERROR_HEADER_BYTES: usize = 4096;

/// The dead letter of `delivery`: the original message on `topic`, with headers saying why
/// and where it came from, cut to `max_bytes` if it is larger — the original bytes stay
/// in the source topic at the partition and offset the headers name.
fn dead_letter(
    delivery: &Delivery,
    topic: &str,
    plugin: &str,
    error: &CallError,
    attempts: u32,
    max_bytes: usize,
) -> Message {
    let original = &delivery.message;
    let mut why = error.to_string();
    if why.len() > ERROR_HEADER_BYTES {
        let mut end = ERROR_HEADER_BYTES;
        while !why.is_char_boundary(end) {
            end -= 1;
        }
        why.truncate(end);
        why.push('…');
    }
    let mut message = Message {
        topic: topic.to_owned(),
        ..Message::clone(original)
    };
    let headers = [
        ("synchro-error", why),
        ("synchro-plugin", plugin.to_owned()),
        ("synchro-attempts", attempts.to_string()),
        ("synchro-topic", original.topic.clone()),
        ("synchro-partition", delivery.partition.to_string()),
        ("synchro-offset", delivery.offset.to_string()),
    ];
    message.headers.extend(
        headers
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.into_bytes())),
    );
    let whole = message.size();
    if whole > max_bytes {
        let note = (
            "synchro-truncated".to_owned(),
            format!(
                "the payload was cut from {} bytes to fit the bus; the original is at synchro-topic / synchro-partition / synchro-offset",
                original.payload.len()
            ),
        );
        let over = whole - max_bytes + note.0.len() + note.1.len() + 16;
        let keep = original.payload.len().saturating_sub(over);
        message.payload.truncate(keep);
        message.headers.push((note.0, note.1.into_bytes()));
    }
    message
}

fn events_of(plugin: &Plugin) -> Events {
    plugin
        .roles
        .event_step
        .as_ref()
        .expect("an event-step runner runs event steps")
        .events
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use synchro_model::ErrorKind;

    fn delivery(payload: usize) -> Delivery {
        Delivery {
            message: Arc::new(Message::new("Stream", vec![b'x'; payload]).with_key("k")),
            partition: 2,
            offset: 41,
        }
    }

    #[test]
    fn a_dead_letter_too_large_for_the_bus_is_cut_and_says_so() {
        let error = CallError::Plugin {
            kind: ErrorKind::InvalidInput,
            message: "é".repeat(10_000),
        };
        let letter = dead_letter(&delivery(100_000), "p.dead-letter", "p", &error, 1, 20_000);
        assert!(letter.size() <= 20_000, "{}", letter.size());
        assert!(letter.payload.len() > 10_000, "most of the payload is kept");
        assert_eq!(letter.key.as_deref(), Some(b"k".as_slice()));
        assert!(
            letter
                .header("synchro-truncated")
                .is_some_and(|h| h.starts_with("the payload was cut from 100000 bytes")),
            "{:?}",
            letter.headers
        );
        assert!(letter.header("synchro-error").unwrap().len() <= ERROR_HEADER_BYTES + 3);
        assert_eq!(letter.header("synchro-offset"), Some("41"));

        let small = dead_letter(&delivery(100), "p.dead-letter", "p", &error, 1, 20_000);
        assert_eq!(small.payload.len(), 100);
        assert_eq!(small.header("synchro-truncated"), None);
    }

    #[test]
    fn a_dead_letter_keeps_a_binary_key_and_headers_byte_for_byte() {
        let original = Message::new("Stream", b"{}".to_vec())
            .with_key(vec![0xff, 0x00])
            .with_header("trace", vec![0xfe, 0x01]);
        let delivery = Delivery {
            message: Arc::new(original.clone()),
            partition: 0,
            offset: 7,
        };
        let error = CallError::Plugin {
            kind: ErrorKind::InvalidInput,
            message: "no".into(),
        };
        let letter = dead_letter(&delivery, "p.dead-letter", "p", &error, 1, 20_000);
        assert_eq!(letter.key, original.key);
        assert_eq!(letter.headers[0], original.headers[0]);
        assert_eq!(letter.header("synchro-offset"), Some("7"));
    }
}
