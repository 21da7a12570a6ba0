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

/// The changes `component`, as the inventory collector `inv`, announces for the
/// inventory, then for one without a server (a deletion): each change's operation
/// and entity, without what differs from run to run (times, transaction ids).
fn inventory_changes(component: &Path) -> Vec<String> {
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
