//! Containment benchmark: `cargo bench -p synchro --bench hostile` (or `./dev bench`).
//!
//! The scripted collector (plugins/scripted-collector) misbehaving, in process:
//! - a guest spinning forever with a 100 ms deadline: how long after the deadline the call
//!   is stopped (epoch interruption), p50 / max;
//! - a guest allocating without end under a 64 MiB memory cap: time to the trap, and the
//!   host's resident memory before and after many such calls (the pooling allocator must
//!   give the memory back);
//! - a guest recursing without end: time to the trap.
//!
//! `SYNCHRO_BENCH_HOSTILE` (default 20) is the number of calls of each.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Source;
use synchro::bus::Bus;
use synchro::capability::Services;
use synchro::collector::Collector;
use synchro::config::{Config, PollSettings};
use synchro::live::Live;
use synchro::plugin::Plugin;
use synchro::runtime::Runtime;
use synchro::state::State;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

/// `count` collects of the scripted collector in `mode`; each must fail. Their durations.
async fn failing_calls(
    dir: &std::path::Path,
    runtime: &Arc<Runtime>,
    services: &Services,
    mode: &str,
    limits: &str,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let source = Source::start(&format!("{{\"mode\": \"{mode}\"}}"));
    std::fs::copy(
        common::plugin("scripted-collector"),
        dir.join(format!("{mode}.wasm")),
    )?;
    let manifest = dir.join(format!("{mode}.toml"));
    std::fs::write(
        &manifest,
        format!(
            "name = \"{mode}\"\nversion = \"0\"\nroles = [\"collector\"]\n[schedule]\ninterval = \"1h\"\n\
             [limits]\n{limits}\n[capabilities]\npoll = {{ hosts = [\"{}\"] }}\n[settings]\nurl = \"{}\"\n",
            source.origin(),
            source.url()
        ),
    )?;
    let plugin = Plugin::load(runtime, &manifest, &Config::default())?;
    let mut collector = Collector::new(
        Live::new(Arc::new(plugin)),
        runtime.clone(),
        services.clone(),
    );
    let mut samples = Vec::new();
    for _ in 0..count {
        let started = Instant::now();
        let result = collector.collect().await;
        samples.push(started.elapsed());
        anyhow::ensure!(result.is_err(), "{mode}: the call succeeded");
    }
    samples.sort();
    Ok(samples)
}

fn main() -> anyhow::Result<()> {
    let count = common::env_u64("SYNCHRO_BENCH_HOSTILE", 20) as usize;
    let tokio = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let runtime = Arc::new(Runtime::new(&dir.path().join("cache"))?);
    let state = Arc::new(State::open(&dir.path().join("data"))?);
    let services = Services::new(Bus::embedded(), state, PollSettings::default())?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "containment benchmark ({} allocator, {count} calls each)",
        if runtime.pooling() {
            "pooling"
        } else {
            "on-demand"
        }
    );

    let deadline = Duration::from_millis(100);
    let spins = tokio.block_on(failing_calls(
        dir.path(),
        &runtime,
        &services,
        "spin",
        "deadline = \"100ms\"",
        count,
    ))?;
    let late = |d: &Duration| ms(d.saturating_sub(deadline));
    println!(
        "  spin, deadline 100 ms: stopped {:.1} ms after the deadline (p50), {:.1} ms (max)",
        late(&spins[spins.len() / 2]),
        late(spins.last().expect("samples"))
    );

    let before = rss_mib();
    let bombs = tokio.block_on(failing_calls(
        dir.path(),
        &runtime,
        &services,
        "memory-bomb",
        "memory-mb = 64",
        count,
    ))?;
    let after = rss_mib();
    println!(
        "  memory bomb, cap 64 MiB: trapped at the cap after {:.1} ms (p50); host RSS {before:.0} MiB before {count} bombs, {after:.0} MiB after",
        ms(bombs[bombs.len() / 2])
    );

    let recursions = tokio.block_on(failing_calls(
        dir.path(),
        &runtime,
        &services,
        "recursion",
        "",
        count,
    ))?;
    println!(
        "  unbounded recursion: trapped after {:.2} ms (p50)",
        ms(recursions[recursions.len() / 2])
    );
    Ok(())
}
