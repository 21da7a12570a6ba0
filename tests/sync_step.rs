//! End to end: a sync step pushes the model to an outside system (a real HTTP server on
//! 127.0.0.1) through the real binary — each change enacted once, a deletion kept until
//! the outside system confirms it, a failing entity backing off on its own schedule
//! whatever changes meanwhile, and all of it resumed after a kill -9, which never creates
//! an entity twice outside once the step recorded the id it created.

use std::time::Duration;

use serde_json::{Value, json};
use synchro_testkit::{Backend, Setup, Source};

const WAIT: Duration = Duration::from_secs(30);

/// A complete snapshot of `node` entities, each `(key, properties)`.
fn snapshot(nodes: &[(&str, Value)]) -> String {
    let entities: Vec<Value> = nodes
        .iter()
        .map(|(key, properties)| json!({"key": key, "kind": "node", "properties": properties}))
        .collect();
    complete(entities)
}

/// A complete snapshot of `entities`.
fn complete(entities: Vec<Value>) -> String {
    json!({"mode": "complete", "entities": entities}).to_string()
}

/// The entity `kind` `key` as `synchro model get` shows it; null while the host or the
/// entity is not there.
fn get(setup: &Setup, kind: &str, key: &str) -> Value {
    let output = setup.command(&["model", "get", kind, key, "--json"]);
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

/// A collector of `source` whose data is the model's to push (`sync = true`), and the
/// `http-sync` step pushing `node` entities to `backend`.
/// The collector empties its few entities on purpose: `max-delete-percent = 100` lets it
/// (tests/deletes.rs is where deletes are held).
fn install(setup: &Setup, source: &Source, backend: &Backend, sync: &str) {
    setup.install(
        "nodes",
        "scripted-collector",
        &format!(
            "name = \"nodes\"\nversion = \"0.1.0\"\nroles = [\"collector\"]\n\
             [schedule]\ninterval = \"100ms\"\njitter = \"0s\"\nsync = true\n\
             [limits]\nmax-delete-percent = 100\n\
             [capabilities]\npoll = {{ hosts = [\"{}\"] }}\n\
             [settings]\nurl = \"{}\"\n",
            source.origin(),
            source.url()
        ),
    );
    setup.install(
        "push",
        "http-sync",
        &step("push", "\"node\"", backend, sync),
    );
}

/// The manifest of the `http-sync` step `name` enacting `kinds` (TOML list items) on
/// `backend`, with `sync` more lines of its `[sync]`.
fn step(name: &str, kinds: &str, backend: &Backend, sync: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"0.1.0\"\nroles = [\"sync-step\"]\n\
         [sync]\nkinds = [{kinds}]\n{sync}\n\
         [capabilities]\npoll = {{ hosts = [\"{url}\"] }}\nstore = {{ read = [\"*\"] }}\n\
         [settings]\nurl = \"{url}\"\n",
        url = backend.url()
    )
}

fn model_get(setup: &Setup, key: &str) -> Result<Value, String> {
    let output = setup.command(&["model", "get", "node", key, "--json"]);
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn list(setup: &Setup, filter: &str) -> Vec<String> {
    let output = setup.command(&["model", "list", "node", filter, "--json"]);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["key"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Waits until `check` holds of the entity `key` as `synchro model get` shows it.
fn wait_entity(setup: &Setup, key: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Ok(entity) = model_get(setup, key)
            && check(&entity)
        {
            return entity;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node {key} never {what}: {:?}",
            model_get(setup, key)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_sync_step_enacts_each_change_and_purges_a_deletion_only_once_it_is_removed_outside() {
    let source = Source::start(&snapshot(&[("a", json!({"v": 1})), ("b", json!({"v": 1}))]));
    let backend = Backend::start();
    let setup = Setup::new();
    install(
        &setup,
        &source,
        &backend,
        "backoff = \"400ms\"\nmax-backoff = \"2s\"",
    );
    let host = setup.run();

    // Created: enacted once each, with the data as its body.
    let put_a = backend.wait_for("PUT", "/node/a", 1, WAIT);
    assert_eq!(put_a[0].body, r#"{"v":1}"#);
    backend.wait_for("PUT", "/node/b", 1, WAIT);
    let a = wait_entity(&setup, "a", "enacted", |e| {
        e["bookkeeping"]["enacted"] == e["bookkeeping"]["updated"]
    });
    assert_eq!(a["bookkeeping"]["sync"]["state"], "done");
    assert_eq!(a["bookkeeping"]["needs-sync"], false);
    assert_eq!(a["bookkeeping"]["no-sync"], false);

    // Updated: enacted again, once, with the new data.
    source.set(
        200,
        &snapshot(&[("a", json!({"v": 2})), ("b", json!({"v": 1}))]),
    );
    let put_a = backend.wait_for("PUT", "/node/a", 2, WAIT);
    assert_eq!(put_a[1].body, r#"{"v":2}"#);

    // Deleted while the outside system refuses to remove it: kept, marked deleted, failed
    // with the outside system's answer, retried after a backoff that doubles.
    backend.script("/node/b", &[500; 1000]);
    source.set(200, &snapshot(&[("a", json!({"v": 2}))]));
    let deletes = backend.wait_for("DELETE", "/node/b", 3, WAIT);
    let gaps: Vec<Duration> = deletes.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps[0] >= Duration::from_millis(400) && gaps[1] >= Duration::from_millis(800),
        "the backoff is enforced and doubles: {gaps:?}"
    );
    let failed = wait_entity(&setup, "b", "failed", |e| {
        e["bookkeeping"]["sync"]["state"] == "failed"
    });
    assert_eq!(failed["bookkeeping"]["deleted"], true);
    let error = &failed["bookkeeping"]["sync"]["errors"][0];
    assert_eq!(error["kind"], "failed");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 500: backend says 500"),
        "{error}"
    );
    assert_eq!(list(&setup, "--failed"), ["b"]);
    let status = setup.plugin_status("push");
    assert!(
        status.sync_queue.is_some_and(|q| q.backing_off == 1),
        "{status:?}"
    );
    // The backoffs given are on /metrics: at least the first two, 400 ms then 800 ms.
    let backoffs = r#"synchro_work_backoff_seconds_count{plugin="push",role="sync-step"}"#;
    let waited = r#"synchro_work_backoff_seconds_sum{plugin="push",role="sync-step"}"#;
    let (backoffs, waited) = (setup.metric(backoffs), setup.metric(waited));
    assert!(
        backoffs >= 2.0 && waited >= 1.19,
        "{backoffs} backoffs, {waited} s in all"
    );
    backend.script("/node/b", &[]);
    // Removed outside: purged.
    let deadline = std::time::Instant::now() + WAIT;
    while model_get(&setup, "b").is_ok() {
        assert!(std::time::Instant::now() < deadline, "b never purged");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        model_get(&setup, "b")
            .unwrap_err()
            .contains("the model has no entity node `b`")
    );
    assert!(list(&setup, "--dirty").is_empty());
    assert!(list(&setup, "--failed").is_empty());
    assert_eq!(
        backend.requests("PUT", "/node/a").len(),
        2,
        "nothing enacted twice"
    );
    // Each call of the step is timed: one per request the outside system saw, at least.
    let requests = 3 + backend.requests("DELETE", "/node/b").len();
    let timed = setup
        .metric(r#"synchro_plugin_call_duration_seconds_count{plugin="push",role="sync-step"}"#);
    assert!(
        timed >= requests as f64,
        "{timed} calls timed, {requests} requests"
    );

    // Killed: what was not enacted yet is enacted after the restart, once.
    drop(host);
    source.set(200, &snapshot(&[("a", json!({"v": 3}))]));
    // The collector writes v3 before the step can push it: the outside system is down.
    backend.script("/node/a", &[503; 1000]);
    let host = setup.run();
    let deferred = wait_entity(&setup, "a", "deferred", |e| {
        e["bookkeeping"]["sync"]["state"] == "deferred"
    });
    assert_eq!(deferred["bookkeeping"]["needs-sync"], true);
    assert_eq!(list(&setup, "--dirty"), ["a"]);
    let killed_at = backend.requests("PUT", "/node/a").len();
    drop(host);
    backend.script("/node/a", &[]);
    let host = setup.run();
    let puts = backend.wait_for("PUT", "/node/a", killed_at + 1, WAIT);
    assert_eq!(puts.last().unwrap().body, r#"{"v":3}"#);
    wait_entity(&setup, "a", "enacted after the restart", |e| {
        e["bookkeeping"]["enacted"] == e["bookkeeping"]["updated"]
            && e["bookkeeping"]["sync"]["state"] == "done"
    });

    // Already gone outside (a purge lost to a crash is removed again): done, and purged.
    backend.script("/node/a", &[404]);
    source.set(200, &snapshot(&[]));
    backend.wait_for("DELETE", "/node/a", 1, WAIT);
    let deadline = std::time::Instant::now() + WAIT;
    while model_get(&setup, "a").is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "a never purged after a 404"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    host.stop();
}

#[test]
fn a_failing_entity_keeps_its_backoff_while_it_changes_and_the_others_go_on() {
    let source = Source::start(&snapshot(&[
        ("bad", json!({"v": 0})),
        ("good", json!({"v": 0})),
    ]));
    let backend = Backend::start();
    backend.script("/node/bad", &[500; 1000]);
    let setup = Setup::new();
    install(
        &setup,
        &source,
        &backend,
        "backoff = \"500ms\"\nmax-backoff = \"1s\"",
    );
    let host = setup.run();
    backend.wait_for("PUT", "/node/bad", 1, WAIT);
    // Both change every 100 ms (the collector's interval) for 3 s.
    let started = std::time::Instant::now();
    let mut v = 0;
    while started.elapsed() < Duration::from_secs(3) {
        v += 1;
        source.set(
            200,
            &snapshot(&[("bad", json!({"v": v})), ("good", json!({"v": v}))]),
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let window = started.elapsed();
    let bad = backend.requests("PUT", "/node/bad");
    // At most one attempt per 500 ms-1 s backoff in the window, plus the first.
    let allowed = 2 + (window.as_millis() / 500) as usize;
    assert!(
        bad.len() <= allowed,
        "{} attempts in {window:?}: the backoff was not enforced",
        bad.len()
    );
    // The healthy entity was enacted meanwhile, and its last data reaches the outside.
    assert!(backend.requests("PUT", "/node/good").len() >= 2);
    let want = json!({"v": v}).to_string();
    let deadline = std::time::Instant::now() + WAIT;
    while backend
        .requests("PUT", "/node/good")
        .last()
        .map(|r| r.body.clone())
        != Some(want.clone())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the last change of `good` never enacted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Each pass of the step over a batch of its work left a record of what became of it.
    let (status, body) = setup.admin_get("/v1/plugins/push/runs");
    assert_eq!(status, 200, "{body}");
    let passes: Vec<synchro_status::PassRun> =
        serde_json::from_str::<Vec<synchro_status::RunRecord>>(&body)
            .unwrap()
            .into_iter()
            .map(|run| match run {
                synchro_status::RunRecord::Pass(pass) => pass,
                other => panic!("a sync step's run: {other:?}"),
            })
            .collect();
    assert!(
        passes
            .iter()
            .all(|p| p.role == "sync-step" && p.entities == p.done + p.failed + p.held),
        "{passes:?}"
    );
    assert!(
        passes.iter().map(|p| p.failed).sum::<u64>() >= 1,
        "{passes:?}"
    );
    assert!(
        passes.iter().map(|p| p.done).sum::<u64>() >= 2,
        "{passes:?}"
    );
    let listed = setup.command(&["plugin", "runs", "push"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains(" sync-step pass "), "{listed}");
    host.stop();
}

#[test]
fn the_operators_modes_keep_a_step_from_kinds_it_must_only_watch_orphan_or_wait_on() {
    // One entity of each kind, all enacted by `push`.
    let entities = |keys: &[&str]| {
        let entities: Vec<Value> = ["node", "rack", "vm", "switch"]
            .iter()
            .flat_map(|kind| {
                keys.iter()
                    .map(move |key| json!({"key": key, "kind": kind, "properties": {}}))
            })
            .collect();
        json!({"mode": "complete", "entities": entities}).to_string()
    };
    let source = Source::start(&entities(&["a"]));
    let backend = Backend::start();
    let setup = Setup::new();
    // A kind's own mode wins over the plugin's.
    let config = |plugins: &str| {
        std::fs::write(
            setup.config(),
            format!(
                "data-dir = \"data\"\nplugin-dir = \"plugins\"\n\
                 [modes.kinds]\nnode = \"managed\"\nrack = \"observe-only\"\n\
                 vm = \"orphan-on-delete\"\n[modes.plugins]\n{plugins}\n"
            ),
        )
        .unwrap()
    };
    // `ghost` names no sync step: a typo the log points out.
    config("push = \"paused\"\nghost = \"paused\"");
    install(&setup, &source, &backend, "");
    setup.install(
        "push",
        "http-sync",
        &step(
            "push",
            "\"node\", \"rack\", \"vm\", \"switch\"",
            &backend,
            "",
        ),
    );
    let host = setup.run();
    let get = |kind: &str| {
        let output = setup.command(&["model", "get", kind, "a", "--json"]);
        output
            .status
            .success()
            .then(|| serde_json::from_slice::<Value>(&output.stdout).unwrap())
    };
    let deadline = std::time::Instant::now() + WAIT;
    while ["node", "vm"]
        .iter()
        .any(|kind| get(kind).is_none_or(|e| e["bookkeeping"]["enacted"].is_null()))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "node a and vm a never enacted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let dirty = setup.command(&["model", "list", "--dirty", "--json"]);
    let dirty: Vec<String> = String::from_utf8(dirty.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let entity: Value = serde_json::from_str(l).unwrap();
            entity["kind"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        dirty,
        ["switch"],
        "paused work waits; observed data is no work"
    );
    host.wait_for_log(
        "`modes.plugins.ghost` in the host config names no running sync step",
        WAIT,
    );

    // Resumed: the work that waited is done, and only it.
    host.stop();
    config("");
    let host = setup.run();
    backend.wait_for("PUT", "/switch/a", 1, WAIT);

    // All deleted: the managed ones are removed outside, the orphaned one only from the
    // model, the observed one was never outside.
    source.set(200, &entities(&[]));
    let deadline = std::time::Instant::now() + WAIT;
    while ["node", "vm", "rack", "switch"]
        .iter()
        .any(|kind| get(kind).is_some())
    {
        assert!(std::time::Instant::now() < deadline, "not purged");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut outside: Vec<String> = backend
        .received()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    outside.sort();
    assert_eq!(
        outside,
        [
            "DELETE /node/a",
            "DELETE /switch/a",
            "PUT /node/a",
            "PUT /switch/a",
            "PUT /vm/a"
        ]
    );
    host.stop();
}

#[test]
fn edges_go_outside_after_their_ends_and_come_down_before_them() {
    let vertex = |key: &str| json!({"key": key, "kind": "node", "properties": {}});
    let edge = |key: &str, from: &str, to: &str| {
        json!({"key": key, "kind": "link", "properties": {},
               "edge": {"source": {"kind": "node", "key": from}, "target": {"kind": "node", "key": to}}})
    };
    // `f` hangs on `z`, which no source reports yet: a dangling edge.
    let source = Source::start(&complete(vec![
        vertex("a"),
        vertex("b"),
        edge("e", "a", "b"),
        edge("f", "a", "z"),
    ]));
    let backend = Backend::start();
    backend.script("/node/b", &[500, 500]);
    let setup = Setup::new();
    install(&setup, &source, &backend, "");
    setup.install(
        "push",
        "http-sync",
        &step(
            "push",
            "\"node\", \"link\"",
            &backend,
            "backoff = \"300ms\"",
        ),
    );
    let host = setup.run();

    // `e` waits for `b`, which fails first; the first failure names the cause.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let e = get(&setup, "link", "e");
        let message = e["bookkeeping"]["sync"]["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if message.contains("waiting for its target node `b` to be enacted first, which failed") {
            assert_eq!(e["bookkeeping"]["sync"]["state"], "deferred");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "e never held for b: {e}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let put_e = backend.wait_for("PUT", "/link/e", 1, WAIT);
    let put_b = backend.wait_for("PUT", "/node/b", 3, WAIT);
    assert!(
        put_b[2].at <= put_e[0].at,
        "the edge went out before its end"
    );
    let f = get(&setup, "link", "f");
    assert_eq!(f["bookkeeping"]["sync"]["state"], "deferred");
    assert!(
        f["bookkeeping"]["sync"]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("its target node `z` is not in the model (dangling)"),
        "{f}"
    );
    assert!(backend.requests("PUT", "/link/f").is_empty());
    assert_eq!(f["dangling"], json!(["target"]), "the model says so: {f}");
    let line = setup.command(&["model", "get", "link", "f"]);
    assert!(
        String::from_utf8_lossy(&line.stdout).contains("node a -> node z (dangling target)"),
        "{line:?}"
    );

    // `z` appears: `f` follows it out.
    source.set(
        200,
        &complete(vec![
            vertex("a"),
            vertex("b"),
            vertex("z"),
            edge("e", "a", "b"),
            edge("f", "a", "z"),
        ]),
    );
    let put_f = backend.wait_for("PUT", "/link/f", 1, WAIT);
    assert_eq!(get(&setup, "link", "f").get("dangling"), None, "resolved");
    let put_z = backend.requests("PUT", "/node/z");
    assert!(put_z[0].at <= put_f[0].at);

    // All deleted at once: the edges come down before the vertices they hang on.
    source.set(200, &complete(vec![]));
    for path in ["/node/a", "/node/b", "/node/z"] {
        backend.wait_for("DELETE", path, 1, WAIT);
    }
    let deletes = |path: &str| backend.requests("DELETE", path)[0].at;
    for (edge, end) in [
        ("/link/e", "/node/a"),
        ("/link/e", "/node/b"),
        ("/link/f", "/node/a"),
        ("/link/f", "/node/z"),
    ] {
        assert!(deletes(edge) <= deletes(end), "{end} removed before {edge}");
    }

    // The operator's writes through the API go out the same way, a cascade included (the
    // step's own order holds the vertex's removal until its edge is down).
    let model = |args: &[&str]| {
        let output = setup.command(&[&["model"], args].concat());
        assert!(output.status.success(), "{args:?}: {output:?}");
    };
    model(&["put", "node", "p", "{}"]);
    model(&["put", "node", "q", "{}"]);
    model(&[
        "put", "link", "pq", "{}", "--from", "node", "p", "--to", "node", "q",
    ]);
    let put_pq = backend.wait_for("PUT", "/link/pq", 1, WAIT);
    for end in ["/node/p", "/node/q"] {
        assert!(backend.requests("PUT", end)[0].at <= put_pq[0].at, "{end}");
    }
    model(&["delete", "node", "p", "--cascade"]);
    let delete_p = backend.wait_for("DELETE", "/node/p", 1, WAIT);
    assert!(backend.requests("DELETE", "/link/pq")[0].at <= delete_p[0].at);
    host.stop();
}

#[test]
fn a_step_that_records_the_id_it_created_never_creates_twice_across_a_kill_9() {
    let source = Source::start(&snapshot(&[("a", json!({"v": 1}))]));
    let backend = Backend::start();
    let setup = Setup::new();
    install(&setup, &source, &backend, "");
    // The outside system names what is created; the step saves that id, in an entity of
    // its own, before anything else, then PUTs the entity there.
    let manifest = step("push", "\"node\"", &backend, "")
        .replace(
            "store = { read = [\"*\"] }",
            "store = { read = [\"*\"], write = [\"node-ids\"] }",
        )
        .replace(
            "[settings]\n",
            "[settings]\ncreate = \"post\"\nids-kind = \"node-ids\"\n",
        );
    setup.install("push", "http-sync", &manifest);
    // The PUT after the create is held: the host dies with the call in flight, after the
    // create and the save of its id, before the call returns.
    backend.hold("/node/1");
    let host = setup.run();
    backend.wait_for("PUT", "/node/1", 1, WAIT);
    drop(host); // kill -9
    backend.release("/node/1");

    let host = setup.run();
    let a = wait_entity(&setup, "a", "enacted", |e| {
        e["bookkeeping"]["needs-sync"] == false && e["bookkeeping"]["sync"]["state"] == "done"
    });
    let ids = setup.command(&["model", "get", "node-ids", "node/a", "--json"]);
    let ids: Value = serde_json::from_slice(&ids.stdout).expect("the step kept the id");
    assert_eq!(
        (&ids["properties"]["id"], &ids["owner"]),
        (&json!("1"), &json!("push"))
    );
    let puts = backend.wait_for("PUT", "/node/1", 2, WAIT);
    let last: Value = serde_json::from_str(&puts.last().unwrap().body).unwrap();
    assert_eq!(last, a["properties"]);

    // The source changes it: the id is the step's, not in the source's data, so the
    // update goes where the entity was created.
    source.set(200, &snapshot(&[("a", json!({"v": 2}))]));
    backend.wait_for("PUT", "/node/1", 3, WAIT);
    assert_eq!(
        backend.requests("POST", "/node").len(),
        1,
        "created once: {:?}",
        backend.received()
    );

    // Deleted: removed where it was created, and the id forgotten.
    source.set(200, &snapshot(&[]));
    backend.wait_for("DELETE", "/node/1", 1, WAIT);
    let deadline = std::time::Instant::now() + WAIT;
    while setup
        .command(&["model", "get", "node-ids", "node/a"])
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the id was never forgotten"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    host.stop();
}

#[test]
fn declared_dependencies_order_the_work_as_edges_do() {
    let entity = |kind: &str, key: &str, props: Value| json!({"key": key, "kind": kind, "properties": props});
    // An instance names its slice in a property, not by an edge.
    let source = Source::start(&complete(vec![
        entity("slice", "s1", json!({})),
        entity("instance", "i1", json!({"slice": "s1"})),
        entity("instance", "i2", json!({"slice": "s9"})),
    ]));
    let backend = Backend::start();
    backend.script("/slice/s1", &[500, 500]);
    let setup = Setup::new();
    install(&setup, &source, &backend, "");
    setup.install(
        "push",
        "http-sync",
        &step(
            "push",
            "\"slice\", \"instance\"",
            &backend,
            "backoff = \"300ms\"\ndepends-on = { instance = { slice = \"slice\" } }",
        ),
    );
    let host = setup.run();
    let message = |e: &Value| {
        e["bookkeeping"]["sync"]["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };

    // `i1` waits for its slice, which fails twice first; `i2` names a slice nobody
    // reported, and waits for it.
    let put_i1 = backend.wait_for("PUT", "/instance/i1", 1, WAIT);
    let put_s1 = backend.wait_for("PUT", "/slice/s1", 3, WAIT);
    assert!(
        put_s1[2].at <= put_i1[0].at,
        "the instance went out before its slice"
    );
    let i2 = get(&setup, "instance", "i2");
    assert!(
        message(&i2).contains("its `slice` slice `s9` is not in the model"),
        "{i2}"
    );
    assert_eq!(i2["bookkeeping"]["sync"]["state"], "deferred", "{i2}");
    assert!(backend.requests("PUT", "/instance/i2").is_empty());

    // Deleted together: the instance comes down before its slice.
    source.set(200, &complete(vec![]));
    let delete_s1 = backend.wait_for("DELETE", "/slice/s1", 1, WAIT);
    let delete_i1 = backend.wait_for("DELETE", "/instance/i1", 1, WAIT);
    assert!(
        delete_i1[0].at <= delete_s1[0].at,
        "the slice came down before what depends on it"
    );
    host.stop();
}
