//! Codecs turn a [`SessionState`] into a token string and back.
//!
//! [`Codec::open`] receives hostile input: it must refuse anything it did not make (for this
//! purpose, with a key of the ring), say why through [`OpenError`], and never panic.
//! Opening only authenticates and decodes; expiry is [`Policy::check`](crate::Policy::check)'s
//! job, which [`Codec::open_checked`] runs after it.

mod envelope;
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
mod jwt;
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
mod jwt_builder;
mod peek;
mod sealed;
mod signed;
mod store;

#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
pub use jwt::{DEFAULT_MAX_JWT_LEN, JWT_SESS_VERSION, JwtCodec};
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
pub use jwt_builder::{JwtCodecBuilder, JwtConfigError};
pub use peek::{Peeked, TokenHeader, TokenKind, Unverified, peek};
pub use sealed::SealedCodec;
pub use signed::SignedCodec;
pub use store::SessionIdCodec;

use crate::clock::Timestamp;
use crate::error::{OpenError, SealError};
use crate::policy::{Fresh, Policy};
use crate::state::SessionState;

/// Default longest token a codec opens or makes: 16 KiB of text (room for a chunked cookie).
/// The same value as [`Limits::token_len`](crate::Limits::token_len)'s default.
pub use crate::limits::DEFAULT_MAX_TOKEN_LEN;

/// The span of time in which a token opens, as far as its own times say: from `from` on,
/// until (not at) `until`. Outside it the codec refuses the token (expired, or from the
/// future); inside it the [`Policy`] still decides.
///
/// ```
/// use sealed_session::codec::Validity;
/// use sealed_session::Timestamp;
///
/// let v = Validity { from: Timestamp::from_millis(10), until: Timestamp::from_millis(20) };
/// assert!(v.contains(Timestamp::from_millis(10)));
/// assert!(!v.contains(Timestamp::from_millis(20)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// The first millisecond at which the token opens.
    pub from: Timestamp,
    /// The first millisecond at which it no longer opens.
    pub until: Timestamp,
}

impl Validity {
    /// A token whose opening does not depend on the time (sealed and signed tokens: their
    /// expiry is the policy's to check).
    pub const ALWAYS: Validity = Validity {
        from: Timestamp::from_millis(0),
        until: Timestamp::from_millis(u64::MAX),
    };

    /// Whether the token opens at `now`.
    pub fn contains(&self, now: Timestamp) -> bool {
        self.from <= now && now < self.until
    }
}

/// A token that authenticated and decoded. Only a codec makes one.
///
/// ```
/// use sealed_session::{Codec, Key, Keyring, Algorithm, SealedCodec, SessionId, SessionState, Timestamp};
///
/// let old = Keyring::new([Key::generate("k1", Algorithm::Aes256Gcm)?])?;
/// let now = Timestamp::from_millis(1_764_000_000_000);
/// let token = SealedCodec::new(old.clone()).seal(&SessionState::new(SessionId::generate()?, now, now), b"sid")?;
/// let rotated = old.rotate(Key::generate("k2", Algorithm::Aes256Gcm)?, 2)?;
/// let opened = SealedCodec::new(rotated).open(&token, b"sid")?;
/// assert_eq!(opened.key_id(), "k1");
/// assert!(opened.needs_reissue(), "sealed with a key that is no longer primary");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Opened {
    state: SessionState,
    key_id: String,
    stale_key: bool,
    validity: Validity,
}

impl Opened {
    pub(crate) fn new(state: SessionState, key_id: &str, primary: bool) -> Opened {
        Opened {
            state,
            key_id: key_id.to_owned(),
            stale_key: !primary,
            validity: Validity::ALWAYS,
        }
    }

    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    pub(crate) fn with_validity(mut self, validity: Validity) -> Opened {
        self.validity = validity;
        self
    }

    /// When the token opens, by its own times ([`Validity::ALWAYS`] for tokens without).
    pub fn validity(&self) -> Validity {
        self.validity
    }

    /// The session inside.
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// The session inside, by value.
    pub fn into_state(self) -> SessionState {
        self.state
    }

    /// The id of the key that opened the token.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// True when the token was made with a key that is no longer primary: re-issue it under
    /// the primary key.
    pub fn needs_reissue(&self) -> bool {
        self.stale_key
    }
}

/// State to token and back. Implemented by [`SealedCodec`] and [`SignedCodec`].
///
/// `purpose` binds a token to its use (for a cookie, the cookie's name): a token made for one
/// purpose fails authentication for any other.
///
/// ```
/// use sealed_session::{Codec, Keyring, SealedCodec, SessionId, SessionState, Timestamp};
///
/// fn round_trip(codec: &dyn Codec, state: &SessionState) -> Result<SessionState, Box<dyn std::error::Error>> {
///     let token = codec.seal(state, b"sid")?;
///     Ok(codec.open(&token, b"sid")?.into_state())
/// }
/// let now = Timestamp::from_millis(1_764_000_000_000);
/// let state = SessionState::new(SessionId::generate()?, now, now);
/// let back = round_trip(&SealedCodec::new(Keyring::generate()?), &state)?;
/// assert_eq!(back.id(), state.id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Codec: Send + Sync + 'static {
    /// A short name for logs: `"sealed"`, `"signed"`, ...
    fn name(&self) -> &'static str;

    /// Makes a token of `state` with the primary key.
    fn seal(&self, state: &SessionState, purpose: &[u8]) -> Result<String, SealError>;

    /// Authenticates and decodes a token. Hostile input: never panics.
    fn open(&self, token: &str, purpose: &[u8]) -> Result<Opened, OpenError>;

    /// Whether [`Codec::open`] is a function of the token, the purpose and the time alone,
    /// and depends on the time only through the [`Validity`] it reports: the same bytes
    /// always open to the same session within that span (or fail the same way), whatever was
    /// opened before. Only then may the middleware keep what a token opened to and hand it
    /// out again when the same bytes come back within the span (its open cache; expiry and
    /// revocation are still checked on every request, and outside the span the token goes
    /// through the codec again). Default `false`: a codec is opened every time.
    fn open_is_pure(&self) -> bool {
        false
    }

    /// The [`Validity`] a token this codec has just sealed from `state` reports when opened
    /// (the open cache keeps a token the middleware sealed under it). Default:
    /// [`Validity::ALWAYS`], right for codecs whose `open` does not look at the time.
    fn sealed_validity(&self, state: &SessionState) -> Validity {
        let _ = state;
        Validity::ALWAYS
    }

    /// [`Codec::open`], then [`Policy::check`] at `now`.
    fn open_checked(
        &self,
        token: &str,
        purpose: &[u8],
        policy: &Policy,
        now: Timestamp,
    ) -> Result<(Opened, Fresh), OpenError> {
        let opened = self.open(token, purpose)?;
        let fresh = policy.check(opened.state(), now)?;
        Ok((opened, fresh))
    }
}
