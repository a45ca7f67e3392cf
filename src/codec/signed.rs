//! Signed tokens, format version 1: a readable payload and an HMAC-SHA256 tag.
//!
//! ```text
//! header (version 1, kind 2, key id) || payload || tag (32 bytes)
//! tag = HMAC-SHA256(mac key, header || u16be(len(purpose)) || purpose || payload)
//! ```
//!
//! The tag is verified in constant time. Protects against tampering, not against reading:
//! anyone holding the token can decode the session data (like Rails' signed cookies).

use super::envelope::{
    AssociatedData, Header, KIND_SIGNED, check_text_len, decode_text, encode_text,
    keep_token_buffer, token_buffer, write_header,
};
use super::{Codec, DEFAULT_MAX_TOKEN_LEN, Opened};
use crate::error::{OpenError, SealError};
use crate::keys::Keyring;
use crate::state::SessionState;

const TAG_LEN: usize = 32;

/// The signed codec: the client can read the session but not change it.
///
/// ```
/// use sealed_session::{Codec, Keyring, SessionId, SessionState, SignedCodec, Timestamp};
///
/// let codec = SignedCodec::new(Keyring::generate()?);
/// let now = Timestamp::from_millis(1_764_000_000_000);
/// let mut state = SessionState::new(SessionId::generate()?, now, now);
/// state.insert("user", "alice")?;
/// let token = codec.seal(&state, b"sid")?;
/// let opened = codec.open(&token, b"sid")?.into_state();
/// assert_eq!(opened.get::<String>("user")?.as_deref(), Some("alice"));
/// assert!(codec.open(&token, b"other-cookie").is_err(), "bound to the cookie name");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct SignedCodec {
    ring: Keyring,
    max_len: usize,
}

impl SignedCodec {
    /// A signed codec over `ring`, with the default token limit ([`DEFAULT_MAX_TOKEN_LEN`]).
    pub fn new(ring: Keyring) -> Self {
        SignedCodec {
            ring,
            max_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }

    /// The longest token text opened or made. Default: 16 KiB.
    #[must_use]
    pub fn max_token_len(mut self, n: usize) -> Self {
        self.max_len = n;
        self
    }

    /// The key ring.
    pub fn keyring(&self) -> &Keyring {
        &self.ring
    }
}

impl Codec for SignedCodec {
    fn name(&self) -> &'static str {
        "signed"
    }

    /// Opening authenticates and decodes, nothing else: no clock, no state.
    fn open_is_pure(&self) -> bool {
        true
    }

    fn seal(&self, state: &SessionState, purpose: &[u8]) -> Result<String, SealError> {
        let key = self.ring.primary();
        let mut raw = token_buffer(3 + key.id.len() + state.encoded_len_hint() + TAG_LEN);
        write_header(&mut raw, KIND_SIGNED, &key.id);
        let header_len = raw.len();
        state.encode_into(&mut raw)?;
        check_text_len(raw.len() + TAG_LEN, self.max_len)?;
        let tag = key.mac.tag(&[
            AssociatedData::new(&raw[..header_len], purpose).as_bytes(),
            &raw[header_len..],
        ]);
        raw.extend_from_slice(&tag);
        let text = encode_text(&raw);
        keep_token_buffer(raw);
        Ok(text)
    }

    fn open(&self, token: &str, purpose: &[u8]) -> Result<Opened, OpenError> {
        let raw = decode_text(token, self.max_len)?;
        let header = Header::parse(&raw, KIND_SIGNED)?;
        let (key, primary) = self.ring.find(header.key_id)?;
        let header_len = header.len;
        let tag_start = raw
            .len()
            .checked_sub(TAG_LEN)
            .filter(|t| *t >= header_len)
            .ok_or(OpenError::Malformed("shorter than the tag"))?;
        // Compared in constant time.
        if !key.mac.verify(
            &[
                AssociatedData::new(&raw[..header_len], purpose).as_bytes(),
                &raw[header_len..tag_start],
            ],
            &raw[tag_start..],
        ) {
            return Err(OpenError::BadSeal);
        }
        let state = SessionState::decode(&raw[header_len..tag_start])?;
        Ok(Opened::new(state, &key.id, primary))
    }
}
