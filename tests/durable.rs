//! Nothing committed is lost: `synchro run` killed with SIGKILL at random moments (during
//! a collect, between a commit and its print) while a slow reader drains its stdout, and
//! stopped with SIGTERM in between, over a source that keeps changing. Replaying every line
//! it ever printed must give the source exactly; repeats are counted and reported.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use synchro_testkit::{Setup, Source};

/// Servers the source may hold.
const KEYS: usize = 1000;
/// Bytes the slow reader takes per read, and its pause after each (~160 KB/s: a round
/// changes several times more than that, so a backlog builds up between two kills).
const CHUNK: usize = 8 << 10;
const PAUSE: Duration = Duration::from_millis(50);

/// A small PRNG (xorshift): the seed is printed, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The source's servers: id → the object the collector reports.
type State = BTreeMap<String, Value>;

fn body(state: &State) -> String {
    serde_json::json!({ "servers": state.values().collect::<Vec<_>>(), "vms": [] }).to_string()
}

/// Changes up to half of the keys: creates, updates (with long values, so that the
/// output is large for the reader) and deletes.
fn mutate(state: &mut State, rng: &mut Rng, round: usize) {
    for _ in 0..KEYS / 2 {
        let id = format!("srv-{}", rng.below(KEYS as u64));
        if state.contains_key(&id) && rng.below(4) == 0 {
            state.remove(&id);
        } else {
            let hostname = format!(
                "{id}-r{round}-{}",
                "x".repeat(200 + rng.below(200) as usize)
            );
            state.insert(
                id.clone(),
                serde_json::json!({ "id": id, "hostname": hostname }),
            );
        }
    }
}

/// `synchro run --json`, its stdout read into a buffer, slowly if `slow`.
struct Run {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

fn run(setup: &Setup, log: &std::fs::File, slow: bool) -> Run {
    let mut child = Command::new(synchro_testkit::synchro())
        .args(["run", "--json", "--config"])
        .arg(setup.config())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log.try_clone().unwrap())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = out.clone();
    let reader = std::thread::spawn(move || {
        let mut chunk = vec![0; CHUNK];
        loop {
            match stdout.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => sink.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
            if slow {
                std::thread::sleep(PAUSE);
            }
        }
    });
    Run { child, out, reader }
}

impl Run {
    /// Ends the run (SIGKILL, or SIGTERM and a clean exit) and returns what it printed.
    fn end(mut self, kill: bool) -> Vec<u8> {
        let signal = if kill { "-KILL" } else { "-TERM" };
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "synchro did not stop on {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(kill || status.success(), "SIGTERM: {status}");
        self.reader.join().unwrap();
        std::mem::take(&mut *self.out.lock().unwrap())
    }

    fn printed(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }
}

/// What replaying the printed changes found.
#[derive(Default)]
struct Replay {
    state: State,
    seen: HashSet<String>,
    changes: usize,
    repeats: usize,
    /// Changes that only make sense if an earlier one was lost (an UPDATE or DELETE of a
    /// key not there, a CREATE of a key there).
    impossible: Vec<String>,
}

impl Replay {
    /// Applies the complete lines of `out` (a kill can cut the last one).
    fn apply(&mut self, out: &[u8]) {
        let complete = out.rsplit_once_newline();
        for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let event: Value = serde_json::from_slice(line)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)));
            self.changes += 1;
            let id = event["transaction-id"].as_str().unwrap().to_owned();
            if !self.seen.insert(id) {
                self.repeats += 1;
                continue;
            }
            let vertex = &event["vertex"];
            let key = vertex["key"].as_str().unwrap().to_owned();
            let operation = event["operation"].as_str().unwrap();
            let there = self.state.contains_key(&key);
            match (operation, there) {
                ("CREATE", false) | ("UPDATE", true) => {
                    self.state.insert(key, vertex["properties"].clone());
                }
                ("DELETE", true) => {
                    self.state.remove(&key);
                }
                _ => self.impossible.push(format!("{operation} {key}")),
            }
        }
    }
}

trait CompleteLines {
    fn rsplit_once_newline(&self) -> &[u8];
}

impl CompleteLines for [u8] {
    fn rsplit_once_newline(&self) -> &[u8] {
        match self.iter().rposition(|b| *b == b'\n') {
            Some(end) => &self[..=end],
            None => &[],
        }
    }
}

/// How many runs so far have started their admin API (they run their plugins then).
fn runs_up(setup: &Setup) -> usize {
    std::fs::read_to_string(setup.dir.path().join("synchro.log"))
        .unwrap()
        .matches("admin API listening")
        .count()
}

/// Waits until one more run than `before` is up.
fn wait_until_up(setup: &Setup, before: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while runs_up(setup) <= before {
        assert!(Instant::now() < deadline, "synchro never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killed_at_random_moments_with_a_slow_reader_it_loses_no_change() {
    let seed = std::env::var("SYNCHRO_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("SYNCHRO_TEST_SEED={seed}");
    let mut rng = Rng(seed);
    let rounds = synchro_testkit::env_u64("SYNCHRO_KILL_ROUNDS", 12) as usize;

    let mut state = State::new();
    mutate(&mut state, &mut rng, 0);
    let source = Source::start(&body(&state));
    let setup = Setup::new();
    setup.inventory_plugin("inv", &source);
    let log = std::fs::File::create(setup.dir.path().join("synchro.log")).unwrap();
    let mut replay = Replay::default();

    for round in 1..=rounds {
        let before = runs_up(&setup);
        let host = run(&setup, &log, true);
        // Changes while it runs: one at once, one after a while; then a stop at a random
        // moment (a collect, a commit, a print, or the reader's pipe full).
        mutate(&mut state, &mut rng, round);
        source.set(200, &body(&state));
        std::thread::sleep(Duration::from_millis(rng.below(800)));
        mutate(&mut state, &mut rng, round * 1000);
        source.set(200, &body(&state));
        std::thread::sleep(Duration::from_millis(rng.below(800)));
        let kill = round % 4 != 0;
        if !kill {
            // A SIGTERM before the process has its handler is the default disposition's.
            wait_until_up(&setup, before);
        }
        replay.apply(&host.end(kill));
    }

    // The last run, read at full speed, is left to finish: the printed state converges to
    // the source's.
    let before = runs_up(&setup);
    let host = run(&setup, &log, false);
    wait_until_up(&setup, before);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut probe = Replay {
            state: replay.state.clone(),
            seen: replay.seen.clone(),
            ..Replay::default()
        };
        probe.apply(&host.printed());
        if probe.state == state {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the printed changes never reached the source's state; log:\n{}",
            std::fs::read_to_string(setup.dir.path().join("synchro.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    replay.apply(&host.end(false));

    eprintln!(
        "{rounds} stops (SIGKILL, every fourth SIGTERM) with a slow reader: {} changes printed, {} repeats ({:.1} %)",
        replay.changes,
        replay.repeats,
        100.0 * replay.repeats as f64 / replay.changes.max(1) as f64
    );
    assert!(
        replay.impossible.is_empty(),
        "changes were lost: {:?}",
        replay.impossible
    );
    assert_eq!(
        replay.state, state,
        "replaying what was printed gives the source"
    );
}
