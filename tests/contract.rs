//! End to end: components built against another version of the `synchro:plugin` WIT
//! package. Within the 0.2 series they load; outside it — the older 0.1, whose store knew
//! entities by key alone, or a later series — they are refused, naming the versions this
//! host supports.

use std::time::Duration;

use synchro_testkit::{INVENTORY, Setup, Source};

/// The http-inventory component as if built against `synchro:plugin@VERSION`: every
/// import and export name rewritten (same length, so the binary stays well-formed).
fn built_against(version: &str) -> Vec<u8> {
    assert_eq!(version.len(), "0.2.0".len());
    let bytes = std::fs::read(synchro_testkit::plugin("http-inventory")).unwrap();
    let names = regex::bytes::Regex::new(r"(synchro:plugin/[a-z-]+@)0\.2\.0").unwrap();
    let rewritten = names.replace_all(&bytes, |c: &regex::bytes::Captures| {
        [&c[1], version.as_bytes()].concat()
    });
    assert!(rewritten != bytes, "no synchro:plugin name found");
    rewritten.into_owned()
}

#[test]
fn a_later_patch_version_loads_and_another_series_is_refused_by_name() {
    let source = Source::start(INVENTORY);
    let setup = Setup::new();
    for (name, version) in [("patch", "0.2.9"), ("old", "0.1.0"), ("next", "0.3.0")] {
        setup.inventory_plugin(name, &source);
        std::fs::write(
            setup.plugin_dir().join(format!("{name}.wasm")),
            built_against(version),
        )
        .unwrap();
    }
    let host = setup.run();
    let events = host.raw_events(4, Duration::from_secs(20));
    assert!(events.iter().all(|e| e["source"] == "patch"), "{events:?}");
    let report = setup.status();
    assert_eq!(report.plugins.len(), 1);
    assert_eq!(report.refused.len(), 2);
    for version in ["0.1.0", "0.3.0"] {
        let named = format!(
            "it was built against synchro:plugin@{version} (`synchro:plugin/types@{version}`); \
             this host supports synchro:plugin@0.2.x"
        );
        assert!(
            report.refused.iter().any(|r| r.error.ends_with(&named)),
            "{named}: {:?}",
            report.refused
        );
    }

    let check = setup.command(&[
        "plugin",
        "check",
        setup.plugin_dir().join("next.wasm").to_str().unwrap(),
    ]);
    assert!(!check.status.success());
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("this host supports synchro:plugin@0.2.x"),
        "{check:?}"
    );
    host.stop();
}
