//! The host's log on stderr, one record per line whatever the records hold.
//!
//! A record can carry text from outside — a plugin's error message, a key it reported, a
//! line it logged — and a newline there would start a line that reads as the host's own.
//! `tracing-subscriber` escapes terminal escape sequences in such text but not line
//! breaks, so every record passes through here: one place, whatever logged it.

use std::io::Write;

use synchro_model::{needs_escape, write_escaped};

/// Writes each formatted record to stderr with every line-breaking or disguising character
/// escaped, except the record's final newline and the escape sequences of the log's own
/// colours (the formatter escapes those of the text it logs).
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, record: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(record);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        let mut line = String::with_capacity(record.len() + 1);
        write_escaped(&mut line, body, |c| c != '\u{1b}' && needs_escape(c))
            .expect("writing to a String cannot fail");
        line.push_str(end);
        // One write per record, so that records of different threads do not interleave.
        std::io::stderr().lock().write_all(line.as_bytes())?;
        Ok(record.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
