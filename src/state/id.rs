//! The session id: 128 random bits, shown as 22 base64url characters.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::SealError;

/// The length of a session id's text form: 16 bytes in unpadded base64url.
pub(crate) const TEXT_LEN: usize = 22;

/// A 128-bit random session id. Shown as 22 base64url characters.
///
/// ```
/// use sealed_session::SessionId;
///
/// let id = SessionId::from_bytes([7; 16]);
/// assert_eq!(SessionId::parse(&id.to_string()), Some(id));
/// assert_eq!(SessionId::parse("too short"), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// A fresh id from the operating system's RNG.
    pub fn generate() -> Result<SessionId, SealError> {
        let mut b = [0u8; 16];
        crate::random::fill(&mut b).map_err(|_| SealError::Rng)?;
        Ok(SessionId(b))
    }

    /// From raw bytes.
    pub const fn from_bytes(b: [u8; 16]) -> SessionId {
        SessionId(b)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Appends the 22-character base64url form to `out` (what `Display` shows, without the
    /// formatting machinery: for keys built once per store operation).
    #[cfg_attr(
        not(any(feature = "redis", feature = "postgres", feature = "sqlite")),
        allow(dead_code)
    )]
    pub(crate) fn push_to(&self, out: &mut String) {
        URL_SAFE_NO_PAD.encode_string(self.0, out);
    }

    /// Parses the 22-character base64url form.
    pub fn parse(s: &str) -> Option<SessionId> {
        if s.len() != TEXT_LEN {
            return None;
        }
        let v = URL_SAFE_NO_PAD.decode(s).ok()?;
        Some(SessionId(v.try_into().ok()?))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; TEXT_LEN];
        match URL_SAFE_NO_PAD.encode_slice(self.0, &mut buf) {
            Ok(n) => f.write_str(std::str::from_utf8(buf.get(..n).unwrap_or(&[])).unwrap_or("")),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}
