//! Plugin lifecycle benchmark: `cargo bench -p synchro-testkit --bench lifecycle` (or
//! `./dev bench`).
//!
//! - instantiation: a fresh `Store` and instance of a small Rust plugin
//!   (plugins/bench-event-step) from its `InstancePre`, with the pooling allocator, p50/p99;
//! - reload latency: a running host (`Supervisor::run`, file watcher on) is given a new manifest
//!   version; the time from the file written to the admin API reporting the new version,
//!   p50/p99 — with the component already compiled (cached) and with a component never
//!   seen before (compiled on the spot), and through `synchro plugin reload` (admin call).
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

/// The component with a custom section appended: the same code, bytes never seen, so
/// the cache misses and it is compiled.
fn unseen(component: &[u8], n: usize) -> Vec<u8> {
    let name = b"synchro-bench";
    let payload = format!("{n}-{:?}", Instant::now());
    let mut body = vec![name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(payload.as_bytes());
    let mut bytes = component.to_vec();
    bytes.push(0); // custom section
    let mut size = body.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        bytes.push(if size == 0 { byte } else { byte | 0x80 });
        if size == 0 {
            break;
        }
    }
    bytes.extend_from_slice(&body);
    bytes
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
        std::fs::write(plugins.join("bench.wasm"), unseen(&component, i))?;
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
    Ok(())
}
