//! {name}: a collector. The host calls `collect` on the manifest's `[schedule]`, diffs
//! the snapshot against the previous one and announces only what changed (CREATE,
//! UPDATE, DELETE).
//!
//! Replace the generated items with what your outside system has: fetch it with
//! `synchro_guest::http::get_json(&config::require("url")?)` once the manifest grants
//! `poll = { hosts = ["https://..."] }`.

use serde_json::json;
use synchro_guest::{
    Collector, Completeness, Error, ErrorCode, Snapshot, config, error, log, vertex,
};

struct Plugin;

impl Collector for Plugin {
    fn collect(snapshot: &mut Snapshot) -> Result<Completeness, Error> {
        let items: u32 = config::require("items")?
            .parse()
            .map_err(|e| error(ErrorCode::InvalidInput, format!("setting `items`: {e}")))?;
        for i in 1..=items {
            snapshot.add(vertex(
                format!("item-{i}"),
                "example",
                json!({ "name": format!("item {i}"), "source": "{name}" }),
            ))?;
        }
        log::debug(&format!("collected {items} items"));
        // Complete: an item missing from the next snapshot is deleted. Say `Partial` for
        // a sample that does not cover everything.
        Ok(Completeness::Complete)
    }
}

synchro_guest::export_collector!(Plugin);
