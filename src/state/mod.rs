//! What a token carries: the session's metadata and its data, and their binary encoding
//! (the plaintext of a sealed token, the payload of a signed one; see `docs/FORMAT.md`).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::clock::Timestamp;
use crate::error::{DataError, OpenError, SealError};
use crate::limits::MAX_JSON_DEPTH;

/// Longest subject (user id) a token can carry, in bytes.
pub const MAX_SUBJECT_LEN: usize = 1024;

/// Length of the fixed part of the payload: id, three times and the flags byte.
pub(crate) const FIXED_LEN: usize = 16 + 8 + 8 + 8 + 1;
const FLAG_SUBJECT: u8 = 0x01;
/// Longest JSON text of a new value that [`SessionState::holds`] compares with the text it
/// would replace; a longer value is compared parsed.
const SAME_TEXT_MAX: usize = 128;

/// A 128-bit random session id. Shown as 22 base64url characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// A fresh id from the operating system's RNG.
    pub fn generate() -> Result<SessionId, SealError> {
        let mut b = [0u8; 16];
        crate::random::fill(&mut b).map_err(|_| SealError::Rng)?;
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
    Raw(RawJson),
    /// Bytes of a JSON object and changes to it: `Some` sets a key, `None` removes it.
    Patched {
        raw: RawJson,
        changes: Vec<(String, Option<Value>)>,
    },
    /// Parsed (and possibly changed).
    Map(Map<String, Value>),
    /// No data.
    #[default]
    Empty,
}

/// The bytes of a JSON object as they arrived, with an index of its entries (key, and the
/// byte range of the still-unparsed value) built on first need and then reused, so a
/// request that reads, changes and re-seals the data scans the bytes once.
///
/// Shared: a clone (a session handed out again by the open cache, see `crate::cache`) is a
/// reference count, and changes never touch these bytes (they go beside them, in
/// [`Data::Patched`]).
#[derive(Clone, Default)]
pub(crate) struct RawJson(std::sync::Arc<RawInner>);

#[derive(Default)]
struct RawInner {
    bytes: Body,
    index: std::sync::OnceLock<Result<Index, split::Bad>>,
}

/// The bytes, as text when they are UTF-8 (as JSON always is): checked once when the bytes
/// arrive, so that a value read on every request is sliced out as text with no second check.
enum Body {
    Text(String),
    /// Not UTF-8, which no JSON is (only a custom codec could hand such bytes over): each
    /// value is read by serde_json from the bytes, which refuses those holding a bad byte.
    Bytes(Vec<u8>),
}

impl Default for Body {
    fn default() -> Self {
        Body::Text(String::new())
    }
}

impl Body {
    fn new(bytes: Vec<u8>) -> Body {
        match String::from_utf8(bytes) {
            Ok(text) => Body::Text(text),
            Err(e) => Body::Bytes(e.into_bytes()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Text(t) => t.as_bytes(),
            Body::Bytes(b) => b,
        }
    }
}

#[derive(Clone, Debug)]
struct Index {
    entries: Vec<Entry>,
    /// Nesting depth of the whole object (the object itself is level 1): exact when the
    /// splitter made the index, an upper bound when [`SessionState::settle`] did.
    depth: usize,
}

#[derive(Clone, Debug)]
struct Entry {
    key: KeyText,
    value: std::ops::Range<usize>,
}

/// A key: a range of the bytes when it had no escapes (the common case), else decoded.
#[derive(Clone, Debug)]
enum KeyText {
    At(std::ops::Range<usize>),
    Owned(Box<str>),
}

impl RawJson {
    /// The entries, or `None` when the bytes are not a JSON object (or one nested deeper
    /// than serde_json would parse).
    fn index(&self) -> Option<&[Entry]> {
        self.indexed().ok().map(|i| i.entries.as_slice())
    }

    fn indexed(&self) -> Result<&Index, split::Bad> {
        let bytes = self.0.bytes.as_bytes();
        self.0
            .index
            .get_or_init(|| {
                let (entries, depth) = split::object(bytes)?;
                let entries = entries
                    .into_iter()
                    .map(|(key, escaped, value)| {
                        let key = if escaped {
                            // Rare: decode the escapes with serde_json.
                            let text = bytes.get(key)?;
                            KeyText::Owned(serde_json::from_slice::<String>(text).ok()?.into())
                        } else {
                            KeyText::At(key.start + 1..key.end - 1)
                        };
                        Some(Entry { key, value })
                    })
                    .collect::<Option<Vec<Entry>>>()
                    .ok_or(split::Bad::Malformed)?;
                Ok(Index { entries, depth })
            })
            .as_ref()
            .map_err(|e| *e)
    }

    /// Bytes with an index already made, by whoever wrote them.
    fn indexed_as(bytes: Vec<u8>, index: Index) -> RawJson {
        RawJson(std::sync::Arc::new(RawInner {
            bytes: Body::new(bytes),
            index: std::sync::OnceLock::from(Ok(index)),
        }))
    }

    /// The key's bytes: those of a `&str` equal to it (not validated; compare, don't read).
    fn key_bytes<'a>(&'a self, e: &'a Entry) -> &'a [u8] {
        match &e.key {
            KeyText::At(r) => self.0.bytes.as_bytes().get(r.clone()).unwrap_or_default(),
            KeyText::Owned(k) => k.as_bytes(),
        }
    }

    #[cfg(test)]
    fn key<'a>(&'a self, e: &'a Entry) -> &'a str {
        match &e.key {
            KeyText::At(r) => self
                .0
                .bytes
                .as_bytes()
                .get(r.clone())
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or(""),
            KeyText::Owned(k) => k,
        }
    }

    fn value(&self, e: &Entry) -> &[u8] {
        self.0
            .bytes
            .as_bytes()
            .get(e.value.clone())
            .unwrap_or(b"null")
    }

    /// [`RawJson::value`] as text: a slice of the text checked when the bytes arrived.
    fn value_str(&self, e: &Entry) -> Option<&str> {
        match &self.0.bytes {
            Body::Text(t) => t.get(e.value.clone()),
            Body::Bytes(_) => None,
        }
    }

    /// The entry of `key`, `None` when absent; an error when the bytes are not a JSON
    /// object. A key written twice is found as its last entry, as serde_json (and so
    /// `data()`) reads it.
    fn entry(&self, key: &str) -> Result<Option<&Entry>, DataError> {
        if self.is_empty() {
            return Ok(None);
        }
        let entries = self.index().ok_or_else(|| corrupt(self))?;
        Ok(entries
            .iter()
            .rev()
            .find(|e| self.key_bytes(e) == key.as_bytes()))
    }
}

impl std::ops::Deref for RawJson {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.bytes.as_bytes()
    }
}

impl From<Vec<u8>> for RawJson {
    fn from(bytes: Vec<u8>) -> Self {
        RawJson(std::sync::Arc::new(RawInner {
            bytes: Body::new(bytes),
            index: std::sync::OnceLock::new(),
        }))
    }
}

impl From<Box<[u8]>> for RawJson {
    fn from(bytes: Box<[u8]>) -> Self {
        RawJson::from(Vec::from(bytes))
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawJson({} bytes)", self.0.bytes.as_bytes().len())
    }
}

/// Whether `v` nests deeper than `max` levels (a scalar is 0, `[]` is 1). Stops at `max + 1`,
/// so the recursion is bounded whatever the value.
fn exceeds_depth(v: &Value, max: usize) -> bool {
    match v {
        Value::Array(a) => max == 0 || a.iter().any(|c| exceeds_depth(c, max - 1)),
        Value::Object(o) => max == 0 || o.values().any(|c| exceeds_depth(c, max - 1)),
        _ => false,
    }
}

/// The nesting depth of `v` (a scalar is 0, `[]` is 1), or `None` past `max`. Stops there,
/// so the recursion is bounded whatever the value.
fn depth_within(v: &Value, max: usize) -> Option<usize> {
    fn container<'a>(children: impl Iterator<Item = &'a Value>, max: usize) -> Option<usize> {
        let inner = max.checked_sub(1)?;
        children
            .map(|c| depth_within(c, inner))
            .try_fold(0, |d, c| c.map(|c| d.max(c)))
            .map(|d| d + 1)
    }
    match v {
        Value::Array(a) => container(a.iter(), max),
        Value::Object(o) => container(o.values(), max),
        _ => Some(0),
    }
}

mod split {
    //! Finds the entries of a JSON object's text in one pass: where each key and each value
    //! starts and ends, nothing more. It runs only on authenticated bytes (written by this
    //! crate, or by whoever holds a key), so it checks structure, not every value: a value is
    //! validated by serde_json when it is deserialized or when the whole map is parsed. Any
    //! surprise gives an error (corrupt data); no input can make it panic. It never recurses:
    //! nesting is a counter, bounded by [`MAX_JSON_DEPTH`] (past it serde_json would refuse the
    //! data anyway), and the depth it finds is returned for the configurable limit.

    use std::ops::Range;

    use crate::limits::MAX_JSON_DEPTH;

    /// Why bytes are not an indexable JSON object.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Bad {
        /// Not a JSON object.
        Malformed,
        /// Nested deeper than [`MAX_JSON_DEPTH`].
        TooDeep,
    }

    fn ws(b: &[u8], mut i: usize) -> usize {
        while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    }

    /// `b[start]` is `"`: the index after the closing quote, and whether escapes occur.
    fn string(b: &[u8], start: usize) -> Option<(usize, bool)> {
        let mut j = start + 1;
        let mut escaped = false;
        loop {
            match b.get(j)? {
                b'"' => return Some((j + 1, escaped)),
                b'\\' => {
                    escaped = true;
                    j += 2;
                }
                _ => j += 1,
            }
        }
    }

    /// The end of the value at `b[start]`. Raises `deepest` to the value's nesting depth (0
    /// for a scalar, 1 for `[]`) when deeper; `None` when malformed or nested deeper than
    /// `max` (then `deepest` is past `max`).
    fn value(b: &[u8], start: usize, max: usize, deepest: &mut usize) -> Option<usize> {
        match b.get(start)? {
            b'"' => string(b, start).map(|(end, _)| end),
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut j = start;
                loop {
                    match b.get(j)? {
                        b'"' => {
                            j = string(b, j)?.0;
                            continue;
                        }
                        b'{' | b'[' => {
                            depth += 1;
                            if depth > *deepest {
                                *deepest = depth;
                                if depth > max {
                                    return None;
                                }
                            }
                        }
                        b'}' | b']' => {
                            depth = depth.checked_sub(1)?;
                            if depth == 0 {
                                return Some(j + 1);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
            }
            _ => {
                let mut j = start;
                while let Some(c) = b.get(j) {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    j += 1;
                }
                (j > start).then_some(j)
            }
        }
    }

    /// `(key with its quotes, key has escapes, value)` for each entry.
    pub(super) type Entries = Vec<(Range<usize>, bool, Range<usize>)>;

    /// The entries of the object, and its nesting depth (1 for an object of scalars).
    pub(super) fn object(b: &[u8]) -> Result<(Entries, usize), Bad> {
        use Bad::Malformed;
        let mut i = ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return Err(Malformed);
        }
        i = ws(b, i + 1);
        let mut out = Vec::with_capacity(8);
        let end_at = |i: usize| {
            if ws(b, i) == b.len() {
                Ok(())
            } else {
                Err(Malformed)
            }
        };
        if b.get(i) == Some(&b'}') {
            end_at(i + 1)?;
            return Ok((out, 1));
        }
        let mut deepest = 0;
        loop {
            if b.get(i) != Some(&b'"') {
                return Err(Malformed);
            }
            let (key_end, escaped) = string(b, i).ok_or(Malformed)?;
            let key = i..key_end;
            i = ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return Err(Malformed);
            }
            i = ws(b, i + 1);
            let start = i;
            // The object itself is one level.
            let Some(end) = value(b, start, MAX_JSON_DEPTH - 1, &mut deepest) else {
                return Err(if deepest >= MAX_JSON_DEPTH {
                    Bad::TooDeep
                } else {
                    Malformed
                });
            };
            out.push((key, escaped, start..end));
            i = ws(b, end);
            match b.get(i) {
                Some(b',') => i = ws(b, i + 1),
                Some(b'}') => {
                    end_at(i + 1)?;
                    return Ok((out, 1 + deepest));
                }
                _ => return Err(Malformed),
            }
        }
    }
}

fn parse_map(raw: &[u8]) -> Result<Map<String, Value>, DataError> {
    if raw.is_empty() {
        return Ok(Map::new());
    }
    serde_json::from_slice(raw).map_err(DataError::Corrupt)
}

/// Unchanged entries of `raw` from `first` on, copied as one span by
/// [`SessionState::write_data_indexed`].
struct Run<'a> {
    /// From the first entry's key (its opening quote) to the last entry's value.
    bytes: &'a [u8],
    /// Where `bytes` starts in `raw`.
    from: usize,
    entries: &'a [Entry],
}

/// The longest run of entries from `first` on that are unchanged and whose keys are
/// written as they came (no escapes), or `None` when `first` is not such an entry (it
/// changed, or its key had escapes) or the index does not fit the bytes.
fn unchanged_run<'a>(
    raw: &'a RawJson,
    entries: &'a [Entry],
    first: usize,
    changed: &impl Fn(&Entry) -> bool,
) -> Option<Run<'a>> {
    let rest = entries.get(first..)?;
    let len = rest
        .iter()
        .take_while(|e| matches!(e.key, KeyText::At(_)) && !changed(e))
        .count();
    let run = rest.get(..len)?;
    let from = match &run.first()?.key {
        KeyText::At(k) => k.start.checked_sub(1)?,
        KeyText::Owned(_) => return None,
    };
    let to = run.last()?.value.end;
    // Every range of the run lies within the span, so that shifting it cannot overflow.
    let within = |r: &std::ops::Range<usize>| from <= r.start && r.start <= r.end && r.end <= to;
    if !run
        .iter()
        .all(|e| matches!(&e.key, KeyText::At(k) if within(k)) && within(&e.value))
    {
        return None;
    }
    let bytes = raw.get(from..to)?;
    // The span starts at the key's opening quote.
    (bytes.first() == Some(&b'"')).then_some(Run {
        bytes,
        from,
        entries: run,
    })
}

/// What the changes recorded for `key`: `Some(Some(value))` set, `Some(None)` removed,
/// `None` nothing (the key is as it arrived). A key has at most one recorded change.
fn recorded<'a>(changes: &'a [(String, Option<Value>)], key: &str) -> Option<&'a Option<Value>> {
    changes.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn find_in<T: DeserializeOwned>(raw: &RawJson, key: &str) -> Result<Option<T>, DataError> {
    match raw.entry(key)? {
        None => Ok(None),
        Some(e) => match raw.value_str(e) {
            Some(json) => crate::plain_str::from_value_str(json),
            None => serde_json::from_slice(raw.value(e)),
        }
        .map(Some)
        .map_err(|source| DataError::WrongType {
            key: key.to_owned(),
            source,
        }),
    }
}

fn corrupt(raw: &[u8]) -> DataError {
    match serde_json::from_slice::<Map<String, Value>>(raw) {
        Err(e) => DataError::Corrupt(e),
        Ok(_) => DataError::Corrupt(serde::de::Error::custom(
            "session data is not a plain JSON object",
        )),
    }
}

/// The state of one session: metadata plus data. This is what codecs seal and open.
#[derive(Clone, Debug)]
pub struct SessionState {
    id: SessionId,
    issued_at: Timestamp,
    last_seen: Timestamp,
    expires_at: Timestamp,
    subject: Option<std::sync::Arc<str>>,
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
        self.subject = subject.map(std::sync::Arc::from);
    }

    /// Whether the data holds no entries (without building the map).
    pub fn is_empty(&self) -> bool {
        match &self.data {
            Data::Empty => true,
            // `{}` as this crate writes it, else an object with no entries, such as `{ }`.
            Data::Raw(b) => {
                b.is_empty() || b.as_ref() == b"{}" || b.index().is_some_and(<[_]>::is_empty)
            }
            Data::Map(m) => m.is_empty(),
            Data::Patched { raw, changes } => {
                if changes.iter().any(|(_, v)| v.is_some()) {
                    return false;
                }
                // Every remaining raw key must have been removed.
                raw.index().is_some_and(|e| {
                    e.iter().all(|en| {
                        changes
                            .iter()
                            .any(|(c, _)| c.as_bytes() == raw.key_bytes(en))
                    })
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
            Data::Patched { raw, changes } => match recorded(changes, key) {
                Some(Some(v)) => typed(v),
                Some(None) => Ok(None),
                None => find_in(raw, key),
            },
        }
    }

    /// Whether `key` is present. A value still in the bytes it arrived in is found, not
    /// read: reading it is `get`'s job (and its error, should the value not parse).
    pub fn contains(&self, key: &str) -> Result<bool, DataError> {
        match &self.data {
            Data::Empty => Ok(false),
            Data::Map(m) => Ok(m.contains_key(key)),
            Data::Raw(raw) => Ok(raw.entry(key)?.is_some()),
            Data::Patched { raw, changes } => match recorded(changes, key) {
                Some(v) => Ok(v.is_some()),
                None => Ok(raw.entry(key)?.is_some()),
            },
        }
    }

    /// Sets `key` to `value` (`None` removes it), returning the old value as JSON.
    fn change(&mut self, key: &str, value: Option<Value>) -> Result<Option<Value>, DataError> {
        let old = self.get::<Value>(key)?;
        if old != value {
            self.record(key, value);
        }
        Ok(old)
    }

    /// Sets `key` to `value` (`None` removes it), whatever it held.
    fn record(&mut self, key: &str, value: Option<Value>) {
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
            Data::Raw(_) => {
                if let Data::Raw(raw) = std::mem::take(&mut self.data) {
                    self.data = Data::Patched {
                        raw,
                        changes: vec![(key.to_owned(), value)],
                    };
                }
            }
            Data::Patched { changes, .. } => match changes.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => changes.push((key.to_owned(), value)),
            },
        }
    }

    /// Whether `key` holds `value` already, when that can be told without parsing what it
    /// holds: `None` when it cannot. A value still in the bytes it arrived in is compared as
    /// JSON text with `value` written out (on the stack, if it fits in [`SAME_TEXT_MAX`]
    /// bytes). The same text is the same value; another text may still be the same value
    /// written differently (spaces, escapes, key order), which is then taken for a change:
    /// the session is sealed again, never a change lost.
    fn holds(&self, key: &str, value: &Value) -> Option<bool> {
        let raw = match &self.data {
            Data::Empty => return Some(false),
            Data::Map(m) => return Some(m.get(key) == Some(value)),
            Data::Patched { raw, changes } => {
                if let Some(v) = recorded(changes, key) {
                    return Some(v.as_ref() == Some(value));
                }
                raw
            }
            Data::Raw(raw) => raw,
        };
        let entry = match raw.entry(key) {
            Ok(Some(entry)) => entry,
            Ok(None) => return Some(false),
            // Left to the parse, which names what is wrong.
            Err(_) => return None,
        };
        let mut buf = [0u8; SAME_TEXT_MAX];
        let mut rest = &mut buf[..];
        serde_json::to_writer(&mut rest, value).ok()?;
        let written = SAME_TEXT_MAX - rest.len();
        Some(buf.get(..written) == Some(raw.value(entry)))
    }

    /// Stores `value` under `key`, returning whether the data changed. Storing the value a
    /// key already holds is no change. One exception: a value that arrived written
    /// differently from how serde_json writes it (with spaces, escapes or its keys in
    /// another order) may count as changed, so that its session is sealed again; a change is
    /// never missed.
    pub fn insert<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<bool, DataError> {
        self.insert_value(key, value, None)
    }

    /// [`SessionState::insert`], refusing a value that would nest the data deeper than
    /// `max_depth` levels (the data object is level 1) with [`DataError::TooDeep`].
    pub(crate) fn insert_bounded<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
        max_depth: usize,
    ) -> Result<bool, DataError> {
        self.insert_value(key, value, Some(max_depth))
    }

    fn insert_value<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
        max_depth: Option<usize>,
    ) -> Result<bool, DataError> {
        let v = serde_json::to_value(value).map_err(|source| DataError::Serialize {
            key: key.to_owned(),
            source,
        })?;
        if let Some(max_depth) = max_depth
            && exceeds_depth(&v, max_depth.saturating_sub(1))
        {
            return Err(DataError::TooDeep {
                key: key.to_owned(),
                max: max_depth,
            });
        }
        let same = match self.holds(key, &v) {
            Some(same) => same,
            None => self.get::<Value>(key)?.as_ref() == Some(&v),
        };
        if !same {
            self.record(key, Some(v));
        }
        Ok(!same)
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
        self.data = Data::Raw(raw.into());
    }

    /// Appends the data's JSON text to `out`, nothing when empty.
    fn write_data(&self, out: &mut Vec<u8>) -> Result<(), SealError> {
        self.write_data_indexed(out, None)
    }

    /// [`SessionState::write_data`], recording in `index`, for changed data, where each entry
    /// it writes lands (relative to where the data starts in `out`).
    fn write_data_indexed(
        &self,
        out: &mut Vec<u8>,
        mut index: Option<&mut Vec<Entry>>,
    ) -> Result<(), SealError> {
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
                let entries: &[Entry] = if raw.is_empty() {
                    &[]
                } else {
                    raw.index().ok_or_else(|| match corrupt(raw) {
                        DataError::Corrupt(e) => SealError::Serialize(e),
                        _ => SealError::Encrypt,
                    })?
                };
                let changed = |e: &Entry| {
                    let k = raw.key_bytes(e);
                    changes.iter().any(|(c, _)| c.as_bytes() == k)
                };
                let mut i = 0;
                while let Some(e) = entries.get(i) {
                    // A run of unchanged entries whose keys have no escapes is copied as
                    // one span, separators included, and its index shifted to where it
                    // lands.
                    if let Some(run) = unchanged_run(raw, entries, i, &changed) {
                        sep(out);
                        let landed = out.len() - start;
                        out.extend_from_slice(run.bytes);
                        if let Some(index) = index.as_deref_mut() {
                            let shift = |r: &std::ops::Range<usize>| {
                                r.start - run.from + landed..r.end - run.from + landed
                            };
                            for e in run.entries {
                                if let KeyText::At(k) = &e.key {
                                    index.push(Entry {
                                        key: KeyText::At(shift(k)),
                                        value: shift(&e.value),
                                    });
                                }
                            }
                        }
                        i += run.entries.len();
                        continue;
                    }
                    i += 1;
                    if changed(e) {
                        continue;
                    }
                    let k = raw.key_bytes(e);
                    sep(out);
                    let key_start = out.len() - start;
                    let key = match &e.key {
                        // A key with no escapes is written back as it came.
                        KeyText::At(_) => {
                            out.push(b'"');
                            out.extend_from_slice(k);
                            out.push(b'"');
                            KeyText::At(key_start + 1..out.len() - start - 1)
                        }
                        KeyText::Owned(k) => {
                            serde_json::to_writer(&mut *out, k).map_err(SealError::Serialize)?;
                            KeyText::Owned(k.clone())
                        }
                    };
                    out.push(b':');
                    let value_start = out.len() - start;
                    out.extend_from_slice(raw.value(e));
                    if let Some(index) = index.as_deref_mut() {
                        index.push(Entry {
                            key,
                            value: value_start..out.len() - start,
                        });
                    }
                }
                for (k, v) in changes {
                    if let Some(v) = v {
                        sep(out);
                        let key_start = out.len() - start;
                        serde_json::to_writer(&mut *out, k).map_err(SealError::Serialize)?;
                        let key_end = out.len() - start;
                        out.push(b':');
                        let value_start = out.len() - start;
                        serde_json::to_writer(&mut *out, v).map_err(SealError::Serialize)?;
                        if let Some(index) = index.as_deref_mut() {
                            // Written as it is unless it needed escapes.
                            let key = if key_end - key_start == k.len() + 2 {
                                KeyText::At(key_start + 1..key_end - 1)
                            } else {
                                KeyText::Owned(k.as_str().into())
                            };
                            index.push(Entry {
                                key,
                                value: value_start..out.len() - start,
                            });
                        }
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

    /// Writes the data's changes into its bytes, leaving the state as opening a token of it
    /// would give it back: data that encodes to nothing becomes [`Data::Empty`], anything
    /// else the bytes a token carries. The open cache keeps a state sealed this way; sealing
    /// it then copies the bytes instead of encoding the data a second time.
    pub(crate) fn settle(&mut self) -> Result<(), SealError> {
        // Changed raw data is indexed as it is written, so that what the cache keeps is not
        // scanned again: the entries where they were written, and an upper bound of the
        // depth (the arrived object's, or a changed value's if deeper).
        let depth = match &self.data {
            Data::Raw(_) | Data::Empty => return Ok(()),
            Data::Map(_) => None,
            Data::Patched { raw, changes } => {
                let arrived = if raw.is_empty() {
                    Some(1)
                } else {
                    raw.indexed().ok().map(|i| i.depth)
                };
                changes
                    .iter()
                    .filter_map(|(_, v)| v.as_ref())
                    .try_fold(arrived.unwrap_or(usize::MAX), |d, v| {
                        depth_within(v, MAX_JSON_DEPTH.saturating_sub(1)).map(|vd| d.max(vd + 1))
                    })
                    .filter(|d| *d <= MAX_JSON_DEPTH)
            }
        };
        let mut out = Vec::with_capacity(self.encoded_len_hint().saturating_sub(FIXED_LEN));
        let mut entries = match &self.data {
            Data::Patched { raw, changes } if depth.is_some() => {
                Vec::with_capacity(raw.index().map_or(0, <[_]>::len) + changes.len())
            }
            _ => Vec::new(),
        };
        self.write_data_indexed(&mut out, depth.is_some().then_some(&mut entries))?;
        self.data = match depth {
            _ if out.is_empty() => Data::Empty,
            Some(depth) => Data::Raw(RawJson::indexed_as(out, Index { entries, depth })),
            None => Data::Raw(out.into()),
        };
        Ok(())
    }

    /// About how many bytes of memory the state holds beyond its own size (data, its index,
    /// subject), for the open cache's budget.
    pub(crate) fn heap_size(&self) -> usize {
        let data = match &self.data {
            Data::Empty => 0,
            Data::Raw(raw) => {
                raw.len()
                    + raw
                        .0
                        .index
                        .get()
                        .and_then(|i| i.as_ref().ok())
                        .map_or(0, |i| i.entries.len() * std::mem::size_of::<Entry>())
            }
            Data::Map(m) => 64 * m.len(),
            Data::Patched { raw, changes } => raw.len() + 64 * changes.len(),
        };
        data + self.subject.as_ref().map_or(0, |s| s.len())
    }

    /// Checks the data as it arrived in a token against a size and a nesting bound, before
    /// anything parses it. Indexes the data on the way (one pass, no recursion), so the
    /// handler's first read finds the index built. Data that is not a JSON object is
    /// refused here too, rather than at the handler's first read.
    pub(crate) fn check_data(&self, max_len: usize, max_depth: usize) -> Result<(), OpenError> {
        let Data::Raw(raw) = &self.data else {
            return Ok(());
        };
        if raw.len() > max_len {
            return Err(OpenError::DataTooLarge {
                len: raw.len(),
                max: max_len,
            });
        }
        if raw.is_empty() {
            return Ok(());
        }
        match raw.indexed() {
            Ok(index) if index.depth <= max_depth => Ok(()),
            Ok(_) | Err(split::Bad::TooDeep) => Err(OpenError::DataTooDeep { max: max_depth }),
            Err(split::Bad::Malformed) => {
                Err(OpenError::Malformed("session data is not a JSON object"))
            }
        }
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
            Some(std::sync::Arc::from(s))
        } else {
            None
        };
        let data = if rest.is_empty() {
            Data::Empty
        } else {
            if rest.first() != Some(&b'{') {
                return Err(OpenError::Malformed("session data is not a JSON object"));
            }
            Data::Raw(Box::<[u8]>::from(rest).into())
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The entries as (decoded key, value) text, through the splitter.
    fn split_text(b: &[u8]) -> Option<Vec<(String, String)>> {
        let raw = RawJson::from(Box::<[u8]>::from(b));
        let entries = raw.index()?;
        Some(
            entries
                .iter()
                .map(|e| {
                    (
                        raw.key(e).to_owned(),
                        String::from_utf8_lossy(raw.value(e)).into_owned(),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn splits_tricky_objects() {
        let text = br#" { "a" : "x}\"]{" , "b\"q":[1,{"c":"]"}], "n":-1.5e3,"t":true , "z":null,"o":{} } "#;
        assert_eq!(
            split_text(text).unwrap(),
            vec![
                ("a".into(), r#""x}\"]{""#.into()),
                ("b\"q".into(), r#"[1,{"c":"]"}]"#.into()),
                ("n".into(), "-1.5e3".into()),
                ("t".into(), "true".into()),
                ("z".into(), "null".into()),
                ("o".into(), "{}".into()),
            ]
        );
        assert_eq!(split_text(b"{}").unwrap(), vec![]);
        for bad in [
            &b""[..],
            b"[]",
            b"{",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"{\"a\":1} x",
            b"{\"a\":\"unterminated}",
            b"{\"a\":[1,2}",
            b"{\"a\":]]}",
            b"{\"a\\",
        ] {
            assert!(
                split_text(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// `{"k":[[...]]}` nested `depth` levels deep, the object included.
    fn nested(depth: usize) -> Vec<u8> {
        let inner = depth - 1;
        format!("{{\"k\":{}{}}}", "[".repeat(inner), "]".repeat(inner)).into_bytes()
    }

    fn state_with(data: &[u8]) -> SessionState {
        let mut s = SessionState::new(
            SessionId::from_bytes([1; 16]),
            Timestamp::from_millis(1),
            Timestamp::from_millis(2),
        );
        s.set_raw_data(data.into());
        s
    }

    #[test]
    fn splitter_depth_is_bounded_like_serde_json() {
        use crate::limits::MAX_JSON_DEPTH;
        for (depth, ok) in [
            (1, true),
            (2, true),
            (MAX_JSON_DEPTH, true),
            (MAX_JSON_DEPTH + 1, false),
        ] {
            let text = if depth == 1 {
                b"{\"k\":1}".to_vec()
            } else {
                nested(depth)
            };
            let raw = RawJson::from(Box::<[u8]>::from(text.as_slice()));
            match raw.indexed() {
                Ok(i) => assert!(ok && i.depth == depth, "{depth}"),
                Err(e) => assert!(!ok && e == split::Bad::TooDeep, "{depth}: {e:?}"),
            }
            // Exactly where serde_json stops too.
            assert_eq!(
                serde_json::from_slice::<Map<String, Value>>(&text).is_ok(),
                ok,
                "{depth}"
            );
        }
        // Far deeper than any stack: refused in one pass, no recursion, no overflow.
        let deep = nested(1_000_000);
        assert!(split_text(&deep).is_none());
        assert!(matches!(
            state_with(&deep).check_data(usize::MAX, MAX_JSON_DEPTH),
            Err(OpenError::DataTooDeep { .. })
        ));
    }

    /// Data that is not a JSON object (only a codec's bug could carry it here: tokens are
    /// authenticated) is an error for every access that needs its entries, never a panic
    /// and never a silent answer.
    #[test]
    fn data_that_is_not_an_object_is_an_error() {
        for text in [&b"[1,2]"[..], b"{\"a\":", b"\"a\"", b"{\"a\" 1}"] {
            let mut s = state_with(text);
            assert!(
                matches!(s.contains("a"), Err(DataError::Corrupt(_))),
                "{text:?}"
            );
            assert!(
                matches!(s.get::<Value>("a"), Err(DataError::Corrupt(_))),
                "{text:?}"
            );
            assert!(
                matches!(s.insert("a", &1), Err(DataError::Corrupt(_))),
                "{text:?}"
            );
            assert!(
                matches!(s.remove("a"), Err(DataError::Corrupt(_))),
                "{text:?}"
            );
        }
    }

    /// Data that is not UTF-8 (which no JSON is; only a custom codec could hand it over) is
    /// read value by value as serde_json reads bytes: a value that holds the bad byte is an
    /// error, the others read as they are. Text is read from the slice checked on arrival.
    #[test]
    fn values_read_from_text_or_bytes_alike() {
        let bytes = state_with(b"{\"bad\":\"a\xffb\",\"good\":\"ok\",\"n\":7}");
        assert!(matches!(bytes.data, Data::Raw(ref r) if matches!(r.0.bytes, Body::Bytes(_))));
        assert!(matches!(
            bytes.get::<String>("bad"),
            Err(DataError::WrongType { .. })
        ));
        assert_eq!(
            bytes.get::<String>("good").ok().flatten().as_deref(),
            Some("ok")
        );
        assert_eq!(bytes.get::<u64>("n").ok().flatten(), Some(7));
        let text = state_with("{\"name\":\"h\u{e9}llo\",\"n\":7}".as_bytes());
        assert!(matches!(text.data, Data::Raw(ref r) if matches!(r.0.bytes, Body::Text(_))));
        assert_eq!(
            text.get::<String>("name").ok().flatten().as_deref(),
            Some("h\u{e9}llo")
        );
        assert_eq!(text.get::<u64>("n").ok().flatten(), Some(7));
        assert!(matches!(
            text.get::<u64>("name"),
            Err(DataError::WrongType { .. })
        ));
    }

    /// The text comparison of `insert` at its edges: a value longer than `SAME_TEXT_MAX` is
    /// compared parsed, and a value that arrived written differently counts as changed.
    #[test]
    fn insert_compares_long_values_parsed_and_other_spellings_as_changes() {
        let long = "x".repeat(SAME_TEXT_MAX * 2);
        let mut s = state_with(format!(r#"{{"big":"{long}","o":{{"x" : 1}}}}"#).as_bytes());
        assert!(!s.insert("big", &long).unwrap());
        assert!(
            matches!(s.data, Data::Raw(_)),
            "an equal long value is no change"
        );
        assert!(s.insert("big", &"y".repeat(SAME_TEXT_MAX * 2)).unwrap());
        // `{"x" : 1}` is not how serde_json writes `{"x":1}`: sealed again, same data.
        assert!(s.insert("o", &serde_json::json!({"x": 1})).unwrap());
        assert_eq!(
            s.get::<Value>("o").unwrap(),
            Some(serde_json::json!({"x": 1}))
        );
    }

    #[test]
    fn check_data_at_and_over_each_limit() {
        let text = nested(5);
        let s = state_with(&text);
        assert!(s.check_data(text.len(), 5).is_ok());
        assert!(matches!(
            s.check_data(text.len(), 4),
            Err(OpenError::DataTooDeep { max: 4 })
        ));
        assert!(matches!(
            s.check_data(text.len() - 1, 5),
            Err(OpenError::DataTooLarge { .. })
        ));
        // The index built by the check serves the reads that follow.
        assert_eq!(
            s.get::<Value>("k").unwrap(),
            Some(serde_json::json!([[[[]]]]))
        );
        assert!(matches!(
            state_with(b"{\"a\":").check_data(100, 5),
            Err(OpenError::Malformed(_))
        ));
        assert!(state_with(b"").check_data(0, 1).is_ok());
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            // Exactly representable, so the comparison is not about float parsing.
            (-4000i32..4000).prop_map(|i| Value::from(f64::from(i) / 8.0)),
            ".{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Settles `state` and checks that the index it made for its bytes is the splitter's
    /// (same entries; a depth at least the splitter's), and that the bytes hold the data.
    fn check_settle(mut state: SessionState) -> Result<bool, TestCaseError> {
        let mut settled = state.clone();
        let before = state.data()?.clone();
        settled.settle()?;
        // Indexed, or nothing left to index.
        let indexed = match &settled.data {
            Data::Raw(raw) => raw.0.index.get().is_some(),
            Data::Empty => true,
            _ => false,
        };
        match &settled.data {
            Data::Empty => prop_assert!(before.is_empty()),
            Data::Raw(raw) => {
                let parsed: Map<String, Value> = serde_json::from_slice(raw).unwrap();
                prop_assert_eq!(&parsed, &before);
                let fresh = RawJson::from(Box::<[u8]>::from(&raw[..]));
                let want = fresh.indexed().unwrap();
                if let Some(Ok(got)) = raw.0.index.get() {
                    prop_assert_eq!(got.entries.len(), want.entries.len());
                    for (g, w) in got.entries.iter().zip(&want.entries) {
                        prop_assert_eq!(raw.key(g), fresh.key(w));
                        prop_assert_eq!(&g.value, &w.value);
                    }
                    prop_assert!(got.depth >= want.depth, "{} < {}", got.depth, want.depth);
                }
            }
            other => prop_assert!(false, "not settled: {other:?}"),
        }
        Ok(indexed)
    }

    /// `map` as serde_json writes it, compact or pretty-printed.
    fn written(map: &Map<String, Value>, pretty: bool) -> Vec<u8> {
        if pretty {
            serde_json::to_vec_pretty(map).unwrap()
        } else {
            serde_json::to_vec(map).unwrap()
        }
    }

    /// Sets (`Some`) or removes (`None`) each key in turn.
    fn apply(
        state: &mut SessionState,
        changes: Vec<(String, Option<Value>)>,
    ) -> Result<(), DataError> {
        for (k, v) in changes {
            match v {
                Some(v) => {
                    state.insert(&k, &v)?;
                }
                None => {
                    state.remove(&k)?;
                }
            }
        }
        Ok(())
    }

    proptest! {
        /// Settling changed data indexes it as the splitter would, without scanning it.
        #[test]
        fn settle_indexes_what_it_writes(
            arrived in prop::collection::btree_map(".{0,4}", json_value(), 0..5),
            changes in prop::collection::vec((".{0,4}", prop::option::of(json_value())), 0..5),
            escaped_key in any::<bool>(),
            pretty in any::<bool>(),
        ) {
            let mut arrived: Map<String, Value> = arrived.into_iter().collect();
            if escaped_key {
                arrived.insert("q\"\\\n".to_owned(), Value::from(1));
            }
            // Pretty-printed, unchanged entries are copied with the whitespace between them.
            let text = written(&arrived, pretty);
            let mut state = state_with(&text);
            apply(&mut state, changes)?;
            let patched = matches!(state.data, Data::Patched { .. });
            let indexed = check_settle(state)?;
            // Changed data with no deep values is always indexed as written.
            prop_assert!(indexed || !patched);
        }

        /// `insert` never misses a change: whenever it says "unchanged", the data is what
        /// it was, whether the old value is still in the bytes it arrived in (compact or
        /// pretty-printed), among earlier changes, or parsed into a map; and storing a value
        /// equal to the one a key holds, as serde_json writes it, is no change.
        #[test]
        fn insert_reports_every_change(
            arrived in prop::collection::btree_map("[a-c]{0,2}", json_value(), 0..5),
            inserts in prop::collection::vec(("[a-c]{0,2}", json_value(), any::<bool>()), 1..6),
            pretty in any::<bool>(),
            parsed in any::<bool>(),
        ) {
            let arrived: Map<String, Value> = arrived.into_iter().collect();
            let text = written(&arrived, pretty);
            let mut state = state_with(&text);
            if parsed {
                state.data()?;
            }
            for (k, v, again) in inserts {
                // Half the time the value the key holds now, to find "unchanged" answers.
                let v = match state.get::<Value>(&k)? {
                    Some(held) if again => held,
                    _ => v,
                };
                let before = state.clone().data()?.clone();
                let changed = state.insert(&k, &v)?;
                let after = state.clone().data()?.clone();
                prop_assert_eq!(after.get(&k), Some(&v));
                if !changed {
                    prop_assert_eq!(&before, &after);
                }
                // The same value is no change, except where pretty-printed text spreads a
                // non-empty array or object over several lines.
                let spread = pretty
                    && match &v {
                        Value::Array(a) => !a.is_empty(),
                        Value::Object(o) => !o.is_empty(),
                        _ => false,
                    };
                if before.get(&k) == Some(&v) && !spread {
                    prop_assert!(!changed);
                }
            }
        }

        /// `contains` agrees with the parsed map, for data as it arrived, changed, or parsed.
        #[test]
        fn contains_agrees_with_the_map(
            arrived in prop::collection::btree_map("[a-c]{0,2}", json_value(), 0..5),
            changes in prop::collection::vec(("[a-c]{0,2}", prop::option::of(json_value())), 0..4),
            pretty in any::<bool>(),
            parsed in any::<bool>(),
        ) {
            let arrived: Map<String, Value> = arrived.into_iter().collect();
            let text = written(&arrived, pretty);
            let mut state = state_with(&text);
            apply(&mut state, changes)?;
            if parsed {
                state.data()?;
            }
            let map = state.clone().data()?.clone();
            for k in ["", "a", "b", "c", "ab", "ca"] {
                prop_assert_eq!(state.contains(k)?, map.contains_key(k));
            }
        }

        /// On any object serde_json writes, the splitter finds exactly serde_json's entries.
        #[test]
        fn agrees_with_serde_json(map in prop::collection::btree_map(".{0,6}", json_value(), 0..6)) {
            let map: Map<String, Value> = map.into_iter().collect();
            for text in [serde_json::to_vec(&map).unwrap(), serde_json::to_vec_pretty(&map).unwrap()] {
                let got = split_text(&text).unwrap();
                prop_assert_eq!(got.len(), map.len());
                for (k, v) in got {
                    let parsed: Value = serde_json::from_str(&v).unwrap();
                    prop_assert_eq!(Some(&parsed), map.get(&k));
                }
            }
        }

        /// Any bytes at all: an answer, never a panic.
        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = split_text(&bytes);
            let mut with_brace = b"{\"k\":".to_vec();
            with_brace.extend_from_slice(&bytes);
            let _ = split_text(&with_brace);
        }
    }
}
