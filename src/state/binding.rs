//! What a session can be bound to: a key that its client holds, so that a copy of its
//! token, used without that key, is refused (`crate::binding` checks the proofs).

use std::sync::Arc;

/// Longest public key (JWK text) a device-bound session carries, in bytes: an RSA-4096 key
/// is about 750.
pub const MAX_DEVICE_KEY_LEN: usize = 2048;

/// The key a session is bound to, carried inside the session's own token (sealed,
/// signed, in a JWT's `cnf` claim, or in its store record), so that checking it needs no
/// server-side store.
///
/// ```
/// use sealed_session::{Binding, SessionId, SessionState, Timestamp};
///
/// let now = Timestamp::from_millis(1_764_000_000_000);
/// let mut state = SessionState::new(SessionId::from_bytes([1; 16]), now, now);
/// assert_eq!(state.binding(), None);
/// state.set_binding(Some(Binding::Dpop { jkt: [7; 32] }));
/// assert!(matches!(state.binding(), Some(Binding::Dpop { .. })));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Binding {
    /// A DPoP-bound token (RFC 9449): accepted only with a proof signed by the key whose
    /// RFC 7638 thumbprint (SHA-256) this is, the token's `cnf.jkt`.
    Dpop {
        /// The thumbprint's 32 bytes.
        jkt: [u8; 32],
    },
    /// A device-bound cookie session (W3C DBSC): the browser registered this key, and the
    /// session needs a short-lived cookie that only a proof signed by it renews.
    Device(Arc<DeviceKey>),
}

/// A key a browser registered for a device-bound session (DBSC).
///
/// ```
/// use sealed_session::{Binding, Session};
///
/// fn registered_key(session: &Session) -> Option<String> {
///     match session.binding()? {
///         Binding::Device(key) => Some(key.jwk().to_owned()),
///         _ => None,
///     }
/// }
/// # let _ = registered_key;
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceKey {
    /// The DBSC session identifier: random, not the session id, so that the id never
    /// leaves the sealed token.
    pub(crate) id: [u8; 16],
    /// The public key as JWK text (its RFC 7638 members only, in that order).
    pub(crate) jwk: Box<str>,
}

impl DeviceKey {
    /// A registered key: `id` names the DBSC session; `jwk` is the public key's JWK text
    /// (at most [`MAX_DEVICE_KEY_LEN`] bytes).
    pub(crate) fn new(id: [u8; 16], jwk: Box<str>) -> DeviceKey {
        DeviceKey { id, jwk }
    }

    /// The DBSC session identifier's bytes.
    pub fn id(&self) -> &[u8; 16] {
        &self.id
    }

    /// The registered public key, as JWK text.
    pub fn jwk(&self) -> &str {
        &self.jwk
    }
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKey")
            .field("jwk_len", &self.jwk.len())
            .finish_non_exhaustive()
    }
}
