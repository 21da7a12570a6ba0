//! End to end: entities are identified by kind and key and owned by the plugin that wrote
//! them. A hostile collector that reports its neighbour's entities, then a snapshot
//! without them, and then reaches for them through `store`, changes none of them.

use std::time::Duration;

use serde_json::{Value, json};
use synchro_status::Health;
use synchro_testkit::{Setup, Source, op_key};

const WAIT: Duration = Duration::from_secs(30);

fn snapshot(entities: Value) -> String {
    json!({ "mode": "complete", "entities": entities }).to_string()
}

fn pserver(key: &str, properties: Value) -> Value {
    json!({ "key": key, "kind": "pserver", "properties": properties })
}

/// `(source, operation, kind, key)` of a printed change.
fn described(event: &Value) -> (String, String, String, String) {
    let (operation, key) = op_key(event);
    let kind = event["vertex"]["type"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (
        event["source"].as_str().unwrap().to_owned(),
        operation,
        kind,
        key,
    )
}

#[test]
fn a_plugin_cannot_overwrite_delete_or_store_over_another_plugins_entities() {
    let owner_source = Source::start(&snapshot(json!([
        pserver("srv-1", json!({"v": 1})),
        pserver("srv-2", json!({"v": 1})),
    ])));
    let intruder_source = Source::start(&snapshot(json!([])));
    let setup = Setup::new();
    setup.scripted_plugin("owner", &owner_source, "5s", "");
    setup.scripted_plugin_with(
        "intruder",
        &intruder_source,
        "5s",
        "",
        "store = { read = [\"pserver\"], write = [\"pserver\", \"vserver\"] }",
    );
    let host = setup.run();
    let first: Vec<_> = host.raw_events(2, WAIT).iter().map(described).collect();
    assert!(
        first
            .iter()
            .all(|(source, op, ..)| source == "owner" && op == "CREATE"),
        "{first:?}"
    );

    // The intruder reports srv-1 changed, plus srv-1 of another kind: only the latter is
    // its own entity.
    intruder_source.set(
        200,
        &snapshot(json!([
            pserver("srv-1", json!({"forged": true})),
            {"key": "srv-1", "kind": "vserver", "properties": {}},
        ])),
    );
    let created = described(&host.raw_events(1, WAIT)[0]);
    assert_eq!(
        created,
        (
            "intruder".into(),
            "CREATE".into(),
            "vserver".into(),
            "srv-1".into()
        )
    );
    host.wait_for_log(
        "denied: the snapshot reports entities another plugin owns; they are left as they are plugin=intruder refused=1 first=pserver `srv-1` owner=owner",
        WAIT,
    );
    let report = setup.wait_status("intruder", WAIT, |p| p.counters.denials >= 2);
    assert_eq!(report.health, Health::Ok, "{report:?}");

    // Then a snapshot without either (its own vserver goes; the pserver is not its to
    // delete), and store calls on the owner's entities.
    intruder_source.set(
        200,
        &json!({
            "mode": "store",
            "calls": [
                ["save", "pserver", "srv-2", {"forged": true}],
                ["delete", "pserver", "srv-1"],
                ["get", "pserver", "srv-1"],
                ["get", "pserver", "srv-2"],
            ],
        })
        .to_string(),
    );
    let mut rest: Vec<Value> = host.raw_events(2, WAIT);
    rest.sort_by_key(|e| described(e).1);
    assert_eq!(
        described(&rest[0]),
        (
            "intruder".into(),
            "CREATE".into(),
            "probe".into(),
            "store".into()
        )
    );
    assert_eq!(
        described(&rest[1]),
        (
            "intruder".into(),
            "DELETE".into(),
            "vserver".into(),
            "srv-1".into()
        )
    );
    let results = rest[0]["vertex"]["properties"]["results"]
        .as_array()
        .unwrap();
    let denied = |i: usize| results[i].as_str().unwrap().to_owned();
    assert_eq!(
        denied(0),
        "error ErrorCode::Denied: store: replacing pserver `srv-2`: another plugin wrote it, \
         and only its writer may",
    );
    assert_eq!(
        denied(1),
        "error ErrorCode::Denied: store: deleting pserver `srv-1`: another plugin wrote it, \
         and only its writer may",
    );
    assert!(
        !denied(0).contains("owner"),
        "a denial does not name the owner: {results:?}"
    );
    assert_eq!(results[2], r#"found {"v":1}"#, "reading is what is granted");
    assert_eq!(results[3], r#"found {"v":1}"#, "the save changed nothing");

    // Nothing of the owner's changed: its collects stay silent, and its entities hold
    // what it wrote.
    host.expect_silence(Duration::from_millis(800));
    host.stop();
    let listed = setup.command(&["baseline", "list", "owner"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains(r#"{"v":1}"#) && !listed.contains("forged"),
        "{listed}"
    );
}
