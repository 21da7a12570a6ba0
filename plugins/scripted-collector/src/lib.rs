//! A collector for tests — well-behaved or hostile — driven by the JSON document at the
//! `url` setting:
//!
//! ```json
//! { "mode": "complete", "entities": [ { "key": "a", "kind": "k", "properties": {} } ] }
//! ```
//!
//! An entity with `"edge": {"source": {"kind": .., "key": ..}, "target": {..}}` is an edge.
//!
//! It adds the entities, then behaves as `mode` says:
//!
//! - `complete` / `partial`: succeed with that completeness;
//! - `error`: return an error (saying `message`, if given); `trap`: panic (a wasm trap);
//! - `spin`: loop forever (the host's deadline must stop it);
//! - `busy`: burn the CPU for `ms` milliseconds, then succeed (its neighbours must keep
//!   their schedules);
//! - `memory-bomb`: allocate until memory runs out (the host's memory cap must stop it);
//! - `recursion`: recurse without end (the stack limit must stop it);
//! - `many`: add `count` generated entities (the snapshot caps must stop it);
//! - `poll`: fetch the URL in `target` with `headers` (`[[name, value]]`): a denied
//!   origin, or a header that is the host's, must be refused;
//! - `publish`: publish to the topic in `target` (an ungranted topic must be refused);
//! - `await`: await a response on `target` that never comes, for `timeout-ms`;
//! - `log-flood`: log `count` lines of `size` bytes each (or `message`), then succeed;
//! - `print`: print `stdout` to stdout and `stderr` to stderr, `count` times (1 unless
//!   given), then succeed: the host's log must show them, attributed and bounded;
//! - `probe`: try to read a file, the environment and open a TCP socket to `target`, and
//!   report what happened as the properties of entity `probe` — the sandbox must have
//!   refused all three.
//! - `store`: run the `store` calls listed in `calls` — `["get", kind, key]`,
//!   `["save", kind, key, properties]`, `["delete", kind, key]` — and report each
//!   outcome as the properties of entity `store` (kind `probe`): other plugins' entities
//!   must be out of reach.
//!
//! Properties may be any JSON value, so tests can send invalid ones.

use serde_json::{Value, json};
use synchro_guest::{
    Collector, Completeness, EdgeEnds, Entity, EntityRef, Error, ErrorCode, Snapshot, bus, config,
    error, http, log, store,
};

struct Scripted;

fn entity(key: &str, kind: &str, properties: String) -> Entity {
    Entity {
        key: key.to_owned(),
        kind: kind.to_owned(),
        properties,
        schema_version: None,
        edge: None,
    }
}

impl Collector for Scripted {
    fn collect(snapshot: &mut Snapshot) -> Result<Completeness, Error> {
        let script = http::get_json(&config::require("url")?)?;
        for e in script["entities"].as_array().into_iter().flatten() {
            let text = |field: &str| e[field].as_str().unwrap_or_default().to_owned();
            let properties = match &e["properties"] {
                Value::String(raw) => raw.clone(),
                other => other.to_string(),
            };
            let mut added = entity(&text("key"), &text("kind"), properties);
            if let Some(ends) = e.get("edge") {
                let end = |which: &str| EntityRef {
                    key: ends[which]["key"].as_str().unwrap_or_default().to_owned(),
                    kind: ends[which]["kind"].as_str().unwrap_or_default().to_owned(),
                };
                added.edge = Some(EdgeEnds {
                    source: end("source"),
                    target: end("target"),
                });
            }
            snapshot.add(added)?;
        }
        let target = script["target"].as_str().unwrap_or_default();
        match script["mode"].as_str().unwrap_or("complete") {
            "complete" => Ok(Completeness::Complete),
            "partial" => Ok(Completeness::Partial),
            "error" => Err(error(
                ErrorCode::Unavailable,
                script["message"]
                    .as_str()
                    .unwrap_or("the script asked for an error"),
            )),
            "trap" => panic!("the script asked for a trap"),
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "busy" => {
                let busy = std::time::Duration::from_millis(script["ms"].as_u64().unwrap_or(0));
                let started = std::time::Instant::now();
                let mut n: u64 = 0;
                while started.elapsed() < busy {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
                Ok(Completeness::Complete)
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            "recursion" => Ok(if recurse(u64::MAX) == 0 {
                Completeness::Complete
            } else {
                Completeness::Partial
            }),
            "many" => {
                let count = script["count"].as_u64().unwrap_or(0);
                for i in 0..count {
                    snapshot.add(entity(&format!("e{i}"), "many", "{}".into()))?;
                }
                Ok(Completeness::Complete)
            }
            "poll" => {
                let headers = script["headers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| {
                        let text = |i: usize| h[i].as_str().unwrap_or_default().to_owned();
                        (text(0), text(1))
                    })
                    .collect();
                http::send(&http::Request {
                    method: "GET".into(),
                    url: target.into(),
                    headers,
                    body: None,
                    timeout_ms: None,
                })
                .map(|_| Completeness::Complete)
            }
            "publish" => bus::publish(target, None, b"{}", &[]).map(|()| Completeness::Complete),
            "await" => {
                let timeout = script["timeout-ms"].as_u64().unwrap_or(3_600_000) as u32;
                bus::await_response(target, "never", timeout).map(|_| Completeness::Complete)
            }
            "log-flood" => {
                let line = match script["message"].as_str() {
                    Some(message) => message.to_owned(),
                    None => format!(
                        "flood line {}",
                        "x".repeat(script["size"].as_u64().unwrap_or(0) as usize)
                    ),
                };
                for _ in 0..script["count"].as_u64().unwrap_or(0) {
                    log::warn(&line);
                }
                Ok(Completeness::Complete)
            }
            "print" => {
                for _ in 0..script["count"].as_u64().unwrap_or(1) {
                    if let Some(text) = script["stdout"].as_str() {
                        println!("{text}");
                    }
                    if let Some(text) = script["stderr"].as_str() {
                        eprintln!("{text}");
                    }
                }
                Ok(Completeness::Complete)
            }
            "probe" => {
                let report = json!({
                    "file": outcome(std::fs::read("/etc/passwd").map(|b| b.len())),
                    "dir": outcome(std::fs::read_dir(".").map(|d| d.count())),
                    "env": std::env::vars().count(),
                    "socket": outcome(std::net::TcpStream::connect(target).map(|_| "connected")),
                });
                snapshot.add(entity("probe", "probe", report.to_string()))?;
                Ok(Completeness::Complete)
            }
            "store" => {
                let results: Vec<String> = script["calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(store_call)
                    .collect();
                let report = json!({ "results": results });
                snapshot.add(entity("store", "probe", report.to_string()))?;
                Ok(Completeness::Complete)
            }
            other => Err(error(
                ErrorCode::InvalidInput,
                format!("unknown mode `{other}`"),
            )),
        }
    }
}

/// Runs one `store` call of the script; its outcome as text.
fn store_call(call: &Value) -> String {
    let arg = |i: usize| call[i].as_str().unwrap_or_default();
    let result = match arg(0) {
        "get" => store::get(arg(1), arg(2)).map(|found| match found {
            Some(e) => format!("found {}", e.properties),
            None => "absent".to_owned(),
        }),
        "save" => {
            store::save(&entity(arg(2), arg(1), call[3].to_string())).map(|()| "saved".into())
        }
        "delete" => store::delete(arg(1), arg(2)).map(|()| "deleted".into()),
        other => return format!("unknown store call `{other}`"),
    };
    result.unwrap_or_else(|e| format!("error {:?}: {}", e.code, e.message))
}

/// Recurses `depth` times, keeping a frame alive at each level.
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    let frame = std::hint::black_box([depth; 16]);
    // Indexing by the result keeps the call from being turned into a loop.
    frame[(recurse(depth - 1) % 16) as usize]
}

fn outcome<T: std::fmt::Debug>(result: std::io::Result<T>) -> String {
    match result {
        Ok(value) => format!("ok: {value:?}"),
        Err(e) => format!("refused: {e}"),
    }
}

synchro_guest::export_collector!(Scripted);
