//! Plugin lifecycle benchmark: `cargo bench -p synchro-testkit --bench lifecycle` (or
//! `./dev bench`).
//!
//! - instantiation: a fresh `Store` and instance of a small Rust plugin
//!   (plugins/bench-event-step) from its `InstancePre`, with the pooling allocator, p50/p99;
//! - reload latency: a running host (`Supervisor::run`, file watcher on) is given a new manifest
//!   version; the time from the file written to the admin API reporting the new version,
//!   p50/p99 — with the component already compiled (cached) and with a component never
//!   seen before (compiled on the spot), and through `synchro plugin reload` (admin call);
//! - large components: `synchro run` (the binary) starting with three plugins as large as
//!   Python ones (bench-event-step padded with a core module of 40 000 functions, ~12 MB),
//!   never seen, then again from the cache: the admin API's latency while they compile,
//!   the time until all three serve, and the host's resident memory after each start.
//!
//! `SYNCHRO_BENCH_RELOADS` (default 40; uncached uses a quarter) scales it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use synchro_admin::Client;
use synchro_bus::Bus;
use synchro_supervisor::{Config, Supervisor};
use synchro_testkit::Harness;

fn manifest(version: &str) -> String {
    format!(
        "name = \"bench\"\nversion = \"{version}\"\nroles = [\"event-step\"]\n\
         [events]\ntopics = [\"bench\"]\n"
    )
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[(samples.len() * 99 / 100).min(samples.len() - 1)],
    )
}

/// Fresh store + instance, `count` times.
async fn instantiation(wasm: &Path, count: usize) -> anyhow::Result<(Duration, Duration, bool)> {
    let harness = Harness::new(&Bus::embedded());
    std::fs::copy(wasm, harness.config.plugin_dir.join("bench.wasm"))?;
    let manifest_path = harness.config.plugin_dir.join("bench.toml");
    std::fs::write(&manifest_path, manifest("0"))?;
    let plugin = harness.load(&manifest_path).await?;
    let step = plugin.roles.event_step.as_ref().expect("an event step");
    let status = Arc::default();
    let mut samples = Vec::with_capacity(count);
    for i in 0..count + count / 10 {
        let call = plugin.call_context(&status, &harness.services);
        let started = Instant::now();
        let session = step.session(&harness.engine, &plugin.linked, call).await?;
        let elapsed = started.elapsed();
        drop(session);
        if i >= count / 10 {
            samples.push(elapsed);
        }
    }
    let (p50, p99) = percentiles(samples);
    Ok((p50, p99, harness.engine.pooling()))
}

async fn serving(client: &Client, version: &str) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let report = client.status().await?;
        if report.plugins.iter().any(|p| p.version == version) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < until,
            "version {version} never served: {report:?}"
        );
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

struct Reloads {
    cached: (Duration, Duration),
    uncached: (Duration, Duration),
    command: (Duration, Duration),
}

async fn reloads(wasm: &Path, count: usize) -> anyhow::Result<Reloads> {
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins)?;
    let component = std::fs::read(wasm)?;
    std::fs::write(plugins.join("bench.wasm"), &component)?;
    std::fs::write(plugins.join("bench.toml"), manifest("0.0.0"))?;
    let config = Config {
        data_dir: dir.path().join("data"),
        plugin_dir: plugins.clone(),
        ..Config::default()
    };
    let host = Supervisor::new(config.clone(), Bus::embedded())?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(host.run(shutdown));
    let address = config.data_dir.join(synchro_admin::ADDRESS_FILE);
    while !address.exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let client = Client::for_data_dir(&config.data_dir)?;
    serving(&client, "0.0.0").await?;

    let mut cached = Vec::new();
    for i in 1..=count {
        let version = format!("0.1.{i}");
        let started = Instant::now();
        std::fs::write(plugins.join("bench.toml"), manifest(&version))?;
        serving(&client, &version).await?;
        cached.push(started.elapsed());
    }
    let mut uncached = Vec::new();
    for i in 1..=count.div_ceil(4) {
        let version = format!("0.2.{i}");
        // The component first (the manifest still names the old version: a reload that
        // changes nothing visible), then the manifest: the time of the second counts.
        let started = Instant::now();
        std::fs::write(
            plugins.join("bench.wasm"),
            synchro_testkit::unseen(&component, &format!("{i}-{:?}", Instant::now())),
        )?;
        std::fs::write(plugins.join("bench.toml"), manifest(&version))?;
        serving(&client, &version).await?;
        uncached.push(started.elapsed());
    }
    let mut command = Vec::new();
    for _ in 0..count {
        let started = Instant::now();
        client.reload("bench").await?;
        command.push(started.elapsed());
    }
    stop.send(true)?;
    running.await??;
    Ok(Reloads {
        cached: percentiles(cached),
        uncached: percentiles(uncached),
        command: percentiles(command),
    })
}

/// What a start of `synchro run` with large components cost.
struct Start {
    /// `GET /v1/plugins` while the components compiled (p50, max).
    status_latency: Option<(Duration, Duration)>,
    /// From the process started to every plugin serving.
    serving: Duration,
    /// Resident memory once they serve, in KiB.
    rss_kib: u64,
}

async fn start_large(binary: &Path, config: &Path, data_dir: &Path) -> anyhow::Result<Start> {
    let started = Instant::now();
    let _ = std::fs::remove_file(data_dir.join(synchro_admin::ADDRESS_FILE));
    let mut child = std::process::Command::new(binary)
        .args(["run", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    while !data_dir.join(synchro_admin::ADDRESS_FILE).exists() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the host never listened"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let client = Client::for_data_dir(data_dir)?;
    let mut latencies = Vec::new();
    loop {
        let asked = Instant::now();
        let report = client.status().await?;
        if !report.loading.is_empty() {
            latencies.push(asked.elapsed());
        }
        if report.plugins.len() == 3 && report.loading.is_empty() {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "not every plugin served: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let serving = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status()?;
    child.wait()?;
    let status_latency = (!latencies.is_empty()).then(|| {
        latencies.sort();
        (
            latencies[latencies.len() / 2],
            latencies[latencies.len() - 1],
        )
    });
    Ok(Start {
        status_latency,
        serving,
        rss_kib,
    })
}

/// Two starts with three large components: compiled, then from the cache.
async fn large(wasm: &Path) -> anyhow::Result<(Start, Start)> {
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins)?;
    let padded = synchro_testkit::padded(&std::fs::read(wasm)?, 40_000);
    let session = format!("{:?}", Instant::now());
    for i in 0..3 {
        let name = format!("large-{i}");
        let bytes = synchro_testkit::unseen(&padded, &format!("{session}-{i}"));
        std::fs::write(plugins.join(format!("{name}.wasm")), bytes)?;
        std::fs::write(
            plugins.join(format!("{name}.toml")),
            manifest("0").replace("\"bench\"", &format!("\"{name}\"")),
        )?;
    }
    let data_dir = dir.path().join("data");
    let config = dir.path().join("host.toml");
    std::fs::write(
        &config,
        format!(
            "data-dir = {:?}\nplugin-dir = {:?}\n",
            data_dir.display().to_string(),
            plugins.display().to_string()
        ),
    )?;
    let binary = synchro_testkit::synchro();
    let compiled = start_large(&binary, &config, &data_dir).await?;
    let cached = start_large(&binary, &config, &data_dir).await?;
    Ok((compiled, cached))
}

fn main() -> anyhow::Result<()> {
    let count = synchro_testkit::env_u64("SYNCHRO_BENCH_RELOADS", 40) as usize;
    let wasm = synchro_testkit::plugin("bench-event-step");
    let runtime = tokio::runtime::Runtime::new()?;
    println!("lifecycle benchmark");
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;

    let (p50, p99, pooling) = runtime.block_on(instantiation(&wasm, 5000))?;
    println!(
        "  fresh store + instance of bench-event-step ({}): p50 {:.1} µs, p99 {:.1} µs",
        if pooling {
            "pooling allocator"
        } else {
            "on-demand allocator"
        },
        us(p50),
        us(p99)
    );

    let reloads = runtime.block_on(reloads(&wasm, count))?;
    for (what, (p50, p99)) in [
        ("file written -> serving, cached", reloads.cached),
        (
            "file written -> serving, uncached (compiled)",
            reloads.uncached,
        ),
        (
            "`synchro plugin reload` admin call, cached",
            reloads.command,
        ),
    ] {
        println!(
            "  reload, {what}: p50 {:.1} ms, p99 {:.1} ms",
            ms(p50),
            ms(p99)
        );
    }

    let (compiled, cached) = runtime.block_on(large(&wasm))?;
    for (what, start) in [("compiled", &compiled), ("from the cache", &cached)] {
        let latency = match start.status_latency {
            Some((p50, max)) => format!(
                "admin API answered in p50 {:.1} ms, max {:.1} ms while they loaded; ",
                ms(p50),
                ms(max)
            ),
            None => String::new(),
        };
        println!(
            "  start with 3 large components, {what}: {latency}all serving after {:.2} s; resident {} MiB",
            start.serving.as_secs_f64(),
            start.rss_kib / 1024
        );
    }
    Ok(())
}
