//! End to end, the admin API's change feed (Server-Sent Events) as a client reads it: a
//! collector changes a thousand entities every 100 ms while a subscriber drops its
//! connection again and again and resumes with `Last-Event-ID` — every change once, in
//! order; filters; and bad requests, each refused by name.

use std::time::{Duration, Instant};

use synchro_testkit::{Setup, Source};

const WAIT: Duration = Duration::from_secs(30);

/// One Server-Sent Event: its id, event name and data.
#[derive(Debug, Clone, Default, PartialEq)]
struct Event {
    id: Option<u64>,
    event: String,
    data: String,
}

/// `GET /v1/changes{query}` of the host that runs in `setup`, with its token, and with
/// `Last-Event-ID: last` when given.
fn request(setup: &Setup, query: &str, last: Option<&str>) -> reqwest::RequestBuilder {
    let data = setup.dir.path().join("data");
    let address = std::fs::read_to_string(data.join("admin.addr")).unwrap();
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let request = reqwest::Client::new()
        .get(format!("http://{}/v1/changes{query}", address.trim()))
        .bearer_auth(token.trim());
    match last {
        Some(last) => request.header("Last-Event-ID", last),
        None => request,
    }
}

/// A subscription to `/v1/changes` of the host that runs in `setup`.
struct Feed {
    response: reqwest::Response,
    buffer: String,
}

impl Feed {
    /// Subscribes with `query`, resuming after `last` when given; the answer's status
    /// and body when it is not a stream.
    async fn open(setup: &Setup, query: &str, last: Option<u64>) -> Result<Feed, (u16, String)> {
        let last = last.map(|last| last.to_string());
        let response = request(setup, query, last.as_deref()).send().await.unwrap();
        if response.status() != 200 {
            let status = response.status().as_u16();
            return Err((status, response.text().await.unwrap()));
        }
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{:?}",
            response.headers()
        );
        Ok(Feed {
            response,
            buffer: String::new(),
        })
    }

    /// The next event (keep-alive comments skipped).
    async fn next(&mut self) -> Event {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event::default();
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id:") {
                        event.id = Some(id.trim().parse().unwrap());
                    } else if let Some(name) = line.strip_prefix("event:") {
                        event.event = name.trim().to_owned();
                    } else if let Some(data) = line.strip_prefix("data:") {
                        event.data.push_str(data.trim_start());
                    }
                }
                if event.event.is_empty() && event.data.is_empty() {
                    continue; // a keep-alive
                }
                return event;
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the feed does not end");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

fn inventory(servers: usize, round: usize) -> String {
    let servers: Vec<serde_json::Value> = (0..servers)
        .map(|i| serde_json::json!({"id": format!("srv-{i}"), "hostname": format!("h-{round}")}))
        .collect();
    serde_json::json!({ "servers": servers }).to_string()
}

/// Changes every entity of `source` (of `servers`) every 50 ms until dropped.
struct Flipper {
    flipping: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flipper {
    fn start(source: &Source, servers: usize) -> Flipper {
        let flipping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let thread = {
            let (source, flipping) = (source.clone(), flipping.clone());
            std::thread::spawn(move || {
                let mut round = 1;
                while flipping.load(std::sync::atomic::Ordering::Relaxed) {
                    source.set(200, &inventory(servers, round));
                    round += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Flipper {
            flipping,
            thread: Some(thread),
        }
    }
}

impl Drop for Flipper {
    fn drop(&mut self) {
        self.flipping
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Eight subscribers at once, each getting every change once and in order from where it
/// started — among them one that stops reading for 8 s (more than the sockets buffer), so that it falls behind what
/// the host shares among the subscribers that keep up and reads on from the outbox, and
/// comes back to the shared stream.
#[test]
fn subscribers_that_fall_behind_the_others_lose_nothing() {
    const SERVERS: usize = 1000;
    const WANTED: u64 = 30_000;
    let source = Source::start(&inventory(SERVERS, 0));
    let setup = Setup::new();
    setup.inventory_collector("inv", &source, "100ms", "");
    let host = setup.run_logging("info,synchro_supervisor::feed=debug", &[]);
    host.wait_for_log("admin API listening", WAIT);
    let flipper = Flipper::start(&source, SERVERS);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let setup = std::sync::Arc::new(setup);
    let counts = runtime.block_on(async {
        let readers: Vec<_> = (0..8)
            .map(|reader| {
                let setup = setup.clone();
                tokio::spawn(async move {
                    let mut feed = Feed::open(&setup, "", None).await.unwrap();
                    let mut last = feed.next().await.id.unwrap();
                    for seen in 1..WANTED {
                        let id = feed.next().await.id.unwrap();
                        assert_eq!(id, last + 1, "subscriber {reader} after {seen} changes");
                        last = id;
                        if reader == 0 && seen == 1_000 {
                            tokio::time::sleep(Duration::from_secs(8)).await;
                        }
                    }
                    WANTED
                })
            })
            .collect();
        let mut counts = Vec::new();
        for reader in readers {
            counts.push(reader.await.unwrap());
        }
        counts
    });
    drop(flipper);
    assert_eq!(counts, [WANTED; 8]);
    host.wait_for_log("a subscriber fell behind the shared feed", WAIT);
    host.stop();
}

/// Under a stream of over 10 000 changes a second (1 200 entities changed every 100 ms:
/// a collect takes part of its interval, so 1 000 made ~9 000), a subscriber that drops
/// its connection at random points and resumes with the last id it read gets every
/// change exactly once, in order.
#[test]
fn a_subscriber_resumes_with_last_event_id_without_gap_or_duplicate() {
    const SERVERS: usize = 1200;
    const WANTED: u64 = 30_000;
    let source = Source::start(&inventory(SERVERS, 0));
    let setup = Setup::new();
    setup.inventory_collector("inv", &source, "100ms", "");
    let host = setup.run();
    host.wait_for_log("admin API listening", WAIT);
    let flipper = Flipper::start(&source, SERVERS);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (seen, reconnects, elapsed) = runtime.block_on(async {
        let mut feed = Feed::open(&setup, "", None).await.unwrap();
        let first = feed.next().await;
        let started = Instant::now();
        let mut last = first.id.unwrap();
        let mut seen = 1u64;
        let mut reconnects = 0;
        let mut cut_after = 1_234u64;
        let mut since_cut = 0;
        while seen < WANTED {
            let event = feed.next().await;
            assert_eq!(event.event, "change", "{event:?}");
            let id = event.id.unwrap();
            assert_eq!(
                id,
                last + 1,
                "after {seen} changes and {reconnects} reconnects"
            );
            let change: serde_json::Value = serde_json::from_str(&event.data).unwrap();
            assert!(change["operation"].is_string(), "{change}");
            last = id;
            seen += 1;
            since_cut += 1;
            if since_cut == cut_after {
                since_cut = 0;
                // Gone mid-stream, with whatever was in flight; back after the last read.
                drop(feed);
                feed = Feed::open(&setup, "", Some(last)).await.unwrap();
                reconnects += 1;
                cut_after = cut_after * 7 % 3_001 + 500;
            }
        }
        (seen, reconnects, started.elapsed())
    });
    drop(flipper);
    assert!(reconnects >= 10, "{reconnects}");
    eprintln!(
        "{seen} changes over {reconnects} reconnects in {elapsed:?} ({:.0}/s)",
        seen as f64 / elapsed.as_secs_f64()
    );
    host.stop();
}

/// Filters by kind, operation and plugin; a past position resumes from there; bad
/// parameters and positions are refused by name; a position whose changes were dropped
/// is refused, saying what is kept, and one within the `feed-window` resumes after every
/// reader passed it and the outbox was trimmed. Health and readiness answer.
#[test]
fn filters_positions_and_bad_requests() {
    let source = Source::start(synchro_testkit::INVENTORY);
    let setup = Setup::new();
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(setup.config(), config + "feed-window = 2\n").unwrap();
    setup.inventory_plugin("inv", &source);
    let host = setup.run();
    host.events(4, WAIT);
    for (path, says) in [
        ("/v1/health", r#""live":true"#),
        ("/v1/ready", r#""ready":true"#),
    ] {
        let (status, body) = setup.admin_request("GET", path, None);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains(says), "{path}: {body}");
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // From the start: the four creates, by sequence number.
        let mut all = Feed::open(&setup, "?after=0", None).await.unwrap();
        for id in 1..=4 {
            assert_eq!(all.next().await.id, Some(id));
        }
        let mut deletes = Feed::open(&setup, "?operation=delete&kind=vserver,pserver", None)
            .await
            .unwrap();
        let mut elsewhere = Feed::open(&setup, "?plugin=someone-else", None)
            .await
            .unwrap();
        source.set(
            200,
            r#"{ "servers": [ { "id": "srv-1", "hostname": "alpha-2" }, { "id": "srv-2", "hostname": "beta" } ] }"#,
        );
        let event = deletes.next().await;
        let change: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(
            (change["operation"].as_str(), change["vertex"]["key"].as_str()),
            (Some("DELETE"), Some("vm-1")),
            "the UPDATE of srv-1 and the edge's DELETE are filtered out: {change}"
        );
        assert_eq!(all.next().await.id, Some(5));
        assert!(
            tokio::time::timeout(Duration::from_millis(500), elsewhere.next())
                .await
                .is_err(),
            "no change of that plugin"
        );

        for (query, last_id, message) in [
            ("?operation=MERGE", None, "parameter `operation`: `MERGE` is not an operation"),
            ("?after=x", None, "after"),
            ("?kinds=pserver", None, "unknown field `kinds`"),
            ("?after=1000000", None, "change 1000000 is past this host's last"),
            ("", Some("abc"), "header `Last-Event-ID`"),
        ] {
            let answer = request(&setup, query, last_id).send().await.unwrap();
            assert_eq!(answer.status(), 400, "{query}");
            let body = answer.text().await.unwrap();
            assert!(body.contains(message), "{query}: {body}");
        }
        let address = std::fs::read_to_string(setup.dir.path().join("data/admin.addr")).unwrap();
        let anonymous = reqwest::get(format!("http://{}/v1/changes", address.trim()))
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "the token is needed");

        // Once every reader has passed them, the changes before the window (the last 2)
        // are dropped: a position before them is refused, naming the oldest kept...
        drop(all);
        let deadline = Instant::now() + WAIT;
        let oldest: u64 = loop {
            match Feed::open(&setup, "?after=0", None).await {
                Err((409, body)) => {
                    let said = "the changes after 0 are no longer kept (the oldest kept is ";
                    let oldest = body
                        .split_once(said)
                        .and_then(|(_, rest)| rest.split_once(')'))
                        .unwrap_or_else(|| panic!("{body}"))
                        .0;
                    break oldest.parse().unwrap();
                }
                Ok(_) => {}
                Err(other) => panic!("{other:?}"),
            }
            assert!(Instant::now() < deadline, "the outbox was never trimmed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // ... and a subscriber that was gone since the one before resumes with the last
        // two, though nothing else holds them.
        let mut back = Feed::open(&setup, "", Some(oldest - 1)).await.unwrap();
        assert_eq!(back.next().await.id, Some(oldest));
        assert_eq!(back.next().await.id, Some(oldest + 1));
        let (status, metrics) = setup.admin_request("GET", "/metrics", None);
        assert_eq!(status, 200);
        assert!(
            metrics.contains(&format!("synchro_outbox_last_change {}", oldest + 1)),
            "the window is the last two: {metrics}"
        );
    });
    host.stop();
}
