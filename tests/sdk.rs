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
    let work = tempfile::tempdir().unwrap();
    let setup = Setup::new();
    for role in ["collector", "event-step", "model-policy", "sync-step"] {
        let name = format!("new-{role}");
        let said = run(Command::new(synchro_testkit::synchro())
            .args(["plugin", "new", &name, "--role", role, "--dir"])
            .arg(work.path()));
        assert!(said.starts_with("created "), "{said}");
        let dir = work.path().join(&name);
        for file in ["Cargo.toml", "src/lib.rs", "README.md", ".gitignore"] {
            assert!(dir.join(file).is_file(), "{file} of {role}");
        }
        // What an author reads first is formatted as `cargo fmt` would.
        run(Command::new("rustfmt")
            .args(["--check", "--edition", "2024"])
            .arg(dir.join("src/lib.rs")));
        // The example plugins' lock file and target directory: the versions and the
        // compiled dependencies a fresh clone already has (a new author's first build
        // resolves and compiles them: ~25 s, BENCHMARKS.md).
        std::fs::copy(repo().join("plugins/Cargo.lock"), dir.join("Cargo.lock")).unwrap();
        let built = run(Command::new(synchro_testkit::synchro())
            .current_dir(&dir)
            .args(["plugin", "build", ".", "-o"])
            .arg(format!("{name}.wasm"))
            .env("CARGO_TARGET_DIR", repo().join("plugins/target")));
        assert_eq!(built.trim(), format!("{name}.wasm"));
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
    let mut created = host.events(3, WAIT);
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
        "changes: CREATE example/item-3",
        "handle-create example/item-3",
        "sync-record example/item-3: {\"name\":\"item 3\",\"source\":\"new-collector\"}",
    ] {
        host.wait_for_log(line, WAIT);
    }
    let report = setup.status();
    assert_eq!(report.plugins.len(), 4, "{report:#?}");
    host.stop();
}
