//! Signed session ids, format version 1: the cookie of store-backed sessions (the
//! express-session design). The cookie carries only the id; the state lives in a
//! [`Store`](crate::store::Store).
//!
//! ```text
//! header (version 1, kind 3, key id) || session id (16 bytes) || tag (32 bytes)
//! tag = HMAC-SHA256(mac key, header || u16be(len(purpose)) || purpose || session id)
//! ```
//!
//! Like express-session's `s:<sid>.<signature>` with its `secret` array: the primary key
//! signs, every key of the ring verifies (picked by key id, not by trying each), and the
//! tag is checked in constant time.

use super::envelope::{
    AssociatedData, Header, KIND_SESSION_ID, decode_text, encode_text, write_header,
};
use crate::error::OpenError;
use crate::keys::Keyring;
use crate::state::SessionId;

const TAG_LEN: usize = 32;
/// Longest signed id text: header with a 16-byte key id, id and tag, in base64url.
const MAX_TEXT_LEN: usize = (3 + 16 + 16 + TAG_LEN).div_ceil(3) * 4;

/// Signs and verifies session ids with a key ring.
///
/// ```
/// use sealed_session::codec::SessionIdCodec;
/// use sealed_session::{Keyring, SessionId};
///
/// let ids = SessionIdCodec::new(Keyring::generate()?);
/// let id = SessionId::generate()?;
/// let cookie = ids.sign(&id, b"sid");
/// assert_eq!(ids.verify(&cookie, b"sid")?.0, id);
/// assert!(ids.verify(&cookie, b"other").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct SessionIdCodec {
    ring: Keyring,
}

impl SessionIdCodec {
    /// A codec over `ring` (its HMAC sub-keys).
    pub fn new(ring: Keyring) -> Self {
        SessionIdCodec { ring }
    }

    /// The signed form of `id` for `purpose` (the cookie name), under the primary key.
    pub fn sign(&self, id: &SessionId, purpose: &[u8]) -> String {
        let key = self.ring.primary();
        let mut raw = Vec::with_capacity(3 + key.id.len() + 16 + TAG_LEN);
        write_header(&mut raw, KIND_SESSION_ID, &key.id);
        let header_len = raw.len();
        raw.extend_from_slice(id.as_bytes());
        let tag = key.mac.tag(&[
            AssociatedData::new(&raw[..header_len], purpose).as_bytes(),
            id.as_bytes(),
        ]);
        raw.extend_from_slice(&tag);
        encode_text(&raw)
    }

    /// Verifies a signed id. Returns the id and whether it was signed by an older key (so
    /// the cookie should be re-signed). Hostile input: never panics.
    pub fn verify(&self, token: &str, purpose: &[u8]) -> Result<(SessionId, bool), OpenError> {
        let raw = decode_text(token, MAX_TEXT_LEN)?;
        let header = Header::parse(&raw, KIND_SESSION_ID)?;
        let (key, primary) = self.ring.find(header.key_id)?;
        let body = raw
            .get(header.len..)
            .ok_or(OpenError::Malformed("truncated"))?;
        if body.len() != 16 + TAG_LEN {
            return Err(OpenError::Malformed("signed id of the wrong length"));
        }
        let (id, tag) = body.split_at(16);
        // Compared in constant time.
        if !key.mac.verify(
            &[
                AssociatedData::new(&raw[..header.len], purpose).as_bytes(),
                id,
            ],
            tag,
        ) {
            return Err(OpenError::BadSeal);
        }
        let id: [u8; 16] = id
            .try_into()
            .map_err(|_| OpenError::Malformed("signed id of the wrong length"))?;
        Ok((SessionId::from_bytes(id), !primary))
    }
}
