//! End to end on Kafka: the `synchro` binary with `[bus] kind = "kafka"`.

use std::collections::BTreeSet;
use std::time::Duration;

use synchro_bus::{StartFrom, Topics};
use synchro_testkit::broker::{Broker, free_port, kafka_bus_on};
use synchro_testkit::{INVENTORY, Setup, Source};

const WAIT: Duration = Duration::from_secs(30);

/// The next change notification as (operation, entity key).
async fn next_change(changes: &mut synchro_bus::Consumer, what: &str) -> (String, String) {
    let delivery = tokio::time::timeout(WAIT, changes.next())
        .await
        .expect(what)
        .unwrap();
    let event: serde_json::Value = serde_json::from_slice(&delivery.message.payload).unwrap();
    let element = event
        .get("vertex")
        .or_else(|| event.get("edge"))
        .expect("vertex or edge");
    (
        event["operation"].as_str().unwrap().to_owned(),
        element["key"].as_str().unwrap().to_owned(),
    )
}

/// The keys of the next four changes, each a CREATE: the inventory announced whole.
async fn inventory_created(changes: &mut synchro_bus::Consumer, what: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    while seen.len() < 4 {
        let (operation, key) = next_change(changes, what).await;
        assert_eq!(operation, "CREATE");
        seen.insert(key);
    }
    seen
}

/// A consumer of the change notifications under `prefix` on `broker`, from the start.
fn changes_from_start(broker: &Broker, prefix: &str) -> synchro_bus::Consumer {
    kafka_bus_on(&broker.address, prefix)
        .consume(
            "test",
            Topics::Names(vec!["changes".into()]),
            StartFrom::Earliest,
        )
        .unwrap()
}

/// A host configured for Kafka on a free loopback port (no broker yet), with the
/// http-inventory collector polling `source`.
struct KafkaHost {
    port: u16,
    prefix: String,
    source: Source,
    setup: Setup,
}

impl KafkaHost {
    fn new() -> KafkaHost {
        KafkaHost::with("delivery-timeout = \"1s\"\n")
    }

    /// `extra`: more lines of the `[bus]` section, or top-level keys before it.
    fn with(extra: &str) -> KafkaHost {
        let port = free_port();
        let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
        let source = Source::start(INVENTORY);
        let setup = Setup::new();
        std::fs::write(
            setup.config(),
            format!(
                "data-dir = \"data\"\nplugin-dir = \"plugins\"\n\
                 [bus]\nkind = \"kafka\"\nbrokers = \"127.0.0.1:{port}\"\ntopic-prefix = \"{prefix}\"\n{extra}"
            ),
        )
        .unwrap();
        setup.inventory_plugin("inv", &source);
        KafkaHost {
            port,
            prefix,
            source,
            setup,
        }
    }
}

/// A broker that is down when the host starts: the host keeps running, says which
/// brokers it cannot reach, keeps the changes in its outbox, and delivers every one once
/// a broker is there.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_down_at_start_delays_changes_but_loses_none() {
    let KafkaHost {
        port,
        prefix,
        source,
        setup,
    } = KafkaHost::new();
    let host = setup.run();
    host.wait_for_log(
        &format!("publishing a change: Kafka (127.0.0.1:{port})"),
        WAIT,
    );

    let broker = Broker::start_on(port);
    let mut changes = changes_from_start(&broker, &prefix);
    assert_eq!(
        inventory_created(&mut changes, "changes arrive").await,
        ["srv-1", "srv-2", "vm-1", "vm-1/hosted-on"]
            .map(String::from)
            .into()
    );
    source.set(200, &INVENTORY.replace("alpha", "alpha-2"));
    assert_eq!(
        next_change(&mut changes, "the update arrives").await,
        ("UPDATE".into(), "srv-1".into())
    );
    host.stop();
}

/// A broker restarted mid-stream (here one that comes back empty: tansu's memory
/// storage) loses nothing synchro is responsible for: changes made while it was away are
/// announced once it is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restarted_mid_stream_loses_no_change() {
    let KafkaHost {
        port,
        prefix,
        source,
        setup,
    } = KafkaHost::new();
    let broker = Broker::start_on(port);
    let host = setup.run();
    host.wait_for_log("collected plugin=inv entities=4 created=4", WAIT);
    drop(broker);

    source.set(200, &INVENTORY.replace("beta", "beta-2"));
    host.wait_for_log("publishing a change: Kafka", WAIT);
    let broker = Broker::start_on(port);
    let mut changes = changes_from_start(&broker, &prefix);
    // The first CREATEs may come again before it: the broker can go before it confirmed
    // them, and delivery is at least once. Anything else before it is a bug.
    let first = ["srv-1", "srv-2", "vm-1", "vm-1/hosted-on"];
    loop {
        let (operation, key) =
            next_change(&mut changes, "the change made while the broker was away").await;
        if (operation.as_str(), key.as_str()) == ("UPDATE", "srv-2") {
            break;
        }
        assert!(
            operation == "CREATE" && first.contains(&key.as_str()),
            "{operation} {key} before the UPDATE of srv-2"
        );
    }
    host.stop();
}

/// A stop is bounded while a broker cannot be reached: publishes that would wait for
/// `delivery-timeout` (20 s here) are cut after `shutdown-grace` (1 s), and nothing is
/// lost — the next start publishes what the outbox kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_stops_within_its_grace_while_the_broker_is_down() {
    let KafkaHost {
        port,
        prefix,
        source: _source,
        setup,
    } = KafkaHost::with("delivery-timeout = \"20s\"\n");
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(setup.config(), format!("shutdown-grace = \"1s\"\n{config}")).unwrap();
    let host = setup.run();
    // The collector has committed; the relay waits on its first publish.
    host.wait_for_log("admin API listening", WAIT);
    std::thread::sleep(Duration::from_secs(2));
    let asked = std::time::Instant::now();
    host.stop();
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(1 + 4 + 2),
        "the stop took {took:?}: more than the grace (1 s) + 4 s to close, with 2 s to spare"
    );

    // With a broker, the next start publishes every change the outbox kept.
    let broker = Broker::start_on(port);
    let mut changes = changes_from_start(&broker, &prefix);
    let host = setup.run();
    assert_eq!(
        inventory_created(&mut changes, "changes after the restart")
            .await
            .len(),
        4
    );
    host.stop();
}

/// On Kafka, `synchro run` prints the first collect (it prints from the outbox, whatever
/// the bus) and logs no error about the change topic at start.
#[tokio::test(flavor = "multi_thread")]
async fn synchro_run_on_kafka_prints_the_first_collect() {
    let KafkaHost { port, setup, .. } = KafkaHost::new();
    let _broker = Broker::start_on(port);
    let host = setup.run();
    assert_eq!(host.events(4, WAIT), synchro_testkit::inventory_created());
    assert!(
        !host.log().contains("Subscribed topic not available"),
        "{}",
        host.log()
    );
    host.stop();
}

/// A broker stopped and started again, empty, many times while the host publishes (the
/// topics are created again each time: librdkafka 2.12 crashed on re-created topics in
/// such runs): the host keeps running, prints every change in order, relays every one to
/// a broker (its relay ends with nothing behind), and stops cleanly.
///
/// Whether the last change can be read back from the last broker is not asserted here:
/// tansu restarted empty sometimes acknowledges a publish that a fresh consumer then never
/// sees (the known flake of the single-restart test above, which does assert it).
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restarted_many_times_never_stops_the_host() {
    let KafkaHost {
        port,
        source,
        setup,
        ..
    } = KafkaHost::new();
    let restarts = synchro_testkit::env_u64("SYNCHRO_BROKER_RESTARTS", 6);
    let mut broker = Broker::start_on(port);
    let host = setup.run();
    assert_eq!(host.events(4, WAIT), synchro_testkit::inventory_created());
    for round in 1..=restarts {
        source.set(200, &INVENTORY.replace("alpha", &format!("alpha-{round}")));
        assert_eq!(
            host.events(1, WAIT),
            synchro_testkit::pairs(&[("UPDATE", "srv-1")]),
            "round {round}"
        );
        // Down for a while (publishes fail and are retried), then back, empty.
        drop(broker);
        std::thread::sleep(Duration::from_millis(300 * (round % 3)));
        broker = Broker::start_on(port);
        assert!(
            host.is_running(),
            "round {round}: the host died\n{}",
            host.log()
        );
    }
    source.set(200, &INVENTORY.replace("alpha", "alpha-last"));
    assert_eq!(
        host.events(1, WAIT),
        synchro_testkit::pairs(&[("UPDATE", "srv-1")])
    );
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let outbox = setup.status().outbox;
        if outbox.readers.get("relay") == Some(&outbox.last) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the relay never caught up: {outbox:?}\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(host.is_running(), "the host died\n{}", host.log());
    host.stop();
    drop(broker);
}

/// A host awaiting responses has a reader fetching its response topic, by topic id. tansu
/// restarted empty answers the reader's next fetch with a zero topic id and a new-leader
/// hint, which librdkafka 2.12.1 looked up by a name the fetch does not carry:
/// `strcmp(NULL)`, SIGSEGV on its main thread, in the first round of every run. The
/// bundled librdkafka is patched (host/vendor/README.md); this is the proof, many rounds
/// with `SYNCHRO_BROKER_RESTARTS`.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_awaiting_responses_survives_broker_restarts() {
    let KafkaHost { port, setup, .. } = KafkaHost::new();
    setup.install(
        "lookup",
        "bus-lookup",
        "name = \"lookup\"\nversion = \"0.1.0\"\nroles = [\"collector\"]\n\
         [schedule]\ninterval = \"1s\"\n\
         [capabilities]\nbus = { publish = [\"requests\"], await = [\"responses\"], correlation = \"json:transaction-id\" }\n\
         [settings]\nrequests = \"requests\"\nresponses = \"responses\"\n",
    );
    let restarts = synchro_testkit::env_u64("SYNCHRO_BROKER_RESTARTS", 3);
    let mut broker = Broker::start_on(port);
    let host = setup.run();
    // Its reader is assigned once the plugin has been called; it knows the topic by its
    // id after its first fetches.
    let deadline = std::time::Instant::now() + WAIT;
    while !setup.try_status().is_ok_and(|report| {
        report
            .plugins
            .iter()
            .any(|p| p.name == "lookup" && p.counters.calls > 0)
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "lookup never ran\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    for round in 1..=restarts {
        drop(broker);
        std::thread::sleep(Duration::from_millis(300));
        broker = Broker::start_on(port);
        // The reader reconnects and fetches within librdkafka's reconnect backoff; the
        // crash came moments after that first fetch (about a second in the runs seen).
        let watched = std::time::Instant::now();
        while watched.elapsed() < Duration::from_secs(4) {
            assert!(
                host.is_running(),
                "round {round}: the host died\n{}",
                host.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    host.stop();
    drop(broker);
}

/// A host killed (-9) while its event step consumes: the restarted host resumes within
/// seconds — a dead member's session is 10 s, not librdkafka's default 45 s — handles
/// every event, and handles again only what it had not yet committed (committed every
/// 200 ms; the figure is printed).
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_host_resumes_its_event_step_within_seconds_and_loses_nothing() {
    const EVENTS: usize = 6000;
    let KafkaHost {
        port,
        prefix,
        source: _source,
        setup,
    } = KafkaHost::new();
    setup.install(
        "people",
        "xos-people",
        "name = \"people\"\nversion = \"0.1.0\"\nroles = [\"event-step\"]\n\
         [events]\ntopics = [\"People\"]\nstart = \"earliest\"\n\
         [capabilities]\nstore = { read = [\"person\"], write = [\"person\"] }\n",
    );
    let broker = Broker::start_on(port);
    let bus = kafka_bus_on(&broker.address, &prefix);
    for i in 0..EVENTS {
        let event = format!(r#"{{"first_name": "p{i}", "last_name": "kill"}}"#);
        bus.publish(synchro_bus::Message::new("People", event.into_bytes()))
            .await
            .unwrap();
    }
    let host = setup.run();
    let first = setup.wait_status("people", WAIT, |p| {
        p.counters.processed >= EVENTS as u64 / 4
    });
    drop(host); // SIGKILL
    let restarted = std::time::Instant::now();
    let host = setup.run();
    setup.wait_status("people", Duration::from_secs(60), |p| {
        p.counters.processed > 0
    });
    let resumed = restarted.elapsed();
    // Every person exactly once: the inventory's 4 changes and one CREATE each.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while setup.status().outbox.last < EVENTS as u64 + 4 {
        assert!(std::time::Instant::now() < deadline, "{:?}", setup.status());
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = setup.plugin_status("people").counters;
    let repeated = second.processed - second.changes;
    eprintln!(
        "killed after ≥ {} of {EVENTS} events; resumed {resumed:?} after the restart; \
         {repeated} handled again",
        first.counters.processed
    );
    assert!(
        resumed < Duration::from_secs(30),
        "resumed only after {resumed:?}\n{}",
        host.log()
    );
    assert_eq!(setup.status().outbox.last, EVENTS as u64 + 4);
    host.stop();
}
