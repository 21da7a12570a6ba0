//! Change feed fan-out: `cargo bench -p synchro-testkit --bench feed` (or `./dev bench`).
//!
//! The real `synchro run` with the http-inventory collector changing 1 000 entities every
//! 100 ms (about 10 000 changes a second), read through `GET /v1/changes` (Server-Sent
//! Events) by 1 subscriber, then by 100, for `SYNCHRO_BENCH_SECONDS` (default 10) each.
//! Per run: changes committed per second, changes delivered per second (all subscribers
//! together, and per subscriber), and the p99 lag from a change's timestamp (set when
//! its collect's changes are written) to its arrival at a subscriber. The single
//! subscriber is the peer: what 100 cost over one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use synchro_testkit::{Setup, Source, env_u64};

const SERVERS: usize = 1000;

fn inventory(round: usize) -> String {
    let servers: Vec<serde_json::Value> = (0..SERVERS)
        .map(|i| serde_json::json!({"id": format!("srv-{i}"), "hostname": format!("h-{round}")}))
        .collect();
    serde_json::json!({ "servers": servers }).to_string()
}

/// What one subscriber saw: changes, and each one's lag in ms.
struct Seen {
    changes: u64,
    lags: Vec<u64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn subscribe(base: String, token: String, until: Instant) -> Seen {
    let mut response = reqwest::Client::new()
        .get(format!("{base}/v1/changes"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut seen = Seen {
        changes: 0,
        lags: Vec::new(),
    };
    let mut buffer = String::new();
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout(
        until.saturating_duration_since(Instant::now()),
        response.chunk(),
    )
    .await
    {
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) {
                seen.changes += 1;
                seen.lags.push(now_ms().saturating_sub(timestamp(data)));
            }
        }
    }
    seen
}

/// The `timestamp` of a change's JSON, found without parsing the rest: the clients
/// share the host's two cores, and parsing 300 000 changes a second would measure them.
fn timestamp(change: &str) -> u64 {
    let at = change.find("\"timestamp\":").expect("a timestamp") + "\"timestamp\":".len();
    let digits: String = change[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("a timestamp in ms")
}

struct Run {
    committed_per_second: f64,
    delivered_per_second: f64,
    per_subscriber: f64,
    p99_lag_ms: u64,
}

fn run(setup: &Setup, subscribers: usize, seconds: u64) -> Run {
    let data = setup.dir.path().join("data");
    let base = format!(
        "http://{}",
        std::fs::read_to_string(data.join("admin.addr"))
            .unwrap()
            .trim()
    );
    let token = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let last_change = || setup.status().outbox.last;
    let before = last_change();
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let seen: Vec<Seen> = runtime.block_on(async {
        let tasks: Vec<_> = (0..subscribers)
            .map(|_| tokio::spawn(subscribe(base.clone(), token.clone(), until)))
            .collect();
        let mut seen = Vec::new();
        for task in tasks {
            seen.push(task.await.unwrap());
        }
        seen
    });
    let elapsed = started.elapsed().as_secs_f64();
    let committed = last_change() - before;
    let delivered: u64 = seen.iter().map(|s| s.changes).sum();
    let mut lags: Vec<u64> = seen.into_iter().flat_map(|s| s.lags).collect();
    lags.sort_unstable();
    let p99_lag_ms = lags
        .get(lags.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or(0);
    Run {
        committed_per_second: committed as f64 / elapsed,
        delivered_per_second: delivered as f64 / elapsed,
        per_subscriber: delivered as f64 / elapsed / subscribers as f64,
        p99_lag_ms,
    }
}

fn main() {
    let seconds = env_u64("SYNCHRO_BENCH_SECONDS", 10);
    let source = Source::start(&inventory(0));
    let setup = Setup::new();
    std::fs::write(
        setup.config(),
        "data-dir = \"data\"\nplugin-dir = \"plugins\"\n[admin]\nmax-connections = 256\n",
    )
    .unwrap();
    setup.inventory_collector("inv", &source, "100ms", "");
    let host = setup.run_with(&["--kinds", "none"]);
    host.wait_for_log("admin API listening", Duration::from_secs(30));
    let flipping = Arc::new(AtomicBool::new(true));
    let flipper = {
        let (source, flipping) = (source.clone(), flipping.clone());
        std::thread::spawn(move || {
            let mut round = 1;
            while flipping.load(Ordering::Relaxed) {
                source.set(200, &inventory(round));
                round += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let one = run(&setup, 1, seconds);
    let hundred = run(&setup, 100, seconds);
    flipping.store(false, Ordering::Relaxed);
    flipper.join().unwrap();
    drop(host);
    println!("change feed (SSE) fan-out, {seconds}s per run; peer: one subscriber");
    for (name, r) in [("1 subscriber", &one), ("100 subscribers", &hundred)] {
        println!(
            "{name:<16} committed {:>7.0}/s  delivered {:>8.0}/s  per subscriber {:>7.0}/s ({:.2}× the peer's)  p99 lag {:>5} ms",
            r.committed_per_second,
            r.delivered_per_second,
            r.per_subscriber,
            r.per_subscriber / one.per_subscriber,
            r.p99_lag_ms
        );
    }
}
