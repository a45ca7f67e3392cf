//! What a token carries: the session's metadata ([`SessionState`]) and its data.
//!
//! - `id.rs`: the session id;
//! - `data.rs`: the data, a serde_json map, and its typed access;
//! - `format.rs`: the binary payload a token carries (`docs/FORMAT.md`, section 7).

mod binding;
mod data;
mod format;
pub(crate) mod id;
mod merge;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::clock::Timestamp;
use crate::error::{DataError, OpenError, SealError};
use data::Data;

pub use binding::{Binding, DeviceKey, MAX_DEVICE_KEY_LEN};
pub(crate) use format::FIXED_LEN;
pub use format::MAX_SUBJECT_LEN;
pub use id::SessionId;

/// The state of one session: metadata plus data. This is what codecs seal and open.
///
/// The data is a JSON object. When a token opens, it is parsed and validated in full by
/// serde_json; a read deserializes one value, a write replaces one, and sealing writes the
/// whole object out again (compact, keys in sorted order).
///
/// ```
/// use sealed_session::{SessionId, SessionState, Timestamp};
///
/// let now = Timestamp::from_millis(1_764_000_000_000);
/// let mut state = SessionState::new(SessionId::from_bytes([1; 16]), now, now);
/// assert!(state.insert("user", "alice").unwrap());
/// assert!(!state.insert("user", "alice").unwrap(), "the same value is no change");
/// assert_eq!(state.get::<String>("user").unwrap().as_deref(), Some("alice"));
/// assert!(state.get::<u64>("user").is_err(), "a wrong type is an error, not None");
/// assert_eq!(state.remove("user").unwrap(), Some("alice".into()));
/// assert!(state.is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct SessionState {
    id: SessionId,
    issued_at: Timestamp,
    last_seen: Timestamp,
    expires_at: Timestamp,
    subject: Option<std::sync::Arc<str>>,
    /// The key the session is bound to (DPoP, DBSC), if any.
    binding: Option<Binding>,
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
            binding: None,
            data: Data::default(),
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

    /// The key the session is bound to: a DPoP key (bearer tokens) or a browser's
    /// registered DBSC key (cookies).
    pub fn binding(&self) -> Option<&Binding> {
        self.binding.as_ref()
    }

    /// Sets or clears the binding.
    pub fn set_binding(&mut self, binding: Option<Binding>) {
        self.binding = binding;
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

    /// Whether the data holds no entries.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The data as a JSON map. Never fails: the data was validated when its token opened
    /// (the `Result` is kept for compatibility).
    pub fn data(&mut self) -> Result<&Map<String, Value>, DataError> {
        Ok(self.data.map_or_empty())
    }

    /// The data as a mutable JSON map. Never fails (see [`SessionState::data`]).
    pub fn data_mut(&mut self) -> Result<&mut Map<String, Value>, DataError> {
        Ok(self.data.map_mut())
    }

    /// The value under `key`, deserialized; `Ok(None)` when absent, an error when present but
    /// of another type.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DataError> {
        self.data.get(key)
    }

    /// Whether `key` is present. Never fails (the `Result` is kept for compatibility).
    pub fn contains(&self, key: &str) -> Result<bool, DataError> {
        Ok(self.data.contains(key))
    }

    /// Stores `value` under `key`, returning whether the data changed: storing the value a
    /// key already holds is no change.
    pub fn insert<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<bool, DataError> {
        let value = data::to_value(key, value, None)?;
        let changes = !self.data.holds(key, &value);
        if changes {
            self.data.set(key, value);
        }
        Ok(changes)
    }

    /// The first half of a bounded [`SessionState::insert`]: `value` as JSON if storing it
    /// under `key` would change the data, `None` if the key holds it already. A value that
    /// would nest the data deeper than `max_depth` levels (the data object is level 1) is
    /// refused with [`DataError::TooDeep`]. The second half is [`SessionState::set`]; in
    /// between, the caller can let go of what shares the data (the open cache's entry), so
    /// that the change does not copy it.
    pub(crate) fn change_for<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        max_depth: usize,
    ) -> Result<Option<Value>, DataError> {
        let value = data::to_value(key, value, Some(max_depth))?;
        Ok((!self.data.holds(key, &value)).then_some(value))
    }

    /// Stores `value` (made by [`SessionState::change_for`]) under `key`.
    pub(crate) fn set(&mut self, key: &str, value: Value) {
        self.data.set(key, value);
    }

    /// Removes `key`, returning the old value. Never fails (the `Result` is kept for
    /// compatibility).
    pub fn remove(&mut self, key: &str) -> Result<Option<Value>, DataError> {
        Ok(self.data.remove(key))
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.data.clear();
    }

    /// The data's map, `None` when there are no entries (for codecs that carry it as JSON).
    #[cfg_attr(
        not(any(feature = "jwt", feature = "jwt-rust-crypto")),
        allow(dead_code)
    )]
    pub(crate) fn data_map(&self) -> Option<&Map<String, Value>> {
        self.data.map().filter(|m| !m.is_empty())
    }

    /// Replaces the data with the JSON object `json`, parsed and validated by serde_json
    /// (for codecs that carry the data as JSON).
    #[cfg_attr(
        not(any(feature = "jwt", feature = "jwt-rust-crypto")),
        allow(dead_code)
    )]
    pub(crate) fn set_data_json(&mut self, json: &str) -> Result<(), OpenError> {
        self.data = Data::parse(json.as_bytes())?;
        Ok(())
    }

    /// Refuses data longer than `max_len` bytes of JSON text (as it arrived in its token, or
    /// as it will be sealed once changed) or nested deeper than `max_depth` levels. Returns
    /// about how many bytes of memory the state holds beyond its own size (data, subject),
    /// for the open cache's budget.
    pub(crate) fn check_data(&self, max_len: usize, max_depth: usize) -> Result<usize, OpenError> {
        let data = self.data.check(max_len, max_depth)?;
        Ok(data + self.subject.as_ref().map_or(0, |s| s.len()))
    }

    /// Appends the binary payload (see `docs/FORMAT.md`) to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), SealError> {
        format::encode(self, out)
    }

    /// An estimate of the encoded length, for sizing buffers.
    pub(crate) fn encoded_len_hint(&self) -> usize {
        // 64 bytes an entry when the length of the JSON text is not known.
        let data = self
            .data
            .known_json_len()
            .unwrap_or_else(|| 64 * self.data.map().map_or(0, Map::len));
        let binding = match &self.binding {
            None => 0,
            Some(Binding::Dpop { .. }) => 1 + 32,
            Some(Binding::Device(k)) => 1 + 16 + 2 + k.jwk.len(),
        };
        FIXED_LEN + self.subject.as_ref().map_or(0, |s| 2 + s.len()) + binding + data
    }

    /// Decodes a binary payload, data included (parsed and validated by serde_json). Only
    /// called on authenticated bytes, but checks every length all the same and never panics.
    pub(crate) fn decode(b: &[u8]) -> Result<SessionState, OpenError> {
        format::decode(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_JSON_DEPTH;

    fn state_with(json: &[u8]) -> Result<SessionState, OpenError> {
        let mut p = vec![1u8; 16];
        for t in [1u64, 1, 2] {
            p.extend_from_slice(&t.to_be_bytes());
        }
        p.push(0);
        p.extend_from_slice(json);
        SessionState::decode(&p)
    }

    /// `{"k":[[...]]}` nested `depth` levels deep, the object included.
    fn nested(depth: usize) -> Vec<u8> {
        let inner = depth - 1;
        format!("{{\"k\":{}{}}}", "[".repeat(inner), "]".repeat(inner)).into_bytes()
    }

    /// Whatever serde_json refuses as a map is refused when the token opens, with the
    /// reason `docs/FORMAT.md` names; nothing is kept to fail at a later read.
    #[test]
    fn data_serde_json_refuses_is_refused_on_open() {
        for json in [
            &br#"{"a":tru}"#[..],
            br#"{"a":nul}"#,
            br#"{"a":01}"#,
            br#"{"a":1.}"#,
            br#"{"a":"\x"}"#,
            br#"{"a":"\u12"}"#,
            br#"{"a":"\ud800"}"#,
            br#"{"a":"\udc00x"}"#,
            b"{\"a\":\"\xff\"}",
            b"{\"a\":\"tab\there\"}",
            br#"{"a":1} x"#,
            br#"{"a":1}}"#,
            br#"{"a":1,}"#,
            br#"{"a" 1}"#,
            br#"{"a":[1,2}"#,
            br#"{"a":1e400}"#,
            br#"{"a":"#,
            b"{",
            b"[1,2]",
            b" {}",
        ] {
            assert!(
                matches!(
                    state_with(json),
                    Err(OpenError::Malformed("session data is not a JSON object"))
                ),
                "{:?}",
                String::from_utf8_lossy(json)
            );
        }
        // Trailing white space is JSON.
        assert!(state_with(b"{\"a\":true}\r\n").is_ok());
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_as_serde_json_does() {
        let s = state_with(br#"{"role":"user","n":1,"role":"admin"}"#).unwrap();
        assert_eq!(s.get::<String>("role").unwrap().as_deref(), Some("admin"));
        assert_eq!(s.data.map().map(Map::len), Some(2));
    }

    #[test]
    fn nesting_past_serde_json_s_limit_is_too_deep() {
        assert!(state_with(&nested(MAX_JSON_DEPTH)).is_ok());
        for depth in [MAX_JSON_DEPTH + 1, 100_000] {
            assert!(
                matches!(
                    state_with(&nested(depth)),
                    Err(OpenError::DataTooDeep {
                        max: MAX_JSON_DEPTH
                    })
                ),
                "{depth}"
            );
        }
    }

    #[test]
    fn check_data_at_and_over_each_limit() {
        let text = nested(5);
        let s = state_with(&text).unwrap();
        assert!(s.check_data(text.len(), 5).is_ok());
        assert!(matches!(
            s.check_data(text.len(), 4),
            Err(OpenError::DataTooDeep { max: 4 })
        ));
        assert!(matches!(
            s.check_data(text.len() - 1, 5),
            Err(OpenError::DataTooLarge { .. })
        ));
        // The length is that of the text as it arrived, white space included...
        let spaced = state_with(b"{ \"a\" : 1 }").unwrap();
        assert!(spaced.check_data(11, 1).is_ok());
        assert!(spaced.check_data(10, 1).is_err());
        // ... and once changed, that of the text it will be sealed as.
        let mut changed = spaced.clone();
        changed.insert("b", &2).unwrap();
        assert!(changed.check_data(13, 1).is_ok());
        assert!(changed.check_data(12, 1).is_err());
        assert!(state_with(b"").unwrap().check_data(0, 1).is_ok());
    }

    #[test]
    fn a_clone_shares_the_data_until_one_side_changes() {
        let mut a = state_with(br#"{"user":"alice"}"#).unwrap();
        let b = a.clone();
        assert!(!a.insert("user", "alice").unwrap());
        assert!(a.insert("user", "bob").unwrap());
        assert_eq!(b.get::<String>("user").unwrap().as_deref(), Some("alice"));
        assert_eq!(a.get::<String>("user").unwrap().as_deref(), Some("bob"));
        assert_eq!(a.remove("nothing").unwrap(), None);
    }

    #[test]
    fn change_for_refuses_values_too_deep_and_finds_no_changes() {
        let mut s = state_with(b"").unwrap();
        let v = s.change_for("a", &[[1]], 3).unwrap().unwrap();
        s.set("a", v);
        assert_eq!(s.change_for("a", &[[1]], 3).unwrap(), None);
        assert!(matches!(
            s.change_for("b", &[[[1]]], 3),
            Err(DataError::TooDeep { max: 3, .. })
        ));
        assert!(!s.contains("b").unwrap());
    }

    #[test]
    fn the_size_check_data_gives_grows_with_the_data() {
        let size = |json: &[u8]| state_with(json).unwrap().check_data(1024, 32).unwrap();
        let small = size(br#"{"a":"x"}"#);
        let big = size(br#"{"a":"x","b":[1,2,3,{"c":"a longer string"}]}"#);
        assert!(0 < small && small < big);
        assert_eq!(size(b""), 0);
    }
}
