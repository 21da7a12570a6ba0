//! Structured logs, attributed to the plugin by the host.

use crate::__bindings::synchro::plugin::log::{self as host, Level};

fn log(level: Level, message: &str) {
    host::log(level, message, &[]);
}

pub fn debug(message: &str) {
    log(Level::Debug, message)
}

pub fn info(message: &str) {
    log(Level::Info, message)
}

pub fn warn(message: &str) {
    log(Level::Warn, message)
}

pub fn error(message: &str) {
    log(Level::Error, message)
}
