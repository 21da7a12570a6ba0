//! Event steps on both buses: the XOS people example (plugins/xos-people) consuming
//! `{first_name, last_name}` events.

use std::sync::Arc;
use std::time::Duration;

use synchro_bus::{Bus, Consumer, Message, StartFrom, Topics};
use synchro_roles::Plugin;
use synchro_roles::event_step::Runner;
use synchro_status::{Health, PluginReport};
use synchro_testkit::{Harness, Loader};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(30);

struct Host {
    harness: Harness,
    plugins: Vec<Arc<Plugin>>,
}

async fn host(bus: &Bus, names: &[&str], topic: &str) -> Host {
    let harness = Harness::new(bus);
    let mut plugins = Vec::new();
    for name in names {
        let manifest = harness.install(
            name,
            "xos-people",
            &format!(
                "name = \"{name}\"\nversion = \"0.1.0\"\nroles = [\"event-step\"]\n\
                 [events]\ntopics = [\"{topic}\"]\nstart = \"earliest\"\nretries = 2\nbackoff = \"10ms\"\n\
                 [capabilities]\nstore = {{ read = [\"person\"], write = [\"person\"] }}\n"
            ),
        );
        plugins.push(harness.load(&manifest).await.unwrap());
    }
    Host { harness, plugins }
}

impl Host {
    /// Starts every plugin's event step; stop them with the returned sender.
    fn start(&self) -> (watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
        let (stop, shutdown) = watch::channel(false);
        let tasks = self
            .plugins
            .iter()
            .map(|p| {
                tokio::spawn(
                    Runner::new(
                        Harness::deploy(p.clone()),
                        self.harness.engine.clone(),
                        self.harness.services.clone(),
                    )
                    .run(shutdown.clone()),
                )
            })
            .collect();
        (stop, tasks)
    }
}

async fn stop(stop: watch::Sender<bool>, tasks: Vec<tokio::task::JoinHandle<()>>) {
    stop.send(true).unwrap();
    for task in tasks {
        tokio::time::timeout(WAIT, task)
            .await
            .expect("the step stops")
            .unwrap();
    }
}

async fn send(bus: &Bus, topic: &str, payloads: &[&str]) {
    for payload in payloads {
        bus.publish(Message::new(topic, payload.as_bytes().to_vec()))
            .await
            .unwrap();
    }
}

async fn next(consumer: &mut Consumer) -> Arc<Message> {
    let delivery = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("a message in time")
        .unwrap();
    consumer.commit(&delivery).unwrap();
    delivery.message
}

/// A consumer of the dead letters of plugin `people`, from the start.
fn dead_letters(bus: &Bus) -> Consumer {
    bus.consume(
        "test-dead",
        Topics::Names(vec!["people.dead-letter".into()]),
        StartFrom::Earliest,
    )
    .unwrap()
}

/// The change notifications, from the start: a reader of the outbox, the stream every
/// reader of `changes` reads (on Kafka through the relay, which `tests/kafka_host.rs`
/// covers end to end).
struct Changes {
    cursor: synchro_store::Cursor,
    read: std::collections::VecDeque<Message>,
}

fn changes(harness: &Harness) -> Changes {
    static READERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = READERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cursor = harness
        .services
        .db
        .cursor(&format!("test-{n}"), synchro_store::Start::SavedElseOldest)
        .unwrap();
    Changes {
        cursor,
        read: Default::default(),
    }
}

impl Changes {
    async fn next(&mut self) -> Message {
        loop {
            if let Some(message) = self.read.pop_front() {
                return message;
            }
            let batch = tokio::time::timeout(WAIT, self.cursor.next_batch(100))
                .await
                .expect("a change in time")
                .unwrap();
            for (_, record) in batch {
                self.read
                    .push_back(synchro_bus::record_message(&record).unwrap());
            }
        }
    }
}

/// The key of a change notification.
fn changed_key(message: &Message) -> String {
    let event: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(event["operation"], "CREATE");
    event["vertex"]["key"].as_str().unwrap().to_owned()
}

/// A poison message near the bus's largest does not fit again with the dead letter's
/// headers: it is cut to fit, says so, and the stream goes on.
async fn a_dead_letter_too_large_for_the_bus_is_cut_and_the_stream_goes_on(bus: Bus) {
    let host = host(&bus, &["people"], "Huge").await;
    let mut changes = changes(&host.harness);
    let mut dead = dead_letters(&bus);
    let largest = bus.max_message_bytes();
    let poison = "x".repeat(largest - 100);
    send(
        &bus,
        "Huge",
        &[&poison, r#"{"first_name": "Jane", "last_name": "Roe"}"#],
    )
    .await;
    let (stopper, tasks) = host.start();
    let letter = next(&mut dead).await;
    let size = letter.size();
    assert!(size <= largest, "{size} > {largest}");
    assert!(
        letter.header("synchro-truncated").is_some_and(
            |h| h.starts_with(&format!("the payload was cut from {} bytes", poison.len()))
        ),
        "{:?}",
        letter.header("synchro-truncated")
    );
    assert_eq!(changed_key(&changes.next().await), "person/jane-roe");
    stop(stopper, tasks).await;
}

async fn poison_is_dead_lettered_and_the_stream_goes_on(bus: Bus) {
    let host = host(&bus, &["people"], "MyTopic").await;
    let mut changes = changes(&host.harness);
    let mut dead = dead_letters(&bus);
    send(
        &bus,
        "MyTopic",
        &[
            r#"{"first_name": "John", "last_name": "Doe"}"#,
            r#"{"first_name": "John", "last_name": "Doe"}"#,
            "not json",
            r#"{"first_name": "Jane", "last_name": "Roe"}"#,
        ],
    )
    .await;
    let (stopper, tasks) = host.start();
    assert_eq!(changed_key(&changes.next().await), "person/john-doe");
    assert_eq!(
        changed_key(&changes.next().await),
        "person/jane-roe",
        "once per person, and past the poison"
    );

    let poison = next(&mut dead).await;
    assert_eq!(poison.payload, b"not json");
    assert_eq!(poison.header("synchro-plugin"), Some("people"));
    assert_eq!(
        poison.header("synchro-attempts"),
        Some("3"),
        "the first attempt and two retries"
    );
    assert_eq!(poison.header("synchro-topic"), Some("MyTopic"));
    assert!(
        poison
            .header("synchro-error")
            .unwrap()
            .contains("event is not JSON"),
        "{:?}",
        poison.headers
    );
    stop(stopper, tasks).await;

    // A restart resumes after the committed offset: only the new events are handled.
    send(
        &bus,
        "MyTopic",
        &[
            r#"{"first_name": ""}"#,
            r#"{"first_name": "Alice", "last_name": "Smith"}"#,
        ],
    )
    .await;
    let (stopper, tasks) = host.start();
    assert_eq!(changed_key(&changes.next().await), "person/alice-smith");
    let poison = next(&mut dead).await;
    assert_eq!(
        poison.payload, br#"{"first_name": ""}"#,
        "the old poison is not handled twice"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), changes.next())
            .await
            .is_err(),
        "nothing else changed"
    );
    stop(stopper, tasks).await;
}

async fn two_plugins_on_one_topic_each_see_every_event(bus: Bus) {
    let host = host(&bus, &["left", "right"], "Shared").await;
    let mut left = bus
        .consume(
            "test-left",
            Topics::Names(vec!["left.dead-letter".into()]),
            StartFrom::Earliest,
        )
        .unwrap();
    let mut right = bus
        .consume(
            "test-right",
            Topics::Names(vec!["right.dead-letter".into()]),
            StartFrom::Earliest,
        )
        .unwrap();
    send(&bus, "Shared", &["poison one", "poison two"]).await;
    let (stopper, tasks) = host.start();
    for consumer in [&mut left, &mut right] {
        assert_eq!(next(consumer).await.payload, b"poison one");
        assert_eq!(next(consumer).await.payload, b"poison two");
    }
    stop(stopper, tasks).await;
}

/// A registry running the people step from a plugin directory, as `synchro run` does.
struct Live {
    harness: Harness,
    registry: Loader,
}

fn people_manifest(version: &str, limits: &str) -> String {
    people_manifest_on("Stream", version, limits)
}

fn people_manifest_on(topic: &str, version: &str, limits: &str) -> String {
    format!(
        "name = \"people\"\nversion = \"{version}\"\nroles = [\"event-step\"]\n\
         [events]\ntopics = [\"{topic}\"]\nstart = \"earliest\"\nretries = 0\nbackoff = \"10ms\"\n\
         [limits]\n{limits}\n\
         [capabilities]\nstore = {{ read = [\"person\"], write = [\"person\"] }}\n"
    )
}

async fn live(bus: &Bus, limits: &str) -> Live {
    live_with(bus, limits, "").await
}

/// `grants`: the host config's `[grants]` tables, as TOML.
async fn live_with(bus: &Bus, limits: &str, grants: &str) -> Live {
    let harness = Harness::with_config(bus, |config| {
        config.grants = toml::from_str(grants).unwrap();
    });
    harness.install("people", "xos-people", &people_manifest("0.1.0", limits));
    let mut registry = harness.registry();
    registry.scan().await;
    Live { harness, registry }
}

impl Live {
    fn people(&self) -> PluginReport {
        self.registry
            .report()
            .plugins
            .into_iter()
            .next()
            .expect("people runs")
    }

    async fn wait(&self, condition: impl Fn(&PluginReport) -> bool) -> PluginReport {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let report = self.people();
            if condition(&report) {
                return report;
            }
            assert!(tokio::time::Instant::now() < deadline, "never: {report:#?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn person(i: usize) -> String {
    format!(r#"{{"first_name": "p{i}", "last_name": "stream"}}"#)
}

async fn reloads_while_events_flow_lose_and_repeat_nothing(bus: Bus) {
    const BATCHES: usize = 10;
    const PER_BATCH: usize = 100;
    let mut live = live(&bus, "").await;
    let mut changes = changes(&live.harness);
    let mut before_last_swap = 0;
    for batch in 0..BATCHES {
        for i in 0..PER_BATCH {
            bus.publish(Message::new(
                "Stream",
                person(batch * PER_BATCH + i).into_bytes(),
            ))
            .await
            .unwrap();
        }
        before_last_swap = live.people().counters.processed;
        // Half the swaps come from a changed manifest, half from the admin command.
        if batch % 2 == 0 {
            std::fs::write(
                live.harness.config.plugin_dir.join("people.toml"),
                people_manifest(&format!("0.2.{batch}"), ""),
            )
            .unwrap();
            live.registry.scan().await;
        } else {
            live.registry.reload("people").await.unwrap();
        }
    }
    let total = (BATCHES * PER_BATCH) as u64;
    assert!(
        before_last_swap < total,
        "the swaps must happen while events flow"
    );
    live.wait(|p| p.counters.processed >= total).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = live.people();
    assert_eq!(
        report.counters.processed, total,
        "every event exactly once: {report:#?}"
    );
    assert_eq!(report.counters.failures, 0, "{report:#?}");
    assert_eq!(
        report.counters.changes, total,
        "one saved person each: {report:#?}"
    );
    assert_eq!(report.counters.reloads, BATCHES as u64, "{report:#?}");
    assert_eq!(report.version, "0.2.8");
    let mut people = std::collections::BTreeSet::new();
    while people.len() < BATCHES * PER_BATCH {
        people.insert(changed_key(&changes.next().await));
    }
    live.registry.shutdown(WAIT).await;
}

async fn a_version_reading_other_topics_joins_again(bus: Bus) {
    let mut live = live(&bus, "").await;
    send(&bus, "Stream", &[&person(1)]).await;
    live.wait(|p| p.counters.processed == 1).await;
    std::fs::write(
        live.harness.config.plugin_dir.join("people.toml"),
        people_manifest_on("Other", "0.2.0", ""),
    )
    .unwrap();
    live.registry.scan().await;
    send(&bus, "Stream", &[&person(2)]).await;
    send(&bus, "Other", &[&person(3)]).await;
    live.wait(|p| p.counters.processed == 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = live.people();
    assert_eq!(
        (report.version.as_str(), report.counters.processed),
        ("0.2.0", 2),
        "only the new topic is read: {report:#?}"
    );
    live.registry.shutdown(WAIT).await;
}

async fn a_failing_event_step_is_quarantined_and_the_rest_waits_for_release(bus: Bus) {
    let live = live(&bus, "quarantine-after = 2").await;
    send(&bus, "Stream", &["poison one", "poison two", &person(1)]).await;
    let report = live
        .wait(|p| matches!(p.health, Health::Quarantined { .. }))
        .await;
    assert_eq!(report.counters.dead_lettered, 2, "{report:#?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        live.people().counters.processed,
        0,
        "quarantined: the good event waits"
    );
    let lag = |metrics: String| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(r#"synchro_event_step_bus_lag{plugin="people"} "#))
            .map(str::to_owned)
    };
    assert_eq!(
        lag(live.registry.metrics()).as_deref(),
        Some("1"),
        "the bus lag shows it"
    );
    live.registry.release("people").unwrap();
    let report = live.wait(|p| p.counters.processed == 1).await;
    assert_eq!(report.health, Health::Ok);
    let deadline = tokio::time::Instant::now() + WAIT;
    while lag(live.registry.metrics()).as_deref() != Some("0") {
        assert!(tokio::time::Instant::now() < deadline, "the lag stays");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    live.registry.shutdown(WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_must_grant_the_topics_an_event_step_reads() {
    let store = "store = { read = [\"person\"], write = [\"person\"] }";
    let refused = live_with(
        &Bus::embedded(),
        "",
        &format!("[people]\n{store}\nbus = {{ subscribe = [\"Other\"] }}\n"),
    )
    .await;
    let report = refused.registry.report();
    assert!(report.plugins.is_empty());
    assert!(
        report.refused[0].error.ends_with(
            "the host config's `[grants.people]`: `bus` does not grant reading topic `Stream`, \
             which `[events]` asks for (add it to `subscribe`)"
        ),
        "{report:?}"
    );
    refused.registry.shutdown(WAIT).await;

    let bus = Bus::embedded();
    let granted = live_with(
        &bus,
        "",
        &format!("[people]\n{store}\nbus = {{ subscribe = [\"Stream\"] }}\n"),
    )
    .await;
    send(&bus, "Stream", &[&person(1)]).await;
    granted.wait(|p| p.counters.processed == 1).await;
    granted.registry.shutdown(WAIT).await;
}

macro_rules! suite {
    ($module:ident, $bus:expr) => {
        mod $module {
            #[tokio::test(flavor = "multi_thread")]
            async fn a_dead_letter_too_large_for_the_bus_is_cut_and_the_stream_goes_on() {
                super::a_dead_letter_too_large_for_the_bus_is_cut_and_the_stream_goes_on($bus).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn poison_is_dead_lettered_and_the_stream_goes_on() {
                super::poison_is_dead_lettered_and_the_stream_goes_on($bus).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn reloads_while_events_flow_lose_and_repeat_nothing() {
                super::reloads_while_events_flow_lose_and_repeat_nothing($bus).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn a_version_reading_other_topics_joins_again() {
                super::a_version_reading_other_topics_joins_again($bus).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn a_failing_event_step_is_quarantined_and_the_rest_waits_for_release() {
                super::a_failing_event_step_is_quarantined_and_the_rest_waits_for_release($bus)
                    .await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn two_plugins_on_one_topic_each_see_every_event() {
                super::two_plugins_on_one_topic_each_see_every_event($bus).await
            }
        }
    };
}

suite!(embedded, synchro_bus::Bus::embedded());
suite!(kafka, synchro_testkit::broker::kafka_bus());

/// Identity is kind and key: a plugin granted `person` saving a person whose key a
/// `pserver` has writes its own entity beside it, and neither learns of nor touches the
/// pserver.
#[tokio::test(flavor = "multi_thread")]
async fn one_key_under_another_kind_is_another_entity_and_stays_untouched() {
    let bus = Bus::embedded();
    let live = live(&bus, "").await;
    let other = synchro_model::Entity::new(
        "person/p1-stream".into(),
        "pserver".into(),
        r#"{"secret":true}"#.into(),
        None,
        None,
    )
    .unwrap();
    let db = &live.harness.services.db;
    let inventory = synchro_store::Writer {
        plugin: "inventory",
        acting: synchro_model::Acting::Source,
        handling: None,
    };
    db.model_put(inventory, &other, |_, _| Vec::new()).unwrap();
    send(&bus, "Stream", &[&person(1)]).await;
    let report = live.wait(|p| p.counters.processed == 1).await;
    assert_eq!(report.counters.denials, 0, "{report:#?}");
    let kept = db.model_get(other.id()).unwrap().unwrap();
    assert_eq!(kept.entity, other, "the pserver is untouched");
    assert_eq!(kept.owner.as_deref(), Some("inventory"));
    let person = synchro_model::Id::new("person", "person/p1-stream");
    let saved = db.model_get(&person).unwrap().unwrap();
    assert_eq!(saved.owner.as_deref(), Some("people"));
    live.registry.shutdown(WAIT).await;
}

/// On the embedded bus, which forgets everything at exit, an event step reads `changes`
/// from the outbox with a cursor of its own: what changed while the host was down is
/// handled after the restart, and nothing handled before is handled again.
/// `count` change records from `from` on, of `thing` entities.
fn records(from: usize, count: usize) -> Vec<Vec<u8>> {
    (from..from + count)
        .map(|i| {
            let entity = synchro_model::Entity::new(
                format!("k{i}"),
                "thing".into(),
                "{}".into(),
                None,
                None,
            )
            .unwrap();
            synchro_bus::change_record(&synchro_model::Change {
                operation: synchro_model::Operation::Create,
                entity,
                timestamp: 1,
                transaction_id: format!("t{i}"),
                database_transaction_id: None,
                source: "test".into(),
            })
        })
        .collect()
}

/// An event step reading `changes` from `earliest` keeps its place in the outbox from its
/// load on: the outbox trimmed before its runner first reads (the host's printer having
/// read everything) still has every change for it. Before, the place was saved only when
/// the runner joined, and a trim in between dropped the changes a collector had made
/// while the step loaded (tests/sdk.rs's scaffolds, now and then, under load).
#[tokio::test(flavor = "multi_thread")]
async fn an_event_step_keeps_its_place_in_the_changes_from_its_load() {
    let bus = Bus::embedded();
    let harness = Harness::new(&bus);
    let manifest = harness.install(
        "watcher",
        "bench-event-step",
        "name = \"watcher\"\nversion = \"0.1.0\"\nroles = [\"event-step\"]\n\
         [events]\ntopics = [\"changes\"]\nstart = \"earliest\"\n",
    );
    let db = &harness.services.db;
    db.append_changes(&records(0, 20)).unwrap();
    let printer = db.cursor("printer", synchro_store::Start::End).unwrap();
    let plugin = harness.load(&manifest).await.unwrap();
    let group = plugin
        .roles
        .event_step
        .as_ref()
        .unwrap()
        .events
        .group
        .clone();
    let dropped = db
        .trim_changes(
            |name| name == group,
            synchro_store::Retention {
                max_plugin_lag: 1_000_000,
                window: 0,
            },
        )
        .unwrap();
    assert_eq!(dropped, 0, "changes the step has not read were dropped");
    drop(printer);

    let deployment = Harness::deploy(plugin);
    let (stop_tx, shutdown) = watch::channel(false);
    let task = tokio::spawn(
        Runner::new(
            deployment.clone(),
            harness.engine.clone(),
            harness.services.clone(),
        )
        .run(shutdown),
    );
    let processed = || deployment.status.counters.values().processed;
    let deadline = tokio::time::Instant::now() + WAIT;
    while processed() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "processed {}",
            processed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop(stop_tx, vec![task]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_step_reading_changes_resumes_after_a_restart_on_the_embedded_bus() {
    async fn processed_until(registry: &Loader, count: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let report = registry.report();
            let processed = report.plugins[0].counters.processed;
            if processed >= count {
                // Then a while more: nothing beyond.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let processed = registry.report().plugins[0].counters.processed;
                assert_eq!(processed, count, "{report:#?}");
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{report:#?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let bus = Bus::embedded();
    let harness = Harness::new(&bus);
    harness.install(
        "watcher",
        "bench-event-step",
        "name = \"watcher\"\nversion = \"0.1.0\"\nroles = [\"event-step\"]\n\
         [events]\ntopics = [\"changes\"]\nstart = \"earliest\"\n",
    );
    harness.services.db.append_changes(&records(0, 50)).unwrap();
    let mut registry = harness.registry();
    registry.scan().await;
    processed_until(&registry, 50).await;
    registry.shutdown(WAIT).await;

    // Changes while the host is down; then a new embedded bus, as after a restart.
    harness
        .services
        .db
        .append_changes(&records(50, 30))
        .unwrap();
    let bus = Bus::embedded();
    let harness = harness.restart(&bus);
    let mut registry = harness.registry();
    registry.scan().await;
    processed_until(&registry, 30).await;
    registry.shutdown(WAIT).await;
}
