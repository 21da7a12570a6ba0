//! Bus benchmark: `cargo bench -p synchro-testkit --bench bus` (or `./dev bench`).
//!
//! - event-step throughput through a trivial Rust plugin (plugins/bench-event-step), on
//!   the embedded bus (a current-thread runtime: one core) and on Kafka (tansu on
//!   loopback), against the bus alone (consume + commit, no wasm) in the same run;
//! - await-response round trip (publish a request, a responder answers, the waiter gets
//!   it), p50 / p99, on both buses.
//!
//! `SYNCHRO_BENCH_EVENTS` (default 100000; Kafka uses a fifth) scales it.

use std::time::{Duration, Instant};

use synchro_bus::{Bus, CorrelationId, Message, StartFrom, Topics};
use synchro_roles::event_step::Runner;
use synchro_testkit::Harness;

async fn fill(bus: &Bus, topic: &str, count: u64) -> anyhow::Result<()> {
    let payload = vec![b'x'; 100];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let bus = bus.clone();
        let message = Message::new(topic, payload.clone()).with_key(format!("k{}", i % 16));
        tasks.spawn(async move { bus.publish(message).await });
        if tasks.len() >= 512 {
            tasks.join_next().await.expect("a task")??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// Events/s through the event step, and through the bus alone.
async fn throughput(bus: &Bus, wasm: &std::path::Path, count: u64) -> anyhow::Result<(f64, f64)> {
    let harness = Harness::new(bus);
    std::fs::copy(wasm, harness.config.plugin_dir.join("bench.wasm"))?;
    let manifest = harness.config.plugin_dir.join("bench.toml");
    std::fs::write(
        &manifest,
        "name = \"bench\"\nversion = \"0\"\nroles = [\"event-step\"]\n[events]\ntopics = [\"bench\"]\nstart = \"earliest\"\n",
    )?;
    let plugin = harness.load(&manifest).await?;
    fill(bus, "bench", count).await?;

    let started = Instant::now();
    let mut consumer = bus.consume(
        "bus-only",
        Topics::Names(vec!["bench".into()]),
        StartFrom::Earliest,
    )?;
    for _ in 0..count {
        let delivery = consumer.next().await?;
        consumer.commit(&delivery)?;
    }
    let bus_only = count as f64 / started.elapsed().as_secs_f64();

    let step = Runner::new(
        Harness::deploy(plugin),
        harness.engine.clone(),
        harness.services.clone(),
    );
    let deployment = step.deployment().clone();
    let processed = || deployment.status.counters.values().processed;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(step.run(shutdown));
    while processed() < count {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let through_wasm = count as f64 / started.elapsed().as_secs_f64();
    stop.send(true)?;
    task.await?;
    Ok((through_wasm, bus_only))
}

/// Round trips through a responder on the bus: p50 and p99.
async fn round_trips(bus: &Bus, count: usize) -> anyhow::Result<(Duration, Duration)> {
    bus.expect_responses("responses", CorrelationId::default())
        .await?;
    let mut requests = bus.consume(
        "responder",
        Topics::Names(vec!["requests".into()]),
        StartFrom::Earliest,
    )?;
    let responder_bus = bus.clone();
    let responder = tokio::spawn(async move {
        loop {
            let Ok(delivery) = requests.next().await else {
                return;
            };
            let id = delivery
                .message
                .header("correlation-id")
                .unwrap_or_default()
                .to_owned();
            let response =
                Message::new("responses", b"ok".to_vec()).with_header("correlation-id", id);
            if responder_bus.publish(response).await.is_err() {
                return;
            }
            let _ = requests.commit(&delivery);
        }
    });
    // Warm up: the first requests pay for topic creation and group joins.
    let mut samples = Vec::with_capacity(count);
    for i in 0..count + count / 10 + 1 {
        let id = format!("r{i}");
        let started = Instant::now();
        bus.publish(
            Message::new("requests", b"ping".to_vec()).with_header("correlation-id", id.clone()),
        )
        .await?;
        bus.await_response("responses", &id, Duration::from_secs(30))
            .await?;
        if i > count / 10 {
            samples.push(started.elapsed());
        }
    }
    responder.abort();
    samples.sort();
    Ok((
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    ))
}

fn main() -> anyhow::Result<()> {
    let count = synchro_testkit::env_u64("SYNCHRO_BENCH_EVENTS", 100_000);
    let wasm = synchro_testkit::plugin("bench-event-step");
    println!(
        "bus benchmark (RUST_BACKTRACE={})",
        std::env::var("RUST_BACKTRACE").unwrap_or_else(|_| "unset".into())
    );
    let us = |d: Duration| d.as_secs_f64() * 1e6;

    let one_core = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (wasm_rate, bus_rate) = one_core.block_on(throughput(&Bus::embedded(), &wasm, count))?;
    println!(
        "  embedded, one core: event step {:.0} events/s; bus alone (consume+commit) {:.0} events/s ({count} events)",
        wasm_rate, bus_rate
    );
    let (p50, p99) = one_core.block_on(round_trips(&Bus::embedded(), 20_000))?;
    println!(
        "  embedded await-response round trip: p50 {:.1} µs, p99 {:.1} µs",
        us(p50),
        us(p99)
    );

    let runtime = tokio::runtime::Runtime::new()?;
    let kafka_count = count / 5;
    let (wasm_rate, bus_rate) = runtime.block_on(throughput(
        &synchro_testkit::broker::kafka_bus(),
        &wasm,
        kafka_count,
    ))?;
    println!(
        "  kafka (tansu, loopback): event step {:.0} events/s; bus alone {:.0} events/s ({kafka_count} events)",
        wasm_rate, bus_rate
    );
    let (p50, p99) = runtime.block_on(round_trips(&synchro_testkit::broker::kafka_bus(), 300))?;
    println!(
        "  kafka await-response round trip: p50 {:.2} ms, p99 {:.2} ms",
        us(p50) / 1e3,
        us(p99) / 1e3
    );
    Ok(())
}
