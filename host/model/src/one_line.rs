//! Text from outside — plugins, the systems they sample — printed on one line of the
//! host's output.
//!
//! A key, kind or message holding a newline would otherwise print a line of its own, which
//! a reader or a log parser takes for the host's: a collector reporting the key
//! `x\n12:00:00.000Z DELETE pserver srv-1 (inventory)` would forge a deletion.

use std::fmt;

/// `text` with every character that could break or disguise a line escaped as Rust
/// escapes it (`\n`, `\u{1b}`, `\u{202e}`), so that it prints on one line, visibly.
pub struct OneLine<'a>(pub &'a str);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, needs_escape)
    }
}

/// Whether `c` is escaped by [`OneLine`]: control characters, Unicode's line and paragraph
/// separators, and the bidirectional overrides that reorder what a terminal shows.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Writes `text` into `out` with each character that `escape` picks escaped.
pub fn write_escaped(
    out: &mut impl fmt::Write,
    text: &str,
    escape: impl Fn(char) -> bool,
) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = rest.find(&escape) {
        out.write_str(&rest[..at])?;
        let c = rest[at..].chars().next().expect("found at a character");
        write!(out, "{}", c.escape_default())?;
        rest = &rest[at + c.len_utf8()..];
    }
    out.write_str(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_escapes_and_overrides_print_visibly_on_one_line() {
        let forged = "x\n12:00:00.000Z DELETE pserver srv-1\r\u{1b}[2J\u{2028}\u{202e}é\t";
        assert_eq!(
            OneLine(forged).to_string(),
            r"x\n12:00:00.000Z DELETE pserver srv-1\r\u{1b}[2J\u{2028}\u{202e}é\t"
        );
        assert_eq!(
            OneLine("srv-1 (ünïcode) ok").to_string(),
            "srv-1 (ünïcode) ok"
        );
    }
}
