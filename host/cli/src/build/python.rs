//! A Python plugin: `DIR/app.py`, built with componentize-py against the host's WIT, with
//! the Python SDK (`guest-sdk/python`) beside it.
//!
//! The WIT and the SDK are built into this binary, so a plugin folder needs nothing of
//! this repository; componentize-py is installed with pip when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use synchro_manifest::Role;

use super::Guest;

/// The componentize-py this host's plugins are built with (TOOLCHAIN.md).
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The Python SDK, as `guest-sdk/python` holds it.
const SDK: &str = include_str!("../../../../guest-sdk/python/synchro_guest.py");

/// Builds `dir/app.py` into `dir/target/NAME.wasm`, NAME being the folder's name.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let guest = Guest::new(dir, "app.py", defines)?;
    let tool = componentize_py()?;
    let sdk = guest.scratch.path().join("sdk");
    std::fs::create_dir_all(&sdk)?;
    std::fs::write(sdk.join("synchro_guest.py"), SDK)?;
    let out = guest.output()?;
    let world = guest.world();
    eprintln!(
        "synchro: componentize-py: {}/app.py as {world}",
        guest.dir.display()
    );
    super::run(
        Command::new(&tool)
            .arg("-d")
            .arg(guest.wit())
            .args(["-w", &world, "componentize", "app", "-p"])
            .arg(&guest.dir)
            .arg("-p")
            .arg(&sdk)
            .arg("-o")
            .arg(&out),
        "componentize-py could not build app.py",
    )?;
    Ok(out)
}

/// Whether `source` defines `role`'s class (`class Collector(...)`): a Python plugin
/// defines one class named after its role.
fn defines(source: &str, role: Role) -> bool {
    let class = match role {
        Role::Collector => "Collector",
        Role::EventStep => "EventStep",
        Role::ModelPolicy => "ModelPolicy",
        Role::SyncStep => "SyncStep",
    };
    source.lines().any(|line| {
        line.strip_prefix("class ")
            .and_then(|rest| rest.strip_prefix(class))
            .is_some_and(|rest| rest.starts_with(['(', ':']))
    })
}

/// The componentize-py to run: the one on PATH, else pip installs it.
fn componentize_py() -> anyhow::Result<PathBuf> {
    let works = |tool: &Path| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let on_path = PathBuf::from("componentize-py");
    if works(&on_path) {
        return Ok(on_path);
    }
    eprintln!("synchro: installing {COMPONENTIZE_PY} with pip (one 17 MB wheel, once)");
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            COMPONENTIZE_PY,
        ])
        .status()
        .context("running python3 -m pip (Python 3 with pip is needed for Python plugins)")?;
    if !status.success() {
        bail!("pip could not install {COMPONENTIZE_PY}");
    }
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .context("asking python3 where pip puts commands")?;
    let installed =
        PathBuf::from(String::from_utf8_lossy(&scripts.stdout).trim()).join("componentize-py");
    if works(&installed) {
        return Ok(installed);
    }
    if works(&on_path) {
        return Ok(on_path);
    }
    bail!(
        "{COMPONENTIZE_PY} was installed but `componentize-py` cannot be run (not at {})",
        installed.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_is_the_class_the_app_defines() {
        let app =
            "import synchro_guest as synchro\n\nclass Collector(synchro.Collector):\n    pass\n";
        assert!(defines(app, Role::Collector));
        assert!(!defines(app, Role::EventStep));
        assert!(defines("class SyncStep:\n", Role::SyncStep));
        // A class whose name only starts with a role's is not that role.
        assert!(!defines("class CollectorHelper:\n", Role::Collector));
    }
}
