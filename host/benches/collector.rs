//! Collector benchmark: `cargo bench -p synchro --bench collector` (or `./dev bench`).
//!
//! A snapshot of N entities (~300 bytes of JSON properties each), 1% of which change
//! between cycles, diffed against the previous cycle's baseline:
//!
//! - native floor: generate + canonicalise + hash + diff in plain Rust, no wasm;
//! - wasm collect: the same generator compiled into a wasm collector, entities crossing
//!   into the host in batches, the same canonicalise + hash + diff;
//! - wasm end to end: plus publishing the changes on the bus and committing the baseline
//!   and the model to redb (fsync);
//! - a fresh instance + call of a trivial collector.
//!
//! `SYNCHRO_BENCH_ENTITIES` (default 100000) and `SYNCHRO_BENCH_CYCLES` (default 7) scale it.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../../plugins/bench-collector/src/data.rs"]
mod data;

use std::sync::Arc;
use std::time::{Duration, Instant};

use synchro::bus::{Bus, Filter};
use synchro::capability::{CallContext, Grants, Services};
use synchro::collector::Collector;
use synchro::diff::{Completeness, Diff, Hashes, Outcome};
use synchro::entity::Entity;
use synchro::manifest::{Manifest, Role};
use synchro::plugin::Plugin;
use synchro::runtime::{CallLimits, Collected, Origin, Prepared, Runtime};
use synchro::state::State;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn manifest(count: u64, cycle: u64) -> Manifest {
    let text = format!(
        "name = \"bench\"\nversion = \"0\"\nroles = [\"collector\"]\n[schedule]\ninterval = \"1h\"\n\
         [settings]\ncount = {count}\ncycle = {cycle}\n"
    );
    Manifest::parse(std::path::Path::new("bench.toml"), &text).expect("bench manifest")
}

const LIMITS: CallLimits = CallLimits {
    deadline: Duration::from_secs(120),
    memory_bytes: 1 << 30,
    max_entities: u64::MAX,
    max_snapshot_bytes: u64::MAX,
    max_message_bytes: usize::MAX,
    fuel: None,
};

fn plugin(prepared: &Prepared, count: u64, cycle: u64) -> Arc<Plugin> {
    let manifest = manifest(count, cycle);
    Arc::new(Plugin {
        name: "bench".into(),
        grants: Arc::new(Grants::from_manifest(&manifest, None).unwrap()),
        manifest,
        prepared: prepared.clone(),
        limits: LIMITS,
        failure: synchro::failure::Policy {
            quarantine_after: u32::MAX,
            max_backoff: Duration::from_secs(1),
        },
        origin: Origin::Cache,
    })
}

fn call(plugin: &Plugin, services: &Services) -> CallContext {
    CallContext::new(plugin, &Default::default(), services)
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
    let count = common::env_u64("SYNCHRO_BENCH_ENTITIES", 100_000);
    let cycles = common::env_u64("SYNCHRO_BENCH_CYCLES", 7);
    let expected = (count / data::CHANGED_EVERY) as usize;
    let wasm = common::plugin("bench-collector");
    let dir = tempfile::tempdir()?;
    let runtime = Arc::new(Runtime::new(&dir.path().join("cache"))?);
    let (component, _) = runtime.compile(&std::fs::read(&wasm)?)?;
    let prepared = runtime.prepare(&component, &[Role::Collector])?;
    let tokio = tokio::runtime::Runtime::new()?;
    let bus = Bus::embedded();
    let state = Arc::new(State::open(&dir.path().join("data"))?);
    let services = Services::new(bus.clone(), state, synchro::config::PollSettings::default())?;
    let mut drain = bus.subscribe(synchro::change::TOPIC, Filter::All)?;
    tokio.spawn(async move { while drain.recv().await.is_some() {} });

    println!(
        "collector diff: {count} entities of ~300 bytes, 1% changed per cycle, median of {cycles} cycles \
         (RUST_BACKTRACE={}, pooling allocator: {})",
        std::env::var("RUST_BACKTRACE").unwrap_or_else(|_| "unset".into()),
        runtime.pooling()
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
    let mut baseline = match tokio.block_on(runtime.collect(
        &prepared,
        call(&plugin(&prepared, count, 0), &services),
        Hashes::default(),
    )) {
        Collected::Done(outcome) => outcome.next,
        Collected::Failed { error, .. } => anyhow::bail!("bench collect failed: {error}"),
    };
    let mut collect = Vec::new();
    for cycle in 1..=cycles {
        let plugin = plugin(&prepared, count, cycle);
        let started = Instant::now();
        let outcome =
            match tokio.block_on(runtime.collect(&prepared, call(&plugin, &services), baseline)) {
                Collected::Done(outcome) => outcome,
                Collected::Failed { error, .. } => anyhow::bail!("bench collect failed: {error}"),
            };
        collect.push(started.elapsed());
        assert_eq!(changes(&outcome), expected);
        baseline = outcome.next;
    }
    let collect = median(collect);

    // wasm end to end: collect, diff, publish, commit.
    let mut collector = Collector::new(
        synchro::live::Live::new(plugin(&prepared, count, 0)),
        runtime.clone(),
        services.clone(),
    );
    tokio.block_on(collector.collect())?;
    let mut end_to_end = Vec::new();
    for cycle in 1..=cycles {
        collector.live().swap(plugin(&prepared, count, cycle));
        let started = Instant::now();
        let report = tokio.block_on(collector.collect())?;
        end_to_end.push(started.elapsed());
        assert_eq!(report.updated, expected);
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
        ms(collect),
        rate(collect),
        collect.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "  wasm end to end (+ publish {expected} changes, redb commit) {:6.1} ms  {:5.2} M entities/s  {:.2}x the floor",
        ms(end_to_end),
        rate(end_to_end),
        end_to_end.as_secs_f64() / floor.as_secs_f64()
    );

    // A fresh instance and a call of a trivial collector (no entities).
    let trivial = plugin(&prepared, 0, 0);
    let calls = common::env_u64("SYNCHRO_BENCH_CALLS", 2000);
    let mut samples = Vec::with_capacity(calls as usize);
    for _ in 0..calls {
        let started = Instant::now();
        match tokio.block_on(runtime.collect(
            &prepared,
            call(&trivial, &services),
            Hashes::default(),
        )) {
            Collected::Done(_) => {}
            Collected::Failed { error, .. } => anyhow::bail!("trivial collect failed: {error}"),
        }
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
