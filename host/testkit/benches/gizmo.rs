//! Gizmo API benchmark: `cargo bench -p synchro-testkit --bench gizmo` (or `./dev bench`).
//!
//! The real `synchro run` serving the Gizmo API on loopback, loaded by `wrk` (Debian's;
//! installed with apt when missing) with 2 threads and 64 connections for
//! `SYNCHRO_BENCH_SECONDS` (default 10) each:
//! - `GET` of one vertex (sync mode);
//! - `POST` of a new vertex (sync mode: each answered once durable);
//! - `POST` in async mode on the embedded bus, answered by the in-host responder.
//!
//! At saturation a closed loop's latency is its queue: 64 connections at a rate R wait
//! 64 / R apiece (Little's law), whatever the host does. So the async POST's latency goal
//! is also measured as the goal names it, at 10 000 req/s offered: `oha` (installed with
//! `cargo install` when missing) sends on a fixed schedule, open loop, and counts each
//! request's latency from when it was due (`--latency-correction`), so a stalled host is
//! not hidden by requests that were never sent. The peer is measured the same way.
//!
//! The host prints its change stream as it runs, into a pipe the bench drains unparsed
//! (a bench process parsing every change took a tenth of a core from the host, and kept
//! them all in memory).
//!
//! The peer, in the same run: a bare axum server on loopback answering the same bytes
//! (the GET's body; for a POST, the body parsed as JSON and a vertex of the same size
//! answered), so the ratio says what synchro's work costs over the HTTP stack alone.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use synchro_testkit::{Setup, env_u64};

const CONNECTIONS: u32 = 64;
/// The async POST's goal rate: its latency is measured with this many requests a second
/// offered.
const OFFERED: u32 = 10_000;
/// The oha release the bench installs when none is on the PATH.
const OHA_VERSION: &str = "1.16.0";

/// A vertex as the API answers it, and the body the POSTs send.
const VERTEX: &str = r#"{"id":"01a24eaf-6e3d-7337-9702-88edaf2e97e7","type":"pserver","url":"services/inventory/v11/pserver/01a24eaf-6e3d-7337-9702-88edaf2e97e7","properties":{"equip-type":"server","fqdn":"h.onap.net","hostname":"h","in-maint":false},"in":[],"out":[]}"#;
const BODY: &str =
    r#"{"properties":{"hostname":"h","fqdn":"h.onap.net","in-maint":false,"equip-type":"server"}}"#;

/// What one wrk run measured.
struct Load {
    per_second: f64,
    p99_ms: f64,
    errors: u64,
}

/// What one oha run at a fixed offered rate measured.
struct Paced {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    errors: u64,
}

fn main() {
    ensure_wrk();
    ensure_oha();
    let seconds = env_u64("SYNCHRO_BENCH_SECONDS", 10);
    let scripts = tempfile::tempdir().unwrap();
    let post = scripts.path().join("post.lua");
    std::fs::File::create(&post)
        .unwrap()
        .write_all(
            format!(
                "wrk.method = \"POST\"\nwrk.body = '{BODY}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let peer = peer();
    let peer_get = wrk(&format!("http://{peer}/get"), None, seconds);
    let peer_post = wrk(&format!("http://{peer}/post"), Some(&post), seconds);
    let peer_paced = paced(&format!("http://{peer}/post"), seconds);

    // The hosts' data is deleted at the end, not between lines: on this machine's ext4
    // (mounted with `discard`) deleting a few hundred MB stalled the next seconds'
    // fsyncs by up to two seconds.
    let sync_data = Setup::new();
    let (sync, sync_base) = host(&sync_data, "");
    let id = create(&sync_base);
    let get = wrk(&format!("{sync_base}/v11/pserver/{id}"), None, seconds);
    let post_sync = wrk(&format!("{sync_base}/v11/pserver"), Some(&post), seconds);
    drop(sync);
    let async_data = Setup::new();
    let (asynchronous, async_base) = host(&async_data, "mode = \"async\"");
    // Paced first: the saturating run leaves seconds of work behind (the outbox's trim,
    // the page cache's writeback) that would land in the paced run's tail.
    let paced_async = paced(&format!("{async_base}/v11/pserver"), seconds);
    let post_async = wrk(&format!("{async_base}/v11/pserver"), Some(&post), seconds);
    drop(asynchronous);

    println!(
        "Gizmo API on loopback, wrk -t2 -c{CONNECTIONS} -d{seconds}s (goal in brackets); peer: bare axum"
    );
    let line = |name: &str, load: &Load, peer: &Load, goal: &str| {
        println!(
            "{name:<34} {:>9.0} req/s  p99 {:>6.2} ms  errors {:>3}   peer {:>8.0} req/s ({:.2}×)   [{goal}]",
            load.per_second,
            load.p99_ms,
            load.errors,
            peer.per_second,
            load.per_second / peer.per_second
        );
    };
    line("GET vertex, sync", &get, &peer_get, "≥ 50 000 req/s");
    line(
        "POST vertex, sync (durable)",
        &post_sync,
        &peer_post,
        "≥ 20 000 req/s",
    );
    line(
        "POST vertex, async, embedded bus",
        &post_async,
        &peer_post,
        "≥ 10 000 req/s",
    );
    println!(
        "\nAt {OFFERED} req/s offered, oha -c{CONNECTIONS} -q{OFFERED} --latency-correction -z{seconds}s (open loop)"
    );
    let line = |name: &str, load: &Paced, goal: &str| {
        println!(
            "{name:<34} {:>9.0} req/s  p50 {:>5.2} ms  p99 {:>5.2} ms  p99.9 {:>5.2} ms  errors {:>3}   [{goal}]",
            load.per_second, load.p50_ms, load.p99_ms, load.p999_ms, load.errors
        );
    };
    line(
        "POST vertex, async, embedded bus",
        &paced_async,
        "p99 ≤ 10 ms",
    );
    line("peer: bare axum POST", &peer_paced, "");
}

/// Installs Debian's wrk when it is missing.
fn ensure_wrk() {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return;
    }
    eprintln!("gizmo bench: installing wrk (apt-get install wrk)");
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-q", "wrk"])
        .status()
        .is_ok_and(|s| s.success())
        || (Command::new("apt-get").arg("update").status().is_ok()
            && Command::new("apt-get")
                .args(["install", "-y", "-q", "wrk"])
                .status()
                .is_ok_and(|s| s.success()));
    assert!(installed, "wrk is needed: apt-get install wrk");
}

/// Installs oha from crates.io when it is missing (a few minutes' build, once).
fn ensure_oha() {
    if Command::new("oha").arg("--version").output().is_ok() {
        return;
    }
    eprintln!("gizmo bench: installing oha (cargo install oha --version {OHA_VERSION})");
    let installed = Command::new("cargo")
        .args(["install", "--locked", "oha", "--version", OHA_VERSION])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed,
        "oha is needed: cargo install --locked oha --version {OHA_VERSION}"
    );
}

/// POSTs `BODY` to `url` at `OFFERED` requests a second for `seconds`, open loop, and
/// reads oha's JSON summary.
fn paced(url: &str, seconds: u64) -> Paced {
    let output = Command::new("oha")
        .args([
            "--no-tui",
            "--output-format",
            "json",
            "--latency-correction",
            &format!("-c{CONNECTIONS}"),
            &format!("-q{OFFERED}"),
            &format!("-z{seconds}s"),
            "-m",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            BODY,
            url,
        ])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "oha printed no JSON ({e}):\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let number = |path: &str| {
        report
            .pointer(path)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| panic!("oha's report has no {path}: {report}"))
    };
    let count = |path: &str, counted: &dyn Fn(&str) -> bool| -> u64 {
        report
            .pointer(path)
            .and_then(serde_json::Value::as_object)
            .map_or(0, |counts| {
                counts
                    .iter()
                    .filter(|(name, _)| counted(name))
                    .filter_map(|(_, n)| n.as_u64())
                    .sum()
            })
    };
    // Requests still under way when the time is up are cut off, not failed.
    let errors = count("/statusCodeDistribution", &|status| {
        !status.starts_with('2')
    }) + count("/errorDistribution", &|error| {
        error != "aborted due to deadline"
    });
    Paced {
        per_second: number("/summary/requestsPerSec"),
        p50_ms: number("/latencyPercentiles/p50") * 1000.0,
        p99_ms: number("/latencyPercentiles/p99") * 1000.0,
        p999_ms: number("/latencyPercentiles/p99.9") * 1000.0,
        errors,
    }
}

/// A host in `setup` serving the Gizmo API with `extra` lines of `[gizmo]`, and its base
/// URL.
fn host(setup: &Setup, extra: &str) -> (synchro_testkit::Running, String) {
    std::fs::write(
        setup.config(),
        format!(
            "data-dir = \"data\"\nplugin-dir = \"plugins\"\n[gizmo]\nlisten = \"127.0.0.1:0\"\n{extra}\n"
        ),
    )
    .unwrap();
    let host = setup.run_drained();
    host.wait_for_log("Gizmo API listening", Duration::from_secs(30));
    let address = std::fs::read_to_string(setup.dir.path().join("data/gizmo.addr")).unwrap();
    (
        host,
        format!("http://{}/services/inventory", address.trim()),
    )
}

/// Creates a vertex with curl; its id.
fn create(base: &str) -> String {
    let output = Command::new("curl")
        .args(["-sf", "-XPOST", &format!("{base}/v11/pserver"), "-d", BODY])
        .output()
        .unwrap();
    let vertex: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    vertex["id"].as_str().unwrap().to_owned()
}

/// Runs wrk against `url` (with a Lua `script`) and reads what it printed.
fn wrk(url: &str, script: Option<&std::path::Path>, seconds: u64) -> Load {
    let mut command = Command::new("wrk");
    command.args([
        "-t2",
        &format!("-c{CONNECTIONS}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command.arg(url).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
    };
    let per_second = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("wrk printed no rate:\n{text}"));
    let p99 = field("99%").unwrap_or_else(|| panic!("wrk printed no p99:\n{text}"));
    let p99_ms = if let Some(us) = p99.strip_suffix("us") {
        us.parse::<f64>().unwrap() / 1000.0
    } else if let Some(ms) = p99.strip_suffix("ms") {
        ms.parse().unwrap()
    } else {
        p99.trim_end_matches('s').parse::<f64>().unwrap() * 1000.0
    };
    let errors = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Load {
        per_second,
        p99_ms,
        errors,
    }
}

/// The peer: bare axum on loopback, two worker threads, answering `VERTEX`.
fn peer() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let json = || [(axum::http::header::CONTENT_TYPE, "application/json")];
            let app = axum::Router::new()
                .route(
                    "/get",
                    axum::routing::get(move || async move { (json(), VERTEX) }),
                )
                .route(
                    "/post",
                    axum::routing::post(move |body: axum::body::Bytes| async move {
                        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        assert!(parsed.is_object());
                        (axum::http::StatusCode::CREATED, json(), VERTEX)
                    }),
                );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    address
}
