//! Polls a JSON inventory over HTTP and maps it to a graph:
//!
//! ```json
//! { "servers": [ { "id": "srv-1", "hostname": "alpha", "status": "active" } ],
//!   "vms":     [ { "id": "vm-1", "name": "web", "server": "srv-1" } ] }
//! ```
//!
//! becomes `pserver` vertices, `vserver` vertices and one
//! `tosca.relationships.HostedOn` edge per VM from the VM to its server. Every field of an
//! item becomes a property, so any edit to the inventory shows as an UPDATE.

use serde_json::Value;
use synchro_guest::{
    Collector, Completeness, Error, ErrorCode, Snapshot, config, edge, error, http, vertex,
};

struct HttpInventory;

impl Collector for HttpInventory {
    fn collect(snapshot: &mut Snapshot) -> Result<Completeness, Error> {
        let url = config::require("url")?;
        let inventory = http::get_json(&url)?;
        for (index, server) in items(&inventory, "servers")?.iter().enumerate() {
            let id = id_of(server, "servers", index, "id")?;
            snapshot.add(vertex(id, "pserver", server.clone()))?;
        }
        for (index, vm) in items(&inventory, "vms")?.iter().enumerate() {
            let id = id_of(vm, "vms", index, "id")?;
            snapshot.add(vertex(id, "vserver", vm.clone()))?;
            if let Some(server) = vm.get("server").and_then(Value::as_str) {
                snapshot.add(edge(
                    format!("{id}/hosted-on"),
                    "tosca.relationships.HostedOn",
                    (id, "vserver"),
                    (server, "pserver"),
                    serde_json::json!({}),
                ))?;
            }
        }
        Ok(Completeness::Complete)
    }
}

/// The array under `field`; an absent field is an empty list, anything else an error.
fn items<'a>(inventory: &'a Value, field: &str) -> Result<&'a [Value], Error> {
    match inventory.get(field) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(error(
            ErrorCode::InvalidInput,
            format!("inventory field `{field}` is not an array"),
        )),
    }
}

fn id_of<'a>(item: &'a Value, list: &str, index: usize, field: &str) -> Result<&'a str, Error> {
    item.get(field).and_then(Value::as_str).ok_or_else(|| {
        error(
            ErrorCode::InvalidInput,
            format!("{list}[{index}] has no string `{field}`"),
        )
    })
}

synchro_guest::export_collector!(HttpInventory);
