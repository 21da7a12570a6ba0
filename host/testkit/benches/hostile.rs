//! Containment benchmark: `cargo bench -p synchro-testkit --bench hostile` (or `./dev bench`).
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

use std::time::{Duration, Instant};

use synchro_bus::Bus;
use synchro_roles::collector::Runner;
use synchro_testkit::Harness;
use synchro_testkit::Source;

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
    harness: &Harness,
    mode: &str,
    limits: &str,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let source = Source::start(&format!("{{\"mode\": \"{mode}\"}}"));
    let manifest = harness.install(
        mode,
        "scripted-collector",
        &format!(
            "name = \"{mode}\"\nversion = \"0\"\nroles = [\"collector\"]\n[schedule]\ninterval = \"1h\"\n\
             [limits]\n{limits}\n[capabilities]\npoll = {{ hosts = [\"{}\"] }}\n[settings]\nurl = \"{}\"\n",
            source.origin(),
            source.url()
        ),
    );
    let plugin = harness.load(&manifest).await?;
    let mut collector = Runner::new(
        Harness::deploy(plugin),
        harness.engine.clone(),
        harness.services.clone(),
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
    let count = synchro_testkit::env_u64("SYNCHRO_BENCH_HOSTILE", 20) as usize;
    let tokio = tokio::runtime::Runtime::new()?;
    let harness = Harness::new(&Bus::embedded());
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "containment benchmark ({} allocator, {count} calls each)",
        if harness.engine.pooling() {
            "pooling"
        } else {
            "on-demand"
        }
    );

    let deadline = Duration::from_millis(100);
    let spins = tokio.block_on(failing_calls(
        &harness,
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
        &harness,
        "memory-bomb",
        "memory-mb = 64",
        count,
    ))?;
    let after = rss_mib();
    println!(
        "  memory bomb, cap 64 MiB: trapped at the cap after {:.1} ms (p50); host RSS {before:.0} MiB before {count} bombs, {after:.0} MiB after",
        ms(bombs[bombs.len() / 2])
    );

    let recursions = tokio.block_on(failing_calls(&harness, "recursion", "", count))?;
    println!(
        "  unbounded recursion: trapped after {:.2} ms (p50)",
        ms(recursions[recursions.len() / 2])
    );
    Ok(())
}
