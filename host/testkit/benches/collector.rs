//! Collector benchmark: `cargo bench -p synchro-testkit --bench collector` (or `./dev bench`).
//!
//! A snapshot of N entities (~300 bytes of JSON properties each), 1% of which change
//! between cycles, diffed against the previous cycle's baseline:
//!
//! - native floor: generate + canonicalise + hash + diff in plain Rust, no wasm;
//! - wasm collect: the same generator compiled into a wasm collector, entities crossing
//!   into the host in batches, the same canonicalise + hash + diff;
//! - wasm end to end: plus committing the baseline, the model and the changes' outbox
//!   records to redb in one transaction (fsync);
//! - a fresh instance + call of a trivial collector.
//!
//! `SYNCHRO_BENCH_ENTITIES` (default 100000) and `SYNCHRO_BENCH_CYCLES` (default 7) scale it.

#[path = "../../../plugins/bench-collector/src/data.rs"]
mod data;

use std::sync::Arc;
use std::time::{Duration, Instant};

use synchro_bus::Bus;
use synchro_model::{Completeness, Diff, Entity, Hashes, Outcome};
use synchro_roles::Plugin;
use synchro_roles::collector::{Collected, Runner};
use synchro_testkit::Harness;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The bench collector generating `count` entities for `cycle`, with limits that let
/// any snapshot through; loaded from the cache after the first time.
fn plugin(
    harness: &Harness,
    tokio: &tokio::runtime::Runtime,
    count: u64,
    cycle: u64,
) -> Arc<Plugin> {
    let manifest = harness.config.plugin_dir.join("bench.toml");
    std::fs::write(
        &manifest,
        format!(
            "name = \"bench\"\nversion = \"0\"\nroles = [\"collector\"]\n[schedule]\ninterval = \"1h\"\n\
             [limits]\ndeadline = \"120s\"\nmemory-mb = 1024\nmax-entities = {}\nmax-snapshot-kb = {}\n\
             max-message-kb = {}\nquarantine-after = {}\n\
             [settings]\ncount = {count}\ncycle = {cycle}\n",
            u64::MAX,
            1u64 << 32,
            1u64 << 32,
            u32::MAX
        ),
    )
    .expect("writing the bench manifest");
    tokio
        .block_on(harness.load(&manifest))
        .expect("the bench plugin")
}

/// One collect of `plugin` against `baseline`.
fn collect(
    harness: &Harness,
    tokio: &tokio::runtime::Runtime,
    plugin: &Plugin,
    baseline: Hashes,
) -> anyhow::Result<Outcome> {
    let collector = plugin.roles.collector.as_ref().expect("a collector");
    let call = plugin.call_context(&Arc::default(), &harness.services);
    match tokio.block_on(collector.collect(&harness.engine, &plugin.linked, call, baseline)) {
        Collected::Done(outcome) => Ok(outcome),
        Collected::Failed { error, .. } => anyhow::bail!("bench collect failed: {error}"),
    }
}

fn native_cycle(count: u64, cycle: u64, baseline: Hashes) -> Outcome {
    let mut diff = Diff::new(baseline);
    let mut properties = String::with_capacity(512);
    for i in 0..count {
        let (key, kind) = data::entity(i, cycle, &mut properties);
        let entity = Entity::new(key, kind.to_owned(), properties.clone(), None, None).unwrap();
        diff.add(entity).unwrap();
    }
    diff.finish(Completeness::Complete)
}

fn changes(outcome: &Outcome) -> usize {
    outcome.upserts.len() + outcome.deletes.len()
}

fn main() -> anyhow::Result<()> {
    let count = synchro_testkit::env_u64("SYNCHRO_BENCH_ENTITIES", 100_000);
    let cycles = synchro_testkit::env_u64("SYNCHRO_BENCH_CYCLES", 7);
    let expected = (count / data::CHANGED_EVERY) as usize;
    let tokio = tokio::runtime::Runtime::new()?;
    let bus = Bus::embedded();
    let harness = Harness::new(&bus);
    std::fs::copy(
        synchro_testkit::plugin("bench-collector"),
        harness.config.plugin_dir.join("bench.wasm"),
    )?;

    println!(
        "collector diff: {count} entities of ~300 bytes, 1% changed per cycle, median of {cycles} cycles \
         (RUST_BACKTRACE={}, pooling allocator: {})",
        std::env::var("RUST_BACKTRACE").unwrap_or_else(|_| "unset".into()),
        harness.engine.pooling()
    );

    // Native floor, with generation (what the wasm path does) and without it.
    let mut baseline = native_cycle(count, 0, Hashes::default()).next;
    let mut floor = Vec::new();
    for cycle in 1..=cycles {
        let started = Instant::now();
        let outcome = native_cycle(count, cycle, baseline);
        floor.push(started.elapsed());
        assert_eq!(changes(&outcome), expected);
        baseline = outcome.next;
    }
    let floor = median(floor);
    // The same work on input generated beforehand, to show what generation costs.
    let mut pure = Vec::new();
    for _ in 1..=cycles {
        let mut properties = String::new();
        let generated: Vec<_> = (0..count)
            .map(|i| {
                let (key, kind) = data::entity(i, cycles + 1, &mut properties);
                (key, kind, properties.clone())
            })
            .collect();
        let previous = baseline.clone();
        let started = Instant::now();
        let mut diff = Diff::new(previous);
        for (key, kind, properties) in generated {
            diff.add(Entity::new(key, kind.to_owned(), properties, None, None).unwrap())
                .unwrap();
        }
        let outcome = diff.finish(Completeness::Complete);
        pure.push(started.elapsed());
        assert_eq!(changes(&outcome), expected);
    }
    let pure = median(pure);

    // wasm: the collect call and the diff.
    let first = plugin(&harness, &tokio, count, 0);
    let mut baseline = collect(&harness, &tokio, &first, Hashes::default())?.next;
    let mut collects = Vec::new();
    for cycle in 1..=cycles {
        let plugin = plugin(&harness, &tokio, count, cycle);
        let started = Instant::now();
        let outcome = collect(&harness, &tokio, &plugin, baseline)?;
        collects.push(started.elapsed());
        assert_eq!(changes(&outcome), expected);
        baseline = outcome.next;
    }
    let wasm = median(collects);

    // wasm end to end: collect, diff, commit (baseline, model, outbox).
    let mut collector = Runner::new(
        Harness::deploy(plugin(&harness, &tokio, count, 0)),
        harness.engine.clone(),
        harness.services.clone(),
    );
    tokio.block_on(collector.collect())?;
    let mut end_to_end = Vec::new();
    for cycle in 1..=cycles {
        collector
            .deployment()
            .swap(plugin(&harness, &tokio, count, cycle));
        let started = Instant::now();
        let report = tokio.block_on(collector.collect())?;
        end_to_end.push(started.elapsed());
        assert_eq!(report.updated, expected as u64);
    }
    let end_to_end = median(end_to_end);

    let rate = |d: Duration| count as f64 / d.as_secs_f64() / 1e6;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  native floor (generate+canonicalise+hash+diff)  {:8.1} ms  {:5.2} M entities/s",
        ms(floor),
        rate(floor)
    );
    println!(
        "  native canonicalise+hash+diff only              {:8.1} ms  {:5.2} M entities/s",
        ms(pure),
        rate(pure)
    );
    println!(
        "  wasm collect + diff                             {:8.1} ms  {:5.2} M entities/s  {:.2}x the floor",
        ms(wasm),
        rate(wasm),
        wasm.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "  wasm end to end (+ {expected} changes to the outbox, redb commit) {:6.1} ms  {:5.2} M entities/s  {:.2}x the floor",
        ms(end_to_end),
        rate(end_to_end),
        end_to_end.as_secs_f64() / floor.as_secs_f64()
    );

    // A fresh instance and a call of a trivial collector (no entities).
    let trivial = plugin(&harness, &tokio, 0, 0);
    let calls = synchro_testkit::env_u64("SYNCHRO_BENCH_CALLS", 2000);
    let mut samples = Vec::with_capacity(calls as usize);
    for _ in 0..calls {
        let started = Instant::now();
        collect(&harness, &tokio, &trivial, Hashes::default())?;
        samples.push(started.elapsed());
    }
    samples.sort();
    println!(
        "fresh instance + call of a trivial collector: p50 {:.1} µs, p99 {:.1} µs ({calls} calls)",
        samples[samples.len() / 2].as_secs_f64() * 1e6,
        samples[samples.len() * 99 / 100].as_secs_f64() * 1e6
    );
    Ok(())
}
