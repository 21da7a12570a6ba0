//! End to end, the safety rails on a collector's deletes, as an operator meets them: the
//! `synchro` binary runs the http-inventory component against a local HTTP source, on a
//! schedule too long to tick during a test, and the test collects with
//! `POST /v1/plugins/NAME/collect` — so each step is exactly one collect.

use std::collections::BTreeSet;
use std::time::Duration;

use synchro_status::{CollectPlan, CollectReport};
use synchro_testkit::{Setup, Source, pairs};

const WAIT: Duration = Duration::from_secs(30);
const QUIET: Duration = Duration::from_millis(800);

/// The inventory's answer listing `servers`, each `(id, hostname)`.
fn inventory<'a>(servers: impl IntoIterator<Item = (String, &'a str)>) -> String {
    let servers: Vec<serde_json::Value> = servers
        .into_iter()
        .map(|(id, hostname)| serde_json::json!({"id": id, "hostname": hostname}))
        .collect();
    serde_json::json!({ "servers": servers }).to_string()
}

fn numbered(count: usize) -> Vec<(String, &'static str)> {
    (0..count).map(|i| (format!("srv-{i}"), "h")).collect()
}

/// Installs http-inventory as `inv` on `source`, collecting only when asked (and once
/// at start), with `limits` lines in its `[limits]`.
fn install(setup: &Setup, source: &Source, limits: &str) {
    setup.inventory_collector("inv", source, "1h", limits);
}

/// One collect, asked of the admin API; what it did.
fn collect(setup: &Setup) -> CollectReport {
    let (status, body) = setup.admin_request("POST", "/v1/plugins/inv/collect", None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn report(created: u64, updated: u64, deleted: u64, in_grace: u64, held: u64) -> [u64; 5] {
    [created, updated, deleted, in_grace, held]
}

fn counts(r: &CollectReport) -> [u64; 5] {
    [r.created, r.updated, r.deleted, r.in_grace, r.held]
}

/// The value of the sample `name` (with its labels) in the host's `/metrics`.
fn cli(setup: &Setup, args: &[&str]) -> (bool, String) {
    let output = setup.command(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// A source answering an empty list with a 200 after a full one: the defaults hold the
/// deletes (creates and updates of the same answer go through) and tell the operator; a
/// list showing them again ends the hold without a change; an approval deletes exactly
/// the held set, and a stale one is refused.
#[test]
fn an_empty_answer_after_a_full_one_holds_the_deletes_until_approved() {
    let full = numbered(300);
    let source = Source::start(&inventory(full.clone()));
    let setup = Setup::new();
    install(&setup, &source, "");
    let host = setup.run();
    assert_eq!(host.events(300, WAIT).len(), 300);

    // One entity changed, one new, the other 299 missing: the 299 deletes are held.
    source.set(
        200,
        &inventory([("srv-0".into(), "changed"), ("new".into(), "n")]),
    );
    let held = collect(&setup);
    assert_eq!(counts(&held), report(1, 1, 0, 0, 299), "{held:?}");
    assert_eq!(held.entities, 301, "the held entities stay in the baseline");
    assert_eq!(
        host.events(2, WAIT),
        pairs(&[("CREATE", "new"), ("UPDATE", "srv-0")])
    );
    host.expect_silence(QUIET);
    let shown = setup
        .plugin_status("inv")
        .held_deletes
        .expect("held deletes");
    assert_eq!((shown.count, shown.baseline), (299, 300), "{shown:?}");
    assert!(
        shown.reason.contains("limits.max-delete-percent = 50"),
        "{shown:?}"
    );
    assert_eq!(shown.sample.len(), 20);
    host.wait_for_log("deletes held", WAIT);
    // The metrics say so too, and move with the work.
    let plugin = r#"{plugin="inv"}"#;
    assert_eq!(
        setup.metric(&format!("synchro_plugin_held_deletes{plugin}")),
        299.0
    );
    let running = r#"synchro_plugin_state{plugin="inv",state="ok"}"#;
    assert_eq!(setup.metric(running), 1.0);
    // At least a wasm page, at most the plugin's cap (`limits.memory-mb`, 256 by default).
    let memory = setup.metric(&format!("synchro_plugin_memory_bytes{plugin}"));
    assert!(
        (65_536.0..=256.0 * 1024.0 * 1024.0).contains(&memory),
        "{memory}"
    );
    assert_eq!(setup.plugin_status("inv").memory_bytes as f64, memory);
    let calls = setup.metric(&format!("synchro_plugin_calls_total{plugin}"));
    let changes = setup.metric(&format!("synchro_plugin_changes_total{plugin}"));
    assert_eq!(changes, 302.0, "300 creates, one create, one update");
    let timed = setup.metric(&format!("synchro_collect_duration_seconds_count{plugin}"));
    assert_eq!(timed, calls);
    let calls_timed = setup
        .metric(r#"synchro_plugin_call_duration_seconds_count{plugin="inv",role="collector"}"#);
    assert_eq!(calls_timed, calls);
    let (ok, status) = cli(&setup, &["status"]);
    assert!(ok && status.contains("HELD 299 deletes"), "{status}");
    assert!(
        status.contains("synchro plugin approve-deletes inv"),
        "{status}"
    );
    // Held again by the next collect, unchanged: still the same set.
    assert_eq!(counts(&collect(&setup)), report(0, 0, 0, 0, 299));
    assert_eq!(
        setup.metric(&format!("synchro_plugin_calls_total{plugin}")),
        calls + 1.0
    );
    let again = setup.plugin_status("inv").held_deletes.unwrap();
    assert_eq!(again.id, shown.id);
    assert_eq!(
        again.since, shown.since,
        "one hold, not a new one per collect"
    );

    // The source recovers: the hold ends, and nothing was deleted to re-create.
    let mut recovered = full.clone();
    recovered[0].1 = "changed";
    recovered.push(("new".into(), "n"));
    source.set(200, &inventory(recovered.clone()));
    assert_eq!(counts(&collect(&setup)), report(0, 0, 0, 0, 0));
    assert_eq!(setup.plugin_status("inv").held_deletes, None);
    host.expect_silence(QUIET);

    // Empty again: all 301 held. A stale approval changes nothing.
    source.set(200, r#"{"servers": []}"#);
    assert_eq!(counts(&collect(&setup)), report(0, 0, 0, 0, 301));
    let (ok, refused) = cli(
        &setup,
        &["plugin", "approve-deletes", "inv", "--held", &shown.id],
    );
    assert!(!ok && refused.contains("changed since"), "{refused}");
    host.expect_silence(QUIET);

    // The approval deletes exactly the held entities, at once.
    let (ok, approved) = cli(&setup, &["plugin", "approve-deletes", "inv"]);
    assert!(
        ok && approved.contains("deleted 301 held entities"),
        "{approved}"
    );
    let deleted: BTreeSet<(String, String)> = host.events(301, WAIT).into_iter().collect();
    let expected: BTreeSet<(String, String)> = recovered
        .iter()
        .map(|(id, _)| ("DELETE".to_owned(), id.clone()))
        .collect();
    assert_eq!(deleted, expected);
    host.expect_silence(QUIET);
    assert_eq!(setup.plugin_status("inv").held_deletes, None);
    let after = collect(&setup);
    assert_eq!(
        (counts(&after), after.entities),
        (report(0, 0, 0, 0, 0), 0),
        "the baseline is empty too"
    );
    let (ok, nothing) = cli(&setup, &["plugin", "approve-deletes", "inv"]);
    assert!(
        !ok && nothing.contains("`inv` holds no deletes"),
        "{nothing}"
    );
    host.stop();
}

/// A manifest's own threshold (a count), held to the operator's ceiling; deletes at the
/// threshold go through.
#[test]
fn a_count_threshold_holds_past_it_and_the_operators_ceiling_bounds_it() {
    let source = Source::start(&inventory(numbered(20)));
    let setup = Setup::new();
    std::fs::write(
        setup.config(),
        "data-dir = \"data\"\nplugin-dir = \"plugins\"\n\
         [limits]\nmax-deletes = 2\n[ceilings]\nmax-deletes = 3\n",
    )
    .unwrap();
    // The manifest asks for 10 (the host's default is 2); the ceiling holds it to 3.
    install(
        &setup,
        &source,
        "max-deletes = 10\nmax-delete-percent = 100",
    );
    let host = setup.run();
    host.events(20, WAIT);
    host.wait_for_log("max-deletes", WAIT);

    source.set(200, &inventory(numbered(17)));
    assert_eq!(counts(&collect(&setup)), report(0, 0, 3, 0, 0));
    assert_eq!(host.events(3, WAIT).len(), 3);
    source.set(200, &inventory(numbered(13)));
    let held = collect(&setup);
    assert_eq!(counts(&held), report(0, 0, 0, 0, 4));
    let shown = setup.plugin_status("inv").held_deletes.unwrap();
    assert!(
        shown.reason.contains("more than limits.max-deletes = 3"),
        "{shown:?}"
    );
    host.expect_silence(QUIET);
    host.stop();
}

/// With `delete-after-absent = 3`, an entity missing from one or two answers is neither
/// deleted nor created again; missing from three in a row, it is deleted.
#[test]
fn grace_suppresses_a_flapping_entity() {
    let source = Source::start(&inventory(numbered(3)));
    let setup = Setup::new();
    install(&setup, &source, "delete-after-absent = 3");
    let host = setup.run();
    host.events(3, WAIT);

    for _ in 0..2 {
        source.set(200, &inventory(numbered(2)));
        assert_eq!(counts(&collect(&setup)), report(0, 0, 0, 1, 0));
        assert_eq!(counts(&collect(&setup)), report(0, 0, 0, 1, 0));
        source.set(200, &inventory(numbered(3)));
        assert_eq!(counts(&collect(&setup)), report(0, 0, 0, 0, 0));
    }
    host.expect_silence(QUIET);

    source.set(200, &inventory(numbered(2)));
    assert_eq!(counts(&collect(&setup)), report(0, 0, 0, 1, 0));
    assert_eq!(counts(&collect(&setup)), report(0, 0, 0, 1, 0));
    assert_eq!(counts(&collect(&setup)), report(0, 0, 1, 0, 0));
    assert_eq!(host.events(1, WAIT), pairs(&[("DELETE", "srv-2")]));
    host.expect_silence(QUIET);

    // Every collect left a record, a failed one with its error.
    source.set(500, "down");
    let (status, body) = setup.admin_request("POST", "/v1/plugins/inv/collect", None);
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("HTTP status 500"), "{body}");
    let (status, body) = setup.admin_request("GET", "/v1/plugins/inv/runs", None);
    assert_eq!(status, 200, "{body}");
    let runs: Vec<synchro_status::RunRecord> = serde_json::from_str(&body).unwrap();
    let last = runs.last().cloned();
    let runs: Vec<synchro_status::CollectRun> = runs
        .into_iter()
        .map(|run| match run {
            synchro_status::RunRecord::Collect(run) => run,
            other => panic!("a collector's run: {other:?}"),
        })
        .collect();
    assert_eq!(
        runs.len(),
        11,
        "the first collect, nine asked for, the failed one"
    );
    let [.., deleted, failed] = &runs[..] else {
        unreachable!()
    };
    assert_eq!((deleted.report.deleted, deleted.report.entities), (1, 2));
    assert!(deleted.error.is_none() && deleted.started >= runs[0].started);
    assert!(failed.error.as_deref().unwrap().contains("HTTP status 500"));
    assert_eq!(setup.plugin_status("inv").last_run, last);
    assert!(body.contains(r#""kind":"collect""#), "{body}");
    let (ok, text) = cli(&setup, &["plugin", "runs", "inv"]);
    assert!(ok, "{text}");
    assert_eq!(text.lines().count(), 11, "{text}");
    assert!(
        text.lines()
            .nth(9)
            .unwrap()
            .contains("2 entities: 0 created, 0 updated, 1 deleted"),
        "{text}"
    );
    assert!(text.lines().last().unwrap().contains("FAILED"), "{text}");
    host.stop();
}

/// `synchro plugin plan` runs the collect and the commit's own code without keeping
/// anything: nothing is announced, and the next real collect makes exactly the plan's
/// changes. A plan shows what would be held too.
#[test]
fn the_plan_is_what_the_next_collect_does() {
    let source = Source::start(&inventory(numbered(10)));
    let setup = Setup::new();
    install(&setup, &source, "");
    let host = setup.run();
    host.events(10, WAIT);

    let mut next = numbered(10);
    next.remove(3);
    next[0].1 = "renamed";
    next.push(("srv-new".into(), "n"));
    source.set(200, &inventory(next));
    let (ok, text) = cli(&setup, &["plugin", "plan", "inv"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("inv: 10 entities, 3 changes") && text.contains("nothing was committed"),
        "{text}"
    );
    let (ok, json) = cli(&setup, &["plugin", "plan", "inv", "--json"]);
    assert!(ok, "{json}");
    let plan: CollectPlan = serde_json::from_str(&json).unwrap();
    host.expect_silence(QUIET);
    let planned: Vec<(String, String)> = plan
        .changes
        .iter()
        .map(|c| (c.operation.clone(), c.key.clone()))
        .collect();
    assert_eq!(
        planned,
        [
            ("UPDATE".to_owned(), "srv-0".to_owned()),
            ("CREATE".to_owned(), "srv-new".to_owned()),
            ("DELETE".to_owned(), "srv-3".to_owned())
        ]
    );
    assert_eq!(counts(&collect(&setup)), report(1, 1, 1, 0, 0));
    let done: Vec<(String, String)> = host
        .raw_events(3, WAIT)
        .iter()
        .map(synchro_testkit::op_key)
        .collect();
    assert_eq!(done, planned, "the same changes, in the same order");

    // A plan of an empty answer shows the hold it would make, and makes none.
    source.set(200, r#"{"servers": []}"#);
    let (status, body) = setup.admin_request("POST", "/v1/plugins/inv/plan", None);
    assert_eq!(status, 200, "{body}");
    let plan: CollectPlan = serde_json::from_str(&body).unwrap();
    assert_eq!(plan.held_deletes.as_ref().map(|h| h.count), Some(10));
    assert!(plan.changes.is_empty(), "{plan:?}");
    assert_eq!(setup.plugin_status("inv").held_deletes, None);
    host.stop();
}

/// A paused collector is not called on its schedule, its baseline stays, and it still
/// collects when asked; resumed, it runs on its schedule again. Requests for a plugin
/// that is not a collector, or not there, are refused by name.
#[test]
fn pause_stops_the_schedule_and_resume_restarts_it() {
    let source = Source::start(&inventory(numbered(2)));
    let setup = Setup::new();
    setup.inventory_plugin("inv", &source);
    let host = setup.run();
    host.events(2, WAIT);

    let (ok, text) = cli(&setup, &["plugin", "pause", "inv"]);
    assert!(ok && text.contains("inv: paused"), "{text}");
    let paused = setup.plugin_status("inv");
    assert_eq!(paused.health, synchro_status::Health::Paused);
    let calls = paused.counters.calls;
    source.set(200, &inventory(numbered(3)));
    // Several of its 150 ms intervals.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        setup.plugin_status("inv").counters.calls,
        calls,
        "not called"
    );
    host.expect_silence(Duration::from_millis(100));
    let (ok, text) = cli(&setup, &["status"]);
    assert!(ok && text.contains("PAUSED by the operator"), "{text}");

    assert_eq!(counts(&collect(&setup)), report(1, 0, 0, 0, 0));
    assert_eq!(host.events(1, WAIT), pairs(&[("CREATE", "srv-2")]));
    assert_eq!(
        setup.plugin_status("inv").health,
        synchro_status::Health::Paused
    );

    let (ok, text) = cli(&setup, &["plugin", "resume", "inv"]);
    assert!(ok && text.contains("inv: resumed"), "{text}");
    setup.wait_status("inv", WAIT, |p| p.counters.calls >= calls + 3);
    assert_eq!(
        setup.plugin_status("inv").health,
        synchro_status::Health::Ok
    );

    for (path, status, message) in [
        ("/v1/plugins/nope/plan", 404, "no plugin named `nope`"),
        (
            "/v1/plugins/nope/approve-deletes",
            404,
            "no plugin named `nope`",
        ),
        (
            "/v1/plugins/inv/approve-deletes?held=x&other=y",
            400,
            "unknown field `other`",
        ),
    ] {
        let (got, body) = setup.admin_request("POST", path, None);
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.contains(message), "{path}: {body}");
    }
    host.stop();
}
