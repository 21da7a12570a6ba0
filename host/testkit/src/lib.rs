//! The test kit: what synchro's tests and benchmarks share, so that none of them wires a
//! host by hand.
//!
//! - [`synchro()`] finds the `synchro` binary and [`plugin`] builds a plugin of the
//!   repository with it, once per test binary;
//! - [`Setup`] and [`Running`] run the real binary on a plugin directory of their own,
//!   as an operator does;
//! - [`Harness`] runs plugins in process (engine, database, services) for tests and
//!   benchmarks that drive a runner or the registry directly;
//! - [`Source`] is an HTTP source on 127.0.0.1, [`Backend`] an outside system for sync
//!   steps to push to, and [`broker`] a real Kafka-protocol broker (tansu), stopped when
//!   dropped;
//! - [`Browser`] is a headless Chromium driven over WebDriver, for the dashboard.

mod backend;
pub mod broker;
mod browser;
mod component_bytes;
mod harness;
mod host;
mod source;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

pub use backend::{Backend, Received};
pub use browser::{Browser, PAGE_WAIT};
pub use component_bytes::{padded, unseen};
pub use harness::{Harness, Loader};
pub use host::{INVENTORY, Running, Setup, http_exchange, inventory_created, op_key, pairs};
pub use source::Source;

/// The `synchro` binary: `SYNCHRO_BIN`, or the one cargo built beside the running test
/// (`target/PROFILE/synchro`). `./dev test` builds it before the tests.
pub fn synchro() -> PathBuf {
    if let Some(path) = std::env::var_os("SYNCHRO_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let mut dir = exe.parent().expect("a directory").to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let binary = dir.join("synchro");
    assert!(
        binary.is_file(),
        "{} is missing: build it first with `cargo build -p synchro` (with `--release` for \
         `cargo test --release`), or set SYNCHRO_BIN",
        binary.display()
    );
    binary
}

/// The repository's root.
pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Builds `plugins/NAME` with `synchro plugin build` once per test binary.
pub fn plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let dir = repo().join("plugins").join(name);
    let output = Command::new(synchro())
        .args(["plugin", "build"])
        .arg(&dir)
        .stderr(Stdio::inherit())
        .output()
        .expect("running synchro plugin build");
    assert!(output.status.success(), "building plugin {name} failed");
    let path = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
    built.insert(name.to_owned(), path.clone());
    path
}

/// A number from the environment, for the size of benchmarks.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
