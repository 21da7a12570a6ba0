//! Plugins written in other languages than Rust, built from source here with
//! `synchro plugin build` (which installs their toolchain when missing) and run in the
//! real host: each announces exactly what its Rust twin announces for the same input.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use synchro_testkit::{INVENTORY, Setup, Source, repo};

/// Large components compile for seconds on a busy machine before the first collect.
const WAIT: Duration = Duration::from_secs(180);

/// `synchro plugin build DIR`: the component's path.
fn build(dir: &Path) -> PathBuf {
    let output = Command::new(synchro_testkit::synchro())
        .args(["plugin", "build"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "building {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// The inventory collector `component` (as the plugin `inv`) running in the host against
/// the test inventory: the source, the setup and the host.
fn run_inventory_collector(component: &Path) -> (Source, Setup, synchro_testkit::Running) {
    let source = Source::start(INVENTORY);
    let setup = Setup::new();
    std::fs::copy(component, setup.plugin_dir().join("inv.wasm")).unwrap();
    setup.write(
        "inv.toml",
        &format!(
            "name = \"inv\"\nversion = \"0.1.0\"\nroles = [\"collector\"]\n\
             [schedule]\ninterval = \"150ms\"\njitter = \"0s\"\n\
             [capabilities]\npoll = {{ hosts = [\"{}\"] }}\n\
             [settings]\nurl = \"{}\"\n",
            source.origin(),
            source.url()
        ),
    );
    let host = setup.run();
    (source, setup, host)
}

/// The changes `component`, as the inventory collector `inv`, announces for the
/// inventory, then for one without a server (a deletion): each change's operation
/// and entity, without what differs from run to run (times, transaction ids).
fn inventory_changes(component: &Path) -> Vec<String> {
    let (source, _setup, host) = run_inventory_collector(component);
    let mut events = host.raw_events(4, WAIT);
    source.set(
        200,
        &INVENTORY
            .replace("beta", "gamma")
            .replace(r#", { "id": "srv-2", "hostname": "gamma" }"#, ""),
    );
    events.extend(host.raw_events(1, WAIT));
    host.expect_silence(Duration::from_millis(500));
    host.stop();
    let mut changes: Vec<String> = events
        .into_iter()
        .map(|mut event| {
            let object = event.as_object_mut().unwrap();
            for volatile in ["timestamp", "transaction-id", "database-transaction-id"] {
                object.remove(volatile);
            }
            event.to_string()
        })
        .collect();
    changes.sort();
    changes
}

/// Builds `plugins/FOLDER` from source and checks that it announces exactly what the
/// Rust `http-inventory` does: four creates, then a delete.
fn announces_what_the_rust_twin_does(folder: &str) {
    let built = build(&repo().join("plugins").join(folder));
    assert_eq!(built.file_name().unwrap(), &*format!("{folder}.wasm"));
    let rust = synchro_testkit::plugin("http-inventory");
    let changes = inventory_changes(&built);
    assert_eq!(changes.len(), 5, "{changes:#?}");
    assert!(
        changes
            .iter()
            .any(|c| c.contains("\"operation\":\"DELETE\"")),
        "{changes:#?}"
    );
    assert_eq!(changes, inventory_changes(&rust));
}

#[test]
fn the_python_inventory_collector_announces_what_its_rust_twin_does() {
    announces_what_the_rust_twin_does("py-inventory");
}

#[test]
fn the_javascript_inventory_collector_announces_what_its_rust_twin_does() {
    announces_what_the_rust_twin_does("js-inventory");
}

#[test]
fn the_c_inventory_collector_announces_what_its_rust_twin_does() {
    announces_what_the_rust_twin_does("c-inventory");
}

/// jco, whose `guest-types` makes TypeScript declarations of the WIT, with the TypeScript
/// compiler it depends on: installed with npm once, where `./dev js-types` installs it,
/// one install at a time, renamed into place when complete.
fn jco() -> PathBuf {
    const JCO: &str = "@bytecodealliance/jco@1.34.0";
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"))
        .join("synchro");
    let home = cache.join("jco-1.34.0");
    let bin = home.join("node_modules/.bin");
    std::fs::create_dir_all(&cache).unwrap();
    let lock = std::fs::File::create(cache.join("jco-1.34.0.lock")).unwrap();
    lock.lock().unwrap();
    if !bin.join("jco").is_file() {
        let partial = tempfile::Builder::new()
            .prefix(".jco-")
            .tempdir_in(&cache)
            .unwrap();
        let status = Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(partial.path())
            .arg(JCO)
            .status()
            .unwrap();
        assert!(status.success(), "npm install {JCO}");
        std::fs::rename(partial.path(), &home).unwrap();
    }
    bin
}

/// The files under `dir`, by path relative to it, with their contents.
fn files(dir: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    let mut found = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let text = std::fs::read_to_string(&path).unwrap();
                found.insert(path.strip_prefix(dir).unwrap().to_owned(), text);
            }
        }
    }
    found
}

/// The JavaScript SDK's types are jco's declarations of `wit/` as it is (never edited by
/// hand: `./dev js-types` writes them), and with the SDK's own declarations they
/// type-check the example plugin and every scaffold — and catch a wrong call.
#[test]
fn the_javascript_types_are_generated_from_the_wit_and_check_the_plugins() {
    let bin = jco();
    let generated = tempfile::tempdir().unwrap();
    for world in [
        "collector-plugin",
        "event-step-plugin",
        "model-policy-plugin",
        "sync-step-plugin",
    ] {
        let output = Command::new(bin.join("jco"))
            .args(["guest-types"])
            .arg(repo().join("wit"))
            .args(["--world-name", world, "-o"])
            .arg(generated.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    }
    let committed = files(&repo().join("guest-sdk/js/types"));
    assert_eq!(
        committed,
        files(generated.path()),
        "guest-sdk/js/types differs from the WIT: run `./dev js-types`"
    );

    let work = tempfile::tempdir().unwrap();
    let tsc = |app: &str| -> (bool, String) {
        let dir = tempfile::tempdir_in(work.path()).unwrap();
        for file in ["synchro-guest.d.ts", "synchro-guest.js"] {
            std::fs::copy(
                repo().join("guest-sdk/js").join(file),
                dir.path().join(file),
            )
            .unwrap();
        }
        let types = dir.path().join("types");
        for (path, text) in &committed {
            std::fs::create_dir_all(types.join(path).parent().unwrap()).unwrap();
            std::fs::write(types.join(path), text).unwrap();
        }
        std::fs::write(dir.path().join("app.js"), app).unwrap();
        std::fs::write(
            dir.path().join("tsconfig.json"),
            r#"{"compilerOptions": {"allowJs": true, "checkJs": true, "noEmit": true, "strict": false,
                "target": "es2022", "module": "es2022", "moduleResolution": "bundler",
                "lib": ["es2022"]}, "files": ["app.js"]}"#,
        )
        .unwrap();
        let output = Command::new(bin.join("tsc"))
            .arg("-p")
            .arg(dir.path())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let example = std::fs::read_to_string(repo().join("plugins/js-inventory/app.js")).unwrap();
    let (ok, said) = tsc(&example);
    assert!(ok, "plugins/js-inventory: {said}");
    for role in ["collector", "event-step", "model-policy", "sync-step"] {
        run_new(work.path(), role);
        let app = std::fs::read_to_string(work.path().join(role).join("app.js")).unwrap();
        let (ok, said) = tsc(&app);
        assert!(ok, "the {role} scaffold: {said}");
    }
    let wrong = example.replace("synchro.vertex(id, 'vserver', vm)", "synchro.vertex(id)");
    assert_ne!(wrong, example);
    let (ok, said) = tsc(&wrong);
    assert!(!ok && said.contains("TS2554"), "{said}");
}

/// `synchro plugin new ROLE --lang js --role ROLE` in `dir`.
fn run_new(dir: &Path, role: &str) {
    let output = Command::new(synchro_testkit::synchro())
        .args([
            "plugin", "new", role, "--lang", "js", "--role", role, "--dir",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

/// The owner-lookup event steps in Python, JavaScript and C — every host function but
/// `poll`: config, store get and save, publish and await-response, emit-change, log —
/// built from source and run by `synchro plugin test` (the host's own capability code
/// behind in-memory backends) against one set of fixtures: each passes every check, the
/// three reports are the same line for line, and each logged what it found.
#[test]
fn the_owner_lookup_event_steps_pass_the_same_fixtures_in_every_language() {
    let fixtures = repo().join("tests/fixtures/owner-lookup");
    let mut reports = Vec::new();
    for language in ["py", "js", "c"] {
        let dir = repo()
            .join("plugins")
            .join(format!("{language}-owner-lookup"));
        build(&dir);
        let output = Command::new(synchro_testkit::synchro())
            .args(["plugin", "test"])
            .arg(&dir)
            .arg("--fixtures")
            .arg(&fixtures)
            .output()
            .unwrap();
        let report = String::from_utf8(output.stdout).unwrap();
        assert!(output.status.success(), "{language}: {report}");
        let logged = String::from_utf8_lossy(&output.stderr);
        assert!(
            logged.contains(&format!(
                "srv-1 is owned by team-a plugin={language}-owner-lookup"
            )),
            "{language}: {logged}"
        );
        assert!(
            report.ends_with("\n9 passed, 0 failed\n"),
            "{language}: {report}"
        );
        // The checks, without the title and the compile time.
        let checks: Vec<String> = report
            .lines()
            .skip(2)
            .map(|line| line.replace(&format!("{language}-owner-lookup"), "PLUGIN"))
            .collect();
        reports.push(checks);
    }
    assert_eq!(reports[0], reports[1], "Python and JavaScript differ");
    assert_eq!(reports[0], reports[2], "Python and C differ");
}

/// The README's examples of a collector in Python, JavaScript and C, as a reader copies
/// them into `app.py`, `app.js` and `app.c`: each builds, and announces the inventory's
/// servers in the host.
#[test]
fn the_readme_examples_in_python_javascript_and_c_build_and_collect() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## Writing a plugin in Python, JavaScript or C")
        .nth(1)
        .expect("the README's section")
        .split("\n## ")
        .next()
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    for (fence, file) in [("python", "app.py"), ("js", "app.js"), ("c", "app.c")] {
        let code = section
            .split(&format!("```{fence}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no {fence} example"))
            .split("```")
            .next()
            .unwrap();
        let dir = work.path().join(format!("readme-{fence}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), code).unwrap();
        let component = build(&dir);
        let (_source, _setup, host) = run_inventory_collector(&component);
        let mut created = host.events(2, WAIT);
        created.sort();
        assert_eq!(
            created,
            synchro_testkit::pairs(&[("CREATE", "srv-1"), ("CREATE", "srv-2")]),
            "the README's {fence} example"
        );
        host.stop();
    }
}

/// The JavaScript SDK's edges: a vertex without properties is `{}` (as in the other
/// SDKs), and a handler returning a Promise — which the host would not wait for — fails
/// its call, naming why, instead of being taken for done.
#[test]
fn a_javascript_handler_must_be_synchronous() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("promises");
    std::fs::create_dir_all(dir.join("fixtures")).unwrap();
    std::fs::write(
        dir.join("app.js"),
        "import * as synchro from './synchro-guest.js';\n\
         export const eventStep = synchro.eventStep((message) => {\n\
           if (message.topic === 'later') {\n\
             return (async () => 'done later')();\n\
           }\n\
           synchro.store.save(synchro.vertex('a', 'thing'));\n\
         });\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("promises.toml"),
        "name = \"promises\"\nversion = \"0.1.0\"\nroles = [\"event-step\"]\n\
         component = \"target/promises.wasm\"\n\
         [events]\ntopics = [\"now\", \"later\"]\n\
         [capabilities]\nstore = { read = [\"thing\"], write = [\"thing\"] }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("fixtures/promises.toml"),
        "[[event]]\ntopic = \"now\"\nchanges = [\"CREATE thing/a\"]\n\
         stored = [{ kind = \"thing\", key = \"a\", properties = {} }]\n\n\
         [[event]]\ntopic = \"later\"\nerror = \"failed\"\n",
    )
    .unwrap();
    build(&dir);
    let output = Command::new(synchro_testkit::synchro())
        .args(["plugin", "test"])
        .arg(&dir)
        .output()
        .unwrap();
    let report = String::from_utf8(output.stdout).unwrap();
    for line in [
        "  ok    fixture promises: event 1: 1 change(s), as expected\n",
        "  ok    fixture promises: event 2: failed with `failed`, as expected: TypeError: a handler returned a Promise: plugin handlers must be synchronous (no `async`)\n",
    ] {
        assert!(report.contains(line), "{line}\nnot in:\n{report}");
    }
}

/// The owner-lookup event steps in the real host on Kafka (a broker the tests start), one
/// language after the other: a server on `servers`, the owner request it publishes read by
/// this test — the owner service — which answers on the response topic; the host stores
/// the server and announces it and its owner.
#[tokio::test(flavor = "multi_thread")]
async fn the_owner_lookup_event_steps_ask_over_kafka_in_the_host() {
    use synchro_bus::{Message, StartFrom, Topics};
    let broker = synchro_testkit::broker::shared();
    for language in ["py", "js", "c"] {
        let name = format!("{language}-owner-lookup");
        let dir = repo().join("plugins").join(&name);
        let component = build(&dir);
        let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
        let setup = Setup::new();
        std::fs::write(
            setup.config(),
            format!(
                "data-dir = \"data\"\nplugin-dir = \"plugins\"\n\
                 [bus]\nkind = \"kafka\"\nbrokers = \"{}\"\ntopic-prefix = \"{prefix}\"\n",
                broker.address
            ),
        )
        .unwrap();
        std::fs::copy(&component, setup.plugin_dir().join(format!("{name}.wasm"))).unwrap();
        // The example's manifest, its component beside it and the topic read from the start.
        let manifest = std::fs::read_to_string(dir.join(format!("{name}.toml")))
            .unwrap()
            .replace(&format!("component = \"target/{name}.wasm\"\n"), "")
            .replace(
                "topics = [\"servers\"]\n",
                "topics = [\"servers\"]\nstart = \"earliest\"\n",
            );
        setup.write(&format!("{name}.toml"), &manifest);

        let bus = synchro_testkit::broker::kafka_bus_on(&broker.address, &prefix);
        let mut requests = bus
            .consume(
                "owner-service",
                Topics::Names(vec!["owner-requests".into()]),
                StartFrom::Earliest,
            )
            .unwrap();
        bus.publish(Message::new(
            "servers".to_owned(),
            r#"{"id": "srv-1", "hostname": "alpha"}"#.to_owned(),
        ))
        .await
        .unwrap();
        let host = setup.run();
        let delivery = tokio::time::timeout(WAIT, requests.next())
            .await
            .unwrap_or_else(|_| panic!("{language}: no owner request\n{}", host.log()))
            .unwrap();
        let request: serde_json::Value = serde_json::from_slice(&delivery.message.payload).unwrap();
        assert_eq!(request["server"], "srv-1", "{language}: {request}");
        let answer = serde_json::json!({
            "transaction-id": request["transaction-id"],
            "result": "SUCCESS",
            "owner": "team-a",
        });
        bus.publish(Message::new(
            "owner-responses".to_owned(),
            answer.to_string(),
        ))
        .await
        .unwrap();
        let mut changes = host.events(2, WAIT);
        changes.sort();
        assert_eq!(
            changes,
            synchro_testkit::pairs(&[("CREATE", "srv-1"), ("CREATE", "team-a")]),
            "{language}"
        );
        host.stop();
    }
}
