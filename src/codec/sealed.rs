//! Sealed tokens, format version 1: the session encrypted and authenticated with the AEAD of
//! the primary key (AES-256-GCM, ChaCha20-Poly1305 or XChaCha20-Poly1305).
//!
//! ```text
//! header (version 1, kind 1, key id) || nonce (12 or 24 bytes) || ciphertext || tag (16)
//! ```
//!
//! The nonce is fresh from the operating system's RNG for every seal. The associated data is
//! the header plus the purpose (the cookie name), so a token cannot be moved to another key
//! id, version or cookie. Protects against reading and tampering; does not protect against
//! replay of a stolen token until it expires (see the denylist for revocation).

use aes_gcm::aead::{AeadInPlace, generic_array::GenericArray};

use super::envelope::{
    AssociatedData, Header, KIND_SEALED, check_text_len, decode_text, encode_text,
    keep_token_buffer, token_buffer, write_header,
};
use super::{Codec, DEFAULT_MAX_TOKEN_LEN, Opened};
use crate::error::{OpenError, SealError};
use crate::keys::{AeadCipher, Keyring};
use crate::state::SessionState;

const TAG_LEN: usize = 16;

/// The sealed (encrypted) codec: the client can neither read nor change the session.
///
/// ```
/// use sealed_session::{Codec, Keyring, SealedCodec, SessionId, SessionState, Timestamp};
/// let codec = SealedCodec::new(Keyring::generate()?);
/// let now = Timestamp::from_millis(1_700_000_000_000);
/// let mut state = SessionState::new(SessionId::generate()?, now, now.saturating_add(std::time::Duration::from_secs(3600)));
/// state.insert("user", "alice")?;
/// let token = codec.seal(&state, b"sid")?;
/// let mut opened = codec.open(&token, b"sid")?.into_state();
/// assert_eq!(opened.get::<String>("user")?, Some("alice".to_owned()));
/// assert!(codec.open(&token, b"other-cookie").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct SealedCodec {
    ring: Keyring,
    max_len: usize,
}

impl SealedCodec {
    /// A sealed codec over `ring`, with the default token limit ([`DEFAULT_MAX_TOKEN_LEN`]).
    pub fn new(ring: Keyring) -> Self {
        SealedCodec {
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

fn encrypt(
    cipher: &AeadCipher,
    nonce: &[u8],
    ad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; TAG_LEN], SealError> {
    let tag = match cipher {
        #[cfg(feature = "aws-lc")]
        AeadCipher::AwsLc(k) => {
            let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce)
                .map_err(|_| SealError::Encrypt)?;
            let tag = k
                .seal_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::from(ad), buf)
                .map_err(|_| SealError::Encrypt)?;
            let mut out = [0u8; TAG_LEN];
            out.copy_from_slice(tag.as_ref());
            return Ok(out);
        }
        AeadCipher::Aes256Gcm(c) => {
            c.encrypt_in_place_detached(GenericArray::from_slice(nonce), ad, buf)
        }
        AeadCipher::ChaCha20Poly1305(c) => {
            c.encrypt_in_place_detached(GenericArray::from_slice(nonce), ad, buf)
        }
        AeadCipher::XChaCha20Poly1305(c) => {
            c.encrypt_in_place_detached(GenericArray::from_slice(nonce), ad, buf)
        }
    }
    .map_err(|_| SealError::Encrypt)?;
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&tag);
    Ok(out)
}

fn decrypt(
    cipher: &AeadCipher,
    nonce: &[u8],
    ad: &[u8],
    buf: &mut [u8],
    tag: &[u8],
) -> Result<(), OpenError> {
    #[cfg(feature = "aws-lc")]
    if let AeadCipher::AwsLc(k) = cipher {
        let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| OpenError::BadSeal)?;
        return k
            .open_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::from(ad), tag, buf)
            .map(|_| ())
            .map_err(|_| OpenError::BadSeal);
    }
    let tag = GenericArray::from_slice(tag);
    match cipher {
        #[cfg(feature = "aws-lc")]
        AeadCipher::AwsLc(_) => Err(aes_gcm::Error),
        AeadCipher::Aes256Gcm(c) => {
            c.decrypt_in_place_detached(GenericArray::from_slice(nonce), ad, buf, tag)
        }
        AeadCipher::ChaCha20Poly1305(c) => {
            c.decrypt_in_place_detached(GenericArray::from_slice(nonce), ad, buf, tag)
        }
        AeadCipher::XChaCha20Poly1305(c) => {
            c.decrypt_in_place_detached(GenericArray::from_slice(nonce), ad, buf, tag)
        }
    }
    .map_err(|_| OpenError::BadSeal)
}

impl SealedCodec {
    /// Seals with a caller-chosen nonce. Only for reproducing the test vectors of
    /// `docs/FORMAT.md`: reusing a nonce with the same key breaks the AEAD's security.
    /// Exists only with the `test-vectors` feature, which no application should enable.
    #[cfg(feature = "test-vectors")]
    pub fn seal_with_nonce_for_test_vectors(
        &self,
        state: &SessionState,
        purpose: &[u8],
        nonce: &[u8],
    ) -> Result<String, SealError> {
        self.seal_inner(state, purpose, Some(nonce))
    }

    fn seal_inner(
        &self,
        state: &SessionState,
        purpose: &[u8],
        fixed_nonce: Option<&[u8]>,
    ) -> Result<String, SealError> {
        let key = self.ring.primary();
        let nonce_len = key.alg.nonce_len();
        let mut raw =
            token_buffer(3 + key.id.len() + nonce_len + state.encoded_len_hint() + TAG_LEN);
        write_header(&mut raw, KIND_SEALED, &key.id);
        let header_len = raw.len();
        match fixed_nonce {
            Some(n) if n.len() == nonce_len => raw.extend_from_slice(n),
            Some(_) => return Err(SealError::Encrypt),
            None => {
                raw.resize(header_len + nonce_len, 0);
                crate::random::fill(&mut raw[header_len..]).map_err(|_| SealError::Rng)?;
            }
        }
        let body_start = raw.len();
        state.encode_into(&mut raw)?;
        check_text_len(raw.len() + TAG_LEN, self.max_len)?;
        let ad = AssociatedData::new(&raw[..header_len], purpose);
        let (head, body) = raw.split_at_mut(body_start);
        let tag = encrypt(&key.aead, &head[header_len..], ad.as_bytes(), body)?;
        raw.extend_from_slice(&tag);
        let text = encode_text(&raw);
        // Encrypted: the buffer holds no plaintext now.
        keep_token_buffer(raw);
        Ok(text)
    }
}

impl Codec for SealedCodec {
    fn name(&self) -> &'static str {
        "sealed"
    }

    /// Opening authenticates and decodes, nothing else: no clock, no state.
    fn open_is_pure(&self) -> bool {
        true
    }

    fn seal(&self, state: &SessionState, purpose: &[u8]) -> Result<String, SealError> {
        self.seal_inner(state, purpose, None)
    }

    fn open(&self, token: &str, purpose: &[u8]) -> Result<Opened, OpenError> {
        let mut raw = decode_text(token, self.max_len)?;
        let header = Header::parse(&raw, KIND_SEALED)?;
        let (key, primary) = self.ring.find(header.key_id)?;
        let header_len = header.len;
        let nonce_len = key.alg.nonce_len();
        let body_start = header_len + nonce_len;
        if raw.len() < body_start + TAG_LEN {
            return Err(OpenError::Malformed("shorter than nonce and tag"));
        }
        let ad = AssociatedData::new(&raw[..header_len], purpose);
        let tag_start = raw.len() - TAG_LEN;
        let (head, rest) = raw.split_at_mut(body_start);
        let (body, tag) = rest.split_at_mut(tag_start - body_start);
        decrypt(&key.aead, &head[header_len..], ad.as_bytes(), body, tag)?;
        let state = SessionState::decode(body)?;
        Ok(Opened::new(state, &key.id, primary))
    }
}
