//! `synchro plugin build`: a plugin folder into a wasm component, whatever its language.
//!
//! The folder's files say its language: `Cargo.toml` (Rust), `app.py` (Python), `app.js`
//! (JavaScript) or `app.c` (C). Every route builds against the WIT this binary was built
//! with, installs the toolchain it needs when missing (saying what), and shows that
//! toolchain's own progress on stderr.

mod c;
mod javascript;
mod python;
mod rust;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use synchro_manifest::Role;

pub use rust::Route;

/// The contract, as `wit/` holds it: the one source every language's bindings come from.
const WIT: [(&str, &str); 3] = [
    ("types.wit", include_str!("../../../../wit/types.wit")),
    ("host.wit", include_str!("../../../../wit/host.wit")),
    ("roles.wit", include_str!("../../../../wit/roles.wit")),
];

/// The languages plugins are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    JavaScript,
    C,
}

impl Language {
    /// The language of the plugin folder `dir`, by the file its build starts from.
    pub fn of(dir: &Path) -> anyhow::Result<Language> {
        const ENTRIES: [(&str, Language); 4] = [
            ("Cargo.toml", Language::Rust),
            ("app.py", Language::Python),
            ("app.js", Language::JavaScript),
            ("app.c", Language::C),
        ];
        anyhow::ensure!(dir.is_dir(), "{} is not a folder", dir.display());
        let found: Vec<(&str, Language)> = ENTRIES
            .into_iter()
            .filter(|(entry, _)| dir.join(entry).is_file())
            .collect();
        match found.as_slice() {
            [(_, language)] => Ok(*language),
            [] => bail!(
                "{} holds no plugin: `plugin build` builds a folder with a Cargo.toml (Rust), \
                 an app.py (Python), an app.js (JavaScript) or an app.c (C)",
                dir.display()
            ),
            several => bail!(
                "{} holds several plugins ({}); a folder builds one",
                dir.display(),
                several
                    .iter()
                    .map(|(entry, _)| *entry)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Builds the plugin folder `dir`; returns the component's path.
pub fn build(dir: &Path, route: Route) -> anyhow::Result<PathBuf> {
    match Language::of(dir)? {
        Language::Rust => rust::build(dir, route),
        Language::Python => python::build(dir),
        Language::JavaScript => javascript::build(dir),
        Language::C => c::build(dir),
    }
}

/// A plugin folder whose toolchain is not cargo's, being built: its name (the folder's),
/// its role (told by its entry file), and a scratch directory holding the WIT.
struct Guest {
    dir: PathBuf,
    name: String,
    role: Role,
    scratch: tempfile::TempDir,
}

impl Guest {
    /// Reads `dir/entry` and tells its role with `defines(source, role)`.
    fn new(dir: &Path, entry: &str, defines: impl Fn(&str, Role) -> bool) -> anyhow::Result<Guest> {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("reading {}", dir.display()))?;
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .context("the plugin's folder has no name")?
            .to_owned();
        let path = dir.join(entry);
        let source = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let role = role_of(&source, defines).with_context(|| path.display().to_string())?;
        let scratch = tempfile::tempdir().context("a temporary directory")?;
        let wit = scratch.path().join("wit");
        std::fs::create_dir_all(&wit)?;
        for (file, text) in WIT {
            std::fs::write(wit.join(file), text)?;
        }
        Ok(Guest {
            dir,
            name,
            role,
            scratch,
        })
    }

    /// The WIT, as files.
    fn wit(&self) -> PathBuf {
        self.scratch.path().join("wit")
    }

    /// The WIT world of the plugin's role.
    fn world(&self) -> String {
        format!("{}-plugin", self.role.name())
    }

    /// Where the component goes: `DIR/target/NAME.wasm`, named after the plugin as its
    /// manifest and the host name it.
    fn output(&self) -> anyhow::Result<PathBuf> {
        let out_dir = self.dir.join("target");
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
        Ok(out_dir.join(format!("{}.wasm", self.name)))
    }
}

/// The one role `source` defines: one role per component.
fn role_of(source: &str, defines: impl Fn(&str, Role) -> bool) -> anyhow::Result<Role> {
    let defined: Vec<Role> = Role::ALL
        .into_iter()
        .filter(|role| defines(source, *role))
        .collect();
    match defined.as_slice() {
        [role] => Ok(*role),
        [] => bail!("defines no role (collector, event-step, model-policy or sync-step)"),
        several => bail!(
            "defines several roles ({}); a component plays one",
            several
                .iter()
                .map(|role| role.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs a build tool, its output on stderr (stdout is the built path's); fails naming
/// `what` when the tool does.
fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .output()
        .with_context(|| format!("running {program}"))?;
    eprint!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        bail!("{what} ({program}: {})", output.status);
    }
    Ok(())
}

/// Installs the Debian `packages` that are not installed yet, saying which.
fn debian_packages(packages: &[&str], why: &str) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "synchro: installing Debian packages for {why}: {}",
        missing.join(" ")
    );
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("cannot run apt-get")
    };
    if install()?.success() {
        return Ok(());
    }
    // Stale package lists are the usual cause on a new machine.
    eprintln!("synchro: apt-get update, then again");
    let _ = Command::new("apt-get").args(["update", "-q"]).status();
    let status = install()?;
    if !status.success() {
        bail!("apt-get install {} failed ({status})", missing.join(" "));
    }
    Ok(())
}

/// Where synchro keeps toolchains it installed itself (componentize-js, jco):
/// `$XDG_CACHE_HOME/synchro`, else `~/.cache/synchro`.
fn tool_cache() -> anyhow::Result<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|cache| cache.join("synchro"))
        .context("neither XDG_CACHE_HOME nor HOME is set: no place for build tools")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_builds_one_plugin_in_one_language() {
        let dir = tempfile::tempdir().unwrap();
        let error = Language::of(dir.path()).unwrap_err().to_string();
        assert!(error.contains("holds no plugin"), "{error}");
        std::fs::write(dir.path().join("app.js"), "").unwrap();
        assert_eq!(Language::of(dir.path()).unwrap(), Language::JavaScript);
        std::fs::write(dir.path().join("app.py"), "").unwrap();
        let error = Language::of(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("several plugins (app.py, app.js)"),
            "{error}"
        );
        let error = Language::of(&dir.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not a folder"), "{error}");
    }

    #[test]
    fn a_component_plays_one_role() {
        let defines = |source: &str, role: Role| source.contains(role.name());
        assert_eq!(role_of("a collector", defines).unwrap(), Role::Collector);
        let error = role_of("nothing", defines).unwrap_err().to_string();
        assert!(error.contains("defines no role"), "{error}");
        let error = role_of("collector, sync-step", defines)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("several roles (collector, sync-step)"),
            "{error}"
        );
    }
}
