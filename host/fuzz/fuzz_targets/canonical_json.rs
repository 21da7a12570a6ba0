//! Any text as an entity's properties: refused with an error, or canonicalised to a JSON
//! object that serde_json reads back and that is its own canonical form; and where
//! serde_json keeps every value exactly (no floats, no integers beyond 64 bits), its own
//! rendering of the document canonicalises to the same text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use synchro_model::Entity;

fn entity(properties: &str) -> Result<Entity, synchro_model::EntityError> {
    Entity::new("k".into(), "kind".into(), properties.to_owned(), None, None)
}

fuzz_target!(|text: &str| {
    let Ok(first) = entity(text) else {
        return;
    };
    let canonical = first.properties();
    let value: serde_json::Value =
        serde_json::from_str(canonical).expect("the canonical form is JSON");
    assert!(value.is_object(), "{canonical}");
    let again = entity(canonical).expect("the canonical form is accepted");
    assert_eq!(
        again.properties(),
        canonical,
        "canonicalising is idempotent"
    );
    // Whitespace and key order never matter: serde_json's rendering (sorted keys)
    // canonicalises to the same text whenever it kept every number.
    if !has_float(&value) {
        let rendered = serde_json::to_string(&value).expect("a value renders");
        let other = entity(&rendered).expect("serde_json's rendering is accepted");
        assert_eq!(other.properties(), canonical, "{text} -> {rendered}");
    }
});

/// Whether `value` holds a number serde_json keeps as a double (a fraction, an exponent,
/// an integer beyond 64 bits): possibly rounded.
fn has_float(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(items) => items.iter().any(has_float),
        serde_json::Value::Object(map) => map.values().any(has_float),
        _ => false,
    }
}
