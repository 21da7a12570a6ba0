//! Change feed fan-out: `cargo bench -p synchro-testkit --bench feed` (or `./dev bench`).
//!
//! The real `synchro run` with the http-inventory collector changing 1 000 entities every
//! 100 ms (about 10 000 changes a second), read through `GET /v1/changes` (Server-Sent
//! Events) by 1 subscriber, then by 100, for `SYNCHRO_BENCH_SECONDS` (default 10) each.
//! Per run: changes committed per second, changes delivered per second (all subscribers
//! together, and per subscriber), and the p99 lag from a change's timestamp (set when
//! its collect's changes are written) to its arrival at a subscriber (every 16th change
//! of each). The single subscriber is the peer: what 100 cost over one.

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

/// What one subscriber saw: changes, and the lag in ms of every [`SAMPLE`]th one.
struct Seen {
    changes: u64,
    lags: Vec<u64>,
}

/// One change in this many has its lag measured: the clients share the host's two
/// cores, and parsing 500 000 changes a second would measure them, not the host.
const SAMPLE: u64 = 16;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A subscriber as lean as a client can be: HTTP/1.1 written by hand on a socket, the
/// events counted by their `event: change` line, the bytes otherwise skipped.
async fn subscribe(address: String, token: String, until: Instant) -> Seen {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "GET /v1/changes HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let change = memchr::memmem::Finder::new(b"event: change\n");
    let end = memchr::memmem::FinderRev::new(b"\n\n");
    let mut seen = Seen {
        changes: 0,
        lags: Vec::new(),
    };
    let mut buffer = vec![0u8; 256 * 1024];
    let (mut filled, mut answered) = (0, false);
    while let Ok(Ok(read)) = tokio::time::timeout(
        until.saturating_duration_since(Instant::now()),
        socket.read(&mut buffer[filled..]),
    )
    .await
    {
        if read == 0 {
            break;
        }
        filled += read;
        if !answered {
            assert!(
                buffer.starts_with(b"HTTP/1.1 200"),
                "{:?}",
                String::from_utf8_lossy(&buffer[..filled])
            );
            answered = true;
        }
        // Whole events only; the rest waits for the next read.
        let Some(last) = end.rfind(&buffer[..filled]) else {
            assert!(filled < buffer.len(), "an event of 256 KiB");
            continue;
        };
        let events = &buffer[..last + 2];
        for at in change.find_iter(events) {
            seen.changes += 1;
            if seen.changes.is_multiple_of(SAMPLE) {
                seen.lags
                    .push(now_ms().saturating_sub(timestamp(&events[at..])));
            }
        }
        buffer.copy_within(last + 2..filled, 0);
        filled -= last + 2;
    }
    seen
}

/// The `timestamp` of the first change in `events`, found without parsing the rest.
fn timestamp(events: &[u8]) -> u64 {
    let key = b"\"timestamp\":";
    let at = memchr::memmem::find(events, key).expect("a timestamp") + key.len();
    events[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0, |n, digit| n * 10 + u64::from(digit - b'0'))
}

struct Run {
    committed_per_second: f64,
    delivered_per_second: f64,
    per_subscriber: f64,
    p99_lag_ms: u64,
}

fn run(setup: &Setup, subscribers: usize, seconds: u64) -> Run {
    let data = setup.dir.path().join("data");
    let address = std::fs::read_to_string(data.join("admin.addr"))
        .unwrap()
        .trim()
        .to_owned();
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
            .map(|_| tokio::spawn(subscribe(address.clone(), token.clone(), until)))
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
