//! `synchro plugin build` of a Python plugin: `DIR/app.py`, built with componentize-py
//! against the host's WIT, with the Python SDK (`guest-sdk/python`) beside it.
//!
//! The WIT and the SDK are built into this binary, so a plugin folder needs nothing of
//! this repository; componentize-py is installed with pip when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The componentize-py this host's plugins are built with (TOOLCHAIN.md).
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The contract, as `wit/` holds it.
const WIT: [(&str, &str); 3] = [
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("host.wit", include_str!("../../../wit/host.wit")),
    ("roles.wit", include_str!("../../../wit/roles.wit")),
];

/// The Python SDK, as `guest-sdk/python` holds it.
const SDK: &str = include_str!("../../../guest-sdk/python/synchro_guest.py");

/// Whether `dir` holds a Python plugin.
pub fn is_python(dir: &Path) -> bool {
    dir.join("app.py").is_file()
}

/// Builds `dir/app.py` into `dir/target/NAME.wasm`, NAME being the folder's name.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let app = dir.join("app.py");
    let source =
        std::fs::read_to_string(&app).with_context(|| format!("reading {}", app.display()))?;
    let world = world_of(&source).with_context(|| format!("{}", app.display()))?;
    let tool = componentize_py()?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("reading {}", dir.display()))?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("the plugin's folder has no name")?;
    let support = tempfile::tempdir().context("a temporary directory")?;
    let wit = support.path().join("wit");
    let sdk = support.path().join("sdk");
    std::fs::create_dir_all(&wit)?;
    std::fs::create_dir_all(&sdk)?;
    for (file, text) in WIT {
        std::fs::write(wit.join(file), text)?;
    }
    std::fs::write(sdk.join("synchro_guest.py"), SDK)?;
    let out_dir = dir.join("target");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out = out_dir.join(format!("{name}.wasm"));
    eprintln!("synchro: componentize-py: {} as {world}", app.display());
    let output = Command::new(&tool)
        .arg("-d")
        .arg(&wit)
        .args(["-w", world, "componentize", "app", "-p"])
        .arg(&dir)
        .arg("-p")
        .arg(&sdk)
        .arg("-o")
        .arg(&out)
        .output()
        .with_context(|| format!("running {}", tool.display()))?;
    // stdout is the built path's: what componentize-py says goes to stderr.
    eprint!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        bail!("componentize-py could not build {}", app.display());
    }
    Ok(out)
}

/// The world of the role whose class `app.py` defines (`class Collector(...)`): one
/// role per Python component.
fn world_of(source: &str) -> anyhow::Result<&'static str> {
    const ROLES: [(&str, &str); 4] = [
        ("Collector", "collector-plugin"),
        ("EventStep", "event-step-plugin"),
        ("ModelPolicy", "model-policy-plugin"),
        ("SyncStep", "sync-step-plugin"),
    ];
    let defined: Vec<(&str, &str)> = ROLES
        .into_iter()
        .filter(|(class, _)| {
            source.lines().any(|line| {
                line.strip_prefix("class ")
                    .and_then(|rest| rest.strip_prefix(class))
                    .is_some_and(|rest| rest.starts_with(['(', ':']))
            })
        })
        .collect();
    match defined.as_slice() {
        [(_, world)] => Ok(world),
        [] => bail!(
            "defines no role: a Python plugin defines one class named after its role \
             (Collector, EventStep, ModelPolicy or SyncStep)"
        ),
        several => bail!(
            "defines several roles ({}); a Python component plays one",
            several
                .iter()
                .map(|(class, _)| *class)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
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
    use super::world_of;

    #[test]
    fn the_world_is_the_role_the_app_defines() {
        let app =
            "import synchro_guest as synchro\n\nclass Collector(synchro.Collector):\n    pass\n";
        assert_eq!(world_of(app).unwrap(), "collector-plugin");
        assert_eq!(world_of("class SyncStep:\n").unwrap(), "sync-step-plugin");
        // A class whose name only starts with a role's is not that role.
        let error = world_of("class CollectorHelper:\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("defines no role"), "{error}");
        let both = "class Collector(x):\n    pass\nclass EventStep(y):\n    pass\n";
        let error = world_of(both).unwrap_err().to_string();
        assert!(
            error.contains("several roles (Collector, EventStep)"),
            "{error}"
        );
    }
}
