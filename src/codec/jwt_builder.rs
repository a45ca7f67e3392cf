//! Building a [`JwtCodec`]: the issuer and audience a token is bound to are required, unless
//! the application says in so many words that it does without them.
//!
//! Without `iss` and `aud`, a JWT codec accepts every token signed by a key of its ring with
//! the session claim, including tokens minted with the same keys for another service or
//! another audience. So [`JwtCodecBuilder::build`] refuses a configuration without them
//! ([`JwtConfigError::Missing`]) unless [`JwtCodecBuilder::allow_missing_issuer_or_audience`]
//! was called.

use super::jwt::JwtCodec;
use crate::jwt_keys::JwtKeyring;

/// Why a [`JwtCodec`] could not be built. Names what is missing; never holds key material.
///
/// ```
/// use sealed_session::{JwtAlgorithm, JwtCodec, JwtConfigError, JwtKeyring};
///
/// let ring = JwtKeyring::generate(JwtAlgorithm::EdDSA)?;
/// let e = JwtCodec::builder(ring).issuer("https://app.example").build().unwrap_err();
/// assert!(matches!(e, JwtConfigError::Missing { .. }));
/// # Ok::<(), sealed_session::JwtKeyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtConfigError {
    /// No issuer, no audience, or neither was given, and the application did not opt out
    /// with [`JwtCodecBuilder::allow_missing_issuer_or_audience`].
    #[error(
        "a JWT codec needs {missing}: call .issuer(..) and .audience(..), or \
         .allow_missing_issuer_or_audience() to accept tokens that the ring's keys signed \
         for any {missing}"
    )]
    Missing {
        /// What is missing: `"an issuer (iss)"`, `"an audience (aud)"` or
        /// `"an issuer (iss) and an audience (aud)"`.
        missing: &'static str,
    },
    /// The issuer or audience given is the empty string.
    #[error("the JWT {claim:?} claim is empty; give a non-empty value")]
    Empty {
        /// `"iss"` or `"aud"`.
        claim: &'static str,
    },
}

/// Builds a [`JwtCodec`] ([`JwtCodec::builder`]). Issuer and audience are required.
///
/// ```
/// use sealed_session::{JwtAlgorithm, JwtCodec, JwtConfigError, JwtKeyring};
///
/// let ring = JwtKeyring::generate(JwtAlgorithm::EdDSA)?;
/// let _codec = JwtCodec::builder(ring.clone())
///     .issuer("https://app.example")
///     .audience("app")
///     .build()?;
///
/// // Forgetting the audience is an error, not a codec that accepts any audience.
/// let err = JwtCodec::builder(ring.clone()).issuer("https://app.example").build();
/// assert_eq!(err.unwrap_err(), JwtConfigError::Missing { missing: "an audience (aud)" });
///
/// // Unless the application says so.
/// let _any_audience = JwtCodec::builder(ring)
///     .issuer("https://app.example")
///     .allow_missing_issuer_or_audience()
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "call .build() to get the codec"]
pub struct JwtCodecBuilder {
    ring: JwtKeyring,
    issuer: Option<String>,
    audience: Option<String>,
    allow_missing: bool,
}

impl JwtCodecBuilder {
    pub(super) fn new(ring: JwtKeyring) -> Self {
        JwtCodecBuilder {
            ring,
            issuer: None,
            audience: None,
            allow_missing: false,
        }
    }

    /// The `iss` claim written into every token and required, equal, in every token opened.
    /// Required unless [`JwtCodecBuilder::allow_missing_issuer_or_audience`]; without it, no
    /// `iss` is written and any `iss` is accepted.
    pub fn issuer(mut self, iss: impl Into<String>) -> Self {
        self.issuer = Some(iss.into());
        self
    }

    /// The `aud` claim written into every token and required, equal (or, for an array, one
    /// of its values), in every token opened: a token signed with the same keys for another
    /// audience is refused. Required unless
    /// [`JwtCodecBuilder::allow_missing_issuer_or_audience`]; without it, no `aud` is written
    /// and a token that carries an `aud` is refused, as RFC 7519 section 4.1.3 asks.
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audience = Some(aud.into());
        self
    }

    /// Opts out of the requirement: the codec may be built without an issuer, an audience,
    /// or both. Those that are given are still written and checked. Then every token that a
    /// key of the ring signed, for whatever issuer or audience is not configured, opens:
    /// use it only with keys that sign for this application alone. Default: off.
    pub fn allow_missing_issuer_or_audience(mut self) -> Self {
        self.allow_missing = true;
        self
    }

    /// The codec: 60 seconds of leeway, a 1-hour idle timeout in `exp` (as
    /// [`Policy::default`](crate::Policy::default)), no `nbf`, an 8 KiB limit, the system
    /// clock; change them on the codec ([`JwtCodec::policy`], [`JwtCodec::leeway`], ...).
    ///
    /// # Errors
    /// [`JwtConfigError::Missing`] without an issuer or an audience (unless
    /// [`JwtCodecBuilder::allow_missing_issuer_or_audience`]), [`JwtConfigError::Empty`] for
    /// an empty one.
    pub fn build(self) -> Result<JwtCodec, JwtConfigError> {
        for (claim, value) in [("iss", &self.issuer), ("aud", &self.audience)] {
            if value.as_deref() == Some("") {
                return Err(JwtConfigError::Empty { claim });
            }
        }
        let missing = match (&self.issuer, &self.audience) {
            (Some(_), Some(_)) => None,
            (None, Some(_)) => Some("an issuer (iss)"),
            (Some(_), None) => Some("an audience (aud)"),
            (None, None) => Some("an issuer (iss) and an audience (aud)"),
        };
        match missing {
            Some(missing) if !self.allow_missing => Err(JwtConfigError::Missing { missing }),
            _ => Ok(JwtCodec::from_parts(self.ring, self.issuer, self.audience)),
        }
    }
}
