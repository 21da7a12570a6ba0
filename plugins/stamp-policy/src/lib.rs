//! A model policy in the shape of XOS's testservice policy: on `handle-create` and
//! `handle-update` it writes the entity back with `policy-runs` one higher and
//! `previous-v` (the `v` property of the entity as it last handled it, or null), so a
//! test sees how often it ran and what it was shown; on `handle-delete` it saves an
//! `audit` entity (kind from the setting `audit-kind`) recording the deletion.
//!
//! The setting `fail` names a key whose entities it fails (`failed`), so that the host's
//! retry and status can be watched.

use serde_json::{Map, Value, json};
use synchro_guest::{Entity, Error, ErrorCode, ModelPolicy, config, error, store, vertex};

struct StampPolicy;

fn properties(entity: &Entity) -> Result<Map<String, Value>, Error> {
    match serde_json::from_str(&entity.properties) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(error(
            ErrorCode::InvalidInput,
            format!(
                "{}/{}: properties are not a JSON object",
                entity.kind, entity.key
            ),
        )),
    }
}

fn check(entity: &Entity) -> Result<(), Error> {
    if config::get("fail").as_deref() == Some(entity.key.as_str()) {
        return Err(error(
            ErrorCode::Failed,
            format!("{} is refused by the policy's `fail` setting", entity.key),
        ));
    }
    Ok(())
}

fn stamp(mut entity: Entity, previous: Option<&Entity>) -> Result<(), Error> {
    check(&entity)?;
    let mut props = properties(&entity)?;
    let runs = props
        .get("policy-runs")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    props.insert("policy-runs".into(), json!(runs + 1));
    let previous_v = match previous {
        Some(previous) => properties(previous)?
            .get("v")
            .cloned()
            .unwrap_or(Value::Null),
        None => Value::Null,
    };
    props.insert("previous-v".into(), previous_v);
    entity.properties = Value::Object(props).to_string();
    store::save(&entity)
}

impl ModelPolicy for StampPolicy {
    fn handle_create(entity: Entity) -> Result<(), Error> {
        stamp(entity, None)
    }

    fn handle_update(entity: Entity, previous: Entity) -> Result<(), Error> {
        stamp(entity, Some(&previous))
    }

    fn handle_delete(entity: Entity) -> Result<(), Error> {
        check(&entity)?;
        let kind = config::get("audit-kind").unwrap_or_else(|| "audit".into());
        let key = format!("{}/{}", entity.kind, entity.key);
        store::save(&vertex(key, kind, json!({"deleted": entity.properties})))
    }
}

synchro_guest::export_model_policy!(StampPolicy);
