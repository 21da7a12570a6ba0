//! Canonical JSON: keys sorted at every level, no insignificant whitespace, strings
//! written the way serde_json writes them, and numbers by value (see [`number`]): one text
//! for every JSON value, so two documents hash alike exactly when they mean the same.
//!
//! Canonicalising is the hot path of every collect (once per entity per cycle), so this
//! does not build a `serde_json::Value` tree. A serde visitor receives serde_json's
//! tokens — serde_json still does all the parsing and validation — and writes the
//! canonical form straight into an output buffer; an object whose keys arrive out of
//! order has its members reordered by span. Numbers are written from their text, which
//! serde_json does not pass on, found by [`number::Literals`]. Apart from numbers, the
//! output is byte-for-byte what `serde_json::to_string(&serde_json::from_str::<Value>(text)?)`
//! produces, which the tests check, except that a duplicate key is an error here instead
//! of "last one wins".

mod number;

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Writes the canonical form of the JSON document `text` into `out` (cleared first) and
/// says what kind of value the document is.
pub fn canonicalize(text: &str, out: &mut Vec<u8>) -> Result<Kind, serde_json::Error> {
    out.clear();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let mut numbers = number::Literals::new(text);
    let kind = Writer {
        out,
        numbers: &mut numbers,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(kind)
}

/// The type of a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

impl Kind {
    /// "an object", "a string", ...: for error messages.
    pub fn described(self) -> &'static str {
        match self {
            Kind::Object => "an object",
            Kind::Array => "an array",
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::Bool => "a boolean",
            Kind::Null => "null",
        }
    }
}

/// Writes one JSON value into `out`.
struct Writer<'a, 't> {
    out: &'a mut Vec<u8>,
    numbers: &'a mut number::Literals<'t>,
}

impl Writer<'_, '_> {
    /// Writes the next number of the document, which serde_json just read.
    fn number<E: de::Error>(self) -> Result<Kind, E> {
        let text = self
            .numbers
            .next_number()
            .ok_or_else(|| E::custom("a number serde_json read was not found in the text"))?;
        number::write(text, self.out).map_err(E::custom)?;
        Ok(Kind::Number)
    }
}

impl<'de> DeserializeSeed<'de> for Writer<'_, '_> {
    type Value = Kind;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Kind, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("writing JSON to a Vec cannot fail");
}

impl<'de> Visitor<'de> for Writer<'_, '_> {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Kind, E> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(Kind::Bool)
    }

    fn visit_i64<E: de::Error>(self, _rounded: i64) -> Result<Kind, E> {
        self.number()
    }

    fn visit_u64<E: de::Error>(self, _rounded: u64) -> Result<Kind, E> {
        self.number()
    }

    fn visit_f64<E: de::Error>(self, _rounded: f64) -> Result<Kind, E> {
        self.number()
    }

    fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
        write_json(self.out, v);
        Ok(Kind::String)
    }

    fn visit_unit<E>(self) -> Result<Kind, E> {
        self.out.extend_from_slice(b"null");
        Ok(Kind::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        self.out.push(b'[');
        let mut first = true;
        loop {
            let at = self.out.len();
            if !first {
                self.out.push(b',');
            }
            let element = Writer {
                out: self.out,
                numbers: self.numbers,
            };
            if seq.next_element_seed(element)?.is_none() {
                self.out.truncate(at);
                break;
            }
            first = false;
        }
        self.out.push(b']');
        Ok(Kind::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let start = self.out.len();
        self.out.push(b'{');
        // Each member as (key, span of `"key":value` in `out`).
        let mut members: Vec<(std::borrow::Cow<'de, str>, usize, usize)> = Vec::new();
        let mut sorted = true;
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            let key = key.0;
            if let Some((last, ..)) = members.last() {
                match last.as_ref().cmp(key.as_ref()) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => {
                        return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                    }
                    std::cmp::Ordering::Greater => sorted = false,
                }
            }
            if !members.is_empty() {
                self.out.push(b',');
            }
            let member = self.out.len();
            write_json(self.out, key.as_ref());
            self.out.push(b':');
            map.next_value_seed(Writer {
                out: self.out,
                numbers: self.numbers,
            })?;
            members.push((key, member, self.out.len()));
        }
        if !sorted {
            members.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            if let Some(pair) = members.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key `{}`",
                    pair[0].0
                )));
            }
            let mut reordered = Vec::with_capacity(self.out.len() - start);
            reordered.push(b'{');
            for (i, (_, from, to)) in members.iter().enumerate() {
                if i > 0 {
                    reordered.push(b',');
                }
                reordered.extend_from_slice(&self.out[*from..*to]);
            }
            self.out.truncate(start);
            self.out.extend_from_slice(&reordered);
        }
        self.out.push(b'}');
        Ok(Kind::Object)
    }
}

/// A key, borrowed from the input unless it had escapes.
struct CowStr<'de>(std::borrow::Cow<'de, str>);

impl<'de> de::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<CowStr<'de>, E> {
                Ok(CowStr(std::borrow::Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        let mut out = Vec::new();
        canonicalize(text, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// What serde_json's own round trip through `Value` gives.
    fn reference(text: &str) -> String {
        serde_json::to_string(&serde_json::from_str::<serde_json::Value>(text).unwrap()).unwrap()
    }

    #[test]
    fn matches_serde_json_round_trip() {
        for text in [
            r#"{"b": 1, "a": {"y": [1, 2, {"d":4,"c":3}], "x": null}}"#,
            r#"{"z":"\u00e9\n\"q\"","a":true,"m":false}"#,
            r#"{"n":-12,"f":1.25,"g":-0.5,"big":18446744073709551615,"neg":-9223372036854775808}"#,
            r#"{"\u0062":1,"a":2}"#,
            r#"{"":{},"arr":[],"nested":[[],[{}]]}"#,
            r#"  { "ws" :	[ 1 , 2 ] }  "#,
            "[3,1,2]",
            "\"just a string\"",
            "0.1",
        ] {
            assert_eq!(canonical(text), reference(text), "{text}");
        }
    }

    /// Where serde_json's round trip loses a value or keeps a form, the canonical form
    /// keeps the value and drops the form.
    #[test]
    fn numbers_are_written_by_value_and_exactly() {
        for (text, expected) in [
            (
                r#"{"a":1e2,"b":100.0,"c":-0,"d":0.0}"#,
                r#"{"a":100,"b":100,"c":0,"d":0}"#,
            ),
            (
                r#"[123456789012345678901234567890, 18446744073709551617]"#,
                "[123456789012345678901234567890,18446744073709551617]",
            ),
            (
                r#"{"x": "1e2", "y": [1.50, 2.5e-9]}"#,
                r#"{"x":"1e2","y":[1.5,2.5e-9]}"#,
            ),
        ] {
            assert_eq!(canonical(text), expected, "{text}");
        }
        assert_ne!(
            canonical("[18446744073709551617]"),
            canonical("[18446744073709551616]"),
            "serde_json reads both as the same double"
        );
    }

    #[test]
    fn reports_objects_and_errors() {
        let mut out = Vec::new();
        assert_eq!(canonicalize("{}", &mut out).unwrap(), Kind::Object);
        assert_eq!(canonicalize("[1]", &mut out).unwrap(), Kind::Array);
        assert_eq!(canonicalize("-1.5", &mut out).unwrap(), Kind::Number);
        assert!(canonicalize("{oops", &mut out).is_err());
        assert!(canonicalize("{} {}", &mut out).is_err(), "trailing data");
        let dup = canonicalize(r#"{"a":1,"a":2}"#, &mut out)
            .unwrap_err()
            .to_string();
        assert!(dup.contains("duplicate key `a`"), "{dup}");
        let dup = canonicalize(r#"{"b":1,"a":1,"b":2}"#, &mut out)
            .unwrap_err()
            .to_string();
        assert!(dup.contains("duplicate key `b`"), "{dup}");
    }
}
