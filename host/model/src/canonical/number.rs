//! The canonical form of a JSON number: one text per value, every value kept exactly.
//!
//! serde_json hands numbers over as `u64`, `i64` or `f64`: an integer beyond 64 bits, or a
//! decimal with more digits than a double holds, arrives rounded, and `100`, `1e2` and
//! `100.0` arrive as different values. So numbers are canonicalised from their text
//! instead, as exact decimals: the value is `±D × 10^e` with `D` the significant digits
//! (no leading or trailing zeros), and its canonical text is
//!
//! - `0` for zero (`-0`, `0.0`, `0e5` …);
//! - plain digits for an integer of at most [`PLAIN_DIGITS`] digits (`1e2` → `100`,
//!   `100.0` → `100`; a 40-digit id stays those 40 digits);
//! - a plain decimal when the point falls within those digits (`1.50` → `1.5`) or at most
//!   six places after it (`0.000001`), as ECMAScript (and RFC 8785) write numbers;
//! - otherwise `D` with one digit before the point and a signed exponent: `1.5e-7`,
//!   `1e101`.
//!
//! RFC 8785 writes the shortest text of the nearest double, so two different integers
//! beyond 2^53 can print the same; here they never do.

/// The most digits an integer is written with in full; beyond it, an exponent (which also
/// bounds what `1e1000000` costs).
pub const PLAIN_DIGITS: i64 = 100;

/// Why a number literal has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("number `{0}` has an exponent beyond ±10^18")]
pub struct OutOfRange(pub String);

/// Writes the canonical form of the JSON number literal `text` (already validated by
/// serde_json) into `out`.
pub fn write(text: &str, out: &mut Vec<u8>) -> Result<(), OutOfRange> {
    let bytes = text.as_bytes();
    // The common case, an integer (JSON has no leading zeros) of at most PLAIN_DIGITS
    // digits: already canonical, but for `-0`.
    let digits = &bytes[usize::from(bytes.first() == Some(&b'-'))..];
    if digits.iter().all(u8::is_ascii_digit) && digits.len() as i64 <= PLAIN_DIGITS && text != "-0"
    {
        out.extend_from_slice(bytes);
        return Ok(());
    }
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], &unsigned[at + 1..]),
        None => (unsigned, "0"),
    };
    let exponent: i64 = exponent
        .strip_prefix('+')
        .unwrap_or(exponent)
        .parse()
        .ok()
        .filter(|e: &i64| e.abs() <= 1_000_000_000_000_000_000)
        .ok_or_else(|| OutOfRange(text.to_owned()))?;
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // value = digits × 10^(exponent - frac.len()), digits = int ‖ frac.
    let digits = int.bytes().chain(frac.bytes());
    let leading = digits.clone().take_while(|&d| d == b'0').count();
    let significant: Vec<u8> = digits.skip(leading).collect();
    let trailing = significant.iter().rev().take_while(|&&d| d == b'0').count();
    let significant = &significant[..significant.len() - trailing];
    if significant.is_empty() {
        out.push(b'0');
        return Ok(());
    }
    let k = significant.len() as i64;
    // value = 0.D × 10^n
    let n = exponent - frac.len() as i64 + trailing as i64 + k;
    if negative {
        out.push(b'-');
    }
    let zeros = |out: &mut Vec<u8>, count: i64| out.extend((0..count).map(|_| b'0'));
    if k <= n && n <= PLAIN_DIGITS {
        out.extend_from_slice(significant);
        zeros(out, n - k);
    } else if 0 < n && n <= PLAIN_DIGITS {
        let (whole, part) = significant.split_at(n as usize);
        out.extend_from_slice(whole);
        out.push(b'.');
        out.extend_from_slice(part);
    } else if -6 < n && n <= 0 {
        out.extend_from_slice(b"0.");
        zeros(out, -n);
        out.extend_from_slice(significant);
    } else {
        out.push(significant[0]);
        if k > 1 {
            out.push(b'.');
            out.extend_from_slice(&significant[1..]);
        }
        out.push(b'e');
        out.extend_from_slice(itoa::Buffer::new().format(n - 1).as_bytes());
    }
    Ok(())
}

/// The number literals of a JSON document, in document order: the text of each number
/// serde_json reports, which it reports only as a (possibly rounded) value.
///
/// Outside strings a JSON document holds only punctuation, whitespace, `true`, `false`,
/// `null` and numbers, so the next `-` or digit outside a string starts the next number.
/// The document is validated by serde_json as it is read; this only finds the texts.
pub struct Literals<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Literals<'a> {
    pub fn new(text: &'a str) -> Literals<'a> {
        Literals { text, at: 0 }
    }

    /// The next number literal; `None` if the document has no more.
    pub fn next_number(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        while self.at < bytes.len() {
            match bytes[self.at] {
                b'"' => {
                    self.at += 1;
                    while self.at < bytes.len() {
                        match bytes[self.at] {
                            b'\\' => self.at += 2,
                            b'"' => break,
                            _ => self.at += 1,
                        }
                    }
                    self.at += 1;
                }
                b'-' | b'0'..=b'9' => {
                    let start = self.at;
                    while self.at < bytes.len()
                        && matches!(
                            bytes[self.at],
                            b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                        )
                    {
                        self.at += 1;
                    }
                    return Some(&self.text[start..self.at]);
                }
                _ => self.at += 1,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        let mut out = Vec::new();
        write(text, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn one_text_per_value() {
        for (texts, expected) in [
            (&["0", "-0", "0.0", "-0.0", "0e5", "0.000e-3"][..], "0"),
            (
                &["100", "1e2", "100.0", "1.00e+2", "1000e-1", "10E1"],
                "100",
            ),
            (&["-7", "-7.0", "-0.7e1", "-700e-2"], "-7"),
            (&["1.5", "1.50", "15e-1", "0.15e1"], "1.5"),
            (&["0.000001", "1e-6", "10e-7"], "0.000001"),
            (&["1e-7", "0.0000001", "10e-8"], "1e-7"),
            (&["-1.25e-10"], "-1.25e-10"),
            (&["123456.789"], "123456.789"),
            (&["1e20"], "100000000000000000000"),
            (&["1e101", "10e100"], "1e101"),
            (&["1.5e200"], "1.5e200"),
            (&["12.5e99"], "1.25e100"),
        ] {
            for text in texts {
                assert_eq!(canonical(text), expected, "{text}");
            }
        }
    }

    #[test]
    fn every_digit_is_kept() {
        let big = "123456789012345678901234567890";
        assert_eq!(canonical(big), big);
        assert_ne!(
            canonical("18446744073709551617"),
            canonical("18446744073709551616")
        );
        assert_eq!(
            canonical("0.1000000000000000055511151231257827"),
            "0.1000000000000000055511151231257827"
        );
        assert_eq!(canonical(&"9".repeat(100)), "9".repeat(100));
        assert_eq!(
            canonical(&format!("{}0", "9".repeat(100))),
            format!("9.{}e100", "9".repeat(99))
        );
    }

    #[test]
    fn an_absurd_exponent_is_refused_not_expanded() {
        assert_eq!(canonical("1e1000000"), "1e1000000");
        let mut out = Vec::new();
        assert_eq!(
            write("1e99999999999999999999", &mut out),
            Err(OutOfRange("1e99999999999999999999".into()))
        );
    }

    #[test]
    fn literals_are_found_outside_strings_only() {
        let mut literals =
            Literals::new(r#"{"a-1": [1, -2.5e3], "s": "9 \" 8", "t": true, "n": 0}"#);
        let mut found = Vec::new();
        while let Some(n) = literals.next_number() {
            found.push(n);
        }
        assert_eq!(found, ["1", "-2.5e3", "0"]);
    }
}
