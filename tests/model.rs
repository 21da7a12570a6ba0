//! End to end: `synchro model get | list` show the model of a running host through its
//! admin API — each entity with its owner, edges with their ends, numbers to the last
//! digit — page by page, and say clearly what is absent or unreachable.

use std::time::Duration;

use serde_json::{Value, json};
use synchro_testkit::{INVENTORY, Setup, Source};

const WAIT: Duration = Duration::from_secs(30);

/// More entities than one page of the admin API holds (`synchro_admin::MAX_PAGE`).
const MANY: usize = 1_234;

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// A line of `synchro model` with its bookkeeping (`[updated N no-sync]`, N depending
/// on which collector committed first) replaced by `[…]`.
fn without_versions(line: &str) -> String {
    let (head, rest) = line
        .split_once(" [updated ")
        .expect("a bookkeeping summary");
    let (books, tail) = rest.split_once("] ").expect("its end");
    assert!(
        books.ends_with(" no-sync"),
        "collector data is not synced: {books}"
    );
    format!("{head} […] {tail}")
}

fn stderr_of_failure(output: &std::process::Output) -> String {
    assert!(!output.status.success(), "succeeded: {output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn model_get_and_list_show_every_entity_with_its_owner_page_by_page() {
    let inventory = Source::start(INVENTORY);
    let many: Vec<Value> = (0..MANY)
        .map(|i| json!({"key": format!("n-{i:05}"), "kind": "node", "properties": {"i": i}}))
        .chain([json!({
            "key": "big",
            "kind": "counter",
            // Text, so that no JSON library on the way rounds it.
            "properties": r#"{"n": 123456789012345678901234567890}"#,
        })])
        .collect();
    let nodes = Source::start(&json!({"mode": "complete", "entities": many}).to_string());
    let setup = Setup::new();
    setup.inventory_plugin("inv", &inventory);
    setup.scripted_plugin("nodes", &nodes, "5s", "");
    let host = setup.run();
    host.raw_events(4 + MANY + 1, WAIT);

    // One vertex, as a line and as JSON.
    let line = stdout(&setup.command(&["model", "get", "pserver", "srv-1"]));
    assert_eq!(
        without_versions(&line),
        "pserver srv-1 (inv) […] {\"hostname\":\"alpha\",\"id\":\"srv-1\"}\n"
    );
    // An edge, whose key holds a `/`, with its ends.
    let edge: Value = serde_json::from_str(&stdout(&setup.command(&[
        "model",
        "get",
        "tosca.relationships.HostedOn",
        "vm-1/hosted-on",
        "--json",
    ])))
    .unwrap();
    assert_eq!(edge["owner"], "inv");
    assert_eq!(
        edge["edge"],
        json!({"source": {"kind": "vserver", "key": "vm-1"}, "target": {"kind": "pserver", "key": "srv-1"}})
    );
    // A 30-digit number keeps every digit, in both forms.
    let big = stdout(&setup.command(&["model", "get", "counter", "big"]));
    assert_eq!(
        without_versions(&big),
        "counter big (nodes) […] {\"n\":123456789012345678901234567890}\n"
    );
    let big = stdout(&setup.command(&["model", "get", "counter", "big", "--json"]));
    assert!(big.contains("123456789012345678901234567890"), "{big}");

    // What is not there is said so, naming it.
    let absent = stderr_of_failure(&setup.command(&["model", "get", "pserver", "srv-9"]));
    assert!(
        absent.contains("the model has no entity pserver `srv-9`"),
        "{absent}"
    );

    // Every entity, by kind then key, across pages.
    let all = stdout(&setup.command(&["model", "list"]));
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 4 + MANY + 1, "{}", &all[..all.len().min(2000)]);
    let ids: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            let mut words = l.split(' ');
            (words.next().unwrap(), words.next().unwrap())
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "by kind, then key");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("node ")).count(),
        MANY
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("node "))
            .all(|l| without_versions(l).contains(" (nodes) […] {\"i\":")),
        "each with its owner"
    );

    // One kind, and a limit that crosses no page or several.
    let vservers = stdout(&setup.command(&["model", "list", "vserver"]));
    assert_eq!(
        without_versions(&vservers),
        "vserver vm-1 (inv) […] {\"id\":\"vm-1\",\"name\":\"web\",\"server\":\"srv-1\"}\n"
    );
    let first = stdout(&setup.command(&["model", "list", "node", "--limit", "3"]));
    assert_eq!(
        first
            .lines()
            .map(|l| l.split(' ').nth(1).unwrap())
            .collect::<Vec<_>>(),
        ["n-00000", "n-00001", "n-00002"]
    );
    let json_lines =
        stdout(&setup.command(&["model", "list", "node", "--json", "--limit", "1100"]));
    let keys: Vec<String> = json_lines
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["key"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(keys.len(), 1100);
    assert_eq!(
        keys[1099], "n-01099",
        "the second page starts after the first"
    );

    // A bad request gets a 400 that names its mistake; the host goes on.
    for (path, says) in [
        ("/v1/model?limit=0", "`limit` must be 1 to 1000, not 0"),
        (
            "/v1/model?limit=5000",
            "`limit` must be 1 to 1000, not 5000",
        ),
        ("/v1/model?limit=many", "limit"),
        (
            "/v1/model?after-kind=node",
            "`after-kind` and `after-key` go together",
        ),
        ("/v1/model?sort=key", "unknown field `sort`"),
    ] {
        let (status, body) = setup.admin_get(path);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains(says), "{path}: {body}");
    }
    let (status, body) =
        setup.admin_get("/v1/model?kind=node&after-kind=node&after-key=n-01232&limit=5");
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["entities"].as_array().unwrap().len(), 1, "{page}");
    assert!(page.get("next").is_none(), "the last page says so: {page}");
    assert!(host.is_running());

    host.stop();
    let stopped = stderr_of_failure(&setup.command(&["model", "list"]));
    assert!(
        stopped.contains("no running host uses the data directory"),
        "{stopped}"
    );
}

#[test]
fn ranked_sources_merge_and_a_losing_write_is_kept_and_takes_over() {
    let snapshot = |properties: Option<Value>| {
        let entities: Vec<Value> = properties
            .into_iter()
            .map(|p| json!({"key": "a", "kind": "pserver", "properties": p}))
            .collect();
        json!({"mode": "complete", "entities": entities}).to_string()
    };
    let cmdb = Source::start(&snapshot(Some(json!({"name": "alpha", "team": "ops"}))));
    let scan = Source::start(&snapshot(Some(json!({"name": "a-01", "ip": "10.0.0.1"}))));
    let setup = Setup::new();
    std::fs::write(
        setup.config(),
        "data-dir = \"data\"\nplugin-dir = \"plugins\"\n[sources]\npserver = [\"cmdb\", \"scan\"]\n",
    )
    .unwrap();
    for (name, source) in [("cmdb", &cmdb), ("scan", &scan)] {
        setup.scripted_plugin(name, source, "5s", "");
    }
    let host = setup.run();
    let get = || {
        let output = setup.command(&["model", "get", "pserver", "a", "--json"]);
        output
            .status
            .success()
            .then(|| serde_json::from_slice::<Value>(&output.stdout).unwrap())
    };
    let wait = |what: &str, check: &dyn Fn(&Value) -> bool| {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(a) = get()
                && check(&a)
            {
                return a;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never {what}: {:?}",
                get()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let merged = json!({"name": "alpha", "team": "ops", "ip": "10.0.0.1"});
    let a = wait("merged", &|a| a["properties"] == merged);
    assert_eq!(a["owner"], "cmdb", "the highest-ranked source owns it");
    let sources: Vec<(Value, Value)> = a["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["plugin"].clone(), s["properties"].clone()))
        .collect();
    assert_eq!(
        sources,
        [
            (json!("cmdb"), json!({"name": "alpha", "team": "ops"})),
            (json!("scan"), json!({"name": "a-01", "ip": "10.0.0.1"}))
        ],
        "the losing write is kept"
    );

    // The higher source no longer has it: the lower one's write takes over.
    cmdb.set(200, &snapshot(None));
    let a = wait("taken over", &|a| a["owner"] == "scan");
    assert_eq!(a["properties"], json!({"name": "a-01", "ip": "10.0.0.1"}));
    scan.set(200, &snapshot(None));
    let deadline = std::time::Instant::now() + WAIT;
    while get().is_some() {
        assert!(std::time::Instant::now() < deadline, "never deleted");
        std::thread::sleep(Duration::from_millis(50));
    }
    host.stop();
}
