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

/// The session's data: a JSON object, kept as the bytes it arrived in until someone reads
/// it, so a request that never looks at the data never parses it, and a token re-issued
/// without changes re-uses the bytes.
#[derive(Clone, Debug, Default)]
pub(crate) enum Data {
    /// Bytes of a JSON object (empty means `{}`), not yet parsed.
    Raw(Box<[u8]>),
    /// Parsed (and possibly changed).
    Map(Map<String, Value>),
    /// No data.
    #[default]
    Empty,
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

    /// Whether the data holds no entries (without parsing when it can be avoided).
    pub fn is_empty(&self) -> bool {
        match &self.data {
            Data::Empty => true,
            Data::Raw(b) => b.is_empty() || b.as_ref() == b"{}",
            Data::Map(m) => m.is_empty(),
        }
    }

    /// The data as a JSON map, parsing it on first use.
    pub fn data(&mut self) -> Result<&Map<String, Value>, DataError> {
        self.data_mut().map(|m| &*m)
    }

    /// The data as a mutable JSON map, parsing it on first use.
    pub fn data_mut(&mut self) -> Result<&mut Map<String, Value>, DataError> {
        if let Data::Raw(b) = &self.data {
            let map = if b.is_empty() {
                Map::new()
            } else {
                serde_json::from_slice::<Map<String, Value>>(b).map_err(DataError::Corrupt)?
            };
            self.data = Data::Map(map);
        }
        if let Data::Empty = self.data {
            self.data = Data::Map(Map::new());
        }
        match &mut self.data {
            Data::Map(m) => Ok(m),
            // Both other variants were replaced above.
            _ => Err(DataError::Corrupt(serde::de::Error::custom("unreachable"))),
        }
    }

    /// The value under `key`, deserialized; `Ok(None)` when absent, an error when present but
    /// of another type.
    pub fn get<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, DataError> {
        match self.data()?.get(key) {
            None => Ok(None),
            Some(v) => T::deserialize(v)
                .map(Some)
                .map_err(|source| DataError::WrongType {
                    key: key.to_owned(),
                    source,
                }),
        }
    }

    /// Stores `value` under `key`, returning whether the data changed.
    pub fn insert<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<bool, DataError> {
        let v = serde_json::to_value(value).map_err(|source| DataError::Serialize {
            key: key.to_owned(),
            source,
        })?;
        let map = self.data_mut()?;
        let old = map.insert(key.to_owned(), v.clone());
        Ok(old.as_ref() != Some(&v))
    }

    /// Removes `key`, returning the old value.
    pub fn remove(&mut self, key: &str) -> Result<Option<Value>, DataError> {
        Ok(self.data_mut()?.remove(key))
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.data = Data::Empty;
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
        match &self.data {
            Data::Empty => {}
            Data::Raw(b) => out.extend_from_slice(b),
            Data::Map(m) if m.is_empty() => {}
            Data::Map(m) => serde_json::to_writer(&mut *out, m).map_err(SealError::Serialize)?,
        }
        Ok(())
    }

    /// An upper estimate of the encoded length, for sizing buffers.
    pub(crate) fn encoded_len_hint(&self) -> usize {
        FIXED_LEN
            + self.subject.as_ref().map_or(0, |s| 2 + s.len())
            + match &self.data {
                Data::Empty => 0,
                Data::Raw(b) => b.len(),
                Data::Map(m) => 64 * m.len() + 16,
            }
    }

    /// Decodes a binary payload. Only called on authenticated bytes, but checks every length
    /// all the same and never panics.
    pub(crate) fn decode(b: &[u8]) -> Result<SessionState, OpenError> {
        let fixed = b
            .get(..FIXED_LEN)
            .ok_or(OpenError::Malformed("payload shorter than its fixed fields"))?;
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
            let s = std::str::from_utf8(s).map_err(|_| OpenError::Malformed("subject not UTF-8"))?;
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
