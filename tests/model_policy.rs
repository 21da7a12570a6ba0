//! End to end: a model policy (`plugins/stamp-policy`) and a sync step
//! (`plugins/http-sync`, against a real HTTP server on 127.0.0.1) over a collector's
//! entities, through the real binary — XOS's two testservice scenarios
//! (sync-after-policy-update, policy-after-sync-update), loop freedom, a deletion held
//! until the policy has seen it go, a failing policy shown on its entity, several
//! policies and steps of one kind.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use synchro_testkit::{Backend, Setup, Source};

const WAIT: Duration = Duration::from_secs(30);

/// A complete snapshot of `node` entities, each `(key, properties)`.
fn snapshot(nodes: &[(&str, Value)]) -> String {
    let entities: Vec<Value> = nodes
        .iter()
        .map(|(key, properties)| json!({"key": key, "kind": "node", "properties": properties}))
        .collect();
    json!({"mode": "complete", "entities": entities}).to_string()
}

/// A collector of `source` whose data is the model's to push, the `stamp` policy of
/// `node` entities with `policy` more settings, and the `http-sync` step `push` with
/// `step` more settings.
fn install(setup: &Setup, source: &Source, backend: &Backend, policy: &str, step: &str) {
    collector(setup, source, "sync = true");
    setup.install("stamp", "stamp-policy", &stamp("stamp", "\"node\"", policy));
    setup.install("push", "http-sync", &sync_step("push", backend, step));
}

/// The manifest of the `http-sync` step `name` of `node` entities, pushing to `backend`,
/// with `settings` more settings.
fn sync_step(name: &str, backend: &Backend, settings: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"0.1.0\"\nroles = [\"sync-step\"]\n\
         [sync]\nkinds = [\"node\"]\nbackoff = \"200ms\"\nmax-backoff = \"1s\"\n\
         [capabilities]\npoll = {{ hosts = [\"{url}\"] }}\n\
         store = {{ read = [\"node\"], write = [\"node\"], handle = [\"node\"] }}\n\
         [settings]\nurl = \"{url}\"\n{settings}\n",
        url = backend.url()
    )
}

/// Installs the collector `nodes` of `source`, with `schedule` more lines of its
/// `[schedule]` (`sync = true`: its data is the model's to push). It empties its few
/// entities on purpose: `max-delete-percent = 100` lets it (tests/deletes.rs holds them).
fn collector(setup: &Setup, source: &Source, schedule: &str) {
    setup.install(
        "nodes",
        "scripted-collector",
        &format!(
            "name = \"nodes\"\nversion = \"0.1.0\"\nroles = [\"collector\"]\n\
             [schedule]\ninterval = \"100ms\"\njitter = \"0s\"\n{schedule}\n\
             [limits]\nmax-delete-percent = 100\n\
             [capabilities]\npoll = {{ hosts = [\"{}\"] }}\n[settings]\nurl = \"{}\"\n",
            source.origin(),
            source.url()
        ),
    );
}

/// The manifest of the `stamp-policy` plugin `name` on `node` entities, which may write
/// the entities of `handle` (TOML list items) it handles whoever owns them.
fn stamp(name: &str, handle: &str, settings: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"0.1.0\"\nroles = [\"model-policy\"]\n\
         [policy]\nkinds = [\"node\"]\nbackoff = \"200ms\"\nmax-backoff = \"1s\"\n\
         [capabilities]\n\
         store = {{ read = [\"node\"], write = [\"node\", \"audit\"], handle = [{handle}] }}\n\
         [settings]\n{settings}\n"
    )
}

fn model_get(setup: &Setup, kind: &str, key: &str) -> Result<Value, String> {
    let output = setup.command(&["model", "get", kind, key, "--json"]);
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Waits until `check` holds of the node `key` as `synchro model get` shows it.
fn wait_node(setup: &Setup, key: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(entity) = model_get(setup, "node", key)
            && check(&entity)
        {
            return entity;
        }
        assert!(
            Instant::now() < deadline,
            "node {key} never {what}: {:?}",
            model_get(setup, "node", key)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether no role has work left on the entity.
fn settled(e: &Value) -> bool {
    let b = &e["bookkeeping"];
    b["needs-policy"] == false && b["needs-sync"] == false
}

/// The bodies `backend` was last sent for the node `key`, as JSON.
fn last_put(backend: &Backend, key: &str) -> Value {
    backend
        .requests("PUT", &format!("/node/{key}"))
        .last()
        .map_or(Value::Null, |r| serde_json::from_str(&r.body).unwrap())
}

fn wait_last_put(backend: &Backend, key: &str, what: &str, check: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check(&last_put(backend, key)) {
        assert!(
            Instant::now() < deadline,
            "{key}: the outside system never got {what}: {}",
            last_put(backend, key)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `(policed, enacted)` by the policy and the step.
fn counts(setup: &Setup) -> (u64, u64) {
    (
        setup.plugin_status("stamp").counters.policed,
        setup.plugin_status("push").counters.enacted,
    )
}

/// Asserts that nothing more is called for a while: no role re-triggers another forever.
fn assert_quiet(setup: &Setup, backend: &Backend) {
    let before = (counts(setup), backend.received().len());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        (counts(setup), backend.received().len()),
        before,
        "calls went on with nothing changing: a loop"
    );
}

#[test]
fn a_policys_write_is_synced_never_runs_it_again_and_a_deletion_waits_for_the_policy() {
    let source = Source::start(&snapshot(&[("a", json!({"v": 1})), ("b", json!({"v": 1}))]));
    let backend = Backend::start();
    let setup = Setup::new();
    install(&setup, &source, &backend, "", "");
    let host = setup.run();

    // sync-after-policy-update: what the policy wrote reaches the outside system.
    wait_last_put(&backend, "a", "the policy's write", |body| {
        body["policy-runs"] == 1
    });
    let a = wait_node(&setup, "a", "settled", settled);
    assert_eq!(
        a["properties"],
        json!({"v": 1, "policy-runs": 1, "previous-v": null})
    );
    assert_eq!(
        a["owner"], "nodes",
        "the policy wrote it; the collector still owns it"
    );
    let b = &a["bookkeeping"];
    assert_eq!(b["policy"]["state"], "done");
    assert!(b["changed-by-policy"].as_u64() > b["updated"].as_u64());
    assert_eq!(b["enacted"], b["changed-by-policy"]);
    wait_node(&setup, "b", "settled", settled);
    // Loop freedom (XOS SEBA-79): one policy call per entity, its own write none more.
    assert_eq!(counts(&setup).0, 2, "handle-create once each");
    assert_quiet(&setup, &backend);

    // Updated by its source: handle-update, shown the entity as the policy last saw it.
    source.set(
        200,
        &snapshot(&[("a", json!({"v": 2})), ("b", json!({"v": 1}))]),
    );
    let a = wait_node(&setup, "a", "re-policed", |e| {
        e["properties"]["previous-v"] == 1 && settled(e)
    });
    assert_eq!(
        a["properties"],
        json!({"v": 2, "policy-runs": 1, "previous-v": 1})
    );
    wait_last_put(&backend, "a", "the re-policed data", |body| {
        *body == a["properties"]
    });

    // Deleted: kept, hidden, until the policy has handled it and the step removed it.
    source.set(200, &snapshot(&[("a", json!({"v": 2}))]));
    backend.wait_for("DELETE", "/node/b", 1, WAIT);
    let deadline = Instant::now() + WAIT;
    while model_get(&setup, "node", "b").is_ok() {
        assert!(Instant::now() < deadline, "b never purged");
        std::thread::sleep(Duration::from_millis(50));
    }
    let audit = model_get(&setup, "audit", "node/b").expect("handle-delete ran");
    assert_eq!(audit["owner"], "stamp");
    assert_eq!(
        counts(&setup).0,
        4,
        "create a, create b, update a, delete b"
    );
    assert_quiet(&setup, &backend);
    host.stop();
}

#[test]
fn a_steps_write_runs_the_policy_again_both_converge_and_a_failing_policy_shows() {
    let source = Source::start(&snapshot(&[
        ("a", json!({"v": 1})),
        ("bad", json!({"v": 1})),
    ]));
    let backend = Backend::start();
    let setup = Setup::new();
    install(
        &setup,
        &source,
        &backend,
        "fail = \"bad\"",
        "record-url = true",
    );
    let host = setup.run();

    // policy-after-sync-update: the step records where it put the entity (its own
    // write), the policy handles that change, the step enacts what the policy wrote,
    // and then nothing moves.
    let url = format!("{}/node/a", backend.url());
    let a = wait_node(&setup, "a", "converged", |e| {
        e["properties"]["outside-url"] == url.as_str()
            && e["properties"]["policy-runs"].as_u64() >= Some(1)
            && settled(e)
    });
    let b = &a["bookkeeping"];
    assert!(b["changed-by-step"].is_u64(), "{a}");
    assert!(
        b["policed"].as_u64() >= b["changed-by-step"].as_u64(),
        "the policy handled the step's write: {a}"
    );
    wait_last_put(&backend, "a", "the converged entity", |body| {
        *body == a["properties"]
    });
    assert_quiet(&setup, &backend);

    // A failing policy: its error is on the entity, it is retried with backoff, and the
    // step enacts the entity all the same.
    let bad = wait_node(&setup, "bad", "failed by the policy", |e| {
        e["bookkeeping"]["policy"]["state"] == "failed"
    });
    let error = &bad["bookkeeping"]["policy"]["errors"][0];
    assert_eq!(error["kind"], "failed");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("refused by the policy"),
        "{error}"
    );
    assert_eq!(bad["bookkeeping"]["needs-policy"], true);
    backend.wait_for("PUT", "/node/bad", 1, WAIT);
    let output = setup.command(&["model", "list", "node", "--failed"]);
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("node bad "),
        "{output:?}"
    );
    let failures = setup.plugin_status("stamp").counters.failures;
    std::thread::sleep(Duration::from_millis(1500));
    let retried = setup.plugin_status("stamp").counters.failures - failures;
    assert!(
        (1..=8).contains(&retried),
        "{retried} retries in 1.5 s under a 200 ms-1 s backoff"
    );

    let stamp = setup.plugin_status("stamp");
    assert!(
        stamp.policy_queue.is_some_and(|q| q.backing_off == 1),
        "{stamp:?}"
    );
    host.stop();
}

#[test]
fn several_policies_and_sync_steps_of_a_kind_each_do_their_part() {
    let source = Source::start(&snapshot(&[("a", json!({"v": 1})), ("b", json!({"v": 1}))]));
    let (cmdb, monitoring) = (Backend::start(), Backend::start());
    // The monitoring system is down for a while.
    for key in ["a", "b"] {
        monitoring.script(&format!("/node/{key}"), &[500; 10_000]);
    }
    let setup = Setup::new();
    collector(&setup, &source, "sync = true");
    // Two policies stamp each entity (each adds one to `policy-runs`) and record its
    // deletion in their own audit kind.
    for (name, audit) in [("stamp", "audit"), ("stamp-2", "audit-2")] {
        let manifest = stamp(name, "\"node\"", &format!("audit-kind = \"{audit}\""))
            .replace("\"audit\"]", &format!("\"{audit}\"]"));
        setup.install(name, "stamp-policy", &manifest);
    }
    setup.install("push", "http-sync", &sync_step("push", &cmdb, ""));
    setup.install("mirror", "http-sync", &sync_step("mirror", &monitoring, ""));
    let host = setup.run();

    // Both policies ran, neither undid the other's write (each wrote from what it read,
    // and a write made after the other's is refused as stale and made again), and the
    // working step enacted the result.
    let a = wait_node(&setup, "a", "policed by both and enacted by push", |e| {
        let b = &e["bookkeeping"];
        b["needs-policy"] == false && b["steps"][1]["state"] == "done"
    });
    assert_eq!(a["properties"]["policy-runs"], 2, "{a}");
    let b = &a["bookkeeping"];
    let plugins = |role: &str| -> Vec<Value> {
        b[role]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["plugin"].clone())
            .collect()
    };
    assert_eq!(plugins("policies"), ["stamp", "stamp-2"], "{a}");
    assert_eq!(plugins("steps"), ["mirror", "push"], "{a}");
    wait_last_put(&cmdb, "a", "what both policies wrote", |body| {
        *body == a["properties"]
    });

    // The other step fails: shown on the entity, by plugin; push is not held back.
    let a = wait_node(&setup, "a", "failed by mirror", |e| {
        e["bookkeeping"]["steps"][0]["state"] == "failed"
    });
    let b = &a["bookkeeping"];
    assert_eq!(b["sync"]["state"], "failed", "the worst of the two: {a}");
    assert_eq!(b["needs-sync"], true);
    assert!(b["enacted"].is_null(), "mirror never enacted it: {a}");
    let failed = setup.command(&["model", "list", "node", "--failed"]);
    let listed = String::from_utf8_lossy(&failed.stdout).into_owned();
    assert!(listed.contains("sync-failed (mirror): failed"), "{listed}");

    // It comes back: it enacts both, and nothing else moves.
    for key in ["a", "b"] {
        monitoring.script(&format!("/node/{key}"), &[]);
    }
    for key in ["a", "b"] {
        let node = wait_node(&setup, key, "settled", settled);
        assert_eq!(node["bookkeeping"]["sync"]["state"], "done", "{node}");
        wait_last_put(&monitoring, key, "the policed entity", |body| {
            *body == node["properties"]
        });
    }
    assert_quiet(&setup, &cmdb);

    // Deleted: removed from both systems and seen go by both policies, then purged.
    monitoring.script("/node/b", &[503; 3]);
    source.set(200, &snapshot(&[("a", json!({"v": 1}))]));
    cmdb.wait_for("DELETE", "/node/b", 1, WAIT);
    monitoring.wait_for("DELETE", "/node/b", 4, WAIT);
    let deadline = Instant::now() + WAIT;
    while model_get(&setup, "node", "b").is_ok() {
        assert!(Instant::now() < deadline, "b never purged");
        std::thread::sleep(Duration::from_millis(50));
    }
    for audit in ["audit", "audit-2"] {
        model_get(&setup, audit, "node/b").expect("both policies ran handle-delete");
    }
    assert_eq!(
        cmdb.requests("DELETE", "/node/b").len(),
        1,
        "a step that removed it is not asked again while the other retries"
    );
    host.stop();
}

#[test]
fn a_policy_writes_what_others_own_only_with_the_handle_grant() {
    let source = Source::start(&snapshot(&[("a", json!({"v": 1}))]));
    let setup = Setup::new();
    collector(&setup, &source, "");
    // Declaring itself the policy of `node` and holding a write grant on it is not
    // enough to overwrite the collector's entities.
    setup.install("stamp", "stamp-policy", &stamp("stamp", "", ""));
    let host = setup.run();
    let a = wait_node(&setup, "a", "refused to the policy", |e| {
        e["bookkeeping"]["policy"]["state"] == "failed"
    });
    let error = &a["bookkeeping"]["policy"]["errors"][0];
    assert_eq!(error["kind"], "denied", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("another plugin wrote it"),
        "{error}"
    );
    assert_eq!(a["properties"], json!({"v": 1}), "unchanged");
    let check = setup.command(&[
        "plugin",
        "check",
        setup.plugin_dir().join("stamp.toml").to_str().unwrap(),
    ]);
    assert!(
        !String::from_utf8_lossy(&check.stdout).contains("write what it handles"),
        "{check:?}"
    );
    host.stop();
}

#[test]
fn kill_9_at_any_moment_loses_no_policy_nor_sync_work() {
    const NODES: usize = 30;
    let nodes = |v: u64| {
        let keys: Vec<String> = (0..NODES).map(|i| format!("n{i:02}")).collect();
        let nodes: Vec<(&str, Value)> =
            keys.iter().map(|k| (k.as_str(), json!({"v": v}))).collect();
        snapshot(&nodes)
    };
    let source = Source::start(&nodes(0));
    let backend = Backend::start();
    let setup = Setup::new();
    install(&setup, &source, &backend, "", "record-url = true");
    // Moments to kill at, from a seed the log shows, so that a failure can be replayed.
    let seed = std::env::var("SYNCHRO_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()));
    println!("kill moments from SYNCHRO_TEST_SEED={seed}");
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    for round in 1..=6 {
        source.set(200, &nodes(round));
        let host = setup.run();
        std::thread::sleep(Duration::from_millis(150 + next() % 900));
        drop(host); // kill -9
    }
    source.set(200, &nodes(99));
    let host = setup.run();
    for i in 0..NODES {
        let key = format!("n{i:02}");
        let node = wait_node(&setup, &key, "settled on the last data", |e| {
            e["properties"]["v"] == 99 && settled(e)
        });
        assert_eq!(node["bookkeeping"]["policy"]["state"], "done", "{node}");
        assert_eq!(node["bookkeeping"]["sync"]["state"], "done", "{node}");
        assert!(
            node["properties"]["policy-runs"].as_u64() >= Some(1),
            "{node}"
        );
        wait_last_put(&backend, &key, "the last data", |body| {
            *body == node["properties"]
        });
    }
    let failed = setup.command(&["model", "list", "node", "--failed"]);
    assert!(failed.stdout.is_empty(), "{failed:?}");
    assert_quiet(&setup, &backend);
    host.stop();
}

#[test]
fn a_deletion_waits_for_a_running_policy_only() {
    let source = Source::start(&snapshot(&[("a", json!({"v": 1})), ("b", json!({"v": 1}))]));
    let setup = Setup::new();
    collector(&setup, &source, "");
    setup.install("stamp", "stamp-policy", &stamp("stamp", "\"node\"", ""));
    let host = setup.run();
    for key in ["a", "b"] {
        wait_node(&setup, key, "policed", settled);
    }
    // The policy now fails `a`: deleted, `a` waits for a `handle-delete` that fails.
    setup.write("stamp.toml", &stamp("stamp", "\"node\"", "fail = \"a\""));
    let deadline = Instant::now() + WAIT;
    while setup.plugin_status("stamp").counters.reloads == 0 {
        assert!(Instant::now() < deadline, "the new settings never loaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    source.set(200, &snapshot(&[("b", json!({"v": 1}))]));
    let a = wait_node(&setup, "a", "held for handle-delete", |e| {
        e["bookkeeping"]["policy"]["state"] == "failed"
    });
    assert_eq!(a["bookkeeping"]["deleted"], true);
    // The policy is removed from the host: nothing waits for it any more.
    std::fs::remove_file(setup.plugin_dir().join("stamp.toml")).unwrap();
    let gone = |key: &str| {
        let deadline = Instant::now() + WAIT;
        while model_get(&setup, "node", key).is_ok() {
            assert!(Instant::now() < deadline, "{key} never purged");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    gone("a");
    // And a deletion made without a policy running is purged at once.
    source.set(200, &snapshot(&[]));
    gone("b");
    host.stop();
}

#[test]
fn the_operators_flags_stop_policies_syncs_and_handlers_writes_until_lifted() {
    let source = Source::start(&snapshot(&[("a", json!({"v": 1})), ("b", json!({"v": 1}))]));
    let backend = Backend::start();
    let setup = Setup::new();
    install(&setup, &source, &backend, "", "");
    let host = setup.run();
    for key in ["a", "b"] {
        wait_node(&setup, key, "settled", settled);
    }
    let flag = |key: &str, flags: &[&str]| {
        let mut args = vec!["model", "flag", "node", key, "--json"];
        args.extend_from_slice(flags);
        let output = setup.command(&args);
        assert!(output.status.success(), "{output:?}");
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };

    // no-policy: a change of `a` is synced, and no policy runs for it.
    let a = flag("a", &["--no-policy", "on"]);
    assert_eq!(a["bookkeeping"]["no-policy"], true);
    source.set(
        200,
        &snapshot(&[("a", json!({"v": 2})), ("b", json!({"v": 1}))]),
    );
    wait_last_put(&backend, "a", "the source's change", |body| {
        *body == json!({"v": 2})
    });
    let a = wait_node(&setup, "a", "settled", settled);
    assert_eq!(a["bookkeeping"]["needs-policy"], false, "{a}");
    std::thread::sleep(Duration::from_millis(1000));
    let a = model_get(&setup, "node", "a").unwrap();
    assert!(
        a["properties"]["policy-runs"].is_null(),
        "the source's write, and no policy run since: {a}"
    );
    let line = setup.command(&["model", "get", "node", "a"]);
    assert!(
        String::from_utf8_lossy(&line.stdout).contains(" no-policy"),
        "{line:?}"
    );

    // Lifted: the policy catches up at once, without another change, and the step
    // enacts what it wrote.
    flag("a", &["--no-policy", "off"]);
    let a = wait_node(&setup, "a", "policed and synced again", |e| {
        e["properties"]["policy-runs"] == 1 && e["properties"]["previous-v"] == 1 && settled(e)
    });
    wait_last_put(&backend, "a", "the change made while flagged", |body| {
        *body == a["properties"]
    });

    // write-protect: the policy may not write `b`, and says why; the step still syncs.
    flag("b", &["--write-protect", "on"]);
    source.set(
        200,
        &snapshot(&[("a", json!({"v": 2})), ("b", json!({"v": 2}))]),
    );
    let b = wait_node(&setup, "b", "refused to the policy", |e| {
        e["bookkeeping"]["policy"]["state"] == "failed"
    });
    let error = &b["bookkeeping"]["policy"]["errors"][0];
    assert_eq!(error["kind"], "denied", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("write-protected"),
        "{error}"
    );
    wait_last_put(&backend, "b", "the source's change", |body| body["v"] == 2);
    flag("b", &["--write-protect", "off"]);
    wait_node(&setup, "b", "policed once lifted", |e| {
        e["properties"]["policy-runs"] == 1 && settled(e)
    });

    // Bad input: named, and the host is unharmed.
    let missing = setup.command(&["model", "flag", "node", "nope", "--no-policy", "on"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no entity node `nope`"),
        "{missing:?}"
    );
    let typo = setup.command(&["model", "flag", "node", "a", "--no-policy", "yes"]);
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("say `on` or `off`"),
        "{typo:?}"
    );
    let (status, body) = setup.admin_request(
        "POST",
        "/v1/model/node/a/flags",
        Some(r#"{"no-sink":true}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no-sink"), "{body}");
    assert!(settled(&model_get(&setup, "node", "a").unwrap()));
    host.stop();
}
