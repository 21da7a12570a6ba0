//! Helpers for end-to-end tests: the real `synchro` binary, real components built from
//! the plugins in the repo, and a real HTTP source on 127.0.0.1.
#![allow(dead_code)] // each test binary uses its own subset

pub mod broker;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const SYNCHRO: &str = env!("CARGO_BIN_EXE_synchro");

/// A number from the environment, for the size of benchmarks.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Builds `plugins/NAME` with `synchro plugin build` once per test binary.
pub fn plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<std::collections::HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins")
        .join(name);
    let output = Command::new(SYNCHRO)
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

/// An HTTP source whose status and body the test sets.
#[derive(Clone)]
pub struct Source {
    pub addr: SocketAddr,
    content: Arc<Mutex<(u16, String)>>,
    delay: Arc<Mutex<Duration>>,
}

impl Source {
    /// Serves `body` with status 200 at `/inventory.json` on a free loopback port.
    pub fn start(body: &str) -> Source {
        let content = Arc::new(Mutex::new((200, body.to_owned())));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let shared = content.clone();
        let shared_delay = delay.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = axum::Router::new().route(
                    "/inventory.json",
                    axum::routing::get(move || {
                        let (status, body) = shared.lock().unwrap().clone();
                        let delay = *shared_delay.lock().unwrap();
                        async move {
                            tokio::time::sleep(delay).await;
                            (axum::http::StatusCode::from_u16(status).unwrap(), body)
                        }
                    }),
                );
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Source {
            addr,
            content,
            delay,
        }
    }

    /// Delays every response by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    pub fn set(&self, status: u16, body: &str) {
        *self.content.lock().unwrap() = (status, body.to_owned());
    }

    pub fn url(&self) -> String {
        format!("http://{}/inventory.json", self.addr)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A data directory, a plugin directory and a config for one host.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        std::fs::write(
            dir.path().join("synchro.toml"),
            "data-dir = \"data\"\nplugin-dir = \"plugins\"\n",
        )
        .unwrap();
        Setup { dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("synchro.toml")
    }

    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// Installs the http-inventory component under `name` with a manifest polling `source`.
    pub fn inventory_plugin(&self, name: &str, source: &Source) {
        self.inventory_plugin_with(
            name,
            &format!("poll = {{ hosts = [\"{}\"] }}", source.origin()),
            &source.url(),
        );
    }

    pub fn inventory_plugin_with(&self, name: &str, capabilities: &str, url: &str) {
        self.install(
            name,
            "http-inventory",
            &format!(
                "name = \"{name}\"\nversion = \"0.1.0\"\nroles = [\"collector\"]\n\
                 [schedule]\ninterval = \"150ms\"\njitter = \"0s\"\n\
                 [limits]\nquarantine-after = 1000\nmax-backoff = \"150ms\"\n\
                 [capabilities]\n{capabilities}\n\
                 [settings]\nurl = \"{url}\"\n"
            ),
        );
    }

    /// Installs the scripted collector as `name`, driven by `source`; `limits` are extra
    /// lines of its `[limits]`. Without any, failures neither back off nor quarantine it,
    /// so a test can walk through many.
    pub fn scripted_plugin(&self, name: &str, source: &Source, deadline: &str, limits: &str) {
        self.scripted_plugin_with(name, source, deadline, limits, "");
    }

    pub fn scripted_plugin_with(
        &self,
        name: &str,
        source: &Source,
        deadline: &str,
        limits: &str,
        capabilities: &str,
    ) {
        let limits = if limits.is_empty() {
            "quarantine-after = 1000\nmax-backoff = \"100ms\""
        } else {
            limits
        };
        self.install(
            name,
            "scripted-collector",
            &format!(
                "name = \"{name}\"\nversion = \"0.1.0\"\nroles = [\"collector\"]\n\
                 [schedule]\ninterval = \"100ms\"\njitter = \"0s\"\n\
                 [limits]\ndeadline = \"{deadline}\"\n{limits}\n\
                 [capabilities]\npoll = {{ hosts = [\"{}\"] }}\n{capabilities}\n\
                 [settings]\nurl = \"{}\"\n",
                source.origin(),
                source.url()
            ),
        );
    }

    /// Installs the component built from `plugins/PLUGIN` as `name`, with `manifest`.
    pub fn install(&self, name: &str, plugin_crate: &str, manifest: &str) {
        std::fs::copy(
            plugin(plugin_crate),
            self.plugin_dir().join(format!("{name}.wasm")),
        )
        .unwrap();
        self.write(&format!("{name}.toml"), manifest);
    }

    /// What `synchro status --json` says about the running host.
    pub fn status(&self) -> synchro::status::HostReport {
        self.try_status().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The status, or why `synchro status` failed (the host may not listen yet).
    pub fn try_status(&self) -> Result<synchro::status::HostReport, String> {
        let output = self.command(&["status", "--json"]);
        if !output.status.success() {
            return Err(format!(
                "synchro status failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())
    }

    /// The status of plugin `name`.
    pub fn plugin_status(&self, name: &str) -> synchro::status::PluginReport {
        let report = self.status();
        report
            .plugins
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no plugin `{name}` in {report:?}"))
            .clone()
    }

    /// Waits until the status of `name` satisfies `condition`; returns it.
    pub fn wait_status(
        &self,
        name: &str,
        timeout: Duration,
        condition: impl Fn(&synchro::status::PluginReport) -> bool,
    ) -> synchro::status::PluginReport {
        let deadline = Instant::now() + timeout;
        loop {
            let report = self.try_status();
            if let Some(plugin) = report
                .as_ref()
                .ok()
                .and_then(|r| r.plugins.iter().find(|p| p.name == name))
                && condition(plugin)
            {
                return plugin.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the status of `{name}` never matched: {report:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn write(&self, file: &str, content: &str) {
        std::fs::write(self.plugin_dir().join(file), content).unwrap();
    }

    /// `synchro ARGS --config CONFIG`, run to completion.
    pub fn command(&self, args: &[&str]) -> std::process::Output {
        Command::new(SYNCHRO)
            .args(args)
            .arg("--config")
            .arg(self.config())
            .output()
            .unwrap()
    }

    /// Starts `synchro run --json`.
    pub fn run(&self) -> Running {
        self.spawn(Command::new(SYNCHRO))
    }

    /// Starts `synchro run --json` with its virtual memory limited to `kib` (`ulimit -v`).
    pub fn run_with_address_space(&self, kib: u64) -> Running {
        let mut command = Command::new("bash");
        command.args([
            "-c",
            &format!("ulimit -v {kib} && exec \"$0\" \"$@\""),
            SYNCHRO,
        ]);
        self.spawn(command)
    }

    fn spawn(&self, mut command: Command) -> Running {
        let mut child = command
            .args(["run", "--json", "--config"])
            .arg(self.config())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, events) = channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let event: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[synchro] {line}");
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Running { child, events, log }
    }
}

/// A running `synchro run`.
pub struct Running {
    child: Child,
    events: Receiver<serde_json::Value>,
    log: Arc<Mutex<String>>,
}

/// `(operation, key)` of an event.
pub fn op_key(event: &serde_json::Value) -> (String, String) {
    let element = event
        .get("vertex")
        .or_else(|| event.get("edge"))
        .expect("vertex or edge");
    (
        event["operation"].as_str().unwrap().to_owned(),
        element["key"].as_str().unwrap().to_owned(),
    )
}

impl Running {
    /// The next `n` change events, sorted by (operation, key); fails after `timeout`.
    pub fn events(&self, n: usize, timeout: Duration) -> Vec<(String, String)> {
        self.raw_events(n, timeout)
            .iter()
            .map(op_key)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    pub fn raw_events(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while got.len() < n {
            match self
                .events
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(event) => got.push(event),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "expected {n} events, got {}: {got:?}\nlog:\n{}",
                    got.len(),
                    self.log()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("synchro exited; got {got:?}\nlog:\n{}", self.log())
                }
            }
        }
        got
    }

    /// Asserts that no event arrives for `period`.
    pub fn expect_silence(&self, period: Duration) {
        if let Ok(event) = self.events.recv_timeout(period) {
            panic!("expected no change, got {event}\nlog:\n{}", self.log());
        }
    }

    /// Waits until the log contains `text`.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "`{text}` never appeared in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Stops with SIGTERM and asserts a clean exit.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "synchro exited with {status}\nlog:\n{}",
                    self.log()
                );
                return;
            }
            assert!(Instant::now() < deadline, "synchro did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const INVENTORY: &str = r#"{
  "servers": [ { "id": "srv-1", "hostname": "alpha" }, { "id": "srv-2", "hostname": "beta" } ],
  "vms": [ { "id": "vm-1", "name": "web", "server": "srv-1" } ]
}"#;

pub fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}
