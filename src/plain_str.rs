//! Reading a JSON string value without parsing it, when it has nothing to decode.
//!
//! Most session values read on a request are short strings (a user id, a name, a CSRF
//! token). serde_json reads one with its whole parser: a deserializer, the escape scan, a
//! UTF-8 check and the trailing-whitespace check, about half of what a cached sealed read
//! costs in the handler. A string with no escapes and no control characters is its text
//! between the quotes, and the session's data was checked to be UTF-8 once, when it arrived,
//! so [`PlainStr`] hands that slice to the visitor directly. Anything else a
//! type asks for (a number, an option, a newtype, raw JSON...) goes to serde_json on the
//! same bytes, so every type reads exactly as serde_json reads it, errors included.

use serde::de::{self, Deserializer, Visitor};

/// A JSON string value whose text needs no decoding, as a [`Deserializer`].
pub(crate) struct PlainStr<'de> {
    /// The text between the quotes.
    text: &'de str,
    /// The whole value, quotes included, for serde_json.
    json: &'de [u8],
}

impl<'de> PlainStr<'de> {
    /// `json` as a plain string: a quoted string with no escapes and no control characters
    /// (which serde_json refuses). `None` for anything else, which is left to serde_json.
    /// The text is a slice of `json`, already known to be UTF-8: no second check.
    pub(crate) fn new(json: &'de str) -> Option<PlainStr<'de>> {
        let text = json.strip_prefix('"')?.strip_suffix('"')?;
        if !plain_text(text.as_bytes()) {
            // Escapes or control characters: serde_json's business.
            return None;
        }
        Some(PlainStr {
            text,
            json: json.as_bytes(),
        })
    }
}

/// Whether no byte is a control character (below 0x20), `"` or `\`: text that a JSON string
/// holds as it is. Eight bytes at a time; a byte-by-byte loop costs about as much as
/// serde_json's whole parse of a short string.
fn plain_text(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Nonzero when some byte of `v` is below `n` (n <= 128; exact, with no false alarms
    // when asking whether there is any).
    let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGH;
    let bad = |v: u64| {
        below(v, 0x20)
            | below(v ^ (ONES * u64::from(b'"')), 1)
            | below(v ^ (ONES * u64::from(b'\\')), 1)
    };
    let mut words = bytes.chunks_exact(8);
    let mut found = 0;
    for word in &mut words {
        let mut w = [0; 8];
        w.copy_from_slice(word);
        found |= bad(u64::from_ne_bytes(w));
    }
    // The tail, padded with a plain byte.
    let mut w = [b'a'; 8];
    let tail = words.remainder();
    if let Some(dst) = w.get_mut(..tail.len()) {
        dst.copy_from_slice(tail);
    }
    found |= bad(u64::from_ne_bytes(w));
    found == 0
}

/// Methods that serde_json answers, on the whole value (and then checks that nothing follows
/// it, as `serde_json::from_slice` does).
macro_rules! to_serde_json {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
            let mut de = serde_json::Deserializer::from_slice(self.json);
            let value = (&mut de).$method($($arg,)* visitor)?;
            de.end()?;
            Ok(value)
        }
    )*};
}

impl<'de> Deserializer<'de> for PlainStr<'de> {
    type Error = serde_json::Error;

    // What serde_json does with a string that has no escapes: the text, borrowed.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_str(self.text)
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_str(self.text)
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_str(self.text)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_str(self.text)
    }

    to_serde_json! {
        deserialize_bool(); deserialize_i8(); deserialize_i16(); deserialize_i32();
        deserialize_i64(); deserialize_i128(); deserialize_u8(); deserialize_u16();
        deserialize_u32(); deserialize_u64(); deserialize_u128(); deserialize_f32();
        deserialize_f64(); deserialize_char(); deserialize_bytes(); deserialize_byte_buf();
        deserialize_option(); deserialize_unit(); deserialize_seq(); deserialize_map();
        deserialize_ignored_any();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
    }
}

/// `T` from the JSON value `json`, as `serde_json::from_str` reads it.
pub(crate) fn from_value_str<T: de::DeserializeOwned>(json: &str) -> serde_json::Result<T> {
    match PlainStr::new(json) {
        // A type that refuses the text is read again by serde_json, for its error (with the
        // position serde_json gives it): rare, and then the error is exactly serde_json's.
        Some(plain) => T::deserialize(plain).or_else(|_| serde_json::from_str(json)),
        None => serde_json::from_str(json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::Value;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Deserialize)]
    enum Role {
        Admin,
        User,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    struct Email(String);
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(untagged)]
    enum Either {
        N(u64),
        S(String),
    }

    /// Bytes read as the session's data reads a value: as text when they are UTF-8, else by
    /// serde_json (which refuses them).
    fn from_value_bytes<T: de::DeserializeOwned>(json: &[u8]) -> serde_json::Result<T> {
        match std::str::from_utf8(json) {
            Ok(text) => from_value_str(text),
            Err(_) => serde_json::from_slice(json),
        }
    }

    /// The fast path gives what serde_json gives, value or error message, for `T`.
    fn same<T>(json: &[u8])
    where
        T: de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let fast = from_value_bytes::<T>(json).map_err(|e| e.to_string());
        let slow = serde_json::from_slice::<T>(json).map_err(|e| e.to_string());
        assert_eq!(
            fast,
            slow,
            "{} as {}",
            String::from_utf8_lossy(json),
            std::any::type_name::<T>()
        );
    }

    fn every_type(json: &[u8]) {
        same::<String>(json);
        same::<Box<str>>(json);
        same::<Option<String>>(json);
        same::<Value>(json);
        same::<Role>(json);
        same::<Email>(json);
        same::<Either>(json);
        same::<char>(json);
        same::<std::net::IpAddr>(json);
        same::<std::path::PathBuf>(json);
        same::<u64>(json);
        same::<bool>(json);
        same::<()>(json);
        same::<Vec<u8>>(json);
        same::<BTreeMap<String, Value>>(json);
        same::<serde::de::IgnoredAny>(json);
        // Raw JSON (a newtype serde_json recognises by name) keeps the value's own text.
        let raw = |r: serde_json::Result<Box<serde_json::value::RawValue>>| {
            r.map(|v| v.get().to_owned()).map_err(|e| e.to_string())
        };
        assert_eq!(
            raw(from_value_bytes(json)),
            raw(serde_json::from_slice(json))
        );
    }

    #[test]
    fn reads_as_serde_json_reads() {
        for json in [
            &br#""alice@example.com""#[..],
            br#""""#,
            br#""Admin""#,
            br#""x""#,
            br#""127.0.0.1""#,
            "\"h\u{e9}llo \u{1f600}\"".as_bytes(),
            // Not plain: left to serde_json.
            br#""a\"b""#,
            br#""a\nb""#,
            b"\"tab\there\"",
            br#""unterminated"#,
            br#""a" "#,
            b"\"\xff\"",
            b"12",
            b"null",
            br#"["a"]"#,
            b"\"",
        ] {
            every_type(json);
        }
    }

    #[test]
    fn only_plain_strings_take_the_fast_path() {
        assert_eq!(PlainStr::new(r#""bob""#).map(|p| p.text), Some("bob"));
        assert_eq!(
            PlainStr::new("\"h\u{e9}llo\"").map(|p| p.text),
            Some("h\u{e9}llo")
        );
        for json in [
            r#""a\u0041""#,
            "\"a\x01\"",
            "\"a\x1f\"",
            "\"",
            r#""a"b""#,
            r#""a\b""#,
            "bob",
            "",
        ] {
            assert!(PlainStr::new(json).is_none(), "{json:?}");
        }
    }

    #[test]
    fn plain_text_finds_every_byte_it_must_refuse() {
        let plain = |b: u8| b >= 0x20 && b != b'"' && b != b'\\';
        for len in 0..20 {
            for pos in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'x'; len];
                    if let Some(slot) = bytes.get_mut(pos) {
                        *slot = b;
                    }
                    assert_eq!(plain_text(&bytes), plain(b), "{b:#x} at {pos} of {len}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn plain_text_is_the_byte_rule(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let plain = |b: &u8| *b >= 0x20 && *b != b'"' && *b != b'\\';
            prop_assert_eq!(plain_text(&bytes), bytes.iter().all(plain));
        }

        #[test]
        fn any_string_reads_as_serde_json_reads(s in any::<String>()) {
            let json = serde_json::to_vec(&s).unwrap_or_default();
            every_type(&json);
            prop_assert_eq!(from_value_bytes::<String>(&json).ok(), Some(s));
        }

        #[test]
        fn any_bytes_read_as_serde_json_reads(inner in proptest::collection::vec(any::<u8>(), 0..24)) {
            let mut json = vec![b'"'];
            json.extend_from_slice(&inner);
            json.push(b'"');
            every_type(&json);
        }
    }
}
