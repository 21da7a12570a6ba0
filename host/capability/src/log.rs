//! `log`: structured logging, attributed to the plugin. Always granted; a plugin that
//! logs more than a bounded number of lines per call has the rest dropped and counted
//! (the manifest may raise the bound, the operator's grants may lower it), a line longer
//! than 4 KiB is cut, and so is a field name longer than 64 bytes. The host's log writer
//! keeps each line on one line, whatever the plugin put in it.

use synchro_manifest::ManifestError;
pub(super) use synchro_wit::imports::log as wit;

use crate::{Asks, CallContext, parse_entry, raw};

/// Default cap on lines per call.
const LINES_PER_CALL: u32 = 100;
/// Bytes of one line (message and fields) kept; the rest is cut and said so.
const LINE_BYTES: usize = 4096;
/// Bytes of one field name kept.
const FIELD_NAME_BYTES: usize = 64;

pub struct Grant {
    lines_per_call: u32,
}

/// The `log` entry, in a manifest or in the operator's grants.
#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Raw {
    lines_per_call: u32,
}

impl crate::Grant for Grant {
    /// `log = { lines-per-call = 500 }` raises the cap.
    fn parse(asks: &Asks<'_>, entry: Option<&toml::Value>) -> Result<Self, ManifestError> {
        Ok(Grant {
            lines_per_call: match entry {
                Some(e) => parse_entry::<Raw>(asks.manifest, "log", e)?.lines_per_call,
                None => LINES_PER_CALL,
            },
        })
    }

    /// The operator's `log = { lines-per-call = N }` is the most the plugin gets.
    fn narrow(&mut self, operator: Option<&toml::Value>) -> Result<(), String> {
        if let Some(entry) = operator {
            let operator: Raw = raw(entry)?;
            self.lines_per_call = self.lines_per_call.min(operator.lines_per_call);
        }
        Ok(())
    }

    fn describe(&self) -> Option<String> {
        Some(format!("up to {} lines per call", self.lines_per_call))
    }
}

/// Where the guest's stdout and stderr go: the plugin's log, held to the lines per call
/// of its `log` grant (a count of their own), each line cut as a `log` line is.
pub fn guest_output(call: &CallContext) -> synchro_engine::GuestOutput {
    synchro_engine::GuestOutput::new(call.plugin.clone(), call.grants.log.lines_per_call)
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
            cut(key, FIELD_NAME_BYTES);
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
            f.write_str(if i == 0 { "" } else { " " })?;
            // A name that is not plain is quoted, so that it cannot pose as other fields.
            let plain = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if plain {
                write!(f, "{k}={v:?}")?;
            } else {
                write!(f, "{k:?}={v:?}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn field_names_that_are_not_plain_are_quoted() {
        let fields = [
            ("ok".to_owned(), "1".to_owned()),
            ("x=1 plugin".to_owned(), "neighbour".to_owned()),
        ];
        assert_eq!(
            super::FieldList(&fields).to_string(),
            r#"ok="1" "x=1 plugin"="neighbour""#
        );
    }

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
