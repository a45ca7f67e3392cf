//! Typed errors. Every refusal names its cause; none carries key material or a token.

use crate::clock::Timestamp;

/// Why a key, secret or key-ring string was refused.
///
/// ```
/// use sealed_session::{KeyError, Keyring};
///
/// assert!(matches!(Keyring::from_secret("too short"), Err(KeyError::TooShort { .. })));
/// let e = "k1:not-base64!".parse::<Keyring>().unwrap_err();
/// assert!(!e.to_string().is_empty(), "the message names the cause, never the key");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A raw key or secret is shorter than the 32 bytes the ring requires.
    #[error(
        "{what} is {got} bytes long; at least {need} bytes are required (generate one with `Key::generate` or `sealed-session keygen`)"
    )]
    TooShort {
        /// "key" or "secret".
        what: &'static str,
        /// Bytes required.
        need: usize,
        /// Bytes given.
        got: usize,
    },
    /// A raw key is longer than 32 bytes (derive it with `Key::derive` instead).
    #[error(
        "key is {got} bytes long; a raw key must be exactly {need} bytes (use `Key::derive` for a longer secret)"
    )]
    TooLong {
        /// Bytes required.
        need: usize,
        /// Bytes given.
        got: usize,
    },
    /// Every byte of the key or secret is the same (for example all zeros): not a key.
    #[error("{what} has every byte equal; it is a placeholder, not a key")]
    Degenerate {
        /// "key" or "secret".
        what: &'static str,
    },
    /// A key id is empty, too long or has a character outside `[A-Za-z0-9._-]`.
    #[error("key id {id:?} is invalid: ids are 1 to {max} characters from A-Z a-z 0-9 . _ -")]
    InvalidKeyId {
        /// The offending id (ids are not secret).
        id: String,
        /// Longest id allowed.
        max: usize,
    },
    /// Two keys in one ring share an id, so a token could not name its key unambiguously.
    #[error("key id {0:?} appears twice in the key ring")]
    DuplicateKeyId(String),
    /// A ring needs at least one key.
    #[error("the key ring is empty; give at least one key")]
    Empty,
    /// The algorithm name is not one this crate knows.
    #[error(
        "unknown algorithm {0:?}; expected one of aes256gcm, chacha20poly1305, xchacha20poly1305"
    )]
    UnknownAlgorithm(String),
    /// The key material is not valid base64.
    #[error("key {id:?} is not valid base64 (standard or URL-safe alphabet)")]
    BadBase64 {
        /// The key id whose material failed to decode.
        id: String,
    },
    /// An entry of a key-ring string is not of the form `id:base64` or `id:alg:base64`.
    #[error("key-ring entry {position} is not of the form `id:base64` or `id:algorithm:base64`")]
    BadRingEntry {
        /// 1-based position of the entry in the string.
        position: usize,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
}

/// Why a token was refused when opened.
///
/// The cases are distinct so that logs and metrics can count them ([`OpenError::reason`]);
/// a client is only ever shown one outcome (a fresh session or a 401).
///
/// ```
/// use sealed_session::{Codec, Keyring, OpenError, SealedCodec};
///
/// let codec = SealedCodec::new(Keyring::generate()?);
/// let e = codec.open("not a token", b"sid").unwrap_err();
/// assert!(matches!(e, OpenError::Malformed(_)));
/// assert_eq!(e.reason(), "malformed");
/// # Ok::<(), sealed_session::KeyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The token is not of this format: bad base64, too short, wrong kind, bad header or body.
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    /// The token's format version is not one this build reads.
    #[error("token format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// Version byte found in the token.
        found: u8,
        /// Version this build reads.
        supported: u8,
    },
    /// The token names a key id that is not (or no longer) in the ring.
    #[error("token names key id {0:?}, which is not in the key ring")]
    UnknownKeyId(String),
    /// Authentication failed: the token was forged, corrupted, or made for another purpose
    /// (for a cookie, another cookie name).
    #[error("token failed authentication (forged, corrupted, or made for another purpose)")]
    BadSeal,
    /// The session passed its absolute deadline.
    #[error("session expired at {expired_at} (now {now})")]
    Expired {
        /// The deadline carried in the token.
        expired_at: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// The session was idle for longer than the policy allows.
    #[error("session idle since {last_seen}, past the idle timeout (now {now})")]
    IdleTimeout {
        /// Last activity carried in the token.
        last_seen: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// The token claims a time in the future, beyond the clock leeway.
    #[error("token claims time {claimed}, ahead of now {now} by more than the leeway")]
    FromTheFuture {
        /// The issued-at or last-seen time found in the token.
        claimed: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// The token is longer than the configured limit; it was refused before decoding.
    #[error("token is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// Length of the token as received.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The request's `Cookie` headers together are longer than the configured limit
    /// ([`Limits::cookie_header_len`](crate::Limits::cookie_header_len)); no cookie was read.
    #[error("cookie header is {len} bytes, over the limit of {max}")]
    CookieHeaderTooLarge {
        /// Length of the `Cookie` headers as received (counted up to the first value past
        /// the limit).
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The session came split across more cookies than the configured limit
    /// ([`SealedSession::max_chunks`](crate::SealedSession::max_chunks)); they were not joined.
    #[error("session cookie came in {chunks} chunks, over the limit of {max}")]
    TooManyChunks {
        /// Chunks present (the highest index plus one).
        chunks: usize,
        /// The configured limit.
        max: usize,
    },
    /// The session data, once the token opened, is longer than the configured limit
    /// ([`Limits::data_len`](crate::Limits::data_len)).
    #[error("session data is {len} bytes, over the limit of {max}")]
    DataTooLarge {
        /// Length of the data's JSON text.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The session data, once the token opened, nests deeper than the configured limit
    /// ([`Limits::json_depth`](crate::Limits::json_depth)).
    #[error("session data nests deeper than {max} levels")]
    DataTooDeep {
        /// The configured limit.
        max: usize,
    },
    /// The session was revoked (logged out) before its expiry.
    #[error("session was revoked")]
    Revoked,
    /// A JWT's `iss` or `aud` claim is missing or names another issuer or audience than
    /// the one configured.
    #[error("token's {claim:?} claim is missing or does not match the configured value")]
    ClaimMismatch {
        /// The registered claim that failed: `"iss"` or `"aud"`.
        claim: &'static str,
    },
    /// Store-backed sessions: the signed id is valid but the store holds no such session
    /// (it expired, was destroyed, or the store was emptied). The id is never adopted.
    #[error("no session with this id in the store")]
    NotFound,
    /// Bearer transport: the request carries more than one `Authorization` header, so which
    /// credentials it presents is ambiguous. Refused with a 400 and RFC 6750's
    /// `invalid_request`; none of them is used.
    #[error("request carries {count} Authorization headers; exactly one is allowed")]
    DuplicateAuthorization {
        /// How many `Authorization` headers the request carried.
        count: usize,
    },
    /// The proof of possession a bound session needs (a DPoP proof) is missing or invalid;
    /// the request is refused with a 401 (see `binding::ProofError`
    /// for the causes, which the log line names).
    #[error("the session's proof of possession is missing or invalid")]
    BadProof,
}

impl OpenError {
    /// A short, stable, lower-case label for logs and metrics (`"bad_seal"`, `"expired"`, ...).
    pub fn reason(&self) -> &'static str {
        let reasons = &crate::stats::REASONS;
        reasons
            .get(self.reason_index())
            .copied()
            .unwrap_or_default()
    }

    /// The position of this error's reason in [`REASONS`](crate::stats::REASONS).
    pub(crate) fn reason_index(&self) -> usize {
        match self {
            OpenError::Malformed(_) => 0,
            OpenError::UnsupportedVersion { .. } => 1,
            OpenError::UnknownKeyId(_) => 2,
            OpenError::BadSeal => 3,
            OpenError::Expired { .. } => 4,
            OpenError::IdleTimeout { .. } => 5,
            OpenError::FromTheFuture { .. } => 6,
            OpenError::TooLarge { .. } => 7,
            OpenError::Revoked => 8,
            OpenError::ClaimMismatch { .. } => 9,
            OpenError::NotFound => 10,
            OpenError::CookieHeaderTooLarge { .. } => 11,
            OpenError::TooManyChunks { .. } => 12,
            OpenError::DataTooLarge { .. } => 13,
            OpenError::DataTooDeep { .. } => 14,
            OpenError::DuplicateAuthorization { .. } => 15,
            OpenError::BadProof => 16,
        }
    }
}

/// Why a session could not be sealed or signed into a token.
///
/// ```
/// use sealed_session::{Codec, Keyring, SealError, SealedCodec, SessionId, SessionState, Timestamp};
///
/// let codec = SealedCodec::new(Keyring::generate()?).max_token_len(100);
/// let now = Timestamp::from_millis(1_764_000_000_000);
/// let mut state = SessionState::new(SessionId::generate()?, now, now);
/// state.insert("big", &"x".repeat(200))?;
/// assert!(matches!(codec.seal(&state, b"sid"), Err(SealError::TooLarge { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The subject (user id) is longer than the format allows.
    #[error("subject is {len} bytes, over the limit of {max}")]
    SubjectTooLong {
        /// Length of the subject.
        len: usize,
        /// Longest subject allowed.
        max: usize,
    },
    /// The token would be longer than the configured limit.
    #[error("sealed token would be {len} bytes, over the limit of {max}")]
    TooLarge {
        /// Length the token would have.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The session data could not be serialized.
    #[error("session data could not be serialized")]
    Serialize(#[source] serde_json::Error),
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
    /// The cipher refused to encrypt (only for inputs of many gigabytes).
    #[error("encryption failed")]
    Encrypt,
    /// The signer refused to sign (a JWT key the crypto backend could not use).
    #[error("signing the token failed")]
    Sign,
}

/// Why session data could not be read or written as the requested type.
///
/// ```
/// use sealed_session::{DataError, SessionId, SessionState, Timestamp};
///
/// let now = Timestamp::from_millis(1_764_000_000_000);
/// let mut state = SessionState::new(SessionId::from_bytes([1; 16]), now, now);
/// state.insert("views", &3)?;
/// assert!(matches!(state.get::<String>("views"), Err(DataError::WrongType { .. })));
/// # Ok::<(), DataError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The value stored under `key` is not of the requested type.
    #[error("session value {key:?} is not of the requested type")]
    WrongType {
        /// The session key.
        key: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The value could not be converted to JSON.
    #[error("value for session key {key:?} could not be serialized")]
    Serialize {
        /// The session key.
        key: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The value would nest the session data deeper than the configured bound
    /// ([`Limits::json_depth`](crate::Limits::json_depth); the data object itself is level
    /// 1). Refused when stored, because a session that deep would be refused when it comes
    /// back, silently logging the user out.
    #[error("value for session key {key:?} would nest the session data deeper than {max} levels")]
    TooDeep {
        /// The session key.
        key: String,
        /// The deepest nesting allowed.
        max: usize,
    },
    /// The session's stored data is not a JSON object. No longer returned: such data is
    /// refused when its token opens ([`OpenError::Malformed`]). Kept so that code matching
    /// it still compiles; to be removed with the next breaking release.
    #[error("session data is not a JSON object")]
    Corrupt(#[source] serde_json::Error),
}
