//! publish + await-response from a plugin (plugins/bus-lookup) against a responder on the
//! bus, on both buses.

mod common;

use std::sync::{Arc, Mutex};

use synchro::bus::{Bus, Message, StartFrom, Topics};
use synchro::capability::Services;
use synchro::collector::Collector;
use synchro::config::{Config, PollSettings};
use synchro::plugin::Plugin;
use synchro::runtime::Runtime;
use synchro::state::State;

#[derive(Clone)]
enum Answer {
    Servers(&'static [&'static str]),
    Failure,
    Silence,
}

/// Answers every request on `inventory.requests` as `answer` says, keyed by the
/// request's transaction id.
fn responder(bus: &Bus, answer: Arc<Mutex<Answer>>) {
    let mut requests = bus
        .consume(
            "responder",
            Topics::Names(vec!["inventory.requests".into()]),
            StartFrom::Earliest,
        )
        .unwrap();
    let bus = bus.clone();
    tokio::spawn(async move {
        while let Ok(delivery) = requests.next().await {
            let request: serde_json::Value =
                serde_json::from_slice(&delivery.message.payload).unwrap();
            let id = request["transaction-id"].clone();
            let body = match answer.lock().unwrap().clone() {
                Answer::Servers(ids) => {
                    let servers: Vec<_> =
                        ids.iter().map(|id| serde_json::json!({"id": id})).collect();
                    serde_json::json!({"transaction-id": id, "result": "SUCCESS", "servers": servers})
                }
                Answer::Failure => serde_json::json!({
                    "transaction-id": id, "result": "FAILURE", "httpErrorStatus": "BAD_REQUEST", "error-message": "no such query"
                }),
                Answer::Silence => continue,
            };
            bus.publish(Message::new(
                "inventory.responses",
                body.to_string().into_bytes(),
            ))
            .await
            .unwrap();
            requests.commit(&delivery).unwrap();
        }
    });
}

async fn collector(bus: &Bus, dir: &tempfile::TempDir, publish: &str) -> Collector {
    let runtime = Arc::new(Runtime::new(&dir.path().join("cache")).unwrap());
    let state = Arc::new(State::open(&dir.path().join("data")).unwrap());
    let services = Services::new(bus.clone(), state, PollSettings::default()).unwrap();
    std::fs::copy(common::plugin("bus-lookup"), dir.path().join("lookup.wasm")).unwrap();
    let manifest = dir.path().join("lookup.toml");
    std::fs::write(
        &manifest,
        format!(
            "name = \"lookup\"\nversion = \"0.1.0\"\nroles = [\"collector\"]\n[schedule]\ninterval = \"1h\"\n\
             [capabilities]\nbus = {{ publish = [{publish}], await = [\"inventory.responses\"], correlation = \"json:transaction-id\" }}\n\
             [settings]\nrequests = \"inventory.requests\"\nresponses = \"inventory.responses\"\n"
        ),
    )
    .unwrap();
    let plugin = Plugin::load(&runtime, &manifest, &Config::default()).unwrap();
    plugin.activate(&services).await.unwrap();
    Collector::new(
        synchro::live::Live::new(Arc::new(plugin)),
        runtime,
        services,
    )
}

async fn a_collector_asks_a_responder_on_the_bus(bus: Bus) {
    let answer = Arc::new(Mutex::new(Answer::Servers(&["srv-1", "srv-2"])));
    responder(&bus, answer.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut collector = collector(&bus, &dir, "\"inventory.requests\"").await;

    let report = collector.collect().await.unwrap();
    assert_eq!((report.created, report.deleted), (2, 0));

    *answer.lock().unwrap() = Answer::Failure;
    let error = collector.collect().await.unwrap_err().to_string();
    assert!(
        error.contains("the responder answered FAILURE: no such query"),
        "{error}"
    );

    *answer.lock().unwrap() = Answer::Silence;
    let error = collector.collect().await.unwrap_err().to_string();
    assert!(
        error.contains("(timed-out): no response with correlation id"),
        "{error}"
    );

    *answer.lock().unwrap() = Answer::Servers(&["srv-2"]);
    let report = collector.collect().await.unwrap();
    assert_eq!(
        (report.created, report.updated, report.deleted),
        (0, 0, 1),
        "only now is srv-1 gone"
    );
}

async fn an_ungranted_publish_is_denied(bus: Bus) {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = collector(&bus, &dir, "\"elsewhere\"").await;
    let error = collector.collect().await.unwrap_err().to_string();
    assert!(
        error.contains("(denied): bus: publishing to topic `inventory.requests` is not granted"),
        "{error}"
    );
}

macro_rules! suite {
    ($module:ident, $bus:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread")]
            async fn a_collector_asks_a_responder_on_the_bus() {
                super::a_collector_asks_a_responder_on_the_bus($bus).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn an_ungranted_publish_is_denied() {
                super::an_ungranted_publish_is_denied($bus).await
            }
        }
    };
}

suite!(embedded, Bus::embedded());
suite!(kafka, common::broker::kafka_bus());
