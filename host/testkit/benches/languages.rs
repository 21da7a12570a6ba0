//! Plugins per language: `cargo bench -p synchro-testkit --bench languages` (or `./dev bench`).
//!
//! The same inventory collector in Rust (plugins/http-inventory), Python (py-inventory),
//! JavaScript (js-inventory) and C (c-inventory) — twins that announce the same changes
//! (tests/languages.rs) — each built from source with `synchro plugin build`, then run in
//! the host's own loader and collector runner against the same inventory on loopback:
//!
//! - build: `synchro plugin build` of the folder, as an author runs it again (toolchains
//!   installed; Rust's dependencies compiled: an unchanged crate is a no-op for cargo, so
//!   its figure is cargo's check that nothing changed);
//! - size of the component;
//! - compile: the first load (Cranelift) and a load from the compile cache;
//! - call: one `collect` without I/O — a fresh instance, the call, one `config.get` that
//!   finds no `url`, the error returned — p50 of many;
//! - poll: one `collect` of an empty inventory — a fresh instance, one `poll` through the
//!   host to the loopback source, the call — p50 of many;
//! - throughput: entities per second collected (poll, parse, map, cross into the host,
//!   canonicalise, hash, diff) from an inventory of `SYNCHRO_BENCH_SERVERS` servers (default
//!   2000) each with a VM: three entities per server.
//!
//! Rust is the native peer: every other figure is also given as a ratio to Rust's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use synchro_bus::Bus;
use synchro_model::Hashes;
use synchro_roles::Plugin;
use synchro_roles::collector::Collected;
use synchro_testkit::{Harness, Source, repo};

const LANGUAGES: [(&str, &str); 4] = [
    ("Rust", "http-inventory"),
    ("Python", "py-inventory"),
    ("JavaScript", "js-inventory"),
    ("C", "c-inventory"),
];

struct Figures {
    build: Duration,
    size: u64,
    compile: Duration,
    cached: Duration,
    call: Duration,
    poll: Duration,
    entities_per_s: f64,
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// `synchro plugin build plugins/FOLDER`: the component and how long the build took.
fn build(folder: &str) -> anyhow::Result<(PathBuf, Duration)> {
    let started = Instant::now();
    let output = Command::new(synchro_testkit::synchro())
        .args(["plugin", "build"])
        .arg(repo().join("plugins").join(folder))
        .output()?;
    let took = started.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "building {folder}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((
        PathBuf::from(String::from_utf8(output.stdout)?.trim()),
        took,
    ))
}

/// The inventory of `servers` servers, each with one VM on it.
fn inventory(servers: usize) -> String {
    let servers_json: Vec<String> = (0..servers)
        .map(|i| {
            format!(
                r#"{{"id":"srv-{i}","hostname":"host-{i}","rack":"r{}","cpus":{},"tags":["a","b"]}}"#,
                i % 40,
                8 + i % 56
            )
        })
        .collect();
    let vms_json: Vec<String> = (0..servers)
        .map(|i| {
            format!(r#"{{"id":"vm-{i}","name":"vm {i}","server":"srv-{i}","memory_mb":4096}}"#)
        })
        .collect();
    format!(
        r#"{{"servers":[{}],"vms":[{}]}}"#,
        servers_json.join(","),
        vms_json.join(",")
    )
}

/// One collect of `plugin` against an empty baseline: the entities it announced, or
/// its error.
fn collect(
    harness: &Harness,
    tokio: &tokio::runtime::Runtime,
    plugin: &Plugin,
) -> anyhow::Result<usize> {
    let collector = plugin.roles.collector.as_ref().expect("a collector");
    let call = plugin.call_context(&Arc::default(), &harness.services);
    match tokio.block_on(collector.collect(
        &harness.engine,
        &plugin.linked,
        call,
        Hashes::default(),
    )) {
        Collected::Done(outcome) => Ok(outcome.upserts.len() + outcome.deletes.len()),
        Collected::Failed { error, .. } => anyhow::bail!("collect failed: {error}"),
    }
}

/// p50 of `count` timed runs of `call`, after a few untimed ones.
fn p50(count: usize, mut call: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let mut samples = Vec::with_capacity(count);
    for i in 0..count + 5 {
        let started = Instant::now();
        call()?;
        if i >= 5 {
            samples.push(started.elapsed());
        }
    }
    Ok(median(samples))
}

/// The manifest of `name`, the inventory collector, with `url` in its settings if given.
fn manifest(
    harness: &Harness,
    name: &str,
    source: &Source,
    url: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let path = harness.config.plugin_dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\nversion = \"0.1.0\"\nroles = [\"collector\"]\n\
             component = \"inv.wasm\"\n\
             [schedule]\ninterval = \"1h\"\n\
             [capabilities]\npoll = {{ hosts = [\"{}\"] }}\n\
             [limits]\ndeadline = \"120s\"\nmemory-mb = 1024\nmax-snapshot-kb = 1048576\n\
             [settings]\n{}\n",
            source.origin(),
            url.map(|url| format!("url = \"{url}\""))
                .unwrap_or_default()
        ),
    )?;
    Ok(path)
}

fn measure(
    component: &Path,
    source: &Source,
    servers: usize,
    tokio: &tokio::runtime::Runtime,
) -> anyhow::Result<(Duration, Duration, Duration, Duration, f64)> {
    let harness = Harness::new(&Bus::embedded());
    std::fs::copy(component, harness.config.plugin_dir.join("inv.wasm"))?;
    let polling = manifest(&harness, "inv", source, Some(&source.url()))?;
    let started = Instant::now();
    let plugin = tokio.block_on(harness.load(&polling))?;
    let compile = started.elapsed();
    drop(plugin);
    let started = Instant::now();
    let plugin = tokio.block_on(harness.load(&polling))?;
    let cached = started.elapsed();

    let bare = tokio.block_on(harness.load(&manifest(&harness, "bare", source, None)?))?;
    let call = p50(200, || match collect(&harness, tokio, &bare) {
        Err(error) if error.to_string().contains("url") => Ok(()),
        other => anyhow::bail!("a collector without `url` answered {other:?}"),
    })?;

    source.set(200, "{}");
    let poll = p50(50, || {
        let announced = collect(&harness, tokio, &plugin)?;
        anyhow::ensure!(announced == 0, "an empty inventory announced {announced}");
        Ok(())
    })?;

    source.set(200, &inventory(servers));
    let mut rates = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let announced = collect(&harness, tokio, &plugin)?;
        anyhow::ensure!(
            announced == 3 * servers,
            "announced {announced} of {}",
            3 * servers
        );
        rates.push(announced as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    Ok((compile, cached, call, poll, rates[rates.len() / 2]))
}

fn main() -> anyhow::Result<()> {
    let servers = synchro_testkit::env_u64("SYNCHRO_BENCH_SERVERS", 2000) as usize;
    let tokio = tokio::runtime::Runtime::new()?;
    let source = Source::start("{}");
    println!(
        "languages benchmark: the inventory collector in each language, {servers} servers + VMs"
    );
    let mut all: Vec<(&str, Figures)> = Vec::new();
    for (language, folder) in LANGUAGES {
        let (component, build) = build(folder)?;
        let size = std::fs::metadata(&component)?.len();
        let (compile, cached, call, poll, entities_per_s) =
            measure(&component, &source, servers, &tokio)?;
        all.push((
            language,
            Figures {
                build,
                size,
                compile,
                cached,
                call,
                poll,
                entities_per_s,
            },
        ));
    }
    let rust = &all[0].1;
    println!(
        "{:<11} {:>7} {:>10} {:>10} {:>9} {:>17} {:>17} {:>22}",
        "language",
        "build",
        "size",
        "compile",
        "cached",
        "call (x Rust)",
        "poll (x Rust)",
        "entities/s (x Rust)"
    );
    for (language, f) in &all {
        println!(
            "{:<11} {:>5.1} s {:>6} KiB {:>7.0} ms {:>6.1} ms {:>7.0} µs ({:>5.1}) {:>7.0} µs ({:>5.1}) {:>11.0} ({:>5.2})",
            language,
            f.build.as_secs_f64(),
            f.size.div_ceil(1024),
            f.compile.as_secs_f64() * 1e3,
            f.cached.as_secs_f64() * 1e3,
            f.call.as_secs_f64() * 1e6,
            f.call.as_secs_f64() / rust.call.as_secs_f64(),
            f.poll.as_secs_f64() * 1e6,
            f.poll.as_secs_f64() / rust.poll.as_secs_f64(),
            f.entities_per_s,
            f.entities_per_s / rust.entities_per_s,
        );
    }
    Ok(())
}
