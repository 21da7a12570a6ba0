//! End to end: the `synchro` binary runs the http-inventory component against a local
//! HTTP source whose content the tests change.

use std::time::Duration;

use synchro_testkit::{INVENTORY, Setup, Source, pairs};

const WAIT: Duration = Duration::from_secs(20);
/// Several collect intervals (150 ms each).
const QUIET: Duration = Duration::from_millis(1200);

#[test]
fn changes_follow_the_source_and_a_restart_is_silent() {
    let source = Source::start(INVENTORY);
    let setup = Setup::new();
    setup.inventory_plugin("inv", &source);

    let host = setup.run();
    let created = host.raw_events(4, WAIT);
    assert_eq!(
        created
            .iter()
            .map(synchro_testkit::op_key)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
        synchro_testkit::inventory_created()
    );
    let edge = created.iter().find(|e| e.get("edge").is_some()).unwrap();
    assert_eq!(
        edge["edge"]["source"],
        serde_json::json!({"key": "vm-1", "type": "vserver"})
    );
    assert_eq!(
        edge["edge"]["target"],
        serde_json::json!({"key": "srv-1", "type": "pserver"})
    );
    assert_eq!(edge["source"], "inv");
    assert!(edge["transaction-id"].is_string() && edge["timestamp"].as_u64().unwrap() > 0);
    host.expect_silence(QUIET);
    // The status says how far each reader of the change stream is.
    let outbox = setup.status().outbox;
    assert_eq!(outbox.last, 4, "{outbox:?}");
    assert_eq!(
        outbox.readers,
        [("printer".to_owned(), 4)].into(),
        "printed (the embedded bus has no relay)"
    );
    let status = setup.command(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("changes: 4 committed; printer 0 behind\n"),
        "{text}"
    );

    // Key order and whitespace are not changes; a value is.
    source.set(
        200,
        &INVENTORY.replace(
            r#"{ "id": "srv-2", "hostname": "beta" }"#,
            r#"{"hostname":"beta","id":"srv-2"}"#,
        ),
    );
    host.expect_silence(QUIET);
    source.set(200, &INVENTORY.replace("alpha", "alpha-2"));
    assert_eq!(host.events(1, WAIT), pairs(&[("UPDATE", "srv-1")]));
    host.expect_silence(QUIET);

    let without_vm = r#"{ "servers": [ { "id": "srv-1", "hostname": "alpha-2" }, { "id": "srv-2", "hostname": "beta" } ] }"#;
    source.set(200, without_vm);
    assert_eq!(
        host.events(2, WAIT),
        pairs(&[("DELETE", "vm-1"), ("DELETE", "vm-1/hosted-on")])
    );
    host.stop();

    // A clean restart emits nothing for unchanged data, and skips compiling the component.
    let host = setup.run();
    host.wait_for_log("loaded plugin=inv version=0.1.0 cached=true", WAIT);
    host.expect_silence(QUIET);
    host.stop();

    let listed = setup.command(&["baseline", "list", "inv"]);
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8(listed.stdout).unwrap();
    let keys: Vec<&str> = listed
        .lines()
        .map(|l| l.split(' ').nth(2).unwrap())
        .collect();
    assert_eq!(keys, ["srv-1", "srv-2"], "{listed}");
    assert!(
        listed.contains(r#"{"hostname":"alpha-2","id":"srv-1"}"#),
        "{listed}"
    );

    let unknown = setup.command(&["baseline", "list", "nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("plugins with one: inv"));

    let reset = setup.command(&["baseline", "reset", "inv"]);
    assert!(reset.status.success(), "{reset:?}");
    let host = setup.run();
    assert_eq!(
        host.events(2, WAIT),
        pairs(&[("CREATE", "srv-1"), ("CREATE", "srv-2")]),
        "a reset re-emits everything"
    );
    host.stop();
}

#[test]
fn a_failed_collect_never_deletes() {
    let source = Source::start(INVENTORY);
    let setup = Setup::new();
    setup.inventory_plugin("inv", &source);
    let host = setup.run();
    host.events(4, WAIT);

    for (status, body, symptom) in [
        (500, "oops", "HTTP status 500"),
        (200, "{ not json", "body is not JSON"),
        (200, r#"{"servers": "many"}"#, "is not an array"),
        (
            200,
            r#"{"servers": [{"id": "a"}, {"id": "a"}]}"#,
            "pserver `a` appears twice in one snapshot",
        ),
        (
            200,
            r#"{"servers": [{"hostname": "no id"}]}"#,
            "servers[0] has no string `id`",
        ),
    ] {
        source.set(status, body);
        host.wait_for_log(symptom, WAIT);
        host.expect_silence(Duration::from_millis(300));
    }
    source.set(200, &INVENTORY.replace("beta", "beta-2"));
    assert_eq!(
        host.events(1, WAIT),
        pairs(&[("UPDATE", "srv-2")]),
        "only the real change, no deletes"
    );
    host.stop();
}

#[test]
fn bad_plugins_are_refused_with_reasons_and_the_good_one_runs() {
    let source = Source::start(INVENTORY);
    let setup = Setup::new();
    setup.inventory_plugin("good", &source);
    // A manifest with a typo, a component that is not wasm, one that is a core module,
    // a plugin whose poll is not granted, and one whose host is not the one granted.
    setup.write(
        "typo.toml",
        "name = \"typo\"\nversion = \"1\"\nroles = [\"collector\"]\nintervall = \"1s\"\n",
    );
    setup.write("garbage.wasm", "not wasm at all");
    setup.write(
        "garbage.toml",
        "name = \"garbage\"\nversion = \"1\"\nroles = [\"collector\"]\n[schedule]\ninterval = \"1s\"\n",
    );
    std::fs::write(setup.plugin_dir().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    setup.write("core.toml", "name = \"core\"\nversion = \"1\"\nroles = [\"collector\"]\n[schedule]\ninterval = \"1s\"\n");
    setup.inventory_plugin_with("ungranted", "", &source.url());
    setup.inventory_plugin_with(
        "elsewhere",
        "poll = { hosts = [\"http://127.0.0.1:1\"] }",
        &source.url(),
    );

    let host = setup.run();
    let events = host.raw_events(4, WAIT);
    assert!(events.iter().all(|e| e["source"] == "good"), "{events:?}");
    let log_has = |text: &str| host.wait_for_log(text, WAIT);
    log_has("typo.toml: line 4, column 1: unknown field `intervall`");
    log_has("garbage.wasm: not a valid component: not a WebAssembly binary");
    log_has("core.wasm: not a valid component: this is a core wasm module, not a component");
    let denied = format!(
        "(denied): poll: fetching `{}` is not granted by the manifest",
        source.url()
    );
    log_has(&format!("{denied} plugin=ungranted"));
    log_has(&format!("{denied} plugin=elsewhere"));
    host.expect_silence(QUIET);
    host.stop();
}

#[test]
fn plugin_check_names_roles_and_mismatches() {
    let wasm = synchro_testkit::plugin("http-inventory");
    assert_eq!(
        wasm.file_name().unwrap(),
        "http-inventory.wasm",
        "named after the plugin's package, not its crate"
    );
    let setup = Setup::new();
    let ok = setup.command(&["plugin", "check", wasm.to_str().unwrap()]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("role collector: ok"));
    // With the host's config, the compiled component waits in that host's cache...
    let cached = std::fs::read_dir(setup.dir.path().join("data/cache")).unwrap();
    assert_eq!(cached.count(), 1);
    // ...and without one, the check writes nothing where it runs (it wrote the cache of
    // a default host, `.synchro/cache`, into the current directory).
    let elsewhere = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new(synchro_testkit::synchro())
        .args(["plugin", "check"])
        .arg(&wasm)
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let written: Vec<_> = std::fs::read_dir(elsewhere.path()).unwrap().collect();
    assert!(written.is_empty(), "{written:?}");

    setup.write("bad.wasm", "nope");
    let bad = setup.command(&[
        "plugin",
        "check",
        setup.plugin_dir().join("bad.wasm").to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("bad.wasm is not a valid component"),
        "{bad:?}"
    );

    // A manifest that claims a role the component does not export, or without the
    // role's section.
    std::fs::copy(&wasm, setup.plugin_dir().join("liar.wasm")).unwrap();
    let cases = [
        (
            "roles = [\"collector\", \"sync-step\"]\n[sync]\nkinds = [\"x\"]\n\
             [capabilities]\nstore = { read = [\"x\"] }\n",
            "it does not export `synchro:plugin/sync-step@0.2.0` as the sync-step role requires",
        ),
        (
            "roles = [\"collector\", \"model-policy\"]\n",
            "a model policy needs a `[policy]` with the `kinds` it handles",
        ),
        (
            "roles = [\"collector\", \"model-policy\"]\n[policy]\nkinds = [\"x\"]\n\
             [capabilities]\nstore = { read = [\"x\"] }\n",
            "it does not export `synchro:plugin/model-policy@0.2.0` as the model-policy role \
             requires",
        ),
    ];
    for (roles, expected) in cases {
        setup.write(
            "liar.toml",
            &format!("name = \"liar\"\nversion = \"1\"\n{roles}[schedule]\ninterval = \"1s\"\n"),
        );
        let liar = setup.command(&[
            "plugin",
            "check",
            setup.plugin_dir().join("liar.toml").to_str().unwrap(),
        ]);
        assert!(!liar.status.success());
        assert!(
            String::from_utf8_lossy(&liar.stderr).contains(expected),
            "expected `{expected}`: {liar:?}"
        );
    }
}

#[test]
fn without_room_for_the_pooling_allocator_the_host_falls_back_and_runs() {
    let source = Source::start(INVENTORY);
    let setup = Setup::new();
    setup.inventory_plugin("inv", &source);
    // 16 GiB of address space: far less than the pool reserves, enough for on-demand.
    let host = setup.run_with_address_space(16 << 20);
    host.wait_for_log("pooling allocator unavailable", WAIT);
    assert_eq!(host.events(4, WAIT).len(), 4);
    host.stop();
}

/// Numbers compare by value and exactly: another form of the same values is no change;
/// the last digit of a 30-digit id (beyond what a double holds) is one.
#[test]
fn numbers_compare_by_exact_value() {
    let script = |properties: &str| {
        serde_json::json!({
            "mode": "complete",
            "entities": [{"key": "n", "kind": "thing", "properties": properties}],
        })
        .to_string()
    };
    let source = Source::start(&script(
        r#"{"id": 123456789012345678901234567890, "n": 100, "z": 0}"#,
    ));
    let setup = Setup::new();
    setup.scripted_plugin("numbers", &source, "5s", "");
    let host = setup.run();
    assert_eq!(host.events(1, WAIT), pairs(&[("CREATE", "n")]));
    source.set(
        200,
        &script(r#"{"z": -0.0, "n": 1e2, "id": 1.2345678901234567890123456789e29}"#),
    );
    host.expect_silence(QUIET);
    source.set(
        200,
        &script(r#"{"id": 123456789012345678901234567891, "n": 100.0, "z": 0}"#),
    );
    assert_eq!(host.events(1, WAIT), pairs(&[("UPDATE", "n")]));
    host.stop();
    let listed = setup.command(&["baseline", "list", "numbers"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(r#"{"id":123456789012345678901234567891,"n":100,"z":0}"#),
        "{listed}"
    );
}

/// Each line of `log` as the JSON object it must be.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// `--log-format json`: every record of the log is one JSON object on its own line, with
/// its level and fields, whatever text it carries.
#[test]
fn the_log_can_be_json_lines() {
    let source = Source::start(INVENTORY);
    let setup = Setup::new();
    setup.inventory_plugin("inv", &source);
    let host = setup.run_with(&["--log-format", "json"]);
    host.events(4, WAIT);
    host.wait_for_log("\"collected\"", WAIT);
    let log = host.log();
    let records = json_lines(&log);
    let collected = records
        .iter()
        .find(|r| r["fields"]["message"] == "collected")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(collected["level"], "INFO");
    assert_eq!(collected["fields"]["plugin"], "inv");
    assert_eq!(collected["fields"]["created"], 4);
    host.stop();
}

/// With the spans enabled (`RUST_LOG`), each call into a plugin and each host import it
/// calls back is a span naming the plugin, the export and the import.
#[test]
fn plugin_calls_and_host_imports_are_traced_with_the_plugin_name() {
    let source = Source::start(INVENTORY);
    let setup = Setup::new();
    setup.inventory_plugin("inv", &source);
    let host = setup.run_logging(
        "info,synchro_roles=debug,synchro_wit=trace",
        &["--log-format", "json"],
    );
    host.events(4, WAIT);
    host.wait_for_log("\"collected\"", WAIT);
    let log = host.log();
    let records = json_lines(&log);
    let within = |r: &serde_json::Value, name: &str, field: &str, value: &str| {
        r["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|s| s["name"] == name && s[field] == value))
    };
    let import = records
        .iter()
        .find(|r| {
            within(r, "plugin call", "plugin", "inv")
                && within(r, "wit-bindgen export", "function", "collect")
                && within(r, "wit-bindgen import", "module", "poll")
                && r["fields"]["message"] == "return"
        })
        .unwrap_or_else(|| panic!("no traced poll import of inv's collect in:\n{log}"));
    assert_eq!(import["level"], "TRACE");
    assert!(
        records
            .iter()
            .any(|r| within(r, "wit-bindgen import", "module", "snapshot")),
        "the snapshot's imports are traced too:\n{log}"
    );
    host.stop();
}

/// Vitrage's "get all" and a reset, on a running host: a collector's baseline a page at
/// a time through the admin API (and `synchro baseline list`, which uses it while the
/// host runs), the model filtered by owner, and a reset that re-announces everything.
#[test]
fn a_running_collectors_baseline_is_listed_and_reset_through_the_admin_api() {
    let source = Source::start(INVENTORY);
    let other = Source::start(r#"{"servers": [{"id": "srv-8", "hostname": "eta"}], "vms": []}"#);
    let setup = Setup::new();
    setup.inventory_plugin("inv", &source);
    setup.inventory_plugin("other", &other);
    let host = setup.run();
    let mut created = host.events(5, WAIT);
    created.sort();
    let mut expected = synchro_testkit::inventory_created();
    expected.extend(pairs(&[("CREATE", "srv-8")]));
    expected.sort();
    assert_eq!(created, expected);

    let get = |path: &str| {
        let (status, body) = setup.admin_get(path);
        (
            status,
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        )
    };
    let keys = |page: &serde_json::Value, field: &str| -> Vec<String> {
        page[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_str().unwrap().to_owned())
            .collect()
    };
    // Page by page, by kind then key.
    let (status, first) = get("/v1/plugins/inv/baseline?limit=3");
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        keys(&first, "entries"),
        ["srv-1", "srv-2", "vm-1/hosted-on"]
    );
    let next = &first["next"];
    let (_, rest) = get(&format!(
        "/v1/plugins/inv/baseline?limit=3&after-kind={}&after-key={}",
        next["kind"].as_str().unwrap(),
        next["key"].as_str().unwrap().replace('/', "%2F")
    ));
    assert_eq!(keys(&rest, "entries"), ["vm-1"]);
    assert!(rest.get("next").is_none(), "{rest}");
    let (_, vms) = get("/v1/plugins/inv/baseline?kind=vserver");
    assert_eq!(keys(&vms, "entries"), ["vm-1"]);
    let hash = first["entries"][0]["hash"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 16, "{hash}");
    assert_eq!(first["entries"][0]["properties"]["hostname"], "alpha");
    let edge = &first["entries"][2]["edge"];
    assert_eq!(
        (
            edge["source"]["key"].as_str(),
            edge["target"]["key"].as_str()
        ),
        (Some("vm-1"), Some("srv-1"))
    );

    // The CLI asks the running host (the database is the host's while it runs).
    let listed = setup.command(&["baseline", "list", "inv"]);
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert_eq!(listed.lines().count(), 4, "{listed}");
    assert!(
        listed.starts_with(&format!("{hash} pserver srv-1 ")),
        "{listed}"
    );

    // Bad requests are named.
    let (status, body) = get("/v1/plugins/nope/baseline");
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("plugins with one: inv, other"),
        "{body}"
    );
    let (status, body) = get("/v1/plugins/inv/baseline?owner=inv");
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("`owner`"),
        "{body}"
    );
    let (status, _) = get("/v1/plugins/inv/baseline?limit=0");
    assert_eq!(status, 400);

    // The model, by owner.
    let (_, owned) = get("/v1/model?owner=other");
    assert_eq!(keys(&owned, "entities"), ["srv-8"]);
    let (_, owned) = get("/v1/model?owner=inv&kind=pserver");
    assert_eq!(keys(&owned, "entities"), ["srv-1", "srv-2"]);
    let listed = setup.command(&["model", "list", "--owner", "other"]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.starts_with("pserver srv-8 (other)") && listed.lines().count() == 1,
        "{listed}"
    );

    // A reset while running: the next collect announces everything it finds.
    let reset = setup.command(&["baseline", "reset", "inv"]);
    assert!(reset.status.success(), "{reset:?}");
    assert!(
        String::from_utf8_lossy(&reset.stdout).contains("4 entities forgotten"),
        "{reset:?}"
    );
    let mut again = host.events(4, WAIT);
    again.sort();
    assert_eq!(
        again,
        synchro_testkit::inventory_created(),
        "a reset re-emits everything"
    );
    let (status, _) = setup.admin_request("POST", "/v1/plugins/nope/reset-baseline", None);
    assert_eq!(status, 404);
    host.stop();
}
