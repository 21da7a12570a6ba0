//! The Rust SDK as a plugin author outside this repository gets it: packaged as crates.io
//! would hold it (`cargo package`, its WIT inside, its workspace fields resolved), a
//! plugin that depends on that package alone builds with `synchro plugin build` and runs
//! in the host.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use synchro_testkit::{INVENTORY, Setup, Source, inventory_created, repo};

const WAIT: Duration = Duration::from_secs(30);

fn run(command: &mut Command) -> String {
    let output = command.output().expect("running a command");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `synchro plugin test DIR [--fixtures FIXTURES]`: whether it passed, its stdout (the
/// report) and its stderr.
fn plugin_test(dir: &Path, fixtures: Option<&Path>) -> (bool, String, String) {
    let mut command = Command::new(synchro_testkit::synchro());
    command.args(["plugin", "test"]).arg(dir);
    if let Some(fixtures) = fixtures {
        command.arg("--fixtures").arg(fixtures);
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A plugin's folder as an author has it: `work/NAME/NAME.wasm` (the component built from
/// `plugins/PLUGIN`), the manifest `NAME.toml` (its name and version, then `rest`) and an
/// empty `fixtures/`.
fn plugin_folder(work: &Path, name: &str, plugin_crate: &str, rest: &str) -> std::path::PathBuf {
    let dir = work.join(name);
    std::fs::create_dir_all(dir.join("fixtures")).unwrap();
    std::fs::copy(
        synchro_testkit::plugin(plugin_crate),
        dir.join(format!("{name}.wasm")),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{name}.toml")),
        format!("name = \"{name}\"\nversion = \"0.1.0\"\n{rest}"),
    )
    .unwrap();
    dir
}

#[test]
fn a_plugin_outside_the_repository_builds_against_the_packaged_sdk() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    run(Command::new("cargo")
        .current_dir(repo())
        .args([
            "package",
            "-p",
            "synchro-guest",
            "--no-verify",
            "--allow-dirty",
        ])
        .arg("--target-dir")
        .arg(work.join("package")));
    let version = env!("CARGO_PKG_VERSION");
    let packaged = work.join(format!("package/package/synchro-guest-{version}.crate"));
    run(Command::new("tar")
        .arg("xzf")
        .arg(&packaged)
        .arg("-C")
        .arg(work));
    let sdk = work.join(format!("synchro-guest-{version}"));
    assert!(
        sdk.join("wit").is_dir() && !sdk.join("wit").is_symlink(),
        "the WIT travels in the package"
    );

    // The example collector's source, as its own crate with nothing of this repository but
    // the packaged SDK (the example plugins' lock file keeps the dependencies' versions,
    // and their target directory the compiled ones).
    let plugin = work.join("outside-inventory");
    std::fs::create_dir_all(plugin.join("src")).unwrap();
    std::fs::copy(
        repo().join("plugins/http-inventory/src/lib.rs"),
        plugin.join("src/lib.rs"),
    )
    .unwrap();
    std::fs::copy(repo().join("plugins/Cargo.lock"), plugin.join("Cargo.lock")).unwrap();
    std::fs::write(
        plugin.join("Cargo.toml"),
        format!(
            "[package]\nname = \"outside-inventory\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\
             [dependencies]\nserde_json = \"1\"\nsynchro-guest = {{ path = {:?} }}\n\
             [workspace]\n\
             [profile.release]\nopt-level = \"s\"\nlto = true\ncodegen-units = 1\n\
             panic = \"abort\"\nstrip = true\n",
            sdk.display().to_string()
        ),
    )
    .unwrap();
    let output = Command::new(synchro_testkit::synchro())
        .args(["plugin", "build"])
        .arg(&plugin)
        .env("CARGO_TARGET_DIR", repo().join("plugins/target"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    // The build says what it made and what the host makes of it.
    assert!(
        said.contains("outside-inventory.wasm (") && said.contains(" KiB) in "),
        "{said}"
    );
    assert!(said.contains("  role collector: ok"), "{said}");
    let built = String::from_utf8(output.stdout).unwrap();
    let component = Path::new(built.trim());
    assert_eq!(
        component.file_name().unwrap(),
        "outside-inventory.wasm",
        "{built}"
    );

    let source = Source::start(INVENTORY);
    let setup = Setup::new();
    std::fs::copy(component, setup.plugin_dir().join("outside.wasm")).unwrap();
    setup.write(
        "outside.toml",
        &format!(
            "name = \"outside\"\nversion = \"0.1.0\"\nroles = [\"collector\"]\n\
             [schedule]\ninterval = \"150ms\"\n\
             [capabilities]\npoll = {{ hosts = [\"{}\"] }}\n\
             [settings]\nurl = \"{}\"\n",
            source.origin(),
            source.url()
        ),
    );
    let host = setup.run();
    assert_eq!(host.events(4, WAIT), inventory_created());
    host.stop();
}

/// `synchro plugin new` in every role, as a new author runs it: each folder builds as
/// generated, and the four run together in the host — the collector's items are
/// announced, the event step reads them off the change stream, the policy and the sync
/// step handle them.
#[test]
fn plugin_new_scaffolds_plugins_that_build_and_run_in_every_role() {
    scaffold_every_role("rust");
}

/// The same in Python: componentize-py (installed by `plugin build` when missing), the
/// Python SDK, the same manifests and fixture.
#[test]
fn plugin_new_scaffolds_python_plugins_that_build_and_run_in_every_role() {
    scaffold_every_role("python");
}

/// The same in JavaScript: componentize-js (installed by `plugin build` when missing)
/// and the JavaScript SDK.
#[test]
fn plugin_new_scaffolds_javascript_plugins_that_build_and_run_in_every_role() {
    scaffold_every_role("js");
}

/// The same in C: bindings generated by `plugin build`, Debian's clang (installed when
/// missing) and the C SDK's header.
#[test]
fn plugin_new_scaffolds_c_plugins_that_build_and_run_in_every_role() {
    scaffold_every_role("c");
}

/// `plugin new` of every role in `lang`, each built and tested as generated, then the
/// four run together in one host.
fn scaffold_every_role(lang: &str) {
    let work = tempfile::tempdir().unwrap();
    let setup = Setup::new();
    for role in ["collector", "event-step", "model-policy", "sync-step"] {
        let name = format!("{lang}-{role}");
        let said = run(Command::new(synchro_testkit::synchro())
            .args([
                "plugin", "new", &name, "--lang", lang, "--role", role, "--dir",
            ])
            .arg(work.path()));
        assert!(said.starts_with("created "), "{said}");
        let dir = work.path().join(&name);
        let mut build = Command::new(synchro_testkit::synchro());
        build.current_dir(&dir);
        if lang == "rust" {
            for file in ["Cargo.toml", "src/lib.rs", "README.md", ".gitignore"] {
                assert!(dir.join(file).is_file(), "{file} of {role}");
            }
            // What an author reads first is formatted as `cargo fmt` would.
            run(Command::new("rustfmt")
                .args(["--check", "--edition", "2024"])
                .arg(dir.join("src/lib.rs")));
            // The example plugins' lock file and target directory: the versions and the
            // compiled dependencies a fresh clone already has (a new author's first
            // build resolves and compiles them: ~25 s, BENCHMARKS.md).
            std::fs::copy(repo().join("plugins/Cargo.lock"), dir.join("Cargo.lock")).unwrap();
            build.env("CARGO_TARGET_DIR", repo().join("plugins/target"));
        } else {
            let source = format!("app.{}", if lang == "python" { "py" } else { lang });
            for file in [source.as_str(), "README.md", ".gitignore"] {
                assert!(dir.join(file).is_file(), "{file} of {role}");
            }
        }
        let built = run(build
            .args(["plugin", "build", ".", "-o"])
            .arg(format!("{name}.wasm")));
        assert_eq!(built.trim(), format!("{name}.wasm"));
        // It passes its own test as generated.
        let tested = run(Command::new(synchro_testkit::synchro())
            .current_dir(&dir)
            .args(["plugin", "test"]));
        assert!(tested.ends_with(" passed, 0 failed\n"), "{tested}");
        // Its generated fixture is run, whatever its role.
        assert!(tested.contains("  ok    fixture "), "{tested}");
        if role == "collector" {
            assert!(
                tested.contains("  ok    fixture items: collect 2: 1 change(s), as expected\n"),
                "{tested}"
            );
        }
        let mut manifest = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap();
        if role == "collector" {
            // What it collects is the model's to push outward, here.
            manifest = manifest.replace("interval = \"30s\"", "interval = \"30s\"\nsync = true");
        }
        setup.write(&format!("{name}.toml"), &manifest);
        std::fs::copy(
            dir.join(format!("{name}.wasm")),
            setup.plugin_dir().join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    let host = setup.run();
    // Python and JavaScript components compile for seconds at the first start.
    let wait = Duration::from_secs(180);
    let mut created = host.events(3, wait);
    created.sort();
    assert_eq!(
        created,
        synchro_testkit::pairs(&[
            ("CREATE", "item-1"),
            ("CREATE", "item-2"),
            ("CREATE", "item-3")
        ])
    );
    for line in [
        "changes: CREATE example/item-3".to_owned(),
        "handle-create example/item-3".to_owned(),
        format!(
            "sync-record example/item-3: {{\"name\":\"item 3\",\"source\":\"{lang}-collector\"}}"
        ),
    ] {
        host.wait_for_log(&line, wait);
    }
    let report = setup.status();
    assert_eq!(report.plugins.len(), 4, "{report:#?}");
    host.stop();
}

/// `synchro plugin test` as an author runs it in CI: the real example collector against
/// fixtures of its outside system (answers by URL, collects in order against the baseline
/// the previous left), then a fixture that expects the wrong thing and a plugin that traps:
/// each failure is named, and the exit status says so.
#[test]
fn plugin_test_runs_fixtures_in_a_mock_host_and_fails_clearly() {
    let work = tempfile::tempdir().unwrap();
    let dir = plugin_folder(
        work.path(),
        "inventory",
        "http-inventory",
        "roles = [\"collector\"]\n\
         [schedule]\ninterval = \"1m\"\n[capabilities]\npoll = { hosts = [\"https://inventory.example\"] }\n\
         [settings]\nurl = \"https://inventory.example/inventory.json\"\n",
    );
    let answer = |body: &str| {
        format!(
            "http = [{{ url = \"https://inventory.example/inventory.json\", body = '''{body}''' }}]\n"
        )
    };
    std::fs::write(
        dir.join("fixtures/inventory.toml"),
        format!(
            "{}[[collect]]\nchanges = [\"CREATE pserver/srv-1\", \"CREATE pserver/srv-2\", \
             \"CREATE vserver/vm-1\", \"CREATE tosca.relationships.HostedOn/vm-1/hosted-on\"]\n\
             [[collect]]\n{}changes = [\"UPDATE pserver/srv-2\"]\n\
             [[collect]]\nhttp = [{{ url = \"https://inventory.example/inventory.json\", status = 503 }}]\n\
             error = \"failed\"\n",
            answer(INVENTORY),
            answer(&INVENTORY.replace("beta", "gamma")),
        ),
    )
    .unwrap();
    let (passed, said, _) = plugin_test(&dir, None);
    assert!(passed, "{said}");
    for line in [
        "  ok    fixture inventory: collect 1: 4 change(s), as expected\n",
        "  ok    fixture inventory: collect 2: 1 change(s), as expected\n",
        "  ok    fixture inventory: collect 3: failed with `failed`, as expected: GET https://inventory.example/inventory.json: HTTP status 503\n",
        "  ok    conformance: collecting the same data twice changes nothing: the second collect announced nothing\n",
        "  ok    conformance: a missing config gets an error, not a trap: returned: returned an error (invalid-input): setting `url` is missing from the manifest\n",
        "  ok    conformance: a denied capability is handled (an error, not a trap): returned: returned an error (denied): ",
        "8 passed, 0 failed\n",
    ] {
        assert!(said.contains(line), "{line}\nnot in:\n{said}");
    }

    // A fixture that expects the wrong changes, and one asking for a URL nobody answers.
    let wrong = work.path().join("wrong");
    std::fs::create_dir(&wrong).unwrap();
    std::fs::write(
        wrong.join("wrong.toml"),
        format!(
            "{}[[collect]]\nchanges = [\"CREATE pserver/srv-1\"]\n",
            answer(INVENTORY)
        ),
    )
    .unwrap();
    std::fs::write(wrong.join("unanswered.toml"), "[[collect]]\nchanges = []\n").unwrap();
    let (passed, said, stderr) = plugin_test(&dir, Some(&wrong));
    assert!(!passed, "{said}");
    assert!(stderr.contains("synchro: 3 of "), "{stderr}");
    for line in [
        "  FAIL  fixture unanswered: collect 1: failed: returned an error (unavailable): GET https://inventory.example/inventory.json: no fixture answers this request\n",
        "  FAIL  fixture wrong: collect 1: announced [CREATE pserver/srv-1, CREATE pserver/srv-2, CREATE tosca.relationships.HostedOn/vm-1/hosted-on, CREATE vserver/vm-1] where [CREATE pserver/srv-1] was expected\n",
        // The conformance checks collect the first fixture's data: `unanswered`'s.
        "  FAIL  conformance: collecting the same data twice changes nothing: the first collect failed",
    ] {
        assert!(said.contains(line), "{line}\nnot in:\n{said}");
    }

    // A plugin that traps where it should return an error.
    let trapping = plugin_folder(
        work.path(),
        "trapping",
        "scripted-collector",
        "roles = [\"collector\"]\n\
         [schedule]\ninterval = \"1m\"\n[capabilities]\npoll = { hosts = [\"https://script.example\"] }\n\
         [settings]\nurl = \"https://script.example/script.json\"\n",
    );
    std::fs::write(
        trapping.join("fixtures/trap.toml"),
        "http = [{ url = \"https://script.example/script.json\", body = '{\"mode\": \"trap\"}' }]\n\
         [[collect]]\nchanges = []\n",
    )
    .unwrap();
    let (passed, said, _) = plugin_test(&trapping, None);
    assert!(!passed, "{said}");
    assert!(
        said.contains("  FAIL  fixture trap: collect 1: failed: trapped: "),
        "{said}"
    );

    // What a collect publishes and what it leaves in the store.
    let publisher = plugin_folder(
        work.path(),
        "publisher",
        "scripted-collector",
        "roles = [\"collector\"]\n\
         [schedule]\ninterval = \"1m\"\n\
         [capabilities]\npoll = { hosts = [\"https://script.example\"] }\nbus = { publish = [\"audit\"] }\n\
         [settings]\nurl = \"https://script.example/script.json\"\n",
    );
    std::fs::write(
        publisher.join("fixtures/publish.toml"),
        r#"http = [{ url = "https://script.example/script.json", body = '{"mode": "publish", "target": "audit", "entities": [{"key": "a", "kind": "k", "properties": {"n": 1}}]}' }]
[[collect]]
changes = ["CREATE k/a"]
published = [{ topic = "audit", payload = "{}" }]
stored = [{ kind = "k", key = "a", properties = { n = 1 } }]
"#,
    )
    .unwrap();
    let (passed, said, _) = plugin_test(&publisher, None);
    assert!(passed, "{said}");
    assert!(
        said.contains("  ok    fixture publish: collect 1: 1 change(s), as expected\n"),
        "{said}"
    );
}

/// An event step's fixtures: the store seeded, messages handed in order, what the calls
/// stored and announced checked, an expected error, and an expectation that fails.
#[test]
fn plugin_test_hands_an_event_step_its_fixture_messages() {
    let work = tempfile::tempdir().unwrap();
    let dir = plugin_folder(
        work.path(),
        "people",
        "xos-people",
        "roles = [\"event-step\"]\n\
         [events]\ntopics = [\"Stream\"]\n\
         [capabilities]\nstore = { read = [\"person\"], write = [\"person\"] }\n",
    );
    std::fs::write(
        dir.join("fixtures/people.toml"),
        r#"[[store]]
kind = "person"
key = "person/ada-lovelace"
properties = { first_name = "Ada", last_name = "Lovelace" }

[[event]]
topic = "Stream"
payload = '{"first_name": "Grace", "last_name": "Hopper"}'
changes = ["CREATE person/person/grace-hopper"]
stored = [{ kind = "person", key = "person/grace-hopper", properties = { first_name = "Grace", last_name = "Hopper" } }]

[[event]]
topic = "Stream"
payload = '{"first_name": "Ada", "last_name": "Lovelace"}'
changes = []

[[event]]
topic = "Stream"
payload = 'not json'
error = "invalid-input"
"#,
    )
    .unwrap();
    let (passed, said, _) = plugin_test(&dir, None);
    assert!(passed, "{said}");
    for line in [
        "  ok    fixture people: event 1: 1 change(s), as expected\n",
        "  ok    fixture people: event 2: no change, as expected\n",
        "  ok    fixture people: event 3: failed with `invalid-input`, as expected: event is not JSON: ",
        "  ok    conformance: a missing config gets an error, not a trap: ",
        "  ok    conformance: a denied capability is handled (an error, not a trap): returned: returned an error (denied): ",
        "7 passed, 0 failed\n",
    ] {
        assert!(said.contains(line), "{line}\nnot in:\n{said}");
    }

    // Expectations the calls do not meet: named, and the exit status says so.
    std::fs::write(
        dir.join("fixtures/people.toml"),
        r#"[[event]]
topic = "Stream"
payload = '{"first_name": "Grace", "last_name": "Hopper"}'
published = [{ topic = "audit" }]

[[event]]
topic = "Stream"
payload = '{"first_name": "Alan", "last_name": "Turing"}'
changes = ["CREATE person/person/alan-turing"]
stored = [{ kind = "person", key = "person/alan-turing", properties = { first_name = "Alan" } }]

[[event]]
topic = "Stream"
payload = '{"first_name": "Alan", "last_name": "Turing"}'
published = [{ topic = "audit", payload = "turing" }]
"#,
    )
    .unwrap();
    let (passed, said, _) = plugin_test(&dir, None);
    assert!(!passed, "{said}");
    for line in [
        "  FAIL  fixture people: event 1: announced [CREATE person/person/grace-hopper] where no change was expected\n",
        "  FAIL  fixture people: event 2: person/person/alan-turing is stored with {\"first_name\":\"Alan\",\"last_name\":\"Turing\"} where {\"first_name\":\"Alan\"} was expected\n",
        "  FAIL  fixture people: event 3: published nothing like audit turing (published: nothing)\n",
    ] {
        assert!(said.contains(line), "{line}\nnot in:\n{said}");
    }
}

/// A model policy's fixtures: each call in an instance of its own, the entity put in the
/// model first as a source's write, which the policy may write back (plugins/stamp-policy
/// stamps it) only as the host allows, with a `handle` grant; `previous` handed to
/// handle-update; a delete handed an entity no longer in the model; an expected error;
/// fixtures of another role and a malformed call, named.
#[test]
fn plugin_test_calls_a_model_policy_with_its_fixture_entities() {
    let work = tempfile::tempdir().unwrap();
    let dir = plugin_folder(
        work.path(),
        "stamp",
        "stamp-policy",
        "roles = [\"model-policy\"]\n\
         [policy]\nkinds = [\"slice\"]\n\
         [capabilities]\nstore = { read = [\"slice\", \"audit\"], write = [\"slice\", \"audit\"] }\n\
         [settings]\naudit-kind = \"audit\"\nfail = \"refused\"\n",
    );
    std::fs::write(
        dir.join("fixtures/stamps.toml"),
        r#"[[call]]
function = "handle-create"
entity = { kind = "slice", key = "s1", properties = { v = 1 } }
changes = ["UPDATE slice/s1"]
# Its properties are not given (TOML has no null for `previous-v`): any.
stored = [{ kind = "slice", key = "s1" }]

[[call]]
function = "handle-update"
entity = { kind = "slice", key = "s1", properties = { v = 2, policy-runs = 1 } }
previous = { kind = "slice", key = "s1", properties = { v = 1 } }
changes = ["UPDATE slice/s1"]
stored = [{ kind = "slice", key = "s1", properties = { v = 2, policy-runs = 2, previous-v = 1 } }]

[[call]]
function = "handle-delete"
entity = { kind = "slice", key = "s2", properties = { v = 7 } }
changes = ["CREATE audit/slice/s2"]

[[call]]
function = "handle-create"
entity = { kind = "slice", key = "refused" }
error = "failed"
"#,
    )
    .unwrap();
    // Without `handle`, the source's entity is not the policy's to write: the same
    // refusal as in the host.
    let (passed, said, _) = plugin_test(&dir, None);
    assert!(!passed, "{said}");
    assert!(
        said.contains(
            "  FAIL  fixture stamps: call 1: failed: returned an error (denied): store: replacing slice `s1`: another plugin wrote it, and only its writer may\n"
        ),
        "{said}"
    );
    let manifest = dir.join("stamp.toml");
    let granted = std::fs::read_to_string(&manifest).unwrap().replace(
        "write = [\"slice\", \"audit\"] }",
        "write = [\"slice\", \"audit\"], handle = [\"slice\"] }",
    );
    std::fs::write(&manifest, granted).unwrap();
    let (passed, said, _) = plugin_test(&dir, None);
    assert!(passed, "{said}");
    for line in [
        "  ok    fixture stamps: call 1: 1 change(s), as expected\n",
        "  ok    fixture stamps: call 2: 1 change(s), as expected\n",
        "  ok    fixture stamps: call 3: 1 change(s), as expected\n",
        "  ok    fixture stamps: call 4: failed with `failed`, as expected: refused is refused by the policy's `fail` setting\n",
        // A policy without its store grants is refused at load: it cannot read what it
        // handles.
        "  ok    conformance: a denied capability is handled (an error, not a trap): the host refuses it: ",
        "8 passed, 0 failed\n",
    ] {
        assert!(said.contains(line), "{line}\nnot in:\n{said}");
    }

    // A policy's fixtures handed to a sync step, and a malformed call: named.
    std::fs::write(
        dir.join("fixtures/stamps.toml"),
        "[[call]]\nfunction = \"sync-record\"\nentity = { kind = \"slice\", key = \"s1\" }\n",
    )
    .unwrap();
    let (passed, said, _) = plugin_test(&dir, None);
    assert!(!passed, "{said}");
    assert!(
        said.contains("  FAIL  fixture stamps: steps 1: its steps are for another role: stamp is a model policy\n"),
        "{said}"
    );
    std::fs::write(
        dir.join("fixtures/stamps.toml"),
        "[[call]]\nfunction = \"handle-update\"\nentity = { kind = \"slice\", key = \"s1\" }\n",
    )
    .unwrap();
    let (passed, _, stderr) = plugin_test(&dir, None);
    assert!(!passed);
    assert!(
        stderr.contains("call 1: `previous` is handle-update's, and handle-update needs it"),
        "{stderr}"
    );
    for (fixture, error) in [
        (
            "[[call]]\nfunction = \"handle-update\"\nentity = { kind = \"slice\", key = \"s1\" }\n\
             previous = { kind = \"slice\", key = \"s2\" }\n",
            "call 1: `previous` is the same entity as handled last: kind `slice` and key `s1`",
        ),
        (
            "[[call]]\nfunction = \"handle-create\"\nentity = { kind = \"slice\", key = \"s1\" }\n\
             [[call]]\nfunction = \"sync-record\"\nentity = { kind = \"slice\", key = \"s1\" }\n",
            "call 2: a case's calls are a model policy's (handle-...) or a sync step's",
        ),
        (
            "[[store]]\nkind = \"slice\"\nkey = \"s1\"\n\
             [[call]]\nfunction = \"handle-create\"\nentity = { kind = \"slice\", key = \"s1\" }\n",
            "call 1: slice/s1 is in `[[store]]` too, written by the plugin: a call's entity is a source's",
        ),
    ] {
        std::fs::write(dir.join("fixtures/stamps.toml"), fixture).unwrap();
        let (passed, _, stderr) = plugin_test(&dir, None);
        assert!(
            !passed && stderr.contains(error),
            "{error}\nnot in:\n{stderr}"
        );
    }
}

/// A sync step's fixtures: `sync-record` and `delete-record` with the outside system's
/// answers from `[[http]]` (plugins/http-sync PUTs and DELETEs), a 503 as `unavailable`,
/// a 404 on delete as done, and a write of the step's own (`record-url`).
#[test]
fn plugin_test_calls_a_sync_step_with_its_fixture_entities() {
    let work = tempfile::tempdir().unwrap();
    let dir = plugin_folder(
        work.path(),
        "push",
        "http-sync",
        "roles = [\"sync-step\"]\n\
         [sync]\nkinds = [\"pserver\"]\n\
         [capabilities]\npoll = { hosts = [\"https://cmdb.example\"] }\n\
         store = { read = [\"pserver\"], write = [\"pserver\"], handle = [\"pserver\"] }\n\
         [settings]\nurl = \"https://cmdb.example/api\"\n",
    );
    std::fs::write(
        dir.join("fixtures/push.toml"),
        r#"[[http]]
method = "PUT"
url = "https://cmdb.example/api/pserver/srv-1"
status = 204

[[http]]
method = "DELETE"
url = "https://cmdb.example/api/pserver/srv-1"
status = 404

[[call]]
function = "sync-record"
entity = { kind = "pserver", key = "srv-1", properties = { hostname = "alpha" } }
changes = []

[[call]]
function = "sync-record"
settings = { record-url = "true" }
entity = { kind = "pserver", key = "srv-1", properties = { hostname = "alpha" } }
changes = ["UPDATE pserver/srv-1"]
stored = [{ kind = "pserver", key = "srv-1", properties = { hostname = "alpha", outside-url = "https://cmdb.example/api/pserver/srv-1" } }]

[[call]]
function = "sync-record"
entity = { kind = "pserver", key = "srv-1", properties = { hostname = "alpha" } }
http = [{ method = "PUT", url = "https://cmdb.example/api/pserver/srv-1", status = 503 }]
error = "unavailable"

[[call]]
function = "delete-record"
entity = { kind = "pserver", key = "srv-1" }
"#,
    )
    .unwrap();
    let (passed, said, _) = plugin_test(&dir, None);
    assert!(passed, "{said}");
    for line in [
        "  ok    fixture push: call 1: no change, as expected\n",
        "  ok    fixture push: call 2: 1 change(s), as expected\n",
        "  ok    fixture push: call 3: failed with `unavailable`, as expected: ",
        "  ok    fixture push: call 4: no change, as expected\n",
        "  ok    conformance: a missing config gets an error, not a trap: returned: returned an error (invalid-input): the setting `url` is missing\n",
        "8 passed, 0 failed\n",
    ] {
        assert!(said.contains(line), "{line}\nnot in:\n{said}");
    }
}

/// The Rust SDK carries the WIT in its package (so that it builds outside this
/// repository): the same files as `wit/`, the one source, byte for byte.
#[test]
fn the_rust_sdk_carries_the_wit_as_it_is() {
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let wit = repo().join("wit");
    let carried = repo().join("guest-sdk/wit");
    assert_eq!(names(&wit), names(&carried));
    for name in names(&wit) {
        assert!(
            std::fs::read(wit.join(&name)).unwrap() == std::fs::read(carried.join(&name)).unwrap(),
            "guest-sdk/wit/{name} differs from wit/{name}: copy wit/ over it"
        );
    }
}
