//! End to end: the operator's host config narrows what manifests ask for — grants per
//! plugin and ceilings on limits — and `synchro plugin check` shows both sides.

use std::time::Duration;

use synchro_status::Health;
use synchro_testkit::{INVENTORY, Setup, Source, inventory_created};

const WAIT: Duration = Duration::from_secs(20);

fn config(setup: &Setup, extra: &str) {
    std::fs::write(
        setup.config(),
        format!("data-dir = \"data\"\nplugin-dir = \"plugins\"\n{extra}"),
    )
    .unwrap();
}

fn check(setup: &Setup, name: &str) -> std::process::Output {
    let manifest = setup.plugin_dir().join(format!("{name}.toml"));
    setup.command(&["plugin", "check", manifest.to_str().unwrap()])
}

#[test]
fn the_operator_grants_less_than_a_manifest_asks() {
    let source = Source::start(INVENTORY);
    let setup = Setup::new();
    setup.inventory_plugin("trusted", &source);
    setup.inventory_plugin("narrowed", &source);
    setup.inventory_plugin("unlisted", &source);
    // The trusted manifest asks for more memory than the operator's ceiling allows.
    let trusted = setup.plugin_dir().join("trusted.toml");
    let manifest = std::fs::read_to_string(&trusted).unwrap();
    std::fs::write(
        &trusted,
        manifest
            .replace("[limits]\n", "[limits]\nmemory-mb = 256\n")
            .replace(
                "[capabilities]\n",
                "[capabilities]\nlog = { lines-per-call = 100000 }\n",
            ),
    )
    .unwrap();
    config(
        &setup,
        &format!(
            "grants-required = true\n\
             [limits]\nmemory-mb = 16\n\
             [ceilings]\nmemory-mb = 16\n\
             [grants.trusted]\npoll = {{ hosts = [\"{}\"] }}\nlog = {{ lines-per-call = 10 }}\n\
             [grants.narrowed]\npoll = {{ hosts = [\"http://127.0.0.1:1\"] }}\n",
            source.origin()
        ),
    );

    let trusted = check(&setup, "trusted");
    let out = String::from_utf8_lossy(&trusted.stdout);
    assert!(trusted.status.success(), "{trusted:?}");
    let origin = source.origin();
    assert!(
        out.contains(&format!("asks for poll: {{ hosts = [\"{origin}\"] }}")),
        "{out}"
    );
    assert!(
        out.contains("granted (narrowed by the host config's grants):"),
        "{out}"
    );
    assert!(out.contains(&format!("    poll: {origin}\n")), "{out}");
    assert!(
        out.contains("asks for log: { lines-per-call = 100000 }"),
        "{out}"
    );
    assert!(
        out.contains("    log: up to 10 lines per call\n"),
        "the operator bounds the log: {out}"
    );
    assert!(out.contains("memory 16 MiB"), "the ceiling holds: {out}");
    let narrowed = String::from_utf8_lossy(&check(&setup, "narrowed").stdout).into_owned();
    assert!(!narrowed.contains("    poll:"), "{narrowed}");

    let host = setup.run();
    // Only the plugin the operator granted its origin collects.
    let events = host.raw_events(4, WAIT);
    assert!(
        events.iter().all(|e| e["source"] == "trusted"),
        "{events:?}"
    );
    for name in ["narrowed", "unlisted"] {
        let status = setup.wait_status(name, WAIT, |p| p.counters.denials >= 1);
        assert_eq!(status.counters.processed + status.counters.changes, 0);
        // Retrying cannot help until the operator grants more: the health says so.
        let status = setup.wait_status(name, WAIT, |p| p.health != Health::Starting);
        match &status.health {
            Health::PermanentError { last_error, .. } => {
                assert!(last_error.contains("denied"), "{status:?}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(setup.plugin_status("trusted").health, Health::Ok);
    host.wait_for_log(
        "is not granted by the manifest and the operator's grants",
        WAIT,
    );
    host.wait_for_log(
        "limits.memory-mb = 256 is above the operator's ceiling: held to 16 plugin=trusted",
        WAIT,
    );
    host.stop();
}

#[test]
fn a_mistake_in_the_operators_grants_refuses_that_plugin_only() {
    let source = Source::start(INVENTORY);
    let setup = Setup::new();
    setup.inventory_plugin("typo", &source);
    setup.inventory_plugin("fine", &source);
    config(
        &setup,
        &format!(
            "[grants.typo]\npoll = {{ hostz = [] }}\n[grants.fine]\npoll = {{ hosts = [\"{}\"] }}\n",
            source.origin()
        ),
    );
    let host = setup.run();
    assert_eq!(host.events(4, WAIT), inventory_created());
    let report = setup.status();
    let names: Vec<&str> = report.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["fine"], "{report:?}");
    assert_eq!(report.refused.len(), 1);
    assert!(
        report.refused[0]
            .error
            .ends_with("typo.toml: the host config's `[grants.typo]`: `poll` unknown field `hostz`, expected `hosts`"),
        "{report:?}"
    );
    host.stop();
}

/// The host config is checked whole before anything starts: a grant for a plugin the
/// plugin directory does not have (a typo) stops `synchro run` with the file and field.
#[test]
fn a_grant_for_no_plugin_stops_the_host_before_it_starts() {
    let source = Source::start(INVENTORY);
    let setup = Setup::new();
    setup.inventory_plugin("inventory", &source);
    config(&setup, "[grants.inventry]\npoll = { hosts = [] }\n");
    let mut child = std::process::Command::new(synchro_testkit::synchro())
        .args(["run", "--config"])
        .arg(setup.config())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("synchro run started despite a grant for no plugin");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    let expected = format!(
        "synchro: {}: field `grants.inventry`: no plugin named `inventry` in",
        setup.config().display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("(plugins there: inventory)"), "{stderr}");
}

#[test]
fn a_sync_step_enacts_only_kinds_it_is_granted_to_read() {
    let setup = Setup::new();
    let step = |read: &str| {
        format!(
            "name = \"push\"\nversion = \"1\"\nroles = [\"sync-step\"]\n\
             [sync]\nkinds = [\"pserver\", \"secret\"]\n\
             [capabilities]\nstore = {{ read = {read} }}\n"
        )
    };
    let refused = "field `sync.kinds`: handling `secret` entities needs a grant to read them";
    let cases = [
        (step("[\"pserver\"]"), "", Err(refused)),
        (step("[\"*\"]"), "", Ok(())),
        // Granted by the manifest, narrowed away by the operator.
        (
            step("[\"*\"]"),
            "grants-required = true\n[grants.push]\nstore = { read = [\"pserver\"] }\n",
            Err(refused),
        ),
    ];
    for (manifest, grants, expected) in cases {
        setup.install("push", "http-sync", &manifest);
        config(&setup, grants);
        let output = check(&setup, "push");
        let error = String::from_utf8_lossy(&output.stderr);
        match expected {
            Ok(()) => assert!(output.status.success(), "{manifest}\n{error}"),
            Err(expected) => {
                assert!(!output.status.success(), "{manifest}");
                assert!(error.contains(expected), "{manifest}\n{error}");
            }
        }
    }
}

#[test]
fn no_plugin_writes_to_the_hosts_topic_or_to_a_dead_letter_topic_it_was_not_granted() {
    let setup = Setup::new();
    let step = |dead_letter: &str, capabilities: &str| {
        format!(
            "name = \"people\"\nversion = \"1\"\nroles = [\"event-step\"]\n\
             [events]\ntopics = [\"Stream\"]\n{dead_letter}\n\
             [capabilities]\nstore = {{ read = [\"person\"], write = [\"person\"] }}\n{capabilities}\n"
        )
    };
    let cases = [
        // Another plugin's dead-letter topic, without a grant to publish there.
        (
            step("dead-letter = \"neighbour.dead-letter\"", ""),
            "",
            Err(
                "field `events.dead-letter`: writing dead letters to `neighbour.dead-letter` needs a grant to publish there",
            ),
        ),
        // The change stream: forged notifications attributed to anyone.
        (
            step("dead-letter = \"changes\"", ""),
            "",
            Err("field `events.dead-letter`: `changes` is the host's own topic"),
        ),
        (
            step("", "bus = { publish = [\"changes\"] }"),
            "",
            Err("field `capabilities.bus.publish`: `changes` is the host's own topic"),
        ),
        // Granted by the manifest, narrowed away by the operator.
        (
            step("dead-letter = \"audit\"", "bus = { publish = [\"audit\"] }"),
            "grants-required = true\n[grants.people]\nstore = { read = [\"person\"], write = [\"person\"] }\nbus = { subscribe = [\"Stream\"] }\n",
            Err("writing dead letters to `audit` needs a grant to publish there"),
        ),
        (
            step("dead-letter = \"audit\"", "bus = { publish = [\"audit\"] }"),
            "",
            Ok(()),
        ),
        // Its own dead-letter topic needs no grant.
        (step("", ""), "", Ok(())),
    ];
    for (manifest, grants, expected) in cases {
        setup.install("people", "xos-people", &manifest);
        config(&setup, grants);
        let output = check(&setup, "people");
        let error = String::from_utf8_lossy(&output.stderr);
        match expected {
            Ok(()) => assert!(output.status.success(), "{manifest}\n{error}"),
            Err(expected) => assert!(
                !output.status.success() && error.contains(expected),
                "{manifest}\nexpected `{expected}` in: {error}"
            ),
        }
    }
}

#[test]
fn the_operators_min_interval_holds_a_collector_asking_for_a_nanosecond() {
    let source = Source::start(INVENTORY);
    let setup = Setup::new();
    setup.inventory_plugin("eager", &source);
    let manifest = setup.plugin_dir().join("eager.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("interval = \"150ms\"", "interval = \"1ns\""),
    )
    .unwrap();
    config(&setup, "min-interval = \"500ms\"\n");
    let host = setup.run();
    host.wait_for_log(
        "schedule.interval = 1ns is below the operator's min-interval: held to 500ms plugin=eager",
        WAIT,
    );
    assert_eq!(host.events(4, WAIT).len(), 4);
    let before = setup.plugin_status("eager").counters.calls;
    let started = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let calls = setup.plugin_status("eager").counters.calls - before;
    let most = started.elapsed().as_millis() as u64 / 500 + 2;
    assert!(
        calls <= most,
        "{calls} calls in {:?} at a 500 ms floor",
        started.elapsed()
    );
    host.stop();
}

#[test]
fn a_response_topic_is_one_plugins_own() {
    let setup = Setup::new();
    let lookup = |name: &str, awaits: &str| {
        format!(
            "name = \"{name}\"\nversion = \"0.1.0\"\nroles = [\"collector\"]\n[schedule]\ninterval = \"1h\"\n\
             [capabilities]\nbus = {{ publish = [\"requests\"], await = [{awaits}], correlation = \"json:transaction-id\" }}\n\
             [settings]\nrequests = \"requests\"\nresponses = \"responses\"\n"
        )
    };
    setup.install(
        "lookup-a",
        "bus-lookup",
        &lookup("lookup-a", "\"responses\""),
    );
    // A second plugin on the same topic could take or block the first one's responses.
    setup.install(
        "lookup-b",
        "bus-lookup",
        &lookup("lookup-b", "\"responses\""),
    );
    setup.install("lookup-c", "bus-lookup", &lookup("lookup-c", "\"*\""));
    let host = setup.run();
    let deadline = std::time::Instant::now() + WAIT;
    let report = loop {
        match setup.try_status() {
            Ok(report) if report.plugins.len() + report.refused.len() == 3 => break report,
            _ if std::time::Instant::now() > deadline => panic!("not every plugin was loaded"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let names: Vec<&str> = report.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["lookup-a"]);
    assert_eq!(report.responses, Default::default(), "no response arrived");
    let errors: Vec<&str> = report.refused.iter().map(|r| r.error.as_str()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].ends_with(
            "lookup-b.toml: `capabilities.bus.await`: plugin `lookup-a` already awaits responses on topic `responses`; \
             each plugin needs a response topic of its own, or one could take or block the other's responses"
        ),
        "{errors:?}"
    );
    assert!(
        errors[1].ends_with(
            "lookup-c.toml: field `capabilities.bus.await`: list the response topics by name; each is one plugin's own (`*` would claim every topic)"
        ),
        "{errors:?}"
    );
    host.stop();
}
