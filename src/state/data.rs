//! The session's data: a JSON object, parsed and checked by serde_json once, when a token
//! opens; read and changed as a `serde_json` map; written by serde_json when it is sealed.

use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{DataError, OpenError, SealError};
use crate::limits::MAX_JSON_DEPTH;

/// The session's data: a JSON object's entries, in serde_json's map (keys in sorted order).
///
/// Shared: a clone (a session handed out again by the open cache, see `crate::cache`) is a
/// reference count, and the first change to a shared map copies it (`Arc::make_mut`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Data(
    /// `None` when the session never had data: no allocation for a new, empty session.
    Option<Arc<Json>>,
);

/// The map, and the length of its JSON text once known.
#[derive(Clone, Debug, Default)]
struct Json {
    map: Map<String, Value>,
    /// The length of the text the map was parsed from, else of the text [`Data::write`]
    /// wrote; forgotten when the map changes. So the data limit is checked against what
    /// arrived, and a session just sealed is not written a second time to be measured.
    len: OnceLock<usize>,
}

impl Data {
    /// Parses the text of a JSON object (`{}` when empty) with serde_json, which validates
    /// all of it (syntax, escapes, UTF-8, numbers). A key written twice keeps its last value,
    /// as serde_json and JavaScript's `JSON.parse` read it.
    pub(crate) fn parse(json: &[u8]) -> Result<Data, OpenError> {
        if json.is_empty() {
            return Ok(Data::default());
        }
        let map: Map<String, Value> = serde_json::from_slice(json).map_err(|e| {
            // serde_json stops past its recursion limit of 128 levels and names that in its
            // message (its error has no more specific kind). Only a key holder can send such
            // data; it is refused either way, this only picks the reason logged.
            if e.to_string().starts_with("recursion limit exceeded") {
                OpenError::DataTooDeep {
                    max: MAX_JSON_DEPTH,
                }
            } else {
                OpenError::Malformed("session data is not a JSON object")
            }
        })?;
        Ok(Data(Some(Arc::new(Json {
            map,
            len: OnceLock::from(json.len()),
        }))))
    }

    /// The map, `None` when there has never been one.
    pub(crate) fn map(&self) -> Option<&Map<String, Value>> {
        self.0.as_deref().map(|j| &j.map)
    }

    /// The map, an empty one made if there has never been one.
    pub(crate) fn map_or_empty(&mut self) -> &Map<String, Value> {
        &self.0.get_or_insert_with(Default::default).map
    }

    /// The map, to change: a copy of it first if it is shared. Forgets its JSON length.
    pub(crate) fn map_mut(&mut self) -> &mut Map<String, Value> {
        let json = Arc::make_mut(self.0.get_or_insert_with(Default::default));
        json.len = OnceLock::new();
        &mut json.map
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map().is_none_or(Map::is_empty)
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.map().is_some_and(|m| m.contains_key(key))
    }

    /// The value under `key` as a `T`, read from the map's value (not a copy of it).
    pub(crate) fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DataError> {
        let Some(value) = self.map().and_then(|m| m.get(key)) else {
            return Ok(None);
        };
        T::deserialize(value)
            .map(Some)
            .map_err(|source| DataError::WrongType {
                key: key.to_owned(),
                source,
            })
    }

    /// Whether `key` holds `value`.
    pub(crate) fn holds(&self, key: &str, value: &Value) -> bool {
        self.map().and_then(|m| m.get(key)) == Some(value)
    }

    /// Stores `value` under `key`, whatever it held.
    pub(crate) fn set(&mut self, key: &str, value: Value) {
        let map = self.map_mut();
        match map.get_mut(key) {
            Some(slot) => *slot = value,
            None => {
                map.insert(key.to_owned(), value);
            }
        }
    }

    /// Removes `key`, returning its value.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Value> {
        if !self.contains(key) {
            return None;
        }
        self.map_mut().remove(key)
    }

    pub(crate) fn clear(&mut self) {
        *self = Data::default();
    }

    /// Appends the data's JSON text to `out`; nothing when there are no entries.
    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), SealError> {
        let Some(json) = self.0.as_deref().filter(|j| !j.map.is_empty()) else {
            return Ok(());
        };
        let start = out.len();
        serde_json::to_writer(&mut *out, &json.map).map_err(SealError::Serialize)?;
        // Already set when the map is as it arrived: the arrived length is kept.
        let _ = json.len.set(out.len() - start);
        Ok(())
    }

    /// The length of the data's JSON text, when known without writing it out.
    pub(crate) fn known_json_len(&self) -> Option<usize> {
        match self.0.as_deref() {
            None => Some(0),
            Some(json) => json.len.get().copied(),
        }
    }

    /// The length of the data's JSON text: as it arrived when unchanged since, else as
    /// [`Data::write`] writes it (0 when empty). Written out to be measured only when
    /// neither happened yet.
    fn json_len(&self) -> Result<usize, SealError> {
        if let Some(len) = self.known_json_len() {
            return Ok(len);
        }
        let mut counter = Counter(0);
        if let Some(json) = self.0.as_deref().filter(|j| !j.map.is_empty()) {
            serde_json::to_writer(&mut counter, &json.map).map_err(SealError::Serialize)?;
            let _ = json.len.set(counter.0);
        }
        Ok(counter.0)
    }

    /// Refuses data longer than `max_len` bytes of JSON text or nested deeper than
    /// `max_depth` levels (the data object itself is level 1). Returns about how many bytes
    /// of memory the data holds (its keys and strings, and a fixed amount per value and per
    /// entry), for the open cache's budget: one walk for both.
    pub(crate) fn check(&self, max_len: usize, max_depth: usize) -> Result<usize, OpenError> {
        let Some(map) = self.map() else {
            return Ok(0);
        };
        // Only a value whose serialization fails (none that serde_json parsed) has no length.
        let len = self
            .json_len()
            .map_err(|_| OpenError::Malformed("session data is not a JSON object"))?;
        if len > max_len {
            return Err(OpenError::DataTooLarge { len, max: max_len });
        }
        object_size(map, max_depth.saturating_sub(1))
            .ok_or(OpenError::DataTooDeep { max: max_depth })
    }
}

/// The value as JSON, refused with [`DataError::TooDeep`] when it would nest the data
/// deeper than `max_depth` levels (the data object is level 1).
pub(crate) fn to_value<T: Serialize + ?Sized>(
    key: &str,
    value: &T,
    max_depth: Option<usize>,
) -> Result<Value, DataError> {
    let v = serde_json::to_value(value).map_err(|source| DataError::Serialize {
        key: key.to_owned(),
        source,
    })?;
    if let Some(max) = max_depth
        && exceeds_depth(&v, max.saturating_sub(1))
    {
        return Err(DataError::TooDeep {
            key: key.to_owned(),
            max,
        });
    }
    Ok(v)
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

/// Per entry of an object: a B-tree slot for the key and the value, and the key's heap
/// header (a rough figure; the cache budget is an estimate).
const ENTRY_SIZE: usize = 2 * std::mem::size_of::<Value>();

/// About how many bytes of memory the entries of `m` hold, or `None` when a value nests
/// deeper than `levels` levels (a scalar is 0, `[]` is 1). Stops there, so the recursion
/// is bounded whatever the data.
fn object_size(m: &Map<String, Value>, levels: usize) -> Option<usize> {
    m.iter()
        .map(|(k, v)| Some(ENTRY_SIZE + k.len() + value_size(v, levels)?))
        .sum()
}

fn value_size(v: &Value, levels: usize) -> Option<usize> {
    match v {
        Value::String(s) => Some(s.len()),
        Value::Array(a) => {
            let inner = levels.checked_sub(1)?;
            a.iter()
                .map(|c| Some(std::mem::size_of::<Value>() + value_size(c, inner)?))
                .sum()
        }
        Value::Object(o) => object_size(o, levels.checked_sub(1)?),
        _ => Some(0),
    }
}

/// An `io::Write` that only counts the bytes written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
