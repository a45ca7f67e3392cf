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

/// A token that authenticated and decoded. Only a codec makes one.
#[derive(Debug)]
pub struct Opened {
    state: SessionState,
    key_id: String,
    stale_key: bool,
}

impl Opened {
    pub(crate) fn new(state: SessionState, key_id: &str, primary: bool) -> Opened {
        Opened {
            state,
            key_id: key_id.to_owned(),
            stale_key: !primary,
        }
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
pub trait Codec: Send + Sync + 'static {
    /// A short name for logs: `"sealed"`, `"signed"`, ...
    fn name(&self) -> &'static str;

    /// Makes a token of `state` with the primary key.
    fn seal(&self, state: &SessionState, purpose: &[u8]) -> Result<String, SealError>;

    /// Authenticates and decodes a token. Hostile input: never panics.
    fn open(&self, token: &str, purpose: &[u8]) -> Result<Opened, OpenError>;

    /// Whether [`Codec::open`] is a function of the token and the purpose alone: the same
    /// bytes always open to the same session (or fail the same way), whatever the time and
    /// whatever was opened before. Only then may the middleware keep what a token opened to
    /// and hand it out again when the same bytes come back (its open cache; expiry and
    /// revocation are still checked on every request). Default `false`, so a codec that
    /// checks times itself, as [`JwtCodec`] does, is opened every time.
    // Without a JWT feature there is no `JwtCodec`: the link leads to the features list.
    #[cfg_attr(
        not(any(feature = "jwt", feature = "jwt-rust-crypto")),
        doc = "",
        doc = "[`JwtCodec`]: crate#features"
    )]
    fn open_is_pure(&self) -> bool {
        false
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
