//! Theft resistance: sessions bound to a key the client holds, so that a token or cookie
//! copied off the device is refused without that key.
//!
//! - [`Dpop`]: bearer tokens bound to the client's key (RFC 9449). A client that sends a
//!   `DPoP` proof when its session is issued gets a token with `cnf.jkt`; that token is then
//!   accepted only as `Authorization: DPoP <token>` with a fresh proof signed by the key.
//!
//! - [`Dbsc`]: cookie sessions bound to a key the browser keeps (the W3C DBSC draft): a
//!   short-lived bound cookie beside the session cookie, renewed only with a proof signed
//!   by the registered key.
//!
//! What the server must remember about the client's key travels inside the session's own
//! token ([`Binding`](crate::Binding)): no store. Proofs already used are remembered for
//! their time window only ([`ReplayCache`]).

pub mod dbsc;
pub mod dpop;
mod jws;
#[cfg(feature = "redis")]
mod redis_replay;
mod replay;

pub use dbsc::{Dbsc, DbscConfigError};
pub use dpop::{DEFAULT_PROOF_MAX_AGE, Dpop, DpopConfigError};
pub use jws::{MAX_PROOF_LEN, ProofAlgorithm};
#[cfg(feature = "redis")]
pub use redis_replay::{RedisReplayCache, RedisReplayCacheBuilder};
pub use replay::{DEFAULT_REPLAY_CAPACITY, MemoryReplayCache, ReplayCache, ReplayError};

/// The MAC key for `info` derived from a configured `secret` (DPoP nonces, DBSC), or why
/// the secret is refused: shorter than 32 bytes, or every byte the same.
pub(crate) fn secret_key(secret: &[u8], info: &[u8]) -> Result<crate::keys::MacKey, &'static str> {
    if secret.len() < 32 {
        return Err("shorter than 32 bytes");
    }
    crate::keys::check_not_degenerate("binding secret", secret)
        .map_err(|_| "every byte is the same")?;
    Ok(crate::keys::MacKey::derived(secret, info))
}

/// Why a proof of possession (a DPoP proof, a DBSC registration or refresh) was refused.
/// The message names the cause; it never contains the proof or a token.
///
/// ```
/// use sealed_session::binding::ProofError;
///
/// let e = ProofError::Replayed;
/// assert_eq!(e.to_string(), "the proof was used before");
/// ```
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofError {
    /// No proof, though one is needed.
    #[error("no proof was sent")]
    Missing,
    /// More than one proof header.
    #[error("more than one proof header was sent")]
    Duplicate,
    /// Longer than [`MAX_PROOF_LEN`], refused before parsing.
    #[error("the proof is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a JWS of the expected shape.
    #[error("the proof is malformed: {0}")]
    Malformed(&'static str),
    /// The `typ` header is not the protocol's (`dpop+jwt`, `dbsc+jwt`).
    #[error("the proof's typ is not the expected one")]
    Type,
    /// The `alg` is not one of the allowed asymmetric algorithms (`none` and `HS*` never
    /// are).
    #[error("the proof's alg is not an allowed algorithm")]
    Algorithm,
    /// No public key in the header where one is needed.
    #[error("the proof carries no jwk")]
    NoKey,
    /// The header's `jwk` has private key members.
    #[error("the proof's jwk is a private key")]
    PrivateKey,
    /// A `jwk` in the header where the key is already registered (a DBSC refresh).
    #[error("the proof carries a jwk, but its key is registered already")]
    KeyPresent,
    /// The key does not fit the algorithm (type, curve, an RSA key under 2048 bits).
    #[error("the proof's key does not fit its algorithm")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("the proof's signature is invalid")]
    Signature,
    /// A required claim is missing or of the wrong type.
    #[error("the proof lacks a required claim or has a wrong one: {0}")]
    Claim(&'static str),
    /// `htm` is not the request's method.
    #[error("the proof was made for another HTTP method")]
    Method,
    /// `htu` is not the request's URI.
    #[error("the proof was made for another URI")]
    Uri,
    /// `iat` is outside the accepted window.
    #[error("the proof is too old or from the future")]
    Time,
    /// The proof (its `jti`) was used before.
    #[error("the proof was used before")]
    Replayed,
    /// `ath` is not the SHA-256 of the token sent.
    #[error("the proof's ath does not match the token")]
    TokenHash,
    /// Signed by another key than the one the session is bound to.
    #[error("the proof was signed by another key than the session's")]
    OtherKey,
    /// The challenge (DBSC) is not one this server made for this session, or has expired.
    #[error("the proof answers no valid challenge")]
    Challenge,
    /// The replay cache could not record the proof.
    #[error("the proof could not be recorded: {0}")]
    Unrecorded(String),
}

impl ProofError {
    /// A fixed description, safe for a quoted-string in a header.
    pub(crate) fn description(&self) -> &'static str {
        match self {
            ProofError::Missing => "no proof was sent",
            ProofError::Duplicate => "more than one DPoP proof was sent",
            ProofError::TooLarge { .. } => "the proof is too large",
            ProofError::Malformed(_) => "the proof is malformed",
            ProofError::Type => "the proof's typ is wrong",
            ProofError::Algorithm => "the proof's alg is not allowed",
            ProofError::NoKey => "the proof carries no jwk",
            ProofError::PrivateKey => "the proof's jwk is a private key",
            ProofError::KeyPresent => "the proof must not carry a jwk",
            ProofError::KeyMismatch => "the proof's key does not fit its alg",
            ProofError::Signature => "the proof's signature is invalid",
            ProofError::Claim(_) => "the proof lacks a required claim",
            ProofError::Method => "the proof is for another method",
            ProofError::Uri => "the proof is for another URI",
            ProofError::Time => "the proof is too old or too new",
            ProofError::Replayed => "the proof was used before",
            ProofError::TokenHash => "the proof's ath does not match the token",
            ProofError::OtherKey => "the proof is signed by another key",
            ProofError::Challenge => "the proof answers no valid challenge",
            ProofError::Unrecorded(_) => "the proof cannot be checked for replay right now",
        }
    }
}
