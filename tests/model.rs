//! End to end: `synchro model get | list` show the model of a running host through its
//! admin API — each entity with its owner, edges with their ends, numbers to the last
//! digit — page by page, and say clearly what is absent or unreachable; `synchro model
//! put | delete` write it as the API, which keeps the graph whole.

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

/// The API writes the graph whole: an edge needs its ends (a collector's edge may
/// dangle; the API's may not), a vertex with edges goes only with a cascade, edges first,
/// and never one another plugin wrote; every write is announced with `api` as its source.
#[test]
fn the_api_writes_the_graph_whole_and_deletes_only_what_it_wrote() {
    let inventory = Source::start(INVENTORY);
    let setup = Setup::new();
    setup.inventory_plugin("inv", &inventory);
    let host = setup.run();
    host.raw_events(4, WAIT);
    let model = |args: &[&str]| setup.command(&[&["model"], args].concat());

    let vertex = stdout(&model(&["put", "pserver", "api-1", r#"{"name": "x"}"#]));
    assert!(
        vertex.starts_with("pserver api-1 (api) [updated ")
            && vertex.ends_with("] {\"name\":\"x\"}\n"),
        "owned by the API, and synced when a step is there (not no-sync): {vertex}"
    );
    assert!(!vertex.contains("no-sync"), "{vertex}");
    let missing = stderr_of_failure(&model(&[
        "put", "link", "l-1", "{}", "--from", "pserver", "api-1", "--to", "pserver", "nowhere",
    ]));
    assert!(
        missing.contains("the edge's target pserver `nowhere` is not in the model"),
        "{missing}"
    );
    // An end another plugin wrote is an end.
    let edge: Value = serde_json::from_str(&stdout(&model(&[
        "put",
        "link",
        "l-1",
        r#"{"w": 1}"#,
        "--from",
        "pserver",
        "api-1",
        "--to",
        "pserver",
        "srv-1",
        "--json",
    ])))
    .unwrap();
    assert_eq!(
        edge["edge"],
        json!({"source": {"kind": "pserver", "key": "api-1"}, "target": {"kind": "pserver", "key": "srv-1"}})
    );
    let created: Vec<Value> = host.raw_events(2, WAIT);
    assert!(
        created
            .iter()
            .all(|e| e["source"] == "api" && e["operation"] == "CREATE"),
        "{created:?}"
    );

    // A plugin's entity is changed at its source, not over it.
    let theirs = stderr_of_failure(&model(&["put", "pserver", "srv-1", "{}"]));
    assert!(
        theirs.contains("cannot replace pserver `srv-1`: inv wrote it, and only its writer may"),
        "{theirs}"
    );
    // A vertex with edges: refused, then deleted with them, the edge first.
    let held = stderr_of_failure(&model(&["delete", "pserver", "api-1"]));
    assert!(
        held.contains(
            "the vertex has 1 edge(s) (link `l-1`): delete them first, or ask to cascade"
        ),
        "{held}"
    );
    assert!(model(&["get", "pserver", "api-1"]).status.success());
    let deleted = stdout(&model(&["delete", "pserver", "api-1", "--cascade"]));
    assert_eq!(deleted, "deleted link l-1\ndeleted pserver api-1\n");
    let gone = host.raw_events(2, WAIT);
    assert_eq!(
        gone.iter().map(synchro_testkit::op_key).collect::<Vec<_>>(),
        [("DELETE", "l-1"), ("DELETE", "api-1")].map(|(op, key)| (op.to_owned(), key.to_owned())),
        "the edge first, on the stream too"
    );
    assert_eq!(
        gone[0]["database-transaction-id"], gone[1]["database-transaction-id"],
        "one request, one transaction: {gone:?}"
    );
    // The collector's vertex has the collector's edge: no cascade deletes it.
    let edge_of_inv = stderr_of_failure(&model(&["delete", "pserver", "srv-1", "--cascade"]));
    assert!(
        edge_of_inv.contains(
            "cascading would delete the edge tosca.relationships.HostedOn `vm-1/hosted-on`, which inv wrote"
        ),
        "{edge_of_inv}"
    );
    let absent = stderr_of_failure(&model(&["delete", "pserver", "api-1"]));
    assert!(
        absent.contains("the model has no entity pserver `api-1`"),
        "{absent}"
    );

    // Bad requests name their mistake; the host goes on.
    for (method, path, body, says) in [
        ("PUT", "/v1/model/pserver/x", Some("{"), "EOF"),
        (
            "PUT",
            "/v1/model/pserver/x",
            Some(r#"{"properties": [1]}"#),
            "properties",
        ),
        (
            "PUT",
            "/v1/model/pserver/x",
            Some(r#"{"properties": {}, "colour": 1}"#),
            "unknown field `colour`",
        ),
        (
            "DELETE",
            "/v1/model/pserver/srv-2?cascade=maybe",
            None,
            "cascade",
        ),
    ] {
        let (status, answer) = setup.admin_request(method, path, body);
        assert_eq!(status, 400, "{method} {path}: {answer}");
        assert!(answer.contains(says), "{method} {path}: {answer}");
    }
    assert!(model(&["get", "pserver", "srv-2"]).status.success());
    host.expect_silence(Duration::from_millis(500));
    assert!(host.is_running());
}

/// The model's `pserver` `a` once `check` holds, read with `model get --json`.
fn wait_for_a(setup: &Setup, what: &str, check: &dyn Fn(Option<&Value>) -> bool) -> Option<Value> {
    let get = || {
        let output = setup.command(&["model", "get", "pserver", "a", "--json"]);
        output
            .status
            .success()
            .then(|| serde_json::from_slice::<Value>(&output.stdout).unwrap())
    };
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let a = get();
        if check(a.as_ref()) {
            return a;
        }
        assert!(std::time::Instant::now() < deadline, "never {what}: {a:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A snapshot of `pserver` `a` with `properties`, or of nothing.
fn snapshot_of_a(properties: Option<Value>) -> String {
    let entities: Vec<Value> = properties
        .into_iter()
        .map(|p| json!({"key": "a", "kind": "pserver", "properties": p}))
        .collect();
    json!({"mode": "complete", "entities": entities}).to_string()
}

/// The collector-and-the-API case: a source that saves through `store` is ranked like
/// a collector's snapshot — merged with it, and its delete withdraws only its write.
#[test]
fn a_source_saving_through_store_is_ranked_and_merged_like_a_snapshot() {
    let scan = Source::start(&snapshot_of_a(Some(
        json!({"name": "a-01", "ip": "10.0.0.1"}),
    )));
    let calls = |call: Value| json!({"mode": "store", "calls": [call]}).to_string();
    let desk = Source::start(&calls(json!(["save", "pserver", "a", {"name": "alpha"}])));
    let setup = Setup::new();
    // A source withdrawing its only entity deletes all of its baseline, which the
    // default `max-delete-percent` holds for an operator; these tests are about merging.
    std::fs::write(
        setup.config(),
        "data-dir = \"data\"\nplugin-dir = \"plugins\"\n[sources]\npserver = [\"desk\", \"scan\"]\n\
         [limits]\nmax-delete-percent = 100\n",
    )
    .unwrap();
    setup.scripted_plugin("scan", &scan, "5s", "");
    let grant = r#"store = { read = ["pserver"], write = ["pserver"] }"#;
    setup.scripted_plugin_with("desk", &desk, "5s", "", grant);
    let host = setup.run();
    let merged = json!({"name": "alpha", "ip": "10.0.0.1"});
    let a = wait_for_a(&setup, "merged", &|a| {
        a.is_some_and(|a| a["properties"] == merged)
    })
    .unwrap();
    assert_eq!(a["owner"], "desk", "the highest-ranked source owns it");
    assert_eq!(a["sources"].as_array().unwrap().len(), 2, "{a:#}");

    // The store's delete withdraws desk's write: scan's stays.
    desk.set(200, &calls(json!(["delete", "pserver", "a"])));
    let a = wait_for_a(&setup, "withdrawn", &|a| {
        a.is_some_and(|a| a["owner"] == "scan")
    })
    .unwrap();
    assert_eq!(a["properties"], json!({"name": "a-01", "ip": "10.0.0.1"}));
    scan.set(200, &snapshot_of_a(None));
    wait_for_a(&setup, "deleted", &|a| a.is_none());
    host.stop();
}

#[test]
fn ranked_sources_merge_and_a_losing_write_is_kept_and_takes_over() {
    let cmdb = Source::start(&snapshot_of_a(Some(
        json!({"name": "alpha", "team": "ops"}),
    )));
    let scan = Source::start(&snapshot_of_a(Some(
        json!({"name": "a-01", "ip": "10.0.0.1"}),
    )));
    let setup = Setup::new();
    // A source withdrawing its only entity deletes all of its baseline, which the
    // default `max-delete-percent` holds for an operator; these tests are about merging.
    std::fs::write(
        setup.config(),
        "data-dir = \"data\"\nplugin-dir = \"plugins\"\n[sources]\npserver = [\"cmdb\", \"scan\"]\n\
         [limits]\nmax-delete-percent = 100\n",
    )
    .unwrap();
    for (name, source) in [("cmdb", &cmdb), ("scan", &scan)] {
        setup.scripted_plugin(name, source, "5s", "");
    }
    let host = setup.run();
    let merged = json!({"name": "alpha", "team": "ops", "ip": "10.0.0.1"});
    let a = wait_for_a(&setup, "merged", &|a| {
        a.is_some_and(|a| a["properties"] == merged)
    })
    .unwrap();
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
    cmdb.set(200, &snapshot_of_a(None));
    let a = wait_for_a(&setup, "taken over", &|a| {
        a.is_some_and(|a| a["owner"] == "scan")
    })
    .unwrap();
    assert_eq!(a["properties"], json!({"name": "a-01", "ip": "10.0.0.1"}));
    scan.set(200, &snapshot_of_a(None));
    wait_for_a(&setup, "deleted", &|a| a.is_none());
    host.stop();
}
