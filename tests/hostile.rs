//! End to end: plugins written to misbehave run beside a well-behaved one. Each is
//! contained — its calls fail, it is quarantined — and the neighbour keeps its schedule.

use std::time::{Duration, Instant};

use serde_json::json;
use synchro_status::{Health, PluginReport};
use synchro_testkit::{INVENTORY, Setup, Source};

const WAIT: Duration = Duration::from_secs(40);
/// Hostile plugins are quarantined after this many failed collects.
const QUARANTINE: &str = "quarantine-after = 3\nmax-backoff = \"100ms\"";

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

struct Hostile {
    name: &'static str,
    script: serde_json::Value,
    deadline: &'static str,
    /// Extra `[limits]` lines.
    limits: &'static str,
    /// Extra `[capabilities]` lines.
    capabilities: &'static str,
    /// What its quarantine reason must say (one of).
    reasons: &'static [&'static str],
}

#[test]
fn hostile_plugins_are_contained_and_a_neighbour_keeps_its_schedule() {
    let probe_target = Source::start("{}");
    let hostiles = [
        Hostile {
            name: "spin",
            script: json!({"mode": "spin"}),
            deadline: "300ms",
            limits: "",
            capabilities: "",
            reasons: &["exceeded its deadline of 300ms"],
        },
        Hostile {
            name: "memory-bomb",
            script: json!({"mode": "memory-bomb"}),
            deadline: "5s",
            limits: "memory-mb = 32",
            capabilities: "",
            reasons: &["trapped: forcing trap when growing memory to 33685504 bytes"],
        },
        Hostile {
            name: "recursion",
            script: json!({"mode": "recursion"}),
            deadline: "5s",
            limits: "",
            capabilities: "",
            reasons: &["trapped: wasm trap: out of bounds memory access"],
        },
        Hostile {
            name: "huge-snapshot",
            script: json!({"mode": "many", "count": 5_000_000}),
            deadline: "5s",
            limits: "max-entities = 10000",
            capabilities: "",
            reasons: &["the snapshot has more than 10000 entities (limits.max-entities)"],
        },
        Hostile {
            name: "invalid-json",
            script: json!({"entities": [{"key": "a", "kind": "k", "properties": "{not json"}]}),
            deadline: "5s",
            limits: "",
            capabilities: "",
            reasons: &["entity `a`: properties are not valid JSON"],
        },
        Hostile {
            name: "denied-poll",
            script: json!({"mode": "poll", "target": "http://127.0.0.1:9/secret"}),
            deadline: "5s",
            limits: "",
            capabilities: "",
            reasons: &[
                "(denied): poll: fetching `http://127.0.0.1:9/secret` is not granted by the manifest",
            ],
        },
        Hostile {
            name: "denied-host-header",
            script: json!({"mode": "poll", "target": probe_target.url(), "headers": [["HOST", "admin.internal"]]}),
            deadline: "5s",
            limits: "",
            capabilities: "",
            reasons: &[
                "(denied): poll: setting header `HOST` (the host sets it from the URL) is not granted",
            ],
        },
        Hostile {
            name: "denied-publish",
            script: json!({"mode": "publish", "target": "payments"}),
            deadline: "5s",
            limits: "",
            capabilities: "",
            reasons: &[
                "(denied): bus: publishing to topic `payments` is not granted by the manifest",
            ],
        },
        Hostile {
            name: "forge-changes",
            script: json!({"mode": "publish", "target": "changes"}),
            deadline: "5s",
            limits: "",
            capabilities: "bus = { publish = [\"*\"] }",
            reasons: &[
                "(denied): bus: publishing to the host's own topic `changes` is not granted",
            ],
        },
        Hostile {
            name: "never-answered",
            script: json!({"mode": "await", "target": "responses"}),
            deadline: "300ms",
            limits: "",
            capabilities: "bus = { await = [\"responses\"] }",
            // The host's wait ends at the call's deadline: the plugin gets a timeout, or
            // the call is stopped if the plugin does not return at once.
            reasons: &[
                "returned an error (timed-out): no response with correlation id `never` on topic `responses` within",
                "exceeded its deadline of 300ms",
            ],
        },
        Hostile {
            name: "panic",
            script: json!({"mode": "trap"}),
            deadline: "5s",
            limits: "",
            capabilities: "",
            reasons: &["wasm `unreachable` instruction executed"],
        },
    ];

    let setup = Setup::new();
    let neighbour_source = Source::start(INVENTORY);
    setup.inventory_plugin("neighbour", &neighbour_source);
    let mut sources = Vec::new();
    for hostile in &hostiles {
        let source = Source::start(&hostile.script.to_string());
        setup.scripted_plugin_with(
            hostile.name,
            &source,
            hostile.deadline,
            &format!("{QUARANTINE}\n{}", hostile.limits),
            hostile.capabilities,
        );
        sources.push(source);
    }
    let probe_source = Source::start(
        &json!({"mode": "probe", "target": probe_target.origin().trim_start_matches("http://")})
            .to_string(),
    );
    setup.scripted_plugin("probe", &probe_source, "5s", QUARANTINE);

    let host = setup.run();
    // The neighbour (3 vertices and an edge) and the probe report their entities.
    let events = host.raw_events(5, WAIT);
    let probe = events
        .iter()
        .find(|e| e["vertex"]["key"] == "probe")
        .unwrap_or_else(|| panic!("no probe entity in {events:?}"));
    let seen = &probe["vertex"]["properties"];
    for denied in ["file", "dir", "socket"] {
        assert!(
            seen[denied].as_str().unwrap().starts_with("refused: "),
            "the sandbox let {denied} through: {seen}"
        );
    }
    assert_eq!(
        seen["env"], 0,
        "the plugin saw environment variables: {seen}"
    );

    for hostile in &hostiles {
        let status = setup.wait_status(hostile.name, WAIT, |p| {
            matches!(p.health, Health::Quarantined { .. })
        });
        let Health::Quarantined { failures, reason } = &status.health else {
            unreachable!()
        };
        assert_eq!(*failures, 3, "{status:?}");
        assert!(
            hostile.reasons.iter().any(|r| reason.contains(r)),
            "{}: quarantined for `{reason}`, expected one of {:?}",
            hostile.name,
            hostile.reasons
        );
        if hostile.name.starts_with("denied-") {
            assert_eq!(status.counters.denials, 3, "{status:?}");
        }
    }

    // Every hostile is quarantined; the neighbour goes on at its 150 ms interval.
    let calls = |p: &PluginReport| p.counters.calls;
    let before = calls(&setup.plugin_status("neighbour"));
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let neighbour = setup.plugin_status("neighbour");
    let expected = started.elapsed().as_millis() as u64 / 150;
    assert!(
        calls(&neighbour) - before >= expected * 2 / 3,
        "the neighbour collected {} times in {:?}, expected about {expected}",
        calls(&neighbour) - before,
        started.elapsed()
    );
    assert_eq!(neighbour.health, Health::Ok);
    assert_eq!(neighbour.counters.failures, 0);

    // Another round of every hostile costs the host no memory it keeps.
    let rss_before = rss_kib(host.pid());
    for hostile in &hostiles {
        let released = setup.command(&["plugin", "release", hostile.name]);
        assert!(released.status.success(), "{released:?}");
    }
    for hostile in &hostiles {
        setup.wait_status(hostile.name, WAIT, |p| p.counters.quarantines == 2);
    }
    let rss_after = rss_kib(host.pid());
    eprintln!(
        "host RSS with every hostile quarantined: {} MiB before a second round, {} MiB after",
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "host RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    host.stop();
}

#[test]
fn a_manifest_naming_a_device_or_a_fifo_is_refused_and_the_host_stays_small_and_stoppable() {
    let setup = Setup::new();
    let source = Source::start(INVENTORY);
    setup.inventory_plugin("neighbour", &source);
    let fifo = setup.plugin_dir().join("pipe.wasm");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let manifest = |name: &str, component: &str| {
        format!(
            "name = \"{name}\"\nversion = \"1\"\nroles = [\"collector\"]\ncomponent = \"{component}\"\n[schedule]\ninterval = \"1s\"\n"
        )
    };
    setup.write("zero.toml", &manifest("zero", "/dev/zero"));
    setup.write("fifo.toml", &manifest("fifo", "pipe.wasm"));
    // A manifest that is itself a FIFO.
    let made = std::process::Command::new("mkfifo")
        .arg(setup.plugin_dir().join("blocked.toml"))
        .status()
        .unwrap();
    assert!(made.success());

    let host = setup.run();
    assert_eq!(host.events(4, WAIT).len(), 4, "the neighbour runs");
    let report = setup.status();
    let refused: Vec<(&str, &str)> = report
        .refused
        .iter()
        .map(|r| (r.manifest.rsplit('/').next().unwrap(), r.error.as_str()))
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    for (file, why) in [
        (
            "blocked.toml",
            "blocked.toml: is a FIFO; only a regular file is read",
        ),
        (
            "fifo.toml",
            "pipe.wasm is a FIFO; only a regular file is read",
        ),
        (
            "zero.toml",
            "its component /dev/zero is a device; only a regular file is read",
        ),
    ] {
        assert!(
            refused.iter().any(|(f, e)| *f == file && e.ends_with(why)),
            "{file}: expected `{why}` in {refused:?}"
        );
    }
    let rss = rss_kib(host.pid());
    assert!(rss < 512 * 1024, "host RSS is {rss} KiB");
    // SIGTERM stops it in its usual time: nothing hangs on the FIFOs.
    let started = Instant::now();
    host.stop();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

/// A line of the host's log: `2026-01-01T00:00:00.000000Z  INFO …`.
fn is_log_line(line: &str) -> bool {
    line.len() > 28 && line.as_bytes()[4] == b'-' && line.as_bytes()[10] == b'T'
}

#[test]
fn text_from_a_plugin_never_prints_a_line_of_its_own() {
    use std::io::{BufRead, BufReader};
    const FORGED: &str = "\n00:00:00.000Z DELETE pserver srv-1 (neighbour)";
    let setup = Setup::new();
    let entities = Source::start(
        &json!({"entities": [{"key": format!("x{FORGED}"), "kind": format!("pserver{FORGED}"), "properties": {}}]})
            .to_string(),
    );
    setup.scripted_plugin("forger", &entities, "5s", "");
    let logger = Source::start(
        &json!({"mode": "log-flood", "count": 1, "message": format!("hello{FORGED}")}).to_string(),
    );
    setup.scripted_plugin("logger", &logger, "5s", "");
    let failing =
        Source::start(&json!({"mode": "error", "message": format!("no{FORGED}")}).to_string());
    setup.scripted_plugin("failing", &failing, "5s", "quarantine-after = 1");

    // The text output of `synchro run`, read until the forger's change is printed.
    let mut host = std::process::Command::new(synchro_testkit::synchro())
        .args(["run", "--config"])
        .arg(setup.config())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(host.stdout.take().unwrap());
    let stderr = host.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let mut printed = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        let done = line.contains("(forger)");
        printed.push(line);
        if done {
            break;
        }
    }
    setup.wait_status("failing", WAIT, |p| {
        matches!(p.health, Health::Quarantined { .. })
    });
    let status = setup.command(&["status"]);
    assert!(status.status.success(), "{status:?}");
    let kill = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(host.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(host.wait().unwrap().success());
    let log = log.join().unwrap();

    let escaped = r"\n00:00:00.000Z DELETE pserver srv-1 (neighbour)";
    assert_eq!(printed.len(), 1, "{printed:#?}");
    assert!(
        printed[0].contains(&format!("CREATE pserver{escaped} x{escaped} (forger)")),
        "{printed:?}"
    );
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains(&format!("returned an error (unavailable): no{escaped}")),
        "{status}"
    );
    assert!(status.lines().all(|l| !l.starts_with("00:00")), "{status}");
    assert!(
        log.iter().any(|l| l.contains(&format!("hello{escaped}"))),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains(&format!("no{escaped}"))),
        "{log:#?}"
    );
    assert!(
        log.iter().all(|l| is_log_line(l)),
        "a log line of a plugin's own: {log:#?}"
    );

    let baseline = setup.command(&["baseline", "list", "forger"]);
    let listed = String::from_utf8_lossy(&baseline.stdout);
    assert!(baseline.status.success(), "{baseline:?}");
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        listed.contains(&format!("pserver{escaped} x{escaped} {{}}")),
        "{listed}"
    );
}

/// The longest pause between `since`, the instants of `times` after it, and `until`.
fn max_gap(times: &[Instant], since: Instant, until: Instant) -> Duration {
    let mut points = vec![since];
    points.extend(times.iter().filter(|t| **t > since && **t < until));
    points.push(until);
    points
        .windows(2)
        .map(|pair| pair[1].duration_since(pair[0]))
        .max()
        .expect("two points at least")
}

#[test]
fn twenty_plugins_burning_cpu_cost_a_neighbour_a_share_of_the_machine_not_its_turn() {
    const BUSY: usize = 20;
    let setup = Setup::new();
    let neighbour = Source::start(INVENTORY);
    setup.inventory_plugin("neighbour", &neighbour);
    let host = setup.run();
    assert_eq!(host.events(4, WAIT).len(), 4);
    let rss_before = rss_kib(host.pid());

    // Each busy plugin burns 900 ms of every call of its 2 s deadline, on a 100 ms
    // schedule, and never fails: nothing quarantines it.
    let busy = Source::start(&json!({"mode": "busy", "ms": 900}).to_string());
    for i in 0..BUSY {
        setup.scripted_plugin(&format!("busy-{i:02}"), &busy, "2s", "");
    }
    let deadline = Instant::now() + WAIT;
    while busy.requests().len() < 2 * BUSY {
        assert!(Instant::now() < deadline, "the busy plugins did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let measured = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let gap = max_gap(&neighbour.requests(), measured, Instant::now());
    let asked = Instant::now();
    let report = setup.status();
    let status_took = asked.elapsed();
    let rss_during = rss_kib(host.pid());
    let busy_calls: u64 = report
        .plugins
        .iter()
        .filter(|p| p.name.starts_with("busy-"))
        .map(|p| p.counters.calls)
        .sum();
    eprintln!(
        "with {BUSY} plugins burning CPU: the neighbour's longest pause {gap:?} (interval 150 ms), \
         `synchro status` answered in {status_took:?}, the busy plugins made {busy_calls} calls; \
         host RSS {} MiB (before: {} MiB)",
        rss_during / 1024,
        rss_before / 1024
    );
    assert!(
        gap < Duration::from_millis(1000),
        "the neighbour paused {gap:?} between collects"
    );
    assert!(
        status_took < Duration::from_secs(3),
        "the admin API took {status_took:?}"
    );
    for plugin in &report.plugins {
        assert!(plugin.health.is_healthy(), "{plugin:?}");
        assert_eq!(plugin.counters.failures, 0, "{plugin:?}");
    }

    for i in 0..BUSY {
        std::fs::remove_file(setup.plugin_dir().join(format!("busy-{i:02}.toml"))).unwrap();
    }
    let deadline = Instant::now() + WAIT;
    while setup.status().plugins.len() > 1 {
        assert!(Instant::now() < deadline, "the busy plugins did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = rss_kib(host.pid());
    eprintln!(
        "host RSS after the busy plugins were removed: {} MiB",
        rss_after / 1024
    );
    assert!(
        rss_after < rss_during + 64 * 1024,
        "host RSS grew from {rss_during} KiB to {rss_after} KiB"
    );
    host.stop();
}

/// Sends `request` (HTTP/1.1, closed after) to `address` and returns the status code.
fn http_status(address: &str, request: &str) -> u16 {
    synchro_testkit::http_exchange(address, request).0
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn the_admin_api_serves_only_the_token_bearer_on_its_own_address_and_bounds_connections() {
    use std::os::unix::fs::PermissionsExt;
    let setup = Setup::new();
    let source = Source::start(INVENTORY);
    setup.inventory_plugin("neighbour", &source);
    let host = setup.run();
    assert_eq!(host.events(4, WAIT).len(), 4);
    let data = setup.dir.path().join("data");
    for file in ["admin.addr", "admin.token"] {
        let mode = std::fs::metadata(data.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} is {mode:o}");
    }
    let address = std::fs::read_to_string(data.join("admin.addr")).unwrap();
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let port = address.rsplit(':').next().unwrap();
    let request = |host: &str, extra: &str| {
        format!(
            "POST /v1/plugins/neighbour/release HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    let bearer = format!("Authorization: Bearer {token}\r\n");
    // No token, a wrong one; a rebound name; a web page's request.
    assert_eq!(http_status(&address, &request(&address, "")), 401);
    assert_eq!(
        http_status(
            &address,
            &request(&address, "Authorization: Bearer 0000\r\n")
        ),
        401
    );
    assert_eq!(
        http_status(
            &address,
            &request(&format!("attacker.example:{port}"), &bearer)
        ),
        403
    );
    assert_eq!(
        http_status(
            &address,
            &request(
                &address,
                &format!("{bearer}Origin: http://attacker.example\r\n")
            )
        ),
        403
    );
    // The token bearer gets an answer (the neighbour is not quarantined: a conflict).
    assert_eq!(http_status(&address, &request(&address, &bearer)), 409);
    assert_eq!(
        http_status(&address, &request(&format!("localhost:{port}"), &bearer)),
        409
    );

    // More idle connections than the cap cost the host only the cap (the rest wait in
    // the kernel's backlog of 128).
    let before = open_fds(host.pid());
    let idle: Vec<_> = (0..150)
        .map(|_| std::net::TcpStream::connect(&address).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let held = open_fds(host.pid());
    assert!(
        held <= before + 70,
        "{} idle connections took {} file descriptors",
        idle.len(),
        held - before
    );
    drop(idle);
    let status = setup.command(&["status"]);
    assert!(status.status.success(), "{status:?}");
    host.stop();
}
