//! The header shared by sealed and signed tokens, and the associated data built from it.
//!
//! ```text
//! byte 0      version (1)
//! byte 1      kind: 1 = sealed, 2 = signed, 3 = signed session id
//! byte 2      key id length k (1..=16)
//! bytes 3..   key id (k ASCII bytes)
//! ```

use std::cell::Cell;

use crate::error::{OpenError, SealError};
use crate::keys::{MAX_KEY_ID_LEN, valid_id};

/// The format version this build writes and reads.
pub(crate) const VERSION: u8 = 1;
/// Kind byte of a sealed (AEAD) token.
pub(crate) const KIND_SEALED: u8 = 1;
/// Kind byte of a signed (HMAC) token.
pub(crate) const KIND_SIGNED: u8 = 2;
/// Kind byte of a signed session id (store-backed sessions).
pub(crate) const KIND_SESSION_ID: u8 = 3;

/// A parsed header: the key id and where the body starts.
pub(crate) struct Header<'a> {
    pub(crate) key_id: &'a [u8],
    pub(crate) len: usize,
}

/// Decodes the token's base64url text, refusing it first when too long.
pub(crate) fn decode_text(token: &str, max_len: usize) -> Result<Vec<u8>, OpenError> {
    if token.len() > max_len {
        return Err(OpenError::TooLarge {
            len: token.len(),
            max: max_len,
        });
    }
    if token.is_empty() {
        return Err(OpenError::Malformed("empty token"));
    }
    base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(token)
        .map_err(|_| OpenError::Malformed("not base64url"))
}

impl<'a> Header<'a> {
    /// Parses the header of `raw`, which must be of `kind`.
    pub(crate) fn parse(raw: &'a [u8], kind: u8) -> Result<Header<'a>, OpenError> {
        let [version, k, klen, rest @ ..] = raw else {
            return Err(OpenError::Malformed("shorter than a header"));
        };
        if *version != VERSION {
            return Err(OpenError::UnsupportedVersion {
                found: *version,
                supported: VERSION,
            });
        }
        if *k != kind {
            return Err(OpenError::Malformed("token of another kind"));
        }
        let klen = usize::from(*klen);
        if klen == 0 || klen > MAX_KEY_ID_LEN {
            return Err(OpenError::Malformed("bad key id length"));
        }
        let key_id = rest
            .get(..klen)
            .ok_or(OpenError::Malformed("key id truncated"))?;
        // Only ASCII passes, so the id is UTF-8 too.
        if !valid_id(key_id, MAX_KEY_ID_LEN) {
            return Err(OpenError::Malformed("bad key id"));
        }
        Ok(Header {
            key_id,
            len: 3 + klen,
        })
    }
}

/// Appends the header for `kind` and `key_id` to `out`.
pub(crate) fn write_header(out: &mut Vec<u8>, kind: u8, key_id: &str) {
    out.push(VERSION);
    out.push(kind);
    // Key ids are validated to 1..=16 bytes when the key is made.
    out.push(u8::try_from(key_id.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(key_id.as_bytes());
}

/// Associated data: the header, then the purpose's length (u16, big-endian) and bytes.
/// Purposes longer than 65535 bytes are cut at the length's limit consistently on both sides.
pub(crate) fn associated_data(header: &[u8], purpose: &[u8]) -> Vec<u8> {
    let purpose = purpose.get(..usize::from(u16::MAX)).unwrap_or(purpose);
    let mut ad = Vec::with_capacity(header.len() + 2 + purpose.len());
    ad.extend_from_slice(header);
    ad.extend_from_slice(
        &u16::try_from(purpose.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    ad.extend_from_slice(purpose);
    ad
}

/// Longest associated data kept on the stack: a 19-byte header, the length and a purpose of
/// up to 75 bytes (every cookie name in practice).
const AD_INLINE: usize = 96;

/// The associated data of one seal or open, built without a heap allocation when it fits in
/// [`AD_INLINE`] bytes. Same bytes as [`associated_data`].
pub(crate) enum AssociatedData {
    Inline { buf: [u8; AD_INLINE], len: usize },
    Heap(Vec<u8>),
}

impl AssociatedData {
    /// The header, then the purpose's length (u16, big-endian) and bytes.
    pub(crate) fn new(header: &[u8], purpose: &[u8]) -> AssociatedData {
        let purpose = purpose.get(..usize::from(u16::MAX)).unwrap_or(purpose);
        let plen = u16::try_from(purpose.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes();
        let len = header.len() + plen.len() + purpose.len();
        let mut buf = [0u8; AD_INLINE];
        // Three slice copies (a byte-by-byte chain of iterators cost ~15 instructions a byte).
        let parts = buf.get_mut(..len).and_then(|dst| {
            let (h, rest) = dst.split_at_mut_checked(header.len())?;
            let (l, p) = rest.split_at_mut_checked(plen.len())?;
            h.copy_from_slice(header);
            l.copy_from_slice(&plen);
            (p.len() == purpose.len()).then(|| p.copy_from_slice(purpose))
        });
        match parts {
            Some(()) => AssociatedData::Inline { buf, len },
            None => AssociatedData::Heap(associated_data(header, purpose)),
        }
    }

    /// The bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            AssociatedData::Inline { buf, len } => buf.get(..*len).unwrap_or(&[]),
            AssociatedData::Heap(v) => v,
        }
    }
}

/// Base64url without padding: the text form of every token.
///
/// Token text is encoded and decoded with `base64-simd` (several times faster than the
/// `base64` crate on tokens of a few hundred bytes). Both refuse the same inputs, including
/// non-canonical trailing bits, so a token has exactly one text form; the test below holds
/// the two crates to that.
pub(crate) fn encode_text(raw: &[u8]) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(raw)
}

/// Refuses to make a token whose text, for `raw_len` bytes, would pass `max` characters.
pub(crate) fn check_text_len(raw_len: usize, max: usize) -> Result<(), SealError> {
    // Unpadded base64: 4 characters per 3 bytes, rounded up.
    let len = (raw_len * 4).div_ceil(3);
    if len > max {
        return Err(SealError::TooLarge { len, max });
    }
    Ok(())
}

/// The largest buffer [`SCRATCH`] keeps between seals.
const SCRATCH_KEPT: usize = 16 * 1024;

thread_local! {
    /// The binary token a seal is building (header, nonce, body, tag), kept for the thread's
    /// next seal so that a seal allocates only for the token's text.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// An empty buffer with room for `capacity` bytes, for a token about to be built: the
/// thread's [`SCRATCH`] when it has one.
pub(crate) fn token_buffer(capacity: usize) -> Vec<u8> {
    let mut raw = SCRATCH.take();
    raw.clear();
    raw.reserve(capacity);
    raw
}

/// Gives a buffer from [`token_buffer`] back once it holds only what its token shows any
/// reader: a sealed token's ciphertext, a signed token's bytes. A seal refused half-way
/// (with plaintext still in the buffer) drops it instead, as it would any `Vec`.
pub(crate) fn keep_token_buffer(raw: Vec<u8>) {
    if raw.capacity() <= SCRATCH_KEPT {
        SCRATCH.set(raw);
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;

    use super::*;

    /// A base64url-looking text: mostly the alphabet, sometimes a byte from outside it.
    fn text() -> impl Strategy<Value = String> {
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let char_of = prop_oneof![
            20 => (0..64usize).prop_map(move |i| alphabet.as_bytes()[i] as char),
            1 => prop::sample::select(vec!['+', '/', '=', '\n', ' ', '.', '\0', 'é']),
        ];
        prop::collection::vec(char_of, 0..400).prop_map(String::from_iter)
    }

    proptest! {
        /// The token text codec agrees with the `base64` crate's canonical, unpadded
        /// base64url on every input: what it accepts, and the bytes.
        #[test]
        fn text_codec_agrees_with_the_base64_crate(t in text(), raw in prop::collection::vec(any::<u8>(), 0..400)) {
            // An empty token is refused before decoding.
            let want = if t.is_empty() { None } else { URL_SAFE_NO_PAD.decode(&t).ok() };
            prop_assert_eq!(decode_text(&t, usize::MAX).ok(), want);
            prop_assert_eq!(encode_text(&raw), URL_SAFE_NO_PAD.encode(&raw));
        }
    }

    #[test]
    fn only_canonical_unpadded_base64url_is_read() {
        // "AA" is the canonical text of one zero byte; "AB" carries a stray bit.
        assert_eq!(decode_text("AA", 16).ok(), Some(vec![0]));
        assert_eq!(encode_text(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode_text("-_8", 16).ok(), Some(vec![0xfb, 0xff]));
        for refused in ["AB", "AAB", "AA==", "AA=", "+/8", "A A", "AA\n", "A", ""] {
            assert!(decode_text(refused, 16).is_err(), "{refused:?}");
        }
        assert!(decode_text(&"A".repeat(20), 16).is_err());
        assert!(decode_text(&"A".repeat(401), 1000).is_err());
    }
}
