//! One behavioural suite, run against both bus implementations: the embedded bus and
//! Kafka (a real tansu broker on loopback).

use std::collections::BTreeSet;
use std::time::Duration;

use synchro_bus::{Bus, BusError, CorrelationId, Message, StartFrom, Topics};

const WAIT: Duration = Duration::from_secs(30);

fn text(message: &Message) -> String {
    String::from_utf8(message.payload.clone()).unwrap()
}

async fn next_text(consumer: &mut synchro_bus::Consumer) -> (String, synchro_bus::Delivery) {
    let delivery = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("a message in time")
        .unwrap();
    (text(&delivery.message), delivery)
}

async fn publish(bus: &Bus, topic: &str, payloads: &[&str]) {
    for p in payloads {
        bus.publish(Message::new(topic, p.as_bytes().to_vec()).with_key("k"))
            .await
            .unwrap();
    }
}

/// Offsets are committed only when the consumer commits: a new member of the group gets
/// what was delivered but not committed, then the rest.
async fn commit_after_success_and_resume(bus: Bus) {
    publish(&bus, "events", &["m0", "m1", "m2"]).await;
    let mut first = bus
        .consume(
            "step",
            Topics::Names(vec!["events".into()]),
            StartFrom::Earliest,
        )
        .unwrap();
    let (m0, d0) = next_text(&mut first).await;
    assert_eq!(m0, "m0");
    first.commit(&d0).unwrap();
    let (m1, _) = next_text(&mut first).await;
    assert_eq!(m1, "m1", "order is kept");
    drop(first); // m1 was processed but never committed: as if the step failed or crashed

    let mut second = bus
        .consume(
            "step",
            Topics::Names(vec!["events".into()]),
            StartFrom::Latest,
        )
        .unwrap();
    let (again, d1) = next_text(&mut second).await;
    assert_eq!(again, "m1", "an uncommitted message is delivered again");
    second.commit(&d1).unwrap();
    let (m2, d2) = next_text(&mut second).await;
    assert_eq!(m2, "m2");
    second.commit(&d2).unwrap();
    drop(second);

    publish(&bus, "events", &["m3"]).await;
    let mut third = bus
        .consume(
            "step",
            Topics::Names(vec!["events".into()]),
            StartFrom::Earliest,
        )
        .unwrap();
    assert_eq!(
        next_text(&mut third).await.0,
        "m3",
        "a rejoining group resumes after its last commit"
    );
}

/// A consumer's lag is what its topics hold that it has not been handed yet (on Kafka,
/// as librdkafka last heard of each partition's end).
async fn lag_counts_what_was_not_handed_out(bus: Bus) {
    publish(&bus, "lagged", &["m0", "m1", "m2", "m3", "m4"]).await;
    let mut consumer = bus
        .consume(
            "lagging",
            Topics::Names(vec!["lagged".into()]),
            StartFrom::Earliest,
        )
        .unwrap();
    let lag_becomes = |consumer: &synchro_bus::Consumer, wanted: u64| {
        let deadline = std::time::Instant::now() + WAIT;
        while consumer.lag() != wanted {
            assert!(
                std::time::Instant::now() < deadline,
                "lag {} instead of {wanted}",
                consumer.lag()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for _ in 0..2 {
        next_text(&mut consumer).await;
    }
    lag_becomes(&consumer, 3);
    for _ in 0..3 {
        next_text(&mut consumer).await;
    }
    lag_becomes(&consumer, 0);
}

/// Two groups on one topic each see every message.
async fn every_group_sees_every_message(bus: Bus) {
    publish(&bus, "shared", &["a", "b"]).await;
    for group in ["one", "two"] {
        let mut consumer = bus
            .consume(
                group,
                Topics::Names(vec!["shared".into()]),
                StartFrom::Earliest,
            )
            .unwrap();
        assert_eq!(next_text(&mut consumer).await.0, "a", "{group}");
        assert_eq!(next_text(&mut consumer).await.0, "b", "{group}");
    }
}

/// Patterns match whole topic names, including topics created later.
async fn patterns_match_whole_names(bus: Bus) {
    publish(&bus, "orders.eu", &["eu"]).await;
    publish(&bus, "orders-archive", &["nope"]).await;
    let mut consumer = bus
        .consume(
            "p",
            Topics::Pattern(r"orders\.[a-z]+".into()),
            StartFrom::Earliest,
        )
        .unwrap();
    let (eu, delivery) = next_text(&mut consumer).await;
    assert_eq!(eu, "eu");
    consumer.commit(&delivery).unwrap();
    publish(&bus, "orders.us", &["us"]).await;
    // Picking up the new topic may rebalance the group and deliver "eu" again (at least
    // once); "orders-archive" must never match.
    loop {
        let (text, delivery) = next_text(&mut consumer).await;
        consumer.commit(&delivery).unwrap();
        match text.as_str() {
            "us" => break,
            "eu" => continue,
            other => panic!("`{other}` does not match the pattern"),
        }
    }

    let error = bus
        .consume(
            "bad",
            Topics::Pattern("(unclosed".into()),
            StartFrom::Earliest,
        )
        .err()
        .unwrap();
    assert!(matches!(error, BusError::BadPattern { .. }), "{error}");
}

fn response(id: &str) -> Message {
    Message::new("responses", id.as_bytes().to_vec()).with_header("correlation-id", id)
}

/// A response that beats its waiter is kept; each waiter gets its own; timeouts are
/// typed; late, duplicate and id-less responses are dropped and counted.
async fn correlated_responses(bus: Bus) {
    bus.expect_responses("responses", CorrelationId::default())
        .await
        .unwrap();
    bus.publish(response("early")).await.unwrap();
    // On Kafka the response reader must first read it.
    let got = bus
        .await_response("responses", "early", WAIT)
        .await
        .unwrap();
    assert_eq!(text(&got), "early");

    let waiter = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.await_response("responses", "mine", WAIT).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.publish(response("someone-else")).await.unwrap();
    bus.publish(response("mine")).await.unwrap();
    assert_eq!(text(&waiter.await.unwrap().unwrap()), "mine");

    let error = bus
        .await_response("responses", "slow", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(error, BusError::TimedOut { .. }), "{error}");
    bus.publish(response("slow")).await.unwrap();
    bus.publish(response("mine")).await.unwrap();
    bus.publish(Message::new("responses", b"no id".to_vec()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while bus.response_stats().late < 1
        || bus.response_stats().duplicate < 1
        || bus.response_stats().malformed < 1
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            bus.response_stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = bus.response_stats();
    assert_eq!(
        (
            stats.delivered,
            stats.late,
            stats.duplicate,
            stats.malformed
        ),
        (2, 1, 1, 1),
        "{stats:?}"
    );
    assert_eq!(stats.timed_out, 1, "{stats:?}");
    assert_eq!(
        bus.response_waits().count(),
        2,
        "one answered wait each delivered"
    );
}

/// Gizmo's responses carry the id in the body's `transaction-id`.
async fn json_field_correlation(bus: Bus) {
    bus.expect_responses(
        "gizmo-responses",
        CorrelationId::JsonField("transaction-id".into()),
    )
    .await
    .unwrap();
    let waiter = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.await_response("gizmo-responses", "t-42", WAIT).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    for body in [
        r#"{"transaction-id":"t-41","result":"SUCCESS"}"#,
        "not json",
        r#"{"transaction-id":"t-42","result":"FAILURE"}"#,
    ] {
        bus.publish(Message::new("gizmo-responses", body.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    let got = waiter.await.unwrap().unwrap();
    assert!(text(&got).contains("FAILURE"));
}

/// Keys and header values are bytes: what a producer wrote, text or not, is what a
/// consumer gets.
async fn binary_keys_and_headers_arrive_unchanged(bus: Bus) {
    let key = vec![0xff, 0x00, b'k', 0xc3];
    let value = vec![0xfe, 0x80, 0x00];
    let sent = Message::new("binary", b"payload".to_vec())
        .with_key(key.clone())
        .with_header("raw", value.clone())
        .with_header("text", "plain");
    bus.publish(sent).await.unwrap();
    let mut consumer = bus
        .consume(
            "binary-reader",
            Topics::Names(vec!["binary".into()]),
            StartFrom::Earliest,
        )
        .unwrap();
    let delivery = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("a message in time")
        .unwrap();
    let got = &delivery.message;
    assert_eq!(got.key.as_deref(), Some(key.as_slice()));
    assert_eq!(
        got.headers,
        [
            ("raw".to_owned(), value),
            ("text".to_owned(), b"plain".to_vec())
        ]
    );
    assert_eq!(got.header("raw"), None, "not text");
    assert_eq!(got.header("text"), Some("plain"));
}

macro_rules! suite {
    ($module:ident, $bus:expr) => {
        mod $module {
            #[tokio::test(flavor = "multi_thread")]
            async fn commit_after_success_and_resume() {
                super::commit_after_success_and_resume($bus).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn binary_keys_and_headers_arrive_unchanged() {
                super::binary_keys_and_headers_arrive_unchanged($bus).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn every_group_sees_every_message() {
                super::every_group_sees_every_message($bus).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn patterns_match_whole_names() {
                super::patterns_match_whole_names($bus).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn correlated_responses() {
                super::correlated_responses($bus).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn lag_counts_what_was_not_handed_out() {
                super::lag_counts_what_was_not_handed_out($bus).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn json_field_correlation() {
                super::json_field_correlation($bus).await
            }
        }
    };
}

suite!(embedded, synchro_bus::Bus::embedded());
suite!(kafka, synchro_testkit::broker::kafka_bus());

/// Hosts sharing one response topic each get their own responses (no consumer group
/// takes another host's replies).
#[tokio::test(flavor = "multi_thread")]
async fn kafka_hosts_sharing_a_response_topic_each_get_theirs() {
    let a = synchro_testkit::broker::kafka_bus();
    let Bus::Kafka(kafka) = &a else {
        unreachable!()
    };
    let b = Bus::Kafka(
        synchro_bus::kafka::Kafka::new(
            kafka.settings().clone(),
            synchro_bus::kafka::Member::Ephemeral,
        )
        .unwrap(),
    );
    for bus in [&a, &b] {
        bus.expect_responses("responses", CorrelationId::default())
            .await
            .unwrap();
    }
    let waits: Vec<_> = [(a.clone(), "for-a"), (b.clone(), "for-b")]
        .into_iter()
        .map(|(bus, id)| {
            tokio::spawn(async move { bus.await_response("responses", id, WAIT).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.publish(response("for-b")).await.unwrap();
    b.publish(response("for-a")).await.unwrap();
    let got: BTreeSet<String> = futures_join(waits).await;
    assert_eq!(got, ["for-a".to_owned(), "for-b".to_owned()].into());
}

async fn futures_join(
    handles: Vec<tokio::task::JoinHandle<Result<std::sync::Arc<Message>, BusError>>>,
) -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    for handle in handles {
        got.insert(text(&handle.await.unwrap().unwrap()));
    }
    got
}

/// A declared topic is on the broker before anything is published to it, so that a
/// group subscribing to it finds it at its first join; declaring again is harmless.
#[tokio::test(flavor = "multi_thread")]
async fn a_declared_kafka_topic_exists_before_anything_is_published() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let bus = synchro_testkit::broker::kafka_bus();
    let Bus::Kafka(kafka) = &bus else {
        unreachable!()
    };
    let settings = kafka.settings().clone();
    let partitions = move |topic: &str| {
        let wire = format!("{}{topic}", settings.topic_prefix);
        let client: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("allow.auto.create.topics", "false")
            .create()
            .unwrap();
        let metadata = client.fetch_metadata(Some(&wire), WAIT).unwrap();
        let topic = &metadata.topics()[0];
        match topic.error() {
            None => topic.partitions().len(),
            Some(_) => 0,
        }
    };
    let undeclared = partitions.clone();
    assert_eq!(
        tokio::task::spawn_blocking(move || undeclared("never-declared"))
            .await
            .unwrap(),
        0
    );
    bus.declare("requests").await.unwrap();
    bus.declare("requests").await.unwrap();
    assert!(
        tokio::task::spawn_blocking(move || partitions("requests"))
            .await
            .unwrap()
            > 0
    );
}
