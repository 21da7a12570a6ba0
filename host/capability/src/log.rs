//! `log`: structured logging, attributed to the plugin. Always granted; a plugin that
//! logs more than a bounded number of lines per call has the rest dropped and counted,
//! and a line longer than 4 KiB is cut.

use synchro_manifest::ManifestError;
pub(super) use synchro_wit::imports::log as wit;

use crate::{Asks, CallContext, parse_entry};

/// Default cap on lines per call.
const LINES_PER_CALL: u32 = 100;
/// Bytes of one line (message and fields) kept; the rest is cut and said so.
const LINE_BYTES: usize = 4096;

pub struct Grant {
    lines_per_call: u32,
}

impl crate::Grant for Grant {
    /// `log = { lines-per-call = 500 }` raises the cap.
    fn parse(asks: &Asks<'_>, entry: Option<&toml::Value>) -> Result<Self, ManifestError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        struct Raw {
            lines_per_call: u32,
        }
        Ok(Grant {
            lines_per_call: match entry {
                Some(e) => parse_entry::<Raw>(asks.manifest, "log", e)?.lines_per_call,
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
        let mut message = message;
        let mut fields = fields;
        let mut budget = cut(&mut message, LINE_BYTES);
        for (key, value) in &mut fields {
            budget = cut(value, budget.saturating_sub(key.len()));
        }
        let fields = FieldList(&fields);
        match level {
            wit::Level::Trace => {
                tracing::trace!(target: "plugin", plugin = %plugin, %fields, "{message}")
            }
            wit::Level::Debug => {
                tracing::debug!(target: "plugin", plugin = %plugin, %fields, "{message}")
            }
            wit::Level::Info => {
                tracing::info!(target: "plugin", plugin = %plugin, %fields, "{message}")
            }
            wit::Level::Warn => {
                tracing::warn!(target: "plugin", plugin = %plugin, %fields, "{message}")
            }
            wit::Level::Error => {
                tracing::error!(target: "plugin", plugin = %plugin, %fields, "{message}")
            }
        }
    }
}

/// Cuts `text` to at most `limit` bytes (on a character boundary), noting how much was
/// cut; returns the bytes left of the limit.
fn cut(text: &mut String, limit: usize) -> usize {
    if text.len() <= limit {
        return limit - text.len();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("… [{cut} bytes cut]"));
    0
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

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn long_lines_are_cut_on_a_character_boundary_and_say_so() {
        let mut short = "héllo".to_owned();
        assert_eq!(cut(&mut short, 10), 4);
        assert_eq!(short, "héllo");
        let mut long = "ééééé".to_owned(); // 10 bytes
        assert_eq!(cut(&mut long, 3), 0);
        assert_eq!(long, "é… [8 bytes cut]");
    }
}
