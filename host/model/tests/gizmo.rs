//! Every event and response of Gizmo's async-mode document (tests/fixtures/gizmo, taken
//! from the seed) parses into the typed envelopes and serialises back to the same JSON;
//! requests wrap every event and round-trip too.

use std::path::Path;

use serde_json::{Value, json};
use synchro_model::gizmo::{Event, Outcome, Request, Response, Subject};

fn fixtures(kind: &str) -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gizmo");
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().contains(kind))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.file_name().unwrap().to_str().unwrap().to_owned(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[test]
fn every_event_round_trips() {
    let events = fixtures("-event-");
    assert_eq!(events.len(), 6, "three vertex and three edge events");
    for (name, json) in events {
        let event: Event =
            serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(serde_json::to_value(&event).unwrap(), json, "{name}");
        assert!(
            event.database_transaction_id.is_some(),
            "{name}: the seed's events are bulk"
        );
        if name.contains("edge") {
            assert!(matches!(event.subject, Subject::Edge(_)), "{name}");
        }

        // Wrapped in a request envelope: request-id = transaction-id.
        let request = Request::new(event.clone(), "synchro", "update-notification");
        request.validate().unwrap();
        let text = serde_json::to_string(&request).unwrap();
        let back: Request = serde_json::from_str(&text).unwrap();
        assert_eq!(back, request, "{name}");
        let wire: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(wire["header"]["request-id"], wire["body"]["transaction-id"]);
        for field in [
            "timestamp",
            "source-name",
            "event-type",
            "validation-entity-type",
        ] {
            assert!(
                wire["header"].get(field).is_some(),
                "{name}: header lacks {field}"
            );
        }
    }
}

#[test]
fn every_response_round_trips_and_failures_carry_a_status() {
    let responses = fixtures("-response-");
    assert_eq!(responses.len(), 7);
    for (name, json) in responses {
        let response: Response =
            serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(serde_json::to_value(&response).unwrap(), json, "{name}");
        match response.result {
            Outcome::Success => assert_eq!(response.http_status(), None, "{name}"),
            Outcome::Failure => {
                assert_eq!(response.http_status(), Some(400), "{name}");
                assert_eq!(
                    response.error_message.as_deref(),
                    Some("aai-created-ts can't be updated")
                );
            }
        }
    }
}

#[test]
fn policy_violations_and_malformed_envelopes() {
    let failure = json!({
        "timestamp": 1, "operation": "CREATE", "vertex": {"key": "k", "type": "pserver"},
        "transaction-id": "t", "result": "FAILURE", "error-message": "rejected",
        "httpErrorStatus": "CONFLICT", "policyViolations": [{"policy": "p1"}]
    });
    let response: Response = serde_json::from_value(failure.clone()).unwrap();
    assert_eq!(response.http_status(), Some(409));
    assert_eq!(serde_json::to_value(&response).unwrap(), failure);

    let error = |json: Value| {
        serde_json::from_value::<Response>(json)
            .unwrap_err()
            .to_string()
    };
    let mut bad = failure.clone();
    bad["result"] = json!("MAYBE");
    assert!(error(bad).contains("unknown variant `MAYBE`"));
    let mut bad = failure.clone();
    bad.as_object_mut().unwrap().remove("transaction-id");
    assert!(error(bad).contains("transaction-id"));

    let event: Event = serde_json::from_value(json!({
        "timestamp": 1, "operation": "DELETE", "vertex": {"key": "k", "type": "pserver"}, "transaction-id": "t"
    }))
    .unwrap();
    let mut request = Request::new(event, "s", "e");
    request.header.request_id = "other".into();
    assert_eq!(
        request.validate().unwrap_err().to_string(),
        "request-id `other` differs from the body's transaction-id `t`"
    );
}
