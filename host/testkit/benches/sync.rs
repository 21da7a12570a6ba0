//! Model-role benchmark: `cargo bench -p synchro-testkit --bench sync` (or `./dev bench`).
//!
//! A sync step alone:
//! - throughput: `SYNCHRO_BENCH_ENTITIES` (default 100000) dirty entities in the embedded
//!   store, enacted by a trivial Rust sync step (plugins/bench-sync) on one core, from the
//!   runner's start (listing them included) until the last is recorded enacted; beside
//!   the store alone doing the same reads and records natively, in the same batches (no
//!   queue, no change stream, no wasm), in the same run;
//! - latency: with the step caught up, from the commit of a change to the start of its
//!   `sync-record` call, p50 / p99 over 1000 changes.
//!
//! A model policy and a sync step on the same kind (plugins/bench-policy, bench-sync), each
//! on a core of its own as in the host: the same two figures, for both, beside the store
//! alone doing both roles' reads and records natively.

use std::time::{Duration, Instant};

use synchro_bus::Bus;
use synchro_model::{Acting, Change, Entity, Id, Operation, Upsert};
use synchro_roles::{model_policy, sync_step};
use synchro_status::Status;
use synchro_store::{Db, Enacted, Policed, Writer};
use synchro_testkit::{Harness, env_u64};

const MANIFEST: &str = "name = \"push\"\nversion = \"0.1.0\"\nroles = [\"sync-step\"]\n\
    [sync]\nkinds = [\"node\"]\nrate = 1000000\n\
    [capabilities]\nstore = { read = [\"node\"] }\n";

const POLICY: &str = "name = \"police\"\nversion = \"0.1.0\"\nroles = [\"model-policy\"]\n\
    [policy]\nkinds = [\"node\"]\nrate = 1000000\n\
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

/// The store alone, natively: what the runners read and record, in their batches of 64,
/// without the queue, the change stream or the wasm calls; the policy's too if `policy`.
fn native(db: &Db, count: u64, policy: bool) -> f64 {
    let started = Instant::now();
    let ids: Vec<Id> = (0..count)
        .map(|i| Id::new("node", &format!("node-{i:08}")))
        .collect();
    for batch in ids.chunks(64).filter(|_| policy) {
        let stored = db.model_get_policed("police", batch).expect("a read");
        let outcomes: Vec<(Id, Policed)> = batch
            .iter()
            .zip(stored)
            .map(|(id, stored)| {
                let (stored, _previous) = stored.expect("the entity");
                let seen = stored.bookkeeping.policy_target();
                (
                    id.clone(),
                    Policed::Handled {
                        seen,
                        entity: stored.entity,
                    },
                )
            })
            .collect();
        db.record_policies("police", &outcomes).expect("a record");
    }
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
        db.record_syncs("push", &outcomes).expect("a record");
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// A runner started on a thread of its own: its status, and how to stop it.
struct Running {
    status: std::sync::Arc<Status>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    fn calls(&self) -> u64 {
        self.status.counters.values().calls
    }

    fn stop(self) {
        self.stop.send_replace(true);
        self.thread.join().expect("the runner's thread");
    }
}

/// Loads `plugin_crate` as `name` with `manifest`.
fn load(
    harness: &Harness,
    name: &str,
    plugin_crate: &str,
    manifest: &str,
) -> anyhow::Result<std::sync::Arc<synchro_roles::Deployment>> {
    let manifest = harness.install(name, plugin_crate, manifest);
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    Ok(Harness::deploy(runtime.block_on(harness.load(&manifest))?))
}

/// Runs the model role of `deployment`, a policy if `policy` else a sync step, on a core
/// of its own, as in the host.
fn spawn(
    harness: &Harness,
    deployment: std::sync::Arc<synchro_roles::Deployment>,
    policy: bool,
) -> anyhow::Result<Running> {
    let one_core = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = deployment.status.clone();
    let (engine, services) = (harness.engine.clone(), harness.services.clone());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let thread = if policy {
        let runner = model_policy::Runner::new(deployment, engine, services);
        std::thread::spawn(move || one_core.block_on(runner.run(shutdown)))
    } else {
        let runner = sync_step::Runner::new(deployment, engine, services);
        std::thread::spawn(move || one_core.block_on(runner.run(shutdown)))
    };
    Ok(Running {
        status,
        stop,
        thread,
    })
}

/// `p50 … p99 …` of `latencies`.
fn percentiles(latencies: &mut [Duration]) -> String {
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    format!("p50 {:?} p99 {:?}", p(0.50), p(0.99))
}

/// Writes `count` dirty nodes, starts a sync step (and a policy if `policy`) and times
/// them through, then times 1000 single changes from commit to each runner's
/// call; prints both beside `floor`.
fn bench(count: u64, policy: bool) -> anyhow::Result<()> {
    let floor = {
        let harness = Harness::new(&Bus::embedded());
        fill(&harness.services.db, count, 1);
        native(&harness.services.db, count, policy)
    };
    let what = if policy {
        "policy + sync step"
    } else {
        "sync step"
    };

    let harness = Harness::new(&Bus::embedded());
    let db = harness.services.db.clone();
    fill(&db, count, 1);
    let police = policy
        .then(|| load(&harness, "police", "bench-policy", POLICY))
        .transpose()?;
    let push = load(&harness, "push", "bench-sync", MANIFEST)?;
    let started = Instant::now();
    let police = police.map(|d| spawn(&harness, d, true)).transpose()?;
    let push = spawn(&harness, push, false)?;
    let done = |running: &Running, policy: bool| {
        let c = running.status.counters.values();
        if policy { c.policed } else { c.enacted }
    };
    let caught_up =
        |n: u64| done(&push, false) >= n && police.as_ref().is_none_or(|p| done(p, true) >= n);
    while !caught_up(count) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    println!(
        "{what}, trivial, a core each: {rate:.0} entities/s from start to the last recorded ({count} dirty entities); \
         the store alone (the same reads and records, native, batches of 64) {floor:.0}/s; {:.2}x",
        rate / floor
    );

    // Latency: one change at a time, the runners caught up.
    let mut to_sync = Vec::with_capacity(1000);
    let mut to_policy = Vec::with_capacity(1000);
    for round in 0..1000u64 {
        let before = (push.calls(), police.as_ref().map(Running::calls));
        let entity = node(round % count, 2 + round);
        let writer = Writer {
            plugin: "writer",
            acting: Acting::Source,
            handling: None,
        };
        let committed = Instant::now();
        db.model_put(writer, &entity, record)?;
        let (mut synced, mut policed) = (None, police.is_none().then_some(()));
        while synced.is_none() || policed.is_none() {
            if synced.is_none() && push.calls() > before.0 {
                synced = Some(());
                to_sync.push(committed.elapsed());
            }
            if let (None, Some(police)) = (policed, &police)
                && Some(police.calls()) > before.1
            {
                policed = Some(());
                to_policy.push(committed.elapsed());
            }
            // Not a spin: on two cores, this thread would take one from the runners.
            std::thread::yield_now();
        }
        // Let the records land before the next change.
        while !caught_up(count + round + 1) {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    if policy {
        println!(
            "{what}, commit to handle-update start (embedded store, caught up): {} (1000 changes)",
            percentiles(&mut to_policy)
        );
    }
    println!(
        "{what}, commit to sync-record start (embedded store, caught up): {} (1000 changes)",
        percentiles(&mut to_sync)
    );
    push.stop();
    if let Some(police) = police {
        police.stop();
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let count = env_u64("SYNCHRO_BENCH_ENTITIES", 100_000);
    bench(count, false)?;
    bench(count, true)
}
