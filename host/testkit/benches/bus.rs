//! Bus benchmark: `cargo bench -p synchro-testkit --bench bus` (or `./dev bench`).
//!
//! - event-step throughput through a trivial Rust plugin (plugins/bench-event-step), on
//!   the embedded bus (a current-thread runtime: one core) and on Kafka (tansu on
//!   loopback), against the bus alone (consume + commit, no wasm) in the same run;
//! - the same with real work (plugins/bench-emit: parse a ~200-byte JSON event with serde,
//!   emit a change of it), counted when the changes are durable in the outbox;
//! - both also per CPU-second of the step's thread, which a busy shared machine disturbs
//!   far less than the clock, and of the whole process (the outbox's writer included);
//! - what metrics cost: the trivial step started as `synchro run` starts it (on a thread
//!   of its own), with the host's metrics rendered every 10 ms and never, alternated, per
//!   CPU-second of the whole process;
//! - await-response round trip (publish a request, a responder answers, the waiter gets
//!   it), p50 / p99, on both buses.
//!
//! `SYNCHRO_BENCH_EVENTS` (default 100000; Kafka uses a fifth) scales it;
//! `SYNCHRO_BENCH_ROUNDS` (default 5) is how many rounds of each embedded event-step
//! figure it takes the median of.

use std::time::{Duration, Instant};

use synchro_bus::{Bus, CorrelationId, Message, StartFrom, Topics};
use synchro_roles::event_step::Runner;
use synchro_testkit::Harness;

/// What the step under test is given and granted.
struct Step<'a> {
    wasm: &'a std::path::Path,
    /// Lines appended to its manifest.
    grants: &'a str,
    payload: fn(u64) -> Vec<u8>,
}

/// 100 bytes of nothing in particular.
fn filler(_: u64) -> Vec<u8> {
    vec![b'x'; 100]
}

/// A JSON event of ~200 bytes, as a monitoring tool sends one.
fn json_event(i: u64) -> Vec<u8> {
    format!(
        r#"{{"id":"srv-{i:08}","hostname":"host-{i:08}.dc1.example.net","status":"active","rack":"r{}","vendor":"acme","model":"x9-2000","ts":1764102154190,"tags":["edge","prod"]}}"#,
        i % 40
    )
    .into_bytes()
}

/// Events handled in a second: of the clock, per CPU-second of the step's thread, and per
/// CPU-second of the whole process (the outbox's writer thread included).
#[derive(Clone, Copy)]
struct Rate {
    wall: f64,
    cpu: f64,
    process_cpu: f64,
}

/// How long a thread has been on a CPU: the first field of Linux's `schedstat` at `path`.
fn schedstat(path: &std::path::Path) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let nanos = stat.split_whitespace().next().and_then(|n| n.parse().ok());
    Duration::from_nanos(nanos.unwrap_or(0))
}

/// How long this thread has been on a CPU.
fn on_cpu() -> Duration {
    schedstat("/proc/thread-self/schedstat".as_ref())
}

/// How long the threads of this process have been on a CPU, of those alive now.
fn process_on_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    tasks
        .filter_map(Result::ok)
        .map(|task| schedstat(&task.path().join("schedstat")))
        .sum()
}

/// The median round of `rounds` by each measure, and the lowest and highest by the clock:
/// one round on this shared machine can be a fifth off the next.
struct Rounds {
    median: Rate,
    low: f64,
    high: f64,
}

impl Rounds {
    fn of(mut rounds: Vec<Rate>) -> Rounds {
        let median = |rounds: &mut Vec<Rate>, by: fn(&Rate) -> f64| {
            rounds.sort_by(|a, b| by(a).total_cmp(&by(b)));
            by(&rounds[rounds.len() / 2])
        };
        let median = Rate {
            cpu: median(&mut rounds, |r| r.cpu),
            process_cpu: median(&mut rounds, |r| r.process_cpu),
            wall: median(&mut rounds, |r| r.wall),
        };
        Rounds {
            median,
            low: rounds[0].wall,
            high: rounds[rounds.len() - 1].wall,
        }
    }
}

impl std::fmt::Display for Rounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} events/s (median; {:.0} - {:.0}); {:.0} per CPU-second of its thread, {:.0} of the process",
            self.median.wall, self.low, self.high, self.median.cpu, self.median.process_cpu
        )
    }
}

async fn fill(
    bus: &Bus,
    topic: &str,
    count: u64,
    payload: fn(u64) -> Vec<u8>,
) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let bus = bus.clone();
        let message = Message::new(topic, payload(i)).with_key(format!("k{}", i % 16));
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

/// Events through the event step in a second, with every change it emitted durable: of
/// the clock, and of the step's thread's time on a CPU — what it costs, whatever else
/// this shared machine runs meanwhile. And through the bus alone.
async fn throughput(bus: &Bus, step: &Step<'_>, count: u64) -> anyhow::Result<(Rate, f64)> {
    let harness = Harness::new(bus);
    let manifest = install(&harness, step)?;
    let plugin = harness.load(&manifest).await?;
    fill(bus, "bench", count, step.payload).await?;

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

    let runner = Runner::new(
        Harness::deploy(plugin),
        harness.engine.clone(),
        harness.services.clone(),
    );
    let deployment = runner.deployment().clone();
    let processed = || deployment.status.counters.values().processed;
    // A step that emits is done when its changes are durable.
    let emits = !step.grants.is_empty();
    let db = harness.services.db.clone();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let (cpu, process_cpu) = (on_cpu(), process_on_cpu());
    let task = tokio::spawn(runner.run(shutdown));
    while processed() < count || (emits && db.last_change() < count) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let through_wasm = Rate {
        wall: count as f64 / started.elapsed().as_secs_f64(),
        cpu: count as f64 / (on_cpu() - cpu).as_secs_f64(),
        process_cpu: count as f64 / (process_on_cpu() - process_cpu).as_secs_f64(),
    };
    stop.send(true)?;
    task.await?;
    Ok((through_wasm, bus_only))
}

/// Installs `step` in the harness's plugin directory as `bench`, consuming the topic
/// `bench` from its start; answers its manifest.
fn install(harness: &Harness, step: &Step<'_>) -> anyhow::Result<std::path::PathBuf> {
    std::fs::copy(step.wasm, harness.config.plugin_dir.join("bench.wasm"))?;
    let manifest = harness.config.plugin_dir.join("bench.toml");
    std::fs::write(
        &manifest,
        format!(
            "name = \"bench\"\nversion = \"0\"\nroles = [\"event-step\"]\n[events]\ntopics = [\"bench\"]\nstart = \"earliest\"\n{}",
            step.grants
        ),
    )?;
    Ok(manifest)
}

/// Events through `step` in a second, started by the registry as `synchro run` starts
/// it, while the host's metrics are rendered every `scrape` as `GET /metrics` renders
/// them, or never. The step runs on the registry's own thread: the process's CPU time
/// holds what both cost.
/// Counted from when the step has loaded, so its compile is not in the figure.
async fn scraped(
    bus: &Bus,
    step: &Step<'_>,
    count: u64,
    scrape: Option<Duration>,
) -> anyhow::Result<Rate> {
    let harness = Harness::new(bus);
    install(&harness, step)?;
    fill(bus, "bench", count, step.payload).await?;
    let mut registry = harness.registry();
    registry.scan().await;
    let status = registry.deployment("bench")?.status.clone();
    let processed = || status.counters.values().processed;
    let (started, from) = (Instant::now(), processed());
    let (cpu, process_cpu) = (on_cpu(), process_on_cpu());
    let (mut scrapes, mut next_scrape, mut bytes) = (0u64, Instant::now(), 0);
    while processed() < count {
        if let Some(every) = scrape
            && Instant::now() >= next_scrape
        {
            bytes = std::hint::black_box(registry.metrics()).len();
            scrapes += 1;
            next_scrape += every;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let handled = (count - from) as f64;
    let rate = Rate {
        wall: handled / started.elapsed().as_secs_f64(),
        cpu: handled / (on_cpu() - cpu).as_secs_f64(),
        process_cpu: handled / (process_on_cpu() - process_cpu).as_secs_f64(),
    };
    registry.shutdown(Duration::from_secs(5)).await;
    if scrape.is_some() {
        anyhow::ensure!(scrapes > 0 && bytes > 0, "the metrics were never rendered");
    }
    Ok(rate)
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
    let rounds = synchro_testkit::env_u64("SYNCHRO_BENCH_ROUNDS", 5).max(1);
    let trivial_wasm = synchro_testkit::plugin("bench-event-step");
    let trivial = Step {
        wasm: &trivial_wasm,
        grants: "",
        payload: filler,
    };
    let emit_wasm = synchro_testkit::plugin("bench-emit");
    let emit = Step {
        wasm: &emit_wasm,
        grants: "[capabilities]\nemit = true\n",
        payload: json_event,
    };
    println!(
        "bus benchmark (RUST_BACKTRACE={})",
        std::env::var("RUST_BACKTRACE").unwrap_or_else(|_| "unset".into())
    );
    let us = |d: Duration| d.as_secs_f64() * 1e6;

    let one_core = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Rounds alternate between the two steps, each in a fresh harness, so that a slow
    // spell of this shared machine falls on both.
    let (mut trivial_rounds, mut emit_rounds, mut bus_rate) = (Vec::new(), Vec::new(), 0.0);
    for _ in 0..rounds {
        let (rate, bus_alone) = one_core.block_on(throughput(&Bus::embedded(), &trivial, count))?;
        trivial_rounds.push(rate);
        bus_rate = bus_alone;
        emit_rounds.push(
            one_core
                .block_on(throughput(&Bus::embedded(), &emit, count))?
                .0,
        );
    }
    let (trivial_median, emit_median) = (Rounds::of(trivial_rounds), Rounds::of(emit_rounds));
    println!(
        "  embedded, one core: event step {trivial_median}; bus alone (consume+commit) {bus_rate:.0} events/s ({count} events, {rounds} rounds)"
    );
    println!(
        "  embedded, one core: event step parsing JSON + emit-change, durable in the outbox: {emit_median}; {:.2}x the trivial step",
        emit_median.median.cpu / trivial_median.median.cpu
    );
    // What metrics cost the step: the host's metrics rendered every 10 ms — 1 500 times
    // as often as Prometheus's default scrape interval (15 s) — against never, alternated.
    let every = Duration::from_millis(10);
    let (mut quiet, mut watched) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        quiet.push(one_core.block_on(scraped(&Bus::embedded(), &trivial, count, None))?);
        watched.push(one_core.block_on(scraped(&Bus::embedded(), &trivial, count, Some(every)))?);
    }
    let (quiet, watched) = (Rounds::of(quiet), Rounds::of(watched));
    // The registry runs the step on a thread of its own, so only the process's CPU time
    // holds both the step and the scrapes.
    let line = |r: &Rounds| {
        format!(
            "{:.0} events/s (median; {:.0} - {:.0}), {:.0} per CPU-second of the process",
            r.median.wall, r.low, r.high, r.median.process_cpu
        )
    };
    println!(
        "  embedded, the step on the registry's thread: metrics never rendered: {}",
        line(&quiet)
    );
    println!(
        "  embedded, the step on the registry's thread: metrics rendered every {every:?}: {}; {:.3}x per CPU-second of the process, {:.3}x by the clock",
        line(&watched),
        watched.median.process_cpu / quiet.median.process_cpu,
        watched.median.wall / quiet.median.wall
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
        &trivial,
        kafka_count,
    ))?;
    println!(
        "  kafka (tansu, loopback): event step {:.0} events/s; bus alone {:.0} events/s ({kafka_count} events)",
        wasm_rate.wall, bus_rate
    );
    let (p50, p99) = runtime.block_on(round_trips(&synchro_testkit::broker::kafka_bus(), 300))?;
    println!(
        "  kafka await-response round trip: p50 {:.2} ms, p99 {:.2} ms",
        us(p50) / 1e3,
        us(p99) / 1e3
    );
    Ok(())
}
