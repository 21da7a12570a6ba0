//! End to end: collects that fail in every way change nothing, and poll's limits hold.

use std::time::Duration;

use serde_json::json;
use synchro_status::Health;
use synchro_testkit::{Setup, Source, pairs};

const WAIT: Duration = Duration::from_secs(20);

fn script(mode: &str, entities: &[(&str, serde_json::Value)]) -> String {
    let entities: Vec<_> = entities
        .iter()
        .map(|(key, properties)| json!({"key": key, "kind": "thing", "properties": properties}))
        .collect();
    json!({"mode": mode, "entities": entities}).to_string()
}

#[test]
fn errors_traps_timeouts_and_bad_output_never_delete() {
    let source = Source::start(&script(
        "complete",
        &[("a", json!({"v": 1})), ("b", json!({"v": 1}))],
    ));
    let setup = Setup::new();
    setup.scripted_plugin("scripted", &source, "700ms", "");
    let host = setup.run();
    assert_eq!(
        host.events(2, WAIT),
        pairs(&[("CREATE", "a"), ("CREATE", "b")])
    );

    // Each of these reports nothing (or garbage) and then fails: not one DELETE may follow.
    let cases = [
        (
            script("error", &[]),
            "returned an error (unavailable): the script asked for an error",
        ),
        (
            script("trap", &[]),
            "trapped: wasm trap: wasm `unreachable` instruction executed",
        ),
        (
            script("trap", &[("a", json!({"v": 2}))]),
            "trapped: wasm trap: wasm `unreachable` instruction executed",
        ),
        (script("spin", &[]), "exceeded its deadline of 700ms"),
        (
            script("complete", &[("a", json!("{not json"))]),
            "entity `a`: properties are not valid JSON",
        ),
        (
            script("complete", &[("a", json!([1, 2]))]),
            "entity `a`: properties must be a JSON object, not an array",
        ),
        (
            script("complete", &[("", json!({}))]),
            "an entity has an empty key",
        ),
        (
            script("complete", &[("a", json!({})), ("a", json!({}))]),
            "thing `a` appears twice in one snapshot",
        ),
    ];
    for (body, symptom) in cases {
        source.set(200, &body);
        host.wait_for_log(symptom, WAIT);
        host.expect_silence(Duration::from_millis(250));
    }

    // A partial snapshot updates what it names and deletes nothing; a complete one deletes.
    source.set(200, &script("partial", &[("a", json!({"v": 2}))]));
    assert_eq!(host.events(1, WAIT), pairs(&[("UPDATE", "a")]));
    host.expect_silence(Duration::from_millis(400));
    source.set(200, &script("complete", &[("a", json!({"v": 2}))]));
    assert_eq!(host.events(1, WAIT), pairs(&[("DELETE", "b")]));
    host.stop();
}

#[test]
fn poll_enforces_the_size_cap_and_the_timeout() {
    let source = Source::start(&script(
        "complete",
        &[("a", json!({"pad": "x".repeat(400)}))],
    ));
    let setup = Setup::new();
    std::fs::write(
        setup.config(),
        "data-dir = \"data\"\nplugin-dir = \"plugins\"\n[poll]\nmax-body-bytes = 200\ntimeout = \"300ms\"\n",
    )
    .unwrap();
    setup.scripted_plugin("scripted", &source, "5s", "");
    let host = setup.run();
    host.wait_for_log("is larger than the 200-byte cap", WAIT);
    host.expect_silence(Duration::from_millis(300));

    source.set_delay(Duration::from_secs(2));
    source.set(200, &script("complete", &[("a", json!({}))]));
    host.wait_for_log("no complete response within 300ms", WAIT);
    host.expect_silence(Duration::from_millis(300));

    source.set_delay(Duration::ZERO);
    assert_eq!(host.events(1, WAIT), pairs(&[("CREATE", "a")]));
    host.stop();
}

#[test]
fn snapshots_over_the_limits_fail_and_change_nothing() {
    let source = Source::start(&script("complete", &[("a", json!({})), ("b", json!({}))]));
    let setup = Setup::new();
    setup.scripted_plugin(
        "scripted",
        &source,
        "5s",
        "max-entities = 2\nmax-snapshot-kb = 1",
    );
    let host = setup.run();
    assert_eq!(
        host.events(2, WAIT),
        pairs(&[("CREATE", "a"), ("CREATE", "b")])
    );

    source.set(
        200,
        &script(
            "complete",
            &[("a", json!({})), ("b", json!({})), ("c", json!({}))],
        ),
    );
    host.wait_for_log(
        "produced invalid output: the snapshot has more than 2 entities (limits.max-entities)",
        WAIT,
    );
    host.expect_silence(Duration::from_millis(300));

    source.set(
        200,
        &script("complete", &[("a", json!({"pad": "x".repeat(2000)}))]),
    );
    host.wait_for_log(
        "produced invalid output: the snapshot is larger than 1 KiB (limits.max-snapshot-kb)",
        WAIT,
    );
    host.expect_silence(Duration::from_millis(300));
    host.stop();
}

/// A collector is `starting` until its first collect ends, `ok` when it succeeds, a
/// `recoverable-error` naming the error when the source fails, `ok` again after.
#[test]
fn the_health_goes_from_starting_to_ok_and_names_a_recoverable_error() {
    let source = Source::start(&script("complete", &[("a", json!({}))]));
    source.set_delay(Duration::from_secs(4));
    let setup = Setup::new();
    setup.scripted_plugin("scripted", &source, "1h", "");
    let host = setup.run();
    host.wait_for_log("loaded plugin=scripted", WAIT);
    assert_eq!(
        setup.plugin_status("scripted").health,
        Health::Starting,
        "its first collect waits for the source"
    );
    source.set_delay(Duration::ZERO);
    assert_eq!(host.events(1, WAIT), pairs(&[("CREATE", "a")]));
    setup.wait_status("scripted", WAIT, |p| p.health == Health::Ok);

    source.set(200, &script("error", &[]));
    let failed = setup.command(&["plugin", "collect", "scripted"]);
    assert!(!failed.status.success(), "{failed:?}");
    let status = setup.wait_status("scripted", WAIT, |p| p.health != Health::Ok);
    assert_eq!(
        status.health,
        Health::RecoverableError {
            failures: 1,
            last_error: "collect failed, nothing changed: returned an error (unavailable): the \
                         script asked for an error"
                .into()
        }
    );
    let (status_code, metrics) = setup.admin_request("GET", "/metrics", None);
    assert_eq!(status_code, 200);
    assert!(
        metrics.contains(r#"synchro_plugin_state{plugin="scripted",state="recoverable-error"} 1"#),
        "{metrics}"
    );
    source.set(200, &script("complete", &[("a", json!({}))]));
    let collected = setup.command(&["plugin", "collect", "scripted"]);
    assert!(collected.status.success(), "{collected:?}");
    setup.wait_status("scripted", WAIT, |p| p.health == Health::Ok);
    host.stop();
}

#[test]
fn a_failing_collector_backs_off_is_quarantined_and_released_by_the_operator() {
    let source = Source::start(&script("error", &[]));
    let setup = Setup::new();
    setup.scripted_plugin(
        "scripted",
        &source,
        "5s",
        "quarantine-after = 3\nmax-backoff = \"300ms\"",
    );
    let host = setup.run();
    host.wait_for_log(
        "quarantined after 3 consecutive failures (limits.quarantine-after)",
        WAIT,
    );
    let status = setup.plugin_status("scripted");
    assert_eq!(
        status.health,
        Health::Quarantined {
            failures: 3,
            reason: "collect failed, nothing changed: returned an error (unavailable): the script asked for an error".into()
        }
    );
    assert_eq!(
        (
            status.counters.calls,
            status.counters.failures,
            status.counters.quarantines
        ),
        (3, 3, 1)
    );
    let failed = |log: &str| {
        log.lines()
            .filter(|l| l.contains(" WARN ") && l.contains("collect failed"))
            .count()
    };
    assert_eq!(failed(&host.log()), 3);
    // Quarantined: not called again, even once the source is fine.
    source.set(200, &script("complete", &[("a", json!({}))]));
    host.expect_silence(Duration::from_millis(800));
    assert_eq!(failed(&host.log()), 3);

    // The operator releases it: it runs again, and what it reports arrives.
    let refused = setup.command(&["plugin", "release", "nobody"]);
    assert!(!refused.status.success());
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr).trim(),
        "synchro: no plugin named `nobody` is running (running: scripted)"
    );
    let released = setup.command(&["plugin", "release", "scripted"]);
    assert!(released.status.success(), "{released:?}");
    assert_eq!(host.events(1, WAIT), pairs(&[("CREATE", "a")]));
    assert_eq!(setup.plugin_status("scripted").health, Health::Ok);
    let again = setup.command(&["plugin", "release", "scripted"]);
    assert_eq!(
        String::from_utf8_lossy(&again.stderr).trim(),
        "synchro: `scripted` is not quarantined"
    );
    host.stop();
}

#[test]
fn a_fuel_budget_stops_a_spinning_plugin_long_before_its_deadline() {
    let source = Source::start(&script("spin", &[]));
    let setup = Setup::new();
    setup.scripted_plugin(
        "scripted",
        &source,
        "60s",
        "fuel = 20000000\nquarantine-after = 1000\nmax-backoff = \"100ms\"",
    );
    let manifest = setup.plugin_dir().join("scripted.toml");
    let unmetered = setup.command(&["plugin", "check", manifest.to_str().unwrap()]);
    assert!(!unmetered.status.success());
    assert!(
        String::from_utf8_lossy(&unmetered.stderr).contains(
            "a fuel budget (20000000) needs fuel metering, which this host runs without \
             (set `fuel-metering = true` in the host config)"
        ),
        "{unmetered:?}"
    );

    std::fs::write(
        setup.config(),
        "data-dir = \"data\"\nplugin-dir = \"plugins\"\nfuel-metering = true\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let host = setup.run();
    host.wait_for_log(
        "collect failed, nothing changed: used up its fuel budget of 20000000 (limits.fuel)",
        WAIT,
    );
    // The deadline is 60 s: fuel, not the deadline, stopped it.
    assert!(started.elapsed() < Duration::from_secs(30));
    host.stop();
}

/// What a plugin prints reaches the host's log as its `log` lines do: attributed to it,
/// held to its lines per call and 4 KiB a line; and a panic's message is there before
/// the failure it caused, instead of a bare "unreachable".
#[test]
fn what_a_plugin_prints_reaches_the_log_attributed_and_bounded() {
    let printer = Source::start(
        &json!({"mode": "print", "count": 50, "stdout": "hello from stdout",
                "stderr": "e".repeat(5000), "entities": [{"key": "a", "kind": "k", "properties": {}}]})
        .to_string(),
    );
    let trapper = Source::start(&json!({"mode": "trap"}).to_string());
    let setup = Setup::new();
    setup.scripted_plugin_with(
        "printer",
        &printer,
        "5s",
        "",
        "log = { lines-per-call = 5 }",
    );
    setup.scripted_plugin("trapper", &trapper, "5s", "");
    let host = setup.run();
    assert_eq!(host.events(1, WAIT), pairs(&[("CREATE", "a")]));
    host.wait_for_log(
        "stdout and stderr lines over the per-call cap were dropped plugin=printer dropped=95",
        WAIT,
    );
    let log = host.log();
    let first_call = &log[..log.find("dropped=95").unwrap()];
    let printed: Vec<&str> = first_call
        .lines()
        .filter(|l| l.contains(" plugin: ") && l.contains("plugin=printer"))
        .collect();
    assert_eq!(printed.len(), 5, "{printed:?}");
    let stdout: Vec<&&str> = printed
        .iter()
        .filter(|l| l.contains("hello from stdout"))
        .collect();
    assert_eq!(stdout.len(), 3, "{printed:?}");
    assert!(
        stdout
            .iter()
            .all(|l| l.contains("INFO") && l.contains("stream=stdout"))
    );
    for line in printed.iter().filter(|l| l.contains("stream=stderr")) {
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains("eeee… [904 bytes cut]"), "{line}");
        assert!(line.len() < 4096 + 200, "a line of {} bytes", line.len());
    }

    // The panic says why, attributed, before the failure is reported.
    host.wait_for_log("collect failed, nothing changed", WAIT);
    let log = host.log();
    let panic = log
        .lines()
        .position(|l| l.contains("the script asked for a trap"))
        .unwrap_or_else(|| panic!("the panic's message is not in the log:\n{log}"));
    let line = log.lines().nth(panic).unwrap();
    assert!(
        line.contains("plugin=trapper") && line.contains("stream=stderr"),
        "{line}"
    );
    let failed = log
        .lines()
        .position(|l| l.contains("collect failed") && l.contains("trapper"))
        .unwrap();
    assert!(panic < failed, "{log}");
    host.stop();
}

#[test]
fn a_plugin_flooding_the_log_is_held_to_its_lines_and_bytes() {
    let source = Source::start(
        &json!({"mode": "log-flood", "count": 1000, "size": 100_000, "entities": [{"key": "a", "kind": "k", "properties": {}}]})
            .to_string(),
    );
    let setup = Setup::new();
    setup.scripted_plugin_with("flood", &source, "5s", "", "log = { lines-per-call = 5 }");
    let host = setup.run();
    // The plugin is not failed for it: its entity arrives.
    assert_eq!(host.events(1, WAIT), pairs(&[("CREATE", "a")]));
    host.wait_for_log(
        "log lines over the per-call cap were dropped plugin=flood dropped=995",
        WAIT,
    );
    let log = host.log();
    let first_call = &log[..log.find("dropped=995").unwrap()];
    let lines: Vec<&str> = first_call
        .lines()
        .filter(|l| l.contains("flood line"))
        .collect();
    assert_eq!(lines.len(), 5, "{first_call}");
    for line in lines {
        assert!(line.len() < 4096 + 200, "a line of {} bytes", line.len());
        assert!(line.contains("… [95915 bytes cut]"), "{line}");
    }
    host.stop();
}
