//! A JavaScript plugin: `DIR/app.js`, an ES module exporting its role's interface (say
//! `export const collector = synchro.collector(...)`), built with componentize-js
//! (StarlingMonkey) against the host's WIT.
//!
//! componentize-js resolves a module's imports within one folder tree, so the plugin's
//! sources are staged in a scratch folder with the SDK (`guest-sdk/js/synchro-guest.js`)
//! and `synchro-world.js` beside them: the latter holds what only the role's world
//! imports (a collector's `snapshot`), since importing an interface its world lacks fails
//! the build. componentize-js itself is installed with npm, once, in synchro's tool cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use synchro_manifest::Role;

use super::Guest;

/// The componentize-js this host's plugins are built with (TOOLCHAIN.md).
const COMPONENTIZE_JS: (&str, &str) = ("@bytecodealliance/componentize-js", "0.23.0");

/// The JavaScript SDK, as `guest-sdk/js` holds it.
const SDK: &str = include_str!("../../../../guest-sdk/js/synchro-guest.js");

/// What a plugin folder's build does not copy: its outputs and its dependencies.
const SKIPPED: [&str; 2] = ["target", "node_modules"];

/// The files the build puts beside the plugin's: a plugin's own of these names would be
/// replaced.
const RESERVED: [&str; 2] = ["synchro-guest.js", "synchro-world.js"];

/// Builds `dir/app.js` into `dir/target/NAME.wasm`, NAME being the folder's name.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let guest = Guest::new(dir, "app.js", defines)?;
    let cli = componentize_js()?;
    if let Some(taken) = RESERVED.iter().find(|name| guest.dir.join(name).exists()) {
        bail!(
            "{}: `{taken}` is the SDK's name, which `plugin build` puts beside app.js; \
             rename the plugin's file",
            guest.dir.display()
        );
    }
    let stage = guest.scratch.path().join("src");
    stage_sources(&guest.dir, &stage)?;
    std::fs::write(stage.join("synchro-guest.js"), SDK)?;
    let world_imports = match guest.role {
        Role::Collector => {
            "export { add as addToSnapshot } from 'synchro:plugin/snapshot@0.2.0';\n"
        }
        _ => "export const addToSnapshot = undefined;\n",
    };
    std::fs::write(stage.join("synchro-world.js"), world_imports)?;
    let out = guest.output()?;
    let world = guest.world();
    eprintln!(
        "synchro: componentize-js: {}/app.js as {world}",
        guest.dir.display()
    );
    super::run(
        Command::new("node")
            .arg(&cli)
            .arg("app.js")
            .arg("--wit")
            .arg(guest.wit())
            .args(["--world-name", &world])
            // StarlingMonkey's HTTP server and client import wasi:http, which no
            // plugin is granted: the host's `poll` is how a plugin reaches HTTP.
            .args(["--disable", "http", "fetch-event", "--out"])
            .arg(&out)
            .current_dir(&stage),
        "componentize-js could not build app.js",
    )?;
    Ok(out)
}

/// Whether `source` exports `role`'s interface: `export const collector = ...` (or
/// `let`, `var`), named as componentize-js names the WIT's exports.
fn defines(source: &str, role: Role) -> bool {
    let export = match role {
        Role::Collector => "collector",
        Role::EventStep => "eventStep",
        Role::ModelPolicy => "modelPolicy",
        Role::SyncStep => "syncStep",
    };
    source.lines().any(|line| {
        ["export const ", "export let ", "export var "]
            .iter()
            .filter_map(|declaration| line.trim_start().strip_prefix(declaration))
            .filter_map(|rest| rest.strip_prefix(export))
            .any(|rest| rest.trim_start().starts_with(['=', ':']))
    })
}

/// Copies the plugin folder's files into `stage`, but for its build outputs (`target/`,
/// components), its `node_modules` and hidden files.
fn stage_sources(dir: &Path, stage: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(stage).with_context(|| format!("creating {}", stage.display()))?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || SKIPPED.contains(&name.as_ref()) || name.ends_with(".wasm") {
            continue;
        }
        let from = entry.path();
        let to = stage.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            stage_sources(&from, &to)?;
        } else {
            std::fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
    }
    Ok(())
}

/// componentize-js's command line script, installed with npm into synchro's tool cache
/// when it is not there yet.
fn componentize_js() -> anyhow::Result<PathBuf> {
    let (package, version) = COMPONENTIZE_JS;
    node()?;
    let cache = super::tool_cache()?;
    let home = cache.join(format!("componentize-js-{version}"));
    let cli = home.join("node_modules").join(package).join("src/cli.js");
    if cli.is_file() {
        return Ok(cli);
    }
    // One install at a time (builds run in parallel in CI): the others wait, then find it.
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let lock_path = cache.join(format!("componentize-js-{version}.lock"));
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if cli.is_file() {
        return Ok(cli);
    }
    // What an install killed half-way left behind.
    for entry in std::fs::read_dir(&cache)?.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".componentize-js-")
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    eprintln!(
        "synchro: installing {package}@{version} with npm into {} (about 390 MB, once)",
        home.display()
    );
    // Into a folder of its own, renamed into place when complete: an interrupted install
    // never leaves a half-installed toolchain where builds look.
    let partial = tempfile::Builder::new()
        .prefix(".componentize-js-")
        .tempdir_in(&cache)
        .with_context(|| format!("a temporary folder in {}", cache.display()))?;
    let status = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(partial.path())
        .arg(format!("{package}@{version}"))
        .status()
        .context("running npm (Node.js with npm is needed for JavaScript plugins)")?;
    if !status.success() {
        bail!("npm could not install {package}@{version} ({status})");
    }
    std::fs::rename(partial.path(), &home)
        .with_context(|| format!("moving the install to {}", home.display()))?;
    anyhow::ensure!(
        cli.is_file(),
        "npm installed {package}@{version}, but {} is missing",
        cli.display()
    );
    Ok(cli)
}

/// Node.js 18 or newer, as componentize-js needs; Debian's packages when there is none.
fn node() -> anyhow::Result<()> {
    let major = || -> Option<u32> {
        let output = Command::new("node").arg("--version").output().ok()?;
        let version = String::from_utf8_lossy(&output.stdout);
        version
            .trim()
            .strip_prefix('v')?
            .split('.')
            .next()?
            .parse()
            .ok()
    };
    if major().is_none() {
        super::debian_packages(&["nodejs", "npm"], "JavaScript plugins")?;
    }
    match major() {
        Some(major) if major >= 18 => Ok(()),
        Some(major) => bail!("componentize-js needs Node.js 18 or newer; `node` is {major}"),
        None => bail!("componentize-js needs Node.js 18 or newer, and `node` cannot be run"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_is_the_interface_the_module_exports() {
        let app = "import * as synchro from './synchro-guest.js';\n\n\
                   export const collector = synchro.collector((snapshot) => synchro.COMPLETE);\n";
        assert!(defines(app, Role::Collector));
        assert!(!defines(app, Role::EventStep));
        assert!(defines("export let syncStep={", Role::SyncStep));
        assert!(defines("  export var modelPolicy = {}", Role::ModelPolicy));
        // A name that only starts with a role's is not that role.
        assert!(!defines(
            "export const collectorHelper = 1;",
            Role::Collector
        ));
        assert!(!defines("const eventStep = {};", Role::EventStep));
    }
}
