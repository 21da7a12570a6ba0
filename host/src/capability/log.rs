//! `log`: structured logging, attributed to the plugin. Always granted; a plugin that
//! logs more than a bounded number of lines per call has the rest dropped and counted.

use super::{CallContext, parse_entry};
use crate::manifest::{Manifest, ManifestError};
pub(super) use crate::runtime::bindings::synchro::plugin::log as wit;

/// Default cap on lines per call.
const LINES_PER_CALL: u32 = 100;

pub struct Grant {
    lines_per_call: u32,
}

impl super::Grant for Grant {
    /// `log = { lines-per-call = 500 }` raises the cap.
    fn parse(manifest: &Manifest, entry: Option<&toml::Value>) -> Result<Self, ManifestError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        struct Raw {
            lines_per_call: u32,
        }
        Ok(Grant {
            lines_per_call: match entry {
                Some(e) => parse_entry::<Raw>(manifest, "log", e)?.lines_per_call,
                None => LINES_PER_CALL,
            },
        })
    }

    fn describe(&self) -> Option<String> {
        Some(format!("up to {} lines per call", self.lines_per_call))
    }
}

pub struct Capability {
    call: CallContext,
    lines: u32,
}

impl Capability {
    pub fn new(call: &CallContext) -> Capability {
        Capability {
            call: call.clone(),
            lines: 0,
        }
    }
}

impl Drop for Capability {
    fn drop(&mut self) {
        let dropped = self
            .lines
            .saturating_sub(self.call.grants.log.lines_per_call);
        if dropped > 0 {
            tracing::warn!(plugin = %self.call.plugin, dropped, "log lines over the per-call cap were dropped");
        }
    }
}

impl wit::Host for Capability {
    async fn log(&mut self, level: wit::Level, message: String, fields: Vec<(String, String)>) {
        self.lines = self.lines.saturating_add(1);
        if self.lines > self.call.grants.log.lines_per_call {
            return;
        }
        let plugin = &*self.call.plugin;
        let fields = FieldList(&fields);
        match level {
            wit::Level::Trace => tracing::trace!(target: "plugin", plugin, %fields, "{message}"),
            wit::Level::Debug => tracing::debug!(target: "plugin", plugin, %fields, "{message}"),
            wit::Level::Info => tracing::info!(target: "plugin", plugin, %fields, "{message}"),
            wit::Level::Warn => tracing::warn!(target: "plugin", plugin, %fields, "{message}"),
            wit::Level::Error => tracing::error!(target: "plugin", plugin, %fields, "{message}"),
        }
    }
}

struct FieldList<'a>(&'a [(String, String)]);

impl std::fmt::Display for FieldList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            write!(f, "{}{k}={v:?}", if i == 0 { "" } else { " " })?;
        }
        Ok(())
    }
}
