//! A collector for tests, driven by the JSON document at the `url` setting:
//!
//! ```json
//! { "mode": "complete", "entities": [ { "key": "a", "kind": "k", "properties": {} } ] }
//! ```
//!
//! It adds the entities, then behaves as `mode` says: `complete` or `partial` succeed
//! with that completeness; `error` returns an error; `trap` panics (a wasm trap); `spin`
//! loops forever (the host's deadline must stop it). Properties may be any JSON value, so
//! tests can send invalid ones.

use serde_json::Value;
use synchro_guest::{
    Collector, Completeness, Entity, Error, ErrorCode, Snapshot, config, error, http,
};

struct Scripted;

impl Collector for Scripted {
    fn collect(snapshot: &mut Snapshot) -> Result<Completeness, Error> {
        let script = http::get_json(&config::require("url")?)?;
        for entity in script["entities"].as_array().into_iter().flatten() {
            let text = |field: &str| entity[field].as_str().unwrap_or_default().to_owned();
            snapshot.add(Entity {
                key: text("key"),
                kind: text("kind"),
                properties: match &entity["properties"] {
                    Value::String(raw) => raw.clone(),
                    other => other.to_string(),
                },
                schema_version: None,
                edge: None,
            })?;
        }
        match script["mode"].as_str().unwrap_or("complete") {
            "complete" => Ok(Completeness::Complete),
            "partial" => Ok(Completeness::Partial),
            "error" => Err(error(
                ErrorCode::Unavailable,
                "the script asked for an error",
            )),
            "trap" => panic!("the script asked for a trap"),
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            other => Err(error(
                ErrorCode::InvalidInput,
                format!("unknown mode `{other}`"),
            )),
        }
    }
}

synchro_guest::export_collector!(Scripted);
