//! Structured logs, attributed to the plugin by the host.

use crate::__bindings::synchro::plugin::log::{self as host, Level};

fn log(level: Level, message: &str) {
    host::log(level, message, &[]);
}

/// Logs `message` at debug level (shown when the operator's `RUST_LOG` asks for it).
///
/// ```no_run
/// synchro_guest::log::debug("fetched 120 servers");
/// ```
pub fn debug(message: &str) {
    log(Level::Debug, message)
}

/// Logs `message` at info level.
pub fn info(message: &str) {
    log(Level::Info, message)
}

/// Logs `message` at warning level.
pub fn warn(message: &str) {
    log(Level::Warn, message)
}

/// Logs `message` at error level. An error a call returns is logged by the host already.
pub fn error(message: &str) {
    log(Level::Error, message)
}
