//! A Rust plugin: its crate, built with cargo for `wasm32-wasip2`.
//!
//! Two routes, tried in order (see TOOLCHAIN.md): rustup's `wasm32-wasip2` target when it
//! is installed or can be added; otherwise Debian's rustc with `-Zbuild-std`, whose
//! packages are installed when missing. Either way cargo's own progress is shown.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

const TARGET: &str = "wasm32-wasip2";
/// The Debian packages of the build-std route.
const DEBIAN_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "lld-22",
    "wasi-libc",
];

/// Which toolchain builds the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Route {
    /// rustup's target when available, else Debian's.
    Auto,
    /// rustup's `wasm32-wasip2` target (added if missing).
    Rustup,
    /// Debian's rustc with `-Zbuild-std` (packages installed if missing).
    Debian,
}

/// Builds the plugin crate in `dir` in release mode; returns the component's path,
/// named after the package.
pub fn build(dir: &Path, route: Route) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "{} has no Cargo.toml: `plugin build` builds a Rust plugin crate",
            dir.display()
        );
    }
    let use_rustup = match route {
        Route::Rustup => {
            ensure_rustup_target()?;
            true
        }
        Route::Debian => false,
        Route::Auto => match ensure_rustup_target() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("synchro: rustup route unavailable ({e:#}); using Debian's toolchain");
                false
            }
        },
    };
    let mut cargo = if use_rustup {
        Command::new("cargo")
    } else {
        super::debian_packages(DEBIAN_PACKAGES, "Rust plugins")?;
        let linker_dir = component_linker_dir()?;
        let mut cargo = Command::new("/usr/bin/cargo");
        let path = std::env::var("PATH").unwrap_or_default();
        cargo
            .env(
                "PATH",
                format!("{}:/usr/lib/llvm-22/bin:{path}", linker_dir.display()),
            )
            .env("RUSTC", "/usr/bin/rustc")
            .env("RUSTC_BOOTSTRAP", "1")
            .env("RUSTFLAGS", "-L /usr/lib/wasm32-wasi")
            // rustup's cargo and rustc must not leak into Debian's build.
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO");
        cargo
    };
    cargo.current_dir(dir).args([
        "build",
        "--release",
        "--target",
        TARGET,
        "--message-format=json-render-diagnostics",
    ]);
    if !use_rustup {
        cargo.arg("-Zbuild-std=std,panic_abort");
    }
    eprintln!("synchro: building {} for {TARGET}", dir.display());
    let output = cargo
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        bail!(
            "cargo build failed for {} (its errors are above)",
            dir.display()
        );
    }
    let built = component_from_messages(&output.stdout, &manifest)?;
    named_after_package(&manifest, &built)
}

/// The component `built` for the crate at `manifest`, as `PACKAGE.wasm` beside it: cargo
/// names it after the crate (`http_inventory.wasm`), a plugin goes by its package's name
/// (`http-inventory`), as its manifest and the host do.
fn named_after_package(manifest: &Path, built: &Path) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let toml: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", manifest.display()))?;
    let name = toml
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .with_context(|| format!("{} has no [package] name", manifest.display()))?;
    let named = built.with_file_name(format!("{name}.wasm"));
    if named != built {
        std::fs::copy(built, &named)
            .with_context(|| format!("copying {} to {}", built.display(), named.display()))?;
    }
    Ok(named)
}

/// Finds the `.wasm` cargo produced for the crate at `manifest` in its JSON messages.
fn component_from_messages(stdout: &[u8], manifest: &Path) -> anyhow::Result<PathBuf> {
    let manifest = manifest
        .canonicalize()
        .with_context(|| format!("resolving {}", manifest.display()))?;
    let mut found = None;
    for line in stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let same_crate = message["manifest_path"]
            .as_str()
            .and_then(|p| Path::new(p).canonicalize().ok())
            == Some(manifest.clone());
        if !same_crate {
            continue;
        }
        if let Some(files) = message["filenames"].as_array() {
            found = files
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))
                .map(PathBuf::from)
                .or(found);
        }
    }
    found.with_context(|| {
        format!(
            "cargo built {} but produced no .wasm: is it a `cdylib` crate?",
            manifest.display()
        )
    })
}

fn ensure_rustup_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is not available")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok(());
    }
    eprintln!("synchro: adding the {TARGET} target with rustup");
    let mut child = Command::new("rustup")
        .args(["target", "add", TARGET])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot run rustup")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            bail!("`rustup target add {TARGET}` failed ({status})");
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!("`rustup target add {TARGET}` did not finish in 180 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A directory holding `wasm-component-ld`, the linker rustc uses for wasm32-wasip2.
/// Debian's packages do not ship it: use the one on PATH or in a rustup toolchain, else
/// install it from crates.io.
fn component_linker_dir() -> anyhow::Result<PathBuf> {
    const LINKER: &str = "wasm-component-ld";
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|dir| dir.join(LINKER).is_file());
    if let Some(dir) = on_path {
        return Ok(dir);
    }
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = sysroot {
        let rustlib = sysroot.join("lib/rustlib");
        for entry in std::fs::read_dir(&rustlib).into_iter().flatten().flatten() {
            let dir = entry.path().join("bin");
            if dir.join(LINKER).is_file() {
                return Ok(dir);
            }
        }
    }
    let root = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let bin = root.join("bin");
    if bin.join(LINKER).is_file() {
        return Ok(bin);
    }
    eprintln!("synchro: installing {LINKER} from crates.io (once)");
    let status = Command::new("/usr/bin/cargo")
        .args(["install", "--locked", LINKER, "--root"])
        .arg(&root)
        .status()
        .context("cannot run cargo install")?;
    if !status.success() {
        bail!("`cargo install {LINKER}` failed ({status})");
    }
    Ok(bin)
}
