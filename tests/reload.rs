//! End to end: plugins replaced, broken, reloaded, added and removed while the host runs.

use std::time::Duration;

use synchro_status::Health;
use synchro_testkit::{INVENTORY, Setup, Source, pairs};

const WAIT: Duration = Duration::from_secs(20);

/// The manifest of the inventory collector `inv` at `version`, polling `source`.
fn manifest(version: &str, source: &Source) -> String {
    format!(
        "name = \"inv\"\nversion = \"{version}\"\nroles = [\"collector\"]\n\
         [schedule]\ninterval = \"150ms\"\njitter = \"0s\"\n\
         [capabilities]\npoll = {{ hosts = [\"{}\"] }}\n\
         [settings]\nurl = \"{}\"\n",
        source.origin(),
        source.url()
    )
}

#[test]
fn plugins_are_swapped_live_keeping_their_baseline_and_bad_versions_change_nothing() {
    let first = Source::start(INVENTORY);
    let setup = Setup::new();
    setup.install("inv", "http-inventory", &manifest("0.1.0", &first));
    setup.write("broken.toml", "name = \"broken\"\nroles = [\"collector\"\n");
    let host = setup.run();
    assert_eq!(host.events(4, WAIT).len(), 4);
    let report = setup.status();
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert!(
        report.refused[0].manifest.ends_with("broken.toml")
            && report.refused[0].error.contains("broken.toml"),
        "{report:?}"
    );

    // A new version polls another source where one server changed: the baseline is kept,
    // so exactly that change is announced.
    let second = Source::start(&INVENTORY.replace("beta", "gamma"));
    setup.write("inv.toml", &manifest("0.2.0", &second));
    assert_eq!(host.events(1, WAIT), pairs(&[("UPDATE", "srv-2")]));
    let status = setup.wait_status("inv", WAIT, |p| p.version == "0.2.0");
    assert_eq!(status.counters.reloads, 1);
    host.expect_silence(Duration::from_millis(500));

    // A broken component is refused; the running version goes on collecting.
    std::fs::write(setup.plugin_dir().join("inv.wasm"), b"\0asm garbage").unwrap();
    let status = setup.wait_status("inv", WAIT, |p| p.reload_error.is_some());
    assert!(
        status
            .reload_error
            .as_deref()
            .unwrap()
            .contains("not a valid component"),
        "{status:?}"
    );
    assert_eq!(
        (status.version.as_str(), status.counters.failed_reloads),
        ("0.2.0", 1)
    );
    let calls = status.counters.calls;
    setup.wait_status("inv", WAIT, |p| p.counters.calls > calls + 2);
    second.set(200, &INVENTORY.replace("beta", "delta"));
    assert_eq!(host.events(1, WAIT), pairs(&[("UPDATE", "srv-2")]));

    // Putting a good component back swaps it in and clears the error.
    std::fs::copy(
        synchro_testkit::plugin("http-inventory"),
        setup.plugin_dir().join("inv.wasm"),
    )
    .unwrap();
    let status = setup.wait_status("inv", WAIT, |p| p.reload_error.is_none());
    assert_eq!(status.counters.reloads, 2);

    // The operator's reload, from the cache.
    let reloaded = setup.command(&["plugin", "reload", "inv"]);
    let out = String::from_utf8_lossy(&reloaded.stdout);
    assert!(reloaded.status.success(), "{reloaded:?}");
    assert!(
        out.starts_with("reloaded inv 0.2.0 in ")
            && out
                .trim_end()
                .ends_with("ms (compiled component from the cache)"),
        "{out}"
    );
    let unknown = setup.command(&["plugin", "reload", "nope"]);
    assert_eq!(
        String::from_utf8_lossy(&unknown.stderr).trim(),
        "synchro: no plugin named `nope` is running (running: inv)"
    );

    // A plugin added while running starts; removing a manifest stops its plugin.
    let other = Source::start(r#"{"servers": [{"id": "srv-9", "hostname": "x"}]}"#);
    setup.install(
        "other",
        "http-inventory",
        &manifest("0.1.0", &other).replace("name = \"inv\"", "name = \"other\""),
    );
    assert_eq!(host.events(1, WAIT), pairs(&[("CREATE", "srv-9")]));
    std::fs::remove_file(setup.plugin_dir().join("inv.toml")).unwrap();
    host.wait_for_log("manifest removed: stopping plugin=inv", WAIT);
    let report = setup.status();
    let names: Vec<&str> = report.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["other"]);
    assert_eq!(report.plugins[0].health, Health::Ok);
    second.set(200, &INVENTORY.replace("beta", "epsilon"));
    host.expect_silence(Duration::from_millis(600));
    host.stop();
}

#[test]
fn admin_commands_say_clearly_when_no_host_runs() {
    let setup = Setup::new();
    let output = setup.command(&["status"]);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("no running host uses the data directory")
            && error.contains("admin.addr is missing"),
        "{error}"
    );
}

#[test]
fn a_collect_in_flight_finishes_on_the_old_version() {
    let slow = Source::start(INVENTORY);
    slow.set_delay(Duration::from_millis(1500));
    let setup = Setup::new();
    setup.install("inv", "http-inventory", &manifest("0.1.0", &slow));
    let host = setup.run();
    // The first collect is waiting on the slow source when the new version arrives.
    host.wait_for_log("loaded plugin=inv version=0.1.0", WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let fast = Source::start(&INVENTORY.replace("beta", "gamma"));
    setup.write("inv.toml", &manifest("0.2.0", &fast));
    host.wait_for_log("loaded plugin=inv version=0.2.0", WAIT);
    // The old version's collect completes and is announced; the new version's first
    // collect then diffs against it.
    assert_eq!(host.events(4, WAIT).len(), 4);
    assert_eq!(host.events(1, WAIT), pairs(&[("UPDATE", "srv-2")]));
    host.stop();
}

#[test]
fn a_plugin_is_named_by_its_file_and_no_manifest_can_claim_another_name() {
    let source = Source::start(INVENTORY);
    let setup = Setup::new();
    setup.install("inv", "http-inventory", &manifest("0.1.0", &source));
    // `aaa.toml` loads first and claims the name `inv` (its grants, baseline and consumer
    // group): it is refused, and `inv` is the plugin of `inv.toml`.
    std::fs::copy(
        setup.plugin_dir().join("inv.wasm"),
        setup.plugin_dir().join("aaa.wasm"),
    )
    .unwrap();
    setup.write("aaa.toml", &manifest("0.1.0", &source));
    let host = setup.run();
    assert_eq!(host.events(4, WAIT).len(), 4);
    let report = setup.status();
    let names: Vec<&str> = report.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["inv"]);
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert!(
        report.refused[0]
            .error
            .ends_with("aaa.toml: field `name`: `inv` is not the file's name; a plugin's manifest is NAME.toml (rename the file to inv.toml, or the name to `aaa`)"),
        "{report:?}"
    );

    // Renaming a running plugin in its manifest is refused the same way; it runs on.
    setup.write(
        "inv.toml",
        &manifest("0.2.0", &source).replace("name = \"inv\"", "name = \"renamed\""),
    );
    host.wait_for_log("new version refused, the running one stays", WAIT);
    let inv = setup.plugin_status("inv");
    assert_eq!(inv.version, "0.1.0");
    assert!(
        inv.reload_error
            .as_deref()
            .is_some_and(|e| e.contains("`renamed` is not the file's name")),
        "{inv:?}"
    );
    host.expect_silence(Duration::from_millis(400));
    host.stop();
}

/// A component as large as a Python plugin's takes seconds to compile. Meanwhile the admin
/// API answers, listing it as compiling, and the other plugins start and run; once it is
/// in, the host holds about the memory it holds after loading the same component from the
/// cache.
#[test]
fn a_large_component_compiles_off_the_hosts_loop_and_leaves_no_memory_behind() {
    let small = Source::start(INVENTORY);
    let large =
        Source::start(r#"{ "servers": [ { "id": "big-1", "hostname": "x" } ], "vms": [] }"#);
    let setup = Setup::new();
    setup.inventory_plugin("inv", &small);
    // `a-large` sorts first: loaded one after another in manifest order, as they were, it
    // would hold `inv` up for as long as it compiles.
    setup.inventory_plugin("a-large", &large);
    let component = std::fs::read(synchro_testkit::plugin("http-inventory")).unwrap();
    let padded = synchro_testkit::padded(&component, 40_000);
    std::fs::write(setup.plugin_dir().join("a-large.wasm"), padded).unwrap();

    let host = setup.run();
    let mut seen = host.events(4, WAIT);
    seen.sort();
    let mut expected = synchro_testkit::inventory_created();
    expected.sort();
    assert_eq!(
        seen, expected,
        "the small plugin runs while the large one compiles"
    );
    let report = setup.try_status().unwrap();
    let names: Vec<&str> = report.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["inv"], "{report:#?}");
    assert_eq!(report.loading.len(), 1, "{report:#?}");
    let loading = &report.loading[0];
    assert!(
        loading.name.as_deref() == Some("a-large")
            && loading.manifest.ends_with("a-large.toml")
            && !loading.replaces_running,
        "{report:#?}"
    );
    let printed = setup.command(&["status"]);
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("a-large compiling for "), "{printed}");
    // Not ready while it compiles, naming it; ready once it is in.
    let (status, body) = setup.admin_request("GET", "/v1/ready", None);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("a-large.toml"), "{body}");

    // In, compiled: its change, and the memory of the compile given back.
    let compile_wait = Duration::from_secs(180);
    assert_eq!(host.events(1, compile_wait), pairs(&[("CREATE", "big-1")]));
    host.wait_for_log("loaded plugin=a-large version=0.1.0 cached=false", WAIT);
    assert!(setup.status().loading.is_empty());
    let (status, body) = setup.admin_request("GET", "/v1/ready", None);
    assert_eq!(status, 200, "{body}");
    let compiled_rss = settled_rss(host.pid());
    host.stop();

    // From the cache: a restart and a reload take milliseconds.
    let host = setup.run();
    host.wait_for_log("loaded plugin=a-large version=0.1.0 cached=true", WAIT);
    setup.wait_status("a-large", WAIT, |_| true);
    let cached_rss = settled_rss(host.pid());
    let reloaded = setup.command(&["plugin", "reload", "a-large"]);
    let reloaded = String::from_utf8_lossy(&reloaded.stdout);
    assert!(
        reloaded.starts_with("reloaded a-large 0.1.0 in ")
            && reloaded.contains("(compiled component from the cache)"),
        "{reloaded}"
    );
    host.stop();
    // Compiling it left the memory of Cranelift's work behind (hundreds of megabytes
    // for a component this size) before the compile had an engine of its own and the
    // allocator gave freed memory back.
    assert!(
        compiled_rss < cached_rss + 48 * 1024,
        "resident after compiling: {compiled_rss} KiB; after loading from the cache: {cached_rss} KiB"
    );
}

/// The resident memory of process `pid`, in KiB, once it stops moving (a collect in
/// flight allocates).
fn settled_rss(pid: u32) -> u64 {
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));
    (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            rss()
        })
        .min()
        .unwrap()
}

/// An event step of the change stream that is still compiling at a start is a reader all
/// the same: the changes it has not read — from before the start, and made while it
/// compiles — wait for it, though the printer has passed them and the outbox is trimmed
/// every second.
#[test]
fn changes_wait_for_an_event_step_that_is_still_compiling() {
    let source = Source::start(INVENTORY);
    let setup = Setup::new();
    setup.inventory_plugin("inv", &source);
    setup.install(
        "watcher",
        "bench-event-step",
        "name = \"watcher\"\nversion = \"0.1.0\"\nroles = [\"event-step\"]\n\
         [events]\ntopics = [\"changes\"]\nstart = \"earliest\"\n",
    );
    let host = setup.run();
    assert_eq!(host.events(4, WAIT).len(), 4);
    setup.wait_status("watcher", WAIT, |p| p.counters.processed == 4);
    host.stop();

    // The next start compiles the watcher for seconds; the collector announces a change
    // at once, which the printer reads.
    let component = std::fs::read(synchro_testkit::plugin("bench-event-step")).unwrap();
    let padded = synchro_testkit::padded(&component, 40_000);
    std::fs::write(setup.plugin_dir().join("watcher.wasm"), padded).unwrap();
    source.set(200, &INVENTORY.replace("beta", "gamma"));
    let host = setup.run();
    assert_eq!(host.events(1, WAIT), pairs(&[("UPDATE", "srv-2")]));
    let watcher = setup.wait_status("watcher", Duration::from_secs(180), |p| {
        p.counters.processed >= 1
    });
    assert_eq!(watcher.counters.processed, 1, "{watcher:#?}");
    host.stop();
}
