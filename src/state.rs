//! What a token carries: the session's metadata and its data, and their binary encoding
//! (the plaintext of a sealed token, the payload of a signed one; see `docs/FORMAT.md`).

use std::fmt;

use aes_gcm::aead::rand_core::{OsRng, RngCore};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::clock::Timestamp;
use crate::error::{DataError, OpenError, SealError};

/// Longest subject (user id) a token can carry, in bytes.
pub const MAX_SUBJECT_LEN: usize = 1024;

/// Length of the fixed part of the payload: id, three times and the flags byte.
pub(crate) const FIXED_LEN: usize = 16 + 8 + 8 + 8 + 1;
const FLAG_SUBJECT: u8 = 0x01;

/// A 128-bit random session id. Shown as 22 base64url characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// A fresh id from the operating system's RNG.
    pub fn generate() -> Result<SessionId, SealError> {
        let mut b = [0u8; 16];
        OsRng.try_fill_bytes(&mut b).map_err(|_| SealError::Rng)?;
        Ok(SessionId(b))
    }

    /// From raw bytes.
    pub const fn from_bytes(b: [u8; 16]) -> SessionId {
        SessionId(b)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses the 22-character base64url form.
    pub fn parse(s: &str) -> Option<SessionId> {
        if s.len() != 22 {
            return None;
        }
        let v = URL_SAFE_NO_PAD.decode(s).ok()?;
        Some(SessionId(v.try_into().ok()?))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 22];
        match URL_SAFE_NO_PAD.encode_slice(self.0, &mut buf) {
            Ok(n) => f.write_str(std::str::from_utf8(buf.get(..n).unwrap_or(&[])).unwrap_or("")),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// The session's data: a JSON object, kept as the bytes it arrived in until someone needs
/// the whole map. A read of one key deserializes only that key's value; a write records the
/// change beside the bytes; the token is re-made by copying the untouched entries' bytes. So
/// a request that reads or changes a few keys never builds the whole JSON tree.
#[derive(Clone, Debug, Default)]
pub(crate) enum Data {
    /// Bytes of a JSON object (empty means `{}`), not yet parsed.
    Raw(Box<[u8]>),
    /// Bytes of a JSON object and changes to it: `Some` sets a key, `None` removes it.
    Patched {
        raw: Box<[u8]>,
        changes: Vec<(String, Option<Value>)>,
    },
    /// Parsed (and possibly changed).
    Map(Map<String, Value>),
    /// No data.
    #[default]
    Empty,
}

/// serde plumbing for reading one key out of a JSON object's bytes, or walking its entries
/// with their values left as raw bytes.
mod scan {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    use serde_json::value::RawValue;

    /// A key compared with a wanted key without allocating.
    struct KeyIs<'k>(&'k str);

    impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
        type Value = bool;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl Visitor<'_> for KeyIs<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string key")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            Ok(v == self.0)
        }
    }

    /// Looks for one key; on a hit it stores the value in `slot` and stops the parse with
    /// a marker error, so the rest of the object is not even scanned. Keys are unique in
    /// every object this crate writes; in a foreign object with duplicates the first wins.
    struct Find<'k, 's, T>(&'k str, &'s mut Option<T>);

    const FOUND: &str = "sealed-session: key found";

    impl<'de, T: DeserializeOwned> Visitor<'de> for Find<'_, '_, T> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(hit) = map.next_key_seed(KeyIs(self.0))? {
                if hit {
                    *self.1 = Some(map.next_value::<T>()?);
                    return Err(de::Error::custom(FOUND));
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
    }

    /// The value of `key` in the JSON object `raw`, deserialized; nothing else is built,
    /// and nothing after the key is read.
    pub(super) fn find<T: DeserializeOwned>(
        raw: &[u8],
        key: &str,
    ) -> Result<Option<T>, serde_json::Error> {
        use serde::Deserializer as _;
        let mut slot = None;
        let mut de = serde_json::Deserializer::from_slice(raw);
        match (&mut de).deserialize_map(Find(key, &mut slot)) {
            Ok(()) => {
                de.end()?;
                Ok(None)
            }
            Err(_) if slot.is_some() => Ok(slot),
            Err(e) => Err(e),
        }
    }

    /// A key, borrowed from the input unless it had escapes.
    struct Key<'de>(Cow<'de, str>);

    impl<'de> de::Deserialize<'de> for Key<'de> {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Key<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string key")
                }
                fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(v)))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(v.to_owned())))
                }
            }
            d.deserialize_str(V)
        }
    }

    struct Entries;

    impl<'de> Visitor<'de> for Entries {
        type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
            while let Some((k, v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                out.push((k.0, v));
            }
            Ok(out)
        }
    }

    /// The entries of the JSON object `raw`, values as their raw JSON text.
    pub(super) fn entries(raw: &[u8]) -> Result<Vec<(Cow<'_, str>, &RawValue)>, serde_json::Error> {
        use serde::Deserializer as _;
        let mut de = serde_json::Deserializer::from_slice(raw);
        let v = (&mut de).deserialize_map(Entries)?;
        de.end()?;
        Ok(v)
    }
}

fn parse_map(raw: &[u8]) -> Result<Map<String, Value>, DataError> {
    if raw.is_empty() {
        return Ok(Map::new());
    }
    serde_json::from_slice(raw).map_err(DataError::Corrupt)
}

fn find_in<T: DeserializeOwned>(raw: &[u8], key: &str) -> Result<Option<T>, DataError> {
    if raw.is_empty() {
        return Ok(None);
    }
    scan::find::<T>(raw, key).map_err(|source| {
        // Tell a value of the wrong type from bytes that are not a JSON object at all.
        match scan::entries(raw) {
            Ok(_) => DataError::WrongType {
                key: key.to_owned(),
                source,
            },
            Err(e) => DataError::Corrupt(e),
        }
    })
}

/// The state of one session: metadata plus data. This is what codecs seal and open.
#[derive(Clone, Debug)]
pub struct SessionState {
    id: SessionId,
    issued_at: Timestamp,
    last_seen: Timestamp,
    expires_at: Timestamp,
    subject: Option<String>,
    data: Data,
}

impl SessionState {
    /// A new, empty session issued at `now` that expires at `expires_at`.
    pub fn new(id: SessionId, now: Timestamp, expires_at: Timestamp) -> SessionState {
        SessionState {
            id,
            issued_at: now,
            last_seen: now,
            expires_at,
            subject: None,
            data: Data::Empty,
        }
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }
    /// When the session was issued (created, or last regenerated).
    pub fn issued_at(&self) -> Timestamp {
        self.issued_at
    }
    /// The last time the session was seen active (the idle clock's start).
    pub fn last_seen(&self) -> Timestamp {
        self.last_seen
    }
    /// The absolute deadline.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }
    /// The subject (user id), used for per-user revocation.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// Sets the id (used by `regenerate`).
    pub fn set_id(&mut self, id: SessionId) {
        self.id = id;
    }
    /// Sets the issued-at time.
    pub fn set_issued_at(&mut self, t: Timestamp) {
        self.issued_at = t;
    }
    /// Sets the last-seen time.
    pub fn set_last_seen(&mut self, t: Timestamp) {
        self.last_seen = t;
    }
    /// Sets the absolute deadline.
    pub fn set_expires_at(&mut self, t: Timestamp) {
        self.expires_at = t;
    }
    /// Sets or clears the subject.
    pub fn set_subject(&mut self, subject: Option<String>) {
        self.subject = subject;
    }

    /// Whether the data holds no entries (without building the map).
    pub fn is_empty(&self) -> bool {
        match &self.data {
            Data::Empty => true,
            Data::Raw(b) => b.is_empty() || b.as_ref() == b"{}",
            Data::Map(m) => m.is_empty(),
            Data::Patched { raw, changes } => {
                if changes.iter().any(|(_, v)| v.is_some()) {
                    return false;
                }
                // Every remaining raw key must have been removed.
                scan::entries(raw).is_ok_and(|e| {
                    e.iter()
                        .all(|(k, _)| changes.iter().any(|(c, _)| c == k.as_ref()))
                })
            }
        }
    }

    /// The data as a JSON map, parsing it on first use.
    pub fn data(&mut self) -> Result<&Map<String, Value>, DataError> {
        self.data_mut().map(|m| &*m)
    }

    /// The data as a mutable JSON map, parsing it on first use.
    pub fn data_mut(&mut self) -> Result<&mut Map<String, Value>, DataError> {
        let map = match std::mem::take(&mut self.data) {
            Data::Map(m) => m,
            Data::Empty => Map::new(),
            Data::Raw(b) => parse_map(&b)?,
            Data::Patched { raw, changes } => {
                let mut m = parse_map(&raw)?;
                for (k, v) in changes {
                    match v {
                        Some(v) => m.insert(k, v),
                        None => m.remove(&k),
                    };
                }
                m
            }
        };
        self.data = Data::Map(map);
        match &mut self.data {
            Data::Map(m) => Ok(m),
            // Set just above.
            _ => Err(DataError::Corrupt(serde::de::Error::custom("unreachable"))),
        }
    }

    /// The value under `key`, deserialized; `Ok(None)` when absent, an error when present but
    /// of another type. Only that key's value is deserialized.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DataError> {
        let wrong = |source| DataError::WrongType {
            key: key.to_owned(),
            source,
        };
        let typed = |v: &Value| T::deserialize(v).map(Some).map_err(wrong);
        match &self.data {
            Data::Empty => Ok(None),
            Data::Map(m) => m.get(key).map_or(Ok(None), typed),
            Data::Raw(raw) => find_in(raw, key),
            Data::Patched { raw, changes } => match changes.iter().rev().find(|(k, _)| k == key) {
                Some((_, Some(v))) => typed(v),
                Some((_, None)) => Ok(None),
                None => find_in(raw, key),
            },
        }
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> Result<bool, DataError> {
        Ok(self.get::<serde::de::IgnoredAny>(key)?.is_some())
    }

    /// Sets `key` to `value` (`None` removes it), returning the old value as JSON.
    fn change(&mut self, key: &str, value: Option<Value>) -> Result<Option<Value>, DataError> {
        let old = self.get::<Value>(key)?;
        if old == value {
            return Ok(old);
        }
        match &mut self.data {
            Data::Map(m) => {
                match value {
                    Some(v) => m.insert(key.to_owned(), v),
                    None => m.remove(key),
                };
            }
            Data::Empty => {
                let mut m = Map::new();
                if let Some(v) = value {
                    m.insert(key.to_owned(), v);
                }
                self.data = Data::Map(m);
            }
            Data::Raw(raw) => {
                let raw = std::mem::take(raw);
                self.data = Data::Patched {
                    raw,
                    changes: vec![(key.to_owned(), value)],
                };
            }
            Data::Patched { changes, .. } => match changes.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => changes.push((key.to_owned(), value)),
            },
        }
        Ok(old)
    }

    /// Stores `value` under `key`, returning whether the data changed.
    pub fn insert<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<bool, DataError> {
        let v = serde_json::to_value(value).map_err(|source| DataError::Serialize {
            key: key.to_owned(),
            source,
        })?;
        let old = self.change(key, Some(v.clone()))?;
        Ok(old.as_ref() != Some(&v))
    }

    /// Removes `key`, returning the old value.
    pub fn remove(&mut self, key: &str) -> Result<Option<Value>, DataError> {
        self.change(key, None)
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.data = Data::Empty;
    }

    /// The data's JSON text (`{}` when empty), re-using the bytes it arrived in when
    /// unchanged.
    #[cfg_attr(
        not(any(feature = "jwt", feature = "jwt-rust-crypto")),
        allow(dead_code)
    )]
    pub(crate) fn data_json(&self) -> Result<std::borrow::Cow<'_, [u8]>, SealError> {
        let mut out = Vec::new();
        match &self.data {
            Data::Raw(b) if !b.is_empty() => return Ok(std::borrow::Cow::Borrowed(b)),
            Data::Raw(_) | Data::Empty => out.extend_from_slice(b"{}"),
            _ => {
                self.write_data(&mut out)?;
                if out.is_empty() {
                    out.extend_from_slice(b"{}");
                }
            }
        }
        Ok(std::borrow::Cow::Owned(out))
    }

    /// Replaces the data with the unparsed text of a JSON object (for codecs that carry it
    /// as JSON and have checked that it is one).
    #[cfg_attr(
        not(any(feature = "jwt", feature = "jwt-rust-crypto")),
        allow(dead_code)
    )]
    pub(crate) fn set_raw_data(&mut self, raw: Box<[u8]>) {
        self.data = Data::Raw(raw);
    }

    /// Appends the data's JSON text to `out`, nothing when empty.
    fn write_data(&self, out: &mut Vec<u8>) -> Result<(), SealError> {
        match &self.data {
            Data::Empty => {}
            Data::Raw(b) => out.extend_from_slice(b),
            Data::Map(m) if m.is_empty() => {}
            Data::Map(m) => serde_json::to_writer(&mut *out, m).map_err(SealError::Serialize)?,
            Data::Patched { raw, changes } => {
                let start = out.len();
                out.push(b'{');
                let mut first = true;
                let mut sep = |out: &mut Vec<u8>| {
                    if !std::mem::take(&mut first) {
                        out.push(b',');
                    }
                };
                for (k, v) in scan::entries(raw).map_err(SealError::Serialize)? {
                    if changes.iter().any(|(c, _)| c == k.as_ref()) {
                        continue;
                    }
                    sep(out);
                    serde_json::to_writer(&mut *out, k.as_ref()).map_err(SealError::Serialize)?;
                    out.push(b':');
                    out.extend_from_slice(v.get().as_bytes());
                }
                for (k, v) in changes {
                    if let Some(v) = v {
                        sep(out);
                        serde_json::to_writer(&mut *out, k).map_err(SealError::Serialize)?;
                        out.push(b':');
                        serde_json::to_writer(&mut *out, v).map_err(SealError::Serialize)?;
                    }
                }
                if first {
                    out.truncate(start);
                } else {
                    out.push(b'}');
                }
            }
        }
        Ok(())
    }

    /// Appends the binary payload (see `docs/FORMAT.md`) to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), SealError> {
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.issued_at.as_millis().to_be_bytes());
        out.extend_from_slice(&self.last_seen.as_millis().to_be_bytes());
        out.extend_from_slice(&self.expires_at.as_millis().to_be_bytes());
        match &self.subject {
            None => out.push(0),
            Some(s) => {
                let len = u16::try_from(s.len())
                    .ok()
                    .filter(|l| usize::from(*l) <= MAX_SUBJECT_LEN)
                    .ok_or(SealError::SubjectTooLong {
                        len: s.len(),
                        max: MAX_SUBJECT_LEN,
                    })?;
                out.push(FLAG_SUBJECT);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
        self.write_data(out)
    }

    /// An upper estimate of the encoded length, for sizing buffers.
    pub(crate) fn encoded_len_hint(&self) -> usize {
        FIXED_LEN
            + self.subject.as_ref().map_or(0, |s| 2 + s.len())
            + match &self.data {
                Data::Empty => 0,
                Data::Raw(b) => b.len(),
                Data::Map(m) => 64 * m.len() + 16,
                Data::Patched { raw, changes } => raw.len() + 64 * changes.len(),
            }
    }

    /// Decodes a binary payload. Only called on authenticated bytes, but checks every length
    /// all the same and never panics.
    pub(crate) fn decode(b: &[u8]) -> Result<SessionState, OpenError> {
        let fixed = b.get(..FIXED_LEN).ok_or(OpenError::Malformed(
            "payload shorter than its fixed fields",
        ))?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&fixed[..16]);
        let time_at = |off: usize| -> Timestamp {
            let mut t = [0u8; 8];
            t.copy_from_slice(&fixed[off..off + 8]);
            Timestamp::from_millis(u64::from_be_bytes(t))
        };
        let (issued_at, last_seen, expires_at) = (time_at(16), time_at(24), time_at(32));
        let flags = fixed[40];
        if flags & !FLAG_SUBJECT != 0 {
            return Err(OpenError::Malformed("unknown payload flags"));
        }
        let mut rest = &b[FIXED_LEN..];
        let subject = if flags & FLAG_SUBJECT != 0 {
            let (len, tail) = rest
                .split_first_chunk::<2>()
                .ok_or(OpenError::Malformed("subject length missing"))?;
            let len = usize::from(u16::from_be_bytes(*len));
            if len > MAX_SUBJECT_LEN {
                return Err(OpenError::Malformed("subject too long"));
            }
            let s = tail
                .get(..len)
                .ok_or(OpenError::Malformed("subject truncated"))?;
            let s =
                std::str::from_utf8(s).map_err(|_| OpenError::Malformed("subject not UTF-8"))?;
            rest = &tail[len..];
            Some(s.to_owned())
        } else {
            None
        };
        let data = if rest.is_empty() {
            Data::Empty
        } else {
            if rest.first() != Some(&b'{') {
                return Err(OpenError::Malformed("session data is not a JSON object"));
            }
            Data::Raw(rest.into())
        };
        Ok(SessionState {
            id: SessionId(id),
            issued_at,
            last_seen,
            expires_at,
            subject,
            data,
        })
    }
}
