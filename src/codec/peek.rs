//! What a sealed, signed or signed-id token shows without a key: its header (format version,
//! kind, key id) and, for the kinds that are not encrypted, the readable payload, decoded
//! **without** authenticating it. For diagnostics (the `sealed-session inspect` command);
//! never base a decision on what [`peek`] returns: open the token with its codec instead.

use super::envelope::{KIND_SEALED, KIND_SESSION_ID, KIND_SIGNED, VERSION, decode_text};
use super::{DEFAULT_MAX_TOKEN_LEN, envelope::Header};
use crate::error::OpenError;
use crate::state::{SessionId, SessionState};

/// HMAC-SHA256 tag length of signed tokens and signed ids.
const MAC_LEN: usize = 32;

/// The kind byte of a token's header.
///
/// ```
/// use sealed_session::codec::{TokenKind, Unverified, peek};
/// use sealed_session::{Codec, Keyring, SealedCodec, SessionId, SessionState, Timestamp};
///
/// let ring: Keyring = "k7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".parse()?;
/// let now = Timestamp::from_millis(1_764_000_000_000);
/// let token = SealedCodec::new(ring).seal(&SessionState::new(SessionId::generate()?, now, now), b"sid")?;
/// let peeked = peek(&token)?;
/// assert_eq!((peeked.header.version, peeked.header.kind), (1, TokenKind::Sealed));
/// assert_eq!(peeked.header.key_id, "k7");
/// assert!(matches!(peeked.unverified, Unverified::Encrypted));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenKind {
    /// Kind 1: encrypted and authenticated ([`SealedCodec`](crate::SealedCodec)).
    Sealed,
    /// Kind 2: readable, authenticated with HMAC-SHA256 ([`SignedCodec`](crate::SignedCodec)).
    Signed,
    /// Kind 3: a signed session id, the cookie of store-backed sessions
    /// ([`SessionIdCodec`](crate::codec::SessionIdCodec)).
    SessionId,
}

impl TokenKind {
    /// A short, stable name: `"sealed"`, `"signed"` or `"session_id"`.
    pub const fn name(self) -> &'static str {
        match self {
            TokenKind::Sealed => "sealed",
            TokenKind::Signed => "signed",
            TokenKind::SessionId => "session_id",
        }
    }
}

/// The header of a token, read without a key.
///
/// ```
/// use sealed_session::codec::{TokenKind, Unverified, peek};
/// use sealed_session::{Codec, Keyring, SealedCodec, SessionId, SessionState, Timestamp};
///
/// let ring: Keyring = "k7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".parse()?;
/// let now = Timestamp::from_millis(1_764_000_000_000);
/// let token = SealedCodec::new(ring).seal(&SessionState::new(SessionId::generate()?, now, now), b"sid")?;
/// let peeked = peek(&token)?;
/// assert_eq!((peeked.header.version, peeked.header.kind), (1, TokenKind::Sealed));
/// assert_eq!(peeked.header.key_id, "k7");
/// assert!(matches!(peeked.unverified, Unverified::Encrypted));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenHeader {
    /// The format version (1).
    pub version: u8,
    /// The token's kind.
    pub kind: TokenKind,
    /// The id of the key the token names (not secret; it travels in the clear).
    pub key_id: String,
}

/// What the payload of a token shows without a key. **Not authenticated**: anyone can make a
/// token that peeks as anything.
///
/// ```
/// use sealed_session::codec::{TokenKind, Unverified, peek};
/// use sealed_session::{Codec, Keyring, SealedCodec, SessionId, SessionState, Timestamp};
///
/// let ring: Keyring = "k7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".parse()?;
/// let now = Timestamp::from_millis(1_764_000_000_000);
/// let token = SealedCodec::new(ring).seal(&SessionState::new(SessionId::generate()?, now, now), b"sid")?;
/// let peeked = peek(&token)?;
/// assert_eq!((peeked.header.version, peeked.header.kind), (1, TokenKind::Sealed));
/// assert_eq!(peeked.header.key_id, "k7");
/// assert!(matches!(peeked.unverified, Unverified::Encrypted));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Unverified {
    /// A sealed token: the payload is encrypted; nothing else can be read without the key.
    Encrypted,
    /// A signed token's payload, decoded without checking its tag.
    Session(SessionState),
    /// A signed id's session id, read without checking its tag.
    SessionId(SessionId),
}

/// A token's header and its readable payload, from [`peek`].
///
/// ```
/// use sealed_session::codec::{TokenKind, Unverified, peek};
/// use sealed_session::{Codec, Keyring, SealedCodec, SessionId, SessionState, Timestamp};
///
/// let ring: Keyring = "k7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".parse()?;
/// let now = Timestamp::from_millis(1_764_000_000_000);
/// let token = SealedCodec::new(ring).seal(&SessionState::new(SessionId::generate()?, now, now), b"sid")?;
/// let peeked = peek(&token)?;
/// assert_eq!((peeked.header.version, peeked.header.kind), (1, TokenKind::Sealed));
/// assert_eq!(peeked.header.key_id, "k7");
/// assert!(matches!(peeked.unverified, Unverified::Encrypted));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Peeked {
    /// The header.
    pub header: TokenHeader,
    /// The readable payload, **not authenticated**.
    pub unverified: Unverified,
}

/// Reads what a sealed, signed or signed-id token shows without a key, checking nothing but
/// its shape. Hostile input: never panics; refuses text over [`DEFAULT_MAX_TOKEN_LEN`].
///
/// ```
/// use sealed_session::codec::{TokenKind, Unverified, peek};
/// use sealed_session::{Codec, Keyring, SessionId, SessionState, SignedCodec, Timestamp};
///
/// let ring: Keyring = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".parse()?;
/// let now = Timestamp::from_millis(1_764_000_000_000);
/// let mut state = SessionState::new(SessionId::generate()?, now, now);
/// state.insert("user", "alice")?;
/// let token = SignedCodec::new(ring).seal(&state, b"sid")?;
///
/// let peeked = peek(&token)?;
/// assert_eq!((peeked.header.kind, peeked.header.key_id.as_str()), (TokenKind::Signed, "k1"));
/// let Unverified::Session(unverified) = peeked.unverified else { unreachable!() };
/// assert_eq!(unverified.get::<String>("user")?.as_deref(), Some("alice"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn peek(token: &str) -> Result<Peeked, OpenError> {
    let raw = decode_text(token, DEFAULT_MAX_TOKEN_LEN)?;
    let (version, kind_byte) = match raw.as_slice() {
        [v, k, ..] => (*v, *k),
        _ => return Err(OpenError::Malformed("shorter than a header")),
    };
    if version != VERSION {
        return Err(OpenError::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    let kind = match kind_byte {
        KIND_SEALED => TokenKind::Sealed,
        KIND_SIGNED => TokenKind::Signed,
        KIND_SESSION_ID => TokenKind::SessionId,
        _ => return Err(OpenError::Malformed("unknown token kind")),
    };
    let header = Header::parse(&raw, kind_byte)?;
    let key_id = String::from_utf8_lossy(header.key_id).into_owned();
    let body = raw.get(header.len..).unwrap_or(&[]);
    let unverified = match kind {
        TokenKind::Sealed => Unverified::Encrypted,
        TokenKind::Signed => {
            let payload = body
                .len()
                .checked_sub(MAC_LEN)
                .and_then(|end| body.get(..end))
                .ok_or(OpenError::Malformed("shorter than the tag"))?;
            Unverified::Session(SessionState::decode(payload)?)
        }
        TokenKind::SessionId => {
            let id: [u8; 16] = body
                .get(..16)
                .filter(|_| body.len() == 16 + MAC_LEN)
                .and_then(|id| id.try_into().ok())
                .ok_or(OpenError::Malformed("signed id of the wrong length"))?;
            Unverified::SessionId(SessionId::from_bytes(id))
        }
    };
    Ok(Peeked {
        header: TokenHeader {
            version,
            kind,
            key_id,
        },
        unverified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::codec::{Codec, SealedCodec, SessionIdCodec, SignedCodec};
    use crate::keys::Keyring;

    fn ring() -> Keyring {
        "k-9:chacha20poly1305:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
            .parse()
            .unwrap()
    }

    fn state() -> SessionState {
        let now = Timestamp::from_millis(1_764_000_000_000);
        let mut s = SessionState::new(SessionId::from_bytes([5; 16]), now, now);
        s.set_subject(Some("user-42".to_owned()));
        s.insert("cart", &[3, 5]).unwrap();
        s
    }

    #[test]
    fn reads_each_kind() {
        let sealed = SealedCodec::new(ring()).seal(&state(), b"sid").unwrap();
        let p = peek(&sealed).unwrap();
        assert_eq!(
            p.header,
            TokenHeader {
                version: 1,
                kind: TokenKind::Sealed,
                key_id: "k-9".to_owned()
            }
        );
        assert!(matches!(p.unverified, Unverified::Encrypted));

        let signed = SignedCodec::new(ring()).seal(&state(), b"sid").unwrap();
        let p = peek(&signed).unwrap();
        assert_eq!(p.header.kind, TokenKind::Signed);
        let Unverified::Session(s) = p.unverified else {
            panic!("signed payload not read")
        };
        assert_eq!(s.id(), SessionId::from_bytes([5; 16]));
        assert_eq!(s.subject(), Some("user-42"));
        assert_eq!(s.get::<Vec<u8>>("cart").unwrap(), Some(vec![3, 5]));

        let id = SessionIdCodec::new(ring()).sign(&SessionId::from_bytes([7; 16]), b"sid");
        let p = peek(&id).unwrap();
        assert_eq!(p.header.kind, TokenKind::SessionId);
        assert!(
            matches!(p.unverified, Unverified::SessionId(i) if i == SessionId::from_bytes([7; 16]))
        );
    }

    #[test]
    fn refuses_bad_shapes_without_panicking() {
        let signed = SignedCodec::new(ring()).seal(&state(), b"sid").unwrap();
        // No prefix panics; none shorter than header, fixed fields and tag is accepted.
        for end in 0..signed.len() {
            let r = peek(&signed[..end]);
            if end * 3 / 4 < 3 + 3 + crate::state::FIXED_LEN + MAC_LEN {
                assert!(r.is_err(), "prefix of {end} accepted");
            }
        }
        let text = |raw: &[u8]| crate::codec::envelope::encode_text(raw);
        assert_eq!(
            peek(&text(&[2, 1, 1, b'k'])).unwrap_err().reason(),
            "unsupported_version"
        );
        assert_eq!(
            peek(&text(&[1, 9, 1, b'k'])).unwrap_err(),
            OpenError::Malformed("unknown token kind")
        );
        assert!(peek(&"A".repeat(DEFAULT_MAX_TOKEN_LEN + 4)).is_err());
        assert!(peek("not a token!").is_err());
    }
}
