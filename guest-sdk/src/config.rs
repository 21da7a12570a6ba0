//! The plugin's settings, from the `[settings]` table of its manifest.

use crate::__bindings::synchro::plugin::config;
use crate::{Error, ErrorCode, error};

/// The setting `name`: strings as they are, other values as JSON text.
pub fn get(name: &str) -> Option<String> {
    config::get(name)
}

/// The setting `name`, or an `invalid-input` error naming it when it is missing.
///
/// ```no_run
/// // `[settings] url = "https://inventory.example/servers"` in the manifest.
/// let url = synchro_guest::config::require("url")?;
/// # Ok::<(), synchro_guest::Error>(())
/// ```
pub fn require(name: &str) -> Result<String, Error> {
    get(name).ok_or_else(|| {
        error(
            ErrorCode::InvalidInput,
            format!("setting `{name}` is missing from the manifest"),
        )
    })
}

/// All settings as one JSON object.
pub fn all() -> serde_json::Value {
    serde_json::from_str(&config::all()).unwrap_or_default()
}
