//! A host run as operators run it: the real `synchro` binary, with a config and a plugin
//! directory of its own.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Source;

/// A data directory, a plugin directory and a config for one host.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Default for Setup {
    fn default() -> Self {
        Setup::new()
    }
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
    /// Its deletes are never held (`max-delete-percent = 100`): the tests that use it are
    /// about other things, and tests/deletes.rs installs its own.
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
                 [limits]\nquarantine-after = 1000\nmax-backoff = \"150ms\"\nmax-delete-percent = 100\n\
                 [capabilities]\n{capabilities}\n\
                 [settings]\nurl = \"{url}\"\n"
            ),
        );
    }

    /// Installs the http-inventory component under `name` polling `source` every
    /// `interval` (without jitter), with `limits` as the lines of its `[limits]` (the
    /// defaults of the host, safety rails included, when empty).
    pub fn inventory_collector(&self, name: &str, source: &Source, interval: &str, limits: &str) {
        self.install(
            name,
            "http-inventory",
            &format!(
                "name = \"{name}\"\nversion = \"0.1.0\"\nroles = [\"collector\"]\n\
                 [schedule]\ninterval = \"{interval}\"\njitter = \"0s\"\n\
                 [limits]\n{limits}\n\
                 [capabilities]\npoll = {{ hosts = [\"{}\"] }}\n\
                 [settings]\nurl = \"{}\"\n",
                source.origin(),
                source.url()
            ),
        );
    }

    /// Installs the scripted collector as `name`, driven by `source`; `limits` are extra
    /// lines of its `[limits]`. Without any, its deletes are never held, and failures
    /// neither back off nor quarantine it,
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
            "quarantine-after = 1000\nmax-backoff = \"100ms\"\nmax-delete-percent = 100"
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
            crate::plugin(plugin_crate),
            self.plugin_dir().join(format!("{name}.wasm")),
        )
        .unwrap();
        self.write(&format!("{name}.toml"), manifest);
    }

    /// What `synchro status --json` says about the running host, once no plugin is
    /// loading any more (plugins load in the background: a test that reads which were
    /// refused right after another one's first change would race them).
    pub fn status(&self) -> synchro_status::HostReport {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let report = self.try_status().unwrap_or_else(|e| panic!("{e}"));
            if report.loading.is_empty() {
                return report;
            }
            assert!(
                Instant::now() < deadline,
                "plugins never loaded: {report:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The status, or why `synchro status` failed (the host may not listen yet).
    pub fn try_status(&self) -> Result<synchro_status::HostReport, String> {
        let output = self.command(&["status", "--json"]);
        if !output.status.success() {
            return Err(format!(
                "synchro status failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())
    }

    /// `GET path` on the running host's admin API, as a client that holds the token:
    /// the answer's status and body.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        self.admin_request("GET", path, None)
    }

    /// The value of the sample `name` (with its labels, as `/metrics` writes them) of the
    /// running host's metrics.
    pub fn metric(&self, name: &str) -> f64 {
        let (status, text) = self.admin_request("GET", "/metrics", None);
        assert_eq!(status, 200, "{text}");
        let line = text
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no `{name}` in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    /// `method path` with a JSON `body` on the running host's admin API, as a client that
    /// holds the token: the answer's status and body.
    pub fn admin_request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let data = self.dir.path().join("data");
        let address = std::fs::read_to_string(data.join("admin.addr")).unwrap();
        let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
        let address = address.trim();
        let body = body.map_or(String::new(), |body| {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        });
        let body = if body.is_empty() {
            "\r\n".to_owned()
        } else {
            body
        };
        http_exchange(
            address,
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n{body}",
                token.trim()
            ),
        )
    }

    /// The status of plugin `name`.
    pub fn plugin_status(&self, name: &str) -> synchro_status::PluginReport {
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
        condition: impl Fn(&synchro_status::PluginReport) -> bool,
    ) -> synchro_status::PluginReport {
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
        Command::new(crate::synchro())
            .args(args)
            .arg("--config")
            .arg(self.config())
            .output()
            .unwrap()
    }

    /// Starts `synchro run --json`.
    pub fn run(&self) -> Running {
        self.spawn(Command::new(crate::synchro()))
    }

    /// Starts `synchro run --json ARGS` (`--kinds none`: print nothing, for a benchmark
    /// whose changes would fill the test's memory).
    pub fn run_with(&self, args: &[&str]) -> Running {
        let mut command = Command::new(crate::synchro());
        command.args(["run"]).args(args);
        self.spawn_run(command)
    }

    /// Starts `synchro run --json` whose change stream is read and dropped unparsed, as a
    /// pipe to a log shipper would: for a benchmark, where parsing every change would
    /// take the host's CPU and keep them all in the test's memory. [`Running::events`]
    /// sees none.
    pub fn run_drained(&self) -> Running {
        let mut command = Command::new(crate::synchro());
        command.arg("run");
        self.launch(command, Stdout::Drained)
    }

    /// Starts `synchro run --json` with its virtual memory limited to `kib` (`ulimit -v`).
    pub fn run_with_address_space(&self, kib: u64) -> Running {
        let mut command = Command::new("bash");
        command.args([
            "-c",
            &format!("ulimit -v {kib} && exec \"$0\" \"$@\""),
            crate::synchro().to_str().expect("a UTF-8 path"),
        ]);
        self.spawn(command)
    }

    fn spawn(&self, mut command: Command) -> Running {
        command.arg("run");
        self.spawn_run(command)
    }

    /// Starts `synchro run --json ARGS` logging what `filter` (a `RUST_LOG`) lets through.
    pub fn run_logging(&self, filter: &str, args: &[&str]) -> Running {
        let mut command = Command::new(crate::synchro());
        command.env("RUST_LOG", filter).args(["run"]).args(args);
        self.spawn_run(command)
    }

    /// Spawns `command` (a `run` with its arguments so far) with `--json --config`, and
    /// `RUST_LOG=info` unless it has its own.
    fn spawn_run(&self, command: Command) -> Running {
        self.launch(command, Stdout::Events)
    }

    fn launch(&self, mut command: Command, stdout: Stdout) -> Running {
        if !command.get_envs().any(|(name, _)| name == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        let mut child = command
            .args(["--json", "--config"])
            .arg(self.config())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, events) = channel();
        let mut printed = child.stdout.take().unwrap();
        match stdout {
            Stdout::Events => std::thread::spawn(move || {
                for line in BufReader::new(printed).lines() {
                    let line = line.unwrap();
                    let event: serde_json::Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                    if tx.send(event).is_err() {
                        break;
                    }
                }
            }),
            Stdout::Drained => std::thread::spawn(move || {
                drop(tx);
                let _ = std::io::copy(&mut printed, &mut std::io::sink());
            }),
        };
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

/// What is done with a host's change stream.
enum Stdout {
    /// Parsed, for [`Running::events`].
    Events,
    /// Read and dropped.
    Drained,
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

    /// Whether the process has not exited (a crash included).
    pub fn is_running(&self) -> bool {
        // Read from /proc, without reaping it: `stop` still sees the exit status. An exited
        // child not yet reaped is a zombie (state `Z`).
        std::path::Path::new(&format!("/proc/{}", self.child.id())).exists()
            && !std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
                .is_ok_and(|stat| stat.split(' ').nth(2) == Some("Z"))
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Stops with SIGTERM and asserts a clean exit within 30 s (a host stops within its
    /// shutdown grace, 5 s by default, plus 4 s; the rest is room for a busy machine).
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "synchro exited with {status}\nlog:\n{}",
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "synchro did not stop on SIGTERM\nlog:\n{}",
                self.log()
            );
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

/// Sends `request` (raw HTTP/1.1, which must ask to close the connection) to `address`:
/// the answer's status and body.
pub fn http_exchange(address: &str, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, body)
}

/// The changes of a first collect of [`INVENTORY`], as [`Running::events`] lists them.
pub fn inventory_created() -> Vec<(String, String)> {
    pairs(&[
        ("CREATE", "srv-1"),
        ("CREATE", "srv-2"),
        ("CREATE", "vm-1"),
        ("CREATE", "vm-1/hosted-on"),
    ])
}

pub fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}
