//! The one error that crosses the host's boundaries: to a plugin (as the WIT
//! `error-code`), to an HTTP client (as a status), to logs and counters (as a label).
//!
//! Each boundary maps the [`ErrorKind`] once, here or beside its bindings, so the same
//! failure is named the same way everywhere: a broker that is down is `unavailable` to the
//! plugin that published, 503 to an HTTP client and `unavailable` in the log — never
//! `invalid-input`, which would blame the caller.

use std::fmt;

/// Whose fault a failure is, and whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The grants do not allow it.
    Denied,
    /// It did not finish in time; trying again may work.
    TimedOut,
    /// The caller's input is wrong: trying again with the same input fails again.
    InvalidInput,
    /// What the caller named does not exist.
    NotFound,
    /// The state of the thing asked about does not allow it now (a release of a plugin
    /// that is not quarantined, a second wait on one correlation id).
    Conflict,
    /// A service the host depends on (a broker, an outside server) cannot be reached;
    /// trying again later may work. Not the caller's fault.
    Unavailable,
    /// The host itself failed.
    Failed,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Denied,
        ErrorKind::TimedOut,
        ErrorKind::InvalidInput,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Unavailable,
        ErrorKind::Failed,
    ];

    /// The kind whose [`ErrorKind::label`] is `label`.
    pub fn from_label(label: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.label() == label)
    }

    /// The name in logs, metrics and the admin API; the WIT `error-code` names, plus
    /// `conflict`.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Denied => "denied",
            ErrorKind::TimedOut => "timed-out",
            ErrorKind::InvalidInput => "invalid-input",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Failed => "failed",
        }
    }

    /// The HTTP status an API answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidInput => 400,
            ErrorKind::Denied => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Failed => 500,
            ErrorKind::Unavailable => 503,
            ErrorKind::TimedOut => 504,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A failure at a boundary: its kind and a message that names what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_label() {
        let all = ErrorKind::ALL;
        let labels: std::collections::HashSet<_> = all.iter().map(|k| k.label()).collect();
        assert_eq!(labels.len(), all.len());
        for kind in all {
            assert_eq!(ErrorKind::from_label(kind.label()), Some(kind));
        }
        assert_eq!(ErrorKind::Unavailable.http_status(), 503);
    }
}
