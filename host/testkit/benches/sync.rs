//! Sync-step benchmark: `cargo bench -p synchro-testkit --bench sync` (or `./dev bench`).
//!
//! - throughput: `SYNCHRO_BENCH_ENTITIES` (default 100000) dirty entities in the embedded
//!   store, enacted by a trivial Rust sync step (plugins/bench-sync) on one core, from the
//!   runner's start (listing them included) until the last is recorded enacted; beside
//!   the store alone doing the same reads and records natively, in the same batches (no
//!   queue, no change stream, no wasm), in the same run;
//! - latency: with the step caught up, from the commit of a change to the start of its
//!   `sync-record` call, p50 / p99 over 1000 changes.

use std::time::{Duration, Instant};

use synchro_bus::Bus;
use synchro_model::{Acting, Change, Entity, Id, Operation, Upsert};
use synchro_roles::sync_step::Runner;
use synchro_store::{Db, Enacted, Writer};
use synchro_testkit::{Harness, env_u64};

const MANIFEST: &str = "name = \"push\"\nversion = \"0.1.0\"\nroles = [\"sync-step\"]\n\
    [sync]\nkinds = [\"node\"]\nrate = 1000000\n\
    [capabilities]\nstore = { read = [\"node\"] }\n";

fn node(i: u64, v: u64) -> Entity {
    Entity::new(
        format!("node-{i:08}"),
        "node".into(),
        format!(
            r#"{{"id":{i},"v":{v},"rack":"r{}","status":"active"}}"#,
            i % 40
        ),
        None,
        None,
    )
    .expect("a valid entity")
}

/// The change record of `entity`, as the outbox keeps it (which the step reads).
fn record(operation: Operation, entity: &Entity) -> Vec<u8> {
    synchro_bus::change_record(&Change {
        operation,
        entity: entity.clone(),
        timestamp: 1,
        transaction_id: "t".into(),
        database_transaction_id: None,
        source: "writer".into(),
    })
}

/// Writes `count` nodes, to be synced, in batches of 10 000 as a collector would.
fn fill(db: &Db, count: u64, v: u64) {
    let mut i = 0;
    while i < count {
        let upserts: Vec<Upsert> = (i..count.min(i + 10_000))
            .map(|i| Upsert {
                operation: Operation::Create,
                entity: node(i, v),
                hash: i,
            })
            .collect();
        db.commit_collect("writer", &upserts, &[], false, record)
            .expect("a commit");
        i += 10_000;
    }
}

/// The store alone, natively: what the runner reads and records, in its batches of 64,
/// without the queue, the change stream or the wasm calls.
fn native(db: &Db, count: u64) -> f64 {
    let started = Instant::now();
    let ids: Vec<Id> = (0..count)
        .map(|i| Id::new("node", &format!("node-{i:08}")))
        .collect();
    for batch in ids.chunks(64) {
        let stored = db.model_get_many(batch).expect("a read");
        let outcomes: Vec<(Id, Enacted)> = batch
            .iter()
            .zip(stored)
            .map(|(id, stored)| {
                let seen = stored.expect("the entity").bookkeeping.sync_target();
                (id.clone(), Enacted::Synced { seen })
            })
            .collect();
        db.record_syncs(&outcomes).expect("a record");
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let count = env_u64("SYNCHRO_BENCH_ENTITIES", 100_000);
    let one_core = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // The floor: the store's own work, in a harness of its own.
    let floor = {
        let harness = Harness::new(&Bus::embedded());
        fill(&harness.services.db, count, 1);
        native(&harness.services.db, count)
    };

    let harness = Harness::new(&Bus::embedded());
    let db = harness.services.db.clone();
    fill(&db, count, 1);
    let manifest = harness.install("push", "bench-sync", MANIFEST);
    let plugin = one_core.block_on(harness.load(&manifest))?;
    let runner = Runner::new(
        Harness::deploy(plugin),
        harness.engine.clone(),
        harness.services.clone(),
    );
    let status = runner.deployment().status.clone();
    let enacted = move || status.counters.values().enacted;
    let calls = {
        let status = runner.deployment().status.clone();
        move || {
            status
                .counters
                .calls
                .load(std::sync::atomic::Ordering::Relaxed)
        }
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    // The runner on a core of its own, as in the host; this thread writes and watches.
    let started = Instant::now();
    let runtime = std::thread::spawn(move || one_core.block_on(runner.run(shutdown)));
    while enacted() < count {
        std::thread::sleep(Duration::from_millis(1));
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    println!(
        "sync step, trivial, one core: {rate:.0} entities/s from start to the last enacted ({count} dirty entities); \
         the store alone (its reads and records, native, batches of 64) {floor:.0}/s; {:.2}x",
        rate / floor
    );

    // Latency: one change at a time, the step caught up.
    let mut latencies = Vec::with_capacity(1000);
    for round in 0..1000u64 {
        let before = calls();
        let entity = node(round % count, 2 + round);
        let writer = Writer {
            plugin: "writer",
            acting: Acting::Source,
            handling: None,
        };
        let committed = Instant::now();
        db.model_put(writer, &entity, |_| {
            Some(record(Operation::Update, &entity))
        })?;
        while calls() == before {
            std::hint::spin_loop();
        }
        latencies.push(committed.elapsed());
        // Let the record land before the next change.
        while enacted() < count + round + 1 {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "sync step, commit to sync-record start (embedded store, caught up): p50 {:?} p99 {:?} ({} changes)",
        p(0.50),
        p(0.99),
        latencies.len()
    );
    stop.send(true)?;
    runtime.join().expect("the runner's thread");
    Ok(())
}
