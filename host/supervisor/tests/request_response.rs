//! publish + await-response from a plugin (plugins/bus-lookup) against a responder on the
//! bus, on both buses.

use std::sync::{Arc, Mutex};

use synchro_bus::{Bus, Message, StartFrom, Topics};
use synchro_roles::collector::Runner;
use synchro_testkit::Harness;

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

async fn collector(harness: &Harness, publish: &str) -> Runner {
    let manifest = harness.install(
        "lookup",
        "bus-lookup",
        &format!(
            "name = \"lookup\"\nversion = \"0.1.0\"\nroles = [\"collector\"]\n[schedule]\ninterval = \"1h\"\n\
             [capabilities]\nbus = {{ publish = [{publish}], await = [\"inventory.responses\"], correlation = \"json:transaction-id\" }}\n\
             [settings]\nrequests = \"inventory.requests\"\nresponses = \"inventory.responses\"\n"
        ),
    );
    let plugin = harness.load(&manifest).await.unwrap();
    Runner::new(
        Harness::deploy(plugin),
        harness.engine.clone(),
        harness.services.clone(),
    )
}

async fn a_collector_asks_a_responder_on_the_bus(bus: Bus) {
    let answer = Arc::new(Mutex::new(Answer::Servers(&["srv-1", "srv-2"])));
    responder(&bus, answer.clone());
    let harness = Harness::new(&bus);
    let mut collector = collector(&harness, "\"inventory.requests\"").await;

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
    let harness = Harness::new(&bus);
    let mut collector = collector(&harness, "\"elsewhere\"").await;
    let error = collector.collect().await.unwrap_err().to_string();
    assert!(
        error.contains("(denied): bus: publishing to topic `inventory.requests` is not granted"),
        "{error}"
    );
}

macro_rules! suite {
    ($module:ident, $bus:expr) => {
        mod $module {
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

suite!(embedded, synchro_bus::Bus::embedded());
suite!(kafka, synchro_testkit::broker::kafka_bus());
