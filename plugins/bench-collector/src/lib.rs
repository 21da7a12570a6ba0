//! A collector for benchmarks. Settings: `count` entities, in `cycle` (see `data.rs`).

mod data;

use synchro_guest::{Collector, Completeness, Entity, Error, ErrorCode, Snapshot, config, error};

struct Bench;

fn setting(name: &str) -> Result<u64, Error> {
    config::require(name)?
        .parse()
        .map_err(|e| error(ErrorCode::InvalidInput, format!("setting `{name}`: {e}")))
}

impl Collector for Bench {
    fn collect(snapshot: &mut Snapshot) -> Result<Completeness, Error> {
        let count = setting("count")?;
        let cycle = setting("cycle")?;
        let mut properties = String::with_capacity(512);
        for i in 0..count {
            let (key, kind) = data::entity(i, cycle, &mut properties);
            snapshot.add(Entity {
                key,
                kind: kind.into(),
                properties: properties.clone(),
                schema_version: None,
                edge: None,
            })?;
        }
        Ok(Completeness::Complete)
    }
}

synchro_guest::export_collector!(Bench);
