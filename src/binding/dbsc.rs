//! Device Bound Session Credentials (the W3C WebAppSec DBSC draft) for cookie sessions: the
//! browser keeps a key (in hardware, where it can) and proves it holds it, so that a session
//! cookie copied off the device stops working within minutes.
//!
//! The flow, with the header names of the draft:
//! - A response that issues a signed-in session (one with a subject) offers registration:
//!   `Secure-Session-Registration: (ES256 RS256);path="/dbsc/register";challenge="..."`.
//! - The browser makes a key and posts a proof to the registration path: a JWS in
//!   `Secure-Session-Response` with `typ` `dbsc+jwt`, its public key as `jwk`, and `jti`
//!   equal to the challenge. The answer is the session's JSON (`session_identifier`,
//!   `refresh_url`, `scope`, `credentials`), a short-lived bound cookie, and the session
//!   cookie re-issued with the key sealed inside it.
//! - From then on every request needs the bound cookie beside the session cookie. When it
//!   expires (default 10 minutes) the browser posts to the refresh path with
//!   `Sec-Secure-Session-Id`; without a proof the answer is a 403 with
//!   `Secure-Session-Challenge: "...";id="..."`, with a proof signed by the registered key
//!   (no `jwk` in its header) a 200 with a new bound cookie.
//!
//! No server state: the key travels inside the session token, challenges are MACed and
//! bound to the session id and a time, and the bound cookie is a MAC of the DBSC session
//! identifier and its expiry. Each challenge is accepted once ([`ReplayCache`]).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::ProofError;
use super::jws::{self, KeyIn, ProofAlgorithm};
use super::replay::{MemoryReplayCache, ReplayCache};
use crate::cache::{BOUND_LEN, VerifiedBound};
use crate::clock::Timestamp;
use crate::keys::MacKey;
use crate::state::{DeviceKey, SessionId};

/// Default lifetime of the bound cookie: 10 minutes (a copied cookie works at most this
/// long without the key).
pub const DEFAULT_BOUND_LIFETIME: Duration = Duration::from_secs(600);
/// Default lifetime of a challenge: longer than the bound cookie's, so that the challenge a
/// browser keeps from its last refresh is still good at the next one.
pub const DEFAULT_CHALLENGE_LIFETIME: Duration = Duration::from_secs(900);
/// How long past its `Max-Age` a bound cookie is still accepted: a browser counts the age
/// from when it received the cookie, so one sent just before it expired is not refused.
const BOUND_GRACE: Duration = Duration::from_secs(60);
/// How far ahead of this instance's clock another instance's challenge may be dated.
const CLOCK_SKEW: Duration = Duration::from_secs(5);
/// Default registration path.
pub const DEFAULT_REGISTRATION_PATH: &str = "/dbsc/register";
/// Default refresh path.
pub const DEFAULT_REFRESH_PATH: &str = "/dbsc/refresh";

/// Why a [`Dbsc`] setting was refused.
///
/// ```
/// use sealed_session::binding::{Dbsc, DbscConfigError};
///
/// assert!(matches!(Dbsc::new().paths("/same", "/same"), Err(DbscConfigError::BadPath)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbscConfigError {
    /// A path is not absolute (`/...`) or the two are the same.
    #[error("the DBSC paths must be absolute and differ")]
    BadPath,
    /// The secret is shorter than 32 bytes or all one byte.
    #[error("the DBSC secret is too weak: {0}")]
    WeakSecret(&'static str),
    /// No algorithm allowed.
    #[error("DBSC needs at least one allowed algorithm")]
    NoAlgorithms,
}

/// Device-bound cookie sessions (DBSC): give them to
/// [`SealedSession::device_bound`](crate::SealedSession::device_bound).
///
/// ```
/// use std::time::Duration;
/// use sealed_session::binding::Dbsc;
///
/// let dbsc = Dbsc::new()
///     .paths("/auth/dbsc/register", "/auth/dbsc/refresh")?
///     .bound_cookie_lifetime(Duration::from_secs(300))
///     .require_for("/admin");
/// # let _ = dbsc;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Dbsc {
    registration_path: Arc<str>,
    refresh_path: Arc<str>,
    lifetime: Duration,
    challenge_lifetime: Duration,
    algs: Arc<[ProofAlgorithm]>,
    required: Arc<[String]>,
    secret: Option<Arc<MacKey>>,
    replay: Arc<dyn ReplayCache>,
}

impl std::fmt::Debug for Dbsc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dbsc")
            .field("registration_path", &self.registration_path)
            .field("refresh_path", &self.refresh_path)
            .field("lifetime", &self.lifetime)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl Default for Dbsc {
    fn default() -> Self {
        Dbsc::new()
    }
}

impl Dbsc {
    /// DBSC on: registration offered to signed-in sessions at
    /// [`DEFAULT_REGISTRATION_PATH`], refreshes at [`DEFAULT_REFRESH_PATH`], bound cookies
    /// of [`DEFAULT_BOUND_LIFETIME`], ES256 and RS256 keys (what browsers offer), no route
    /// that requires binding, the MAC key derived from the session's cookie keys.
    pub fn new() -> Dbsc {
        crate::jwt_keys::install_crypto_provider();
        Dbsc {
            registration_path: Arc::from(DEFAULT_REGISTRATION_PATH),
            refresh_path: Arc::from(DEFAULT_REFRESH_PATH),
            lifetime: DEFAULT_BOUND_LIFETIME,
            challenge_lifetime: DEFAULT_CHALLENGE_LIFETIME,
            algs: Arc::from([ProofAlgorithm::Es256, ProofAlgorithm::Rs256]),
            required: Arc::from(Vec::new()),
            secret: None,
            replay: Arc::new(MemoryReplayCache::default()),
        }
    }

    /// The registration and refresh paths, which the middleware answers itself (POST).
    pub fn paths(mut self, registration: &str, refresh: &str) -> Result<Self, DbscConfigError> {
        if !registration.starts_with('/') || !refresh.starts_with('/') || registration == refresh {
            return Err(DbscConfigError::BadPath);
        }
        self.registration_path = Arc::from(registration);
        self.refresh_path = Arc::from(refresh);
        Ok(self)
    }

    /// How long a bound cookie lasts; the browser refreshes it with a proof when it runs
    /// out. Default: [`DEFAULT_BOUND_LIFETIME`].
    #[must_use]
    pub fn bound_cookie_lifetime(mut self, d: Duration) -> Self {
        self.lifetime = d;
        self
    }

    /// How long a challenge may be answered. Default: [`DEFAULT_CHALLENGE_LIFETIME`].
    #[must_use]
    pub fn challenge_lifetime(mut self, d: Duration) -> Self {
        self.challenge_lifetime = d;
        self
    }

    /// The algorithms a browser may register a key of. Default: ES256 and RS256.
    pub fn algorithms(mut self, algs: &[ProofAlgorithm]) -> Result<Self, DbscConfigError> {
        if algs.is_empty() {
            return Err(DbscConfigError::NoAlgorithms);
        }
        self.algs = Arc::from(algs);
        Ok(self)
    }

    /// Requests whose path starts with `prefix` need a device-bound session: a signed-in
    /// session that is not bound gets a 403 there. Call it once per prefix.
    #[must_use]
    pub fn require_for(mut self, prefix: impl Into<String>) -> Self {
        let mut v = self.required.to_vec();
        v.push(prefix.into());
        self.required = Arc::from(v);
        self
    }

    /// The secret that challenges and bound cookies are MACed under (at least 32 bytes;
    /// give every instance the same). Default: derived from the primary key of the
    /// session's cookie keys ([`SealedSession::sealed`](crate::SealedSession::sealed),
    /// `signed`, `server_store`); needed with any other codec.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Result<Self, DbscConfigError> {
        let key =
            super::secret_key(secret.as_ref(), DBSC_INFO).map_err(DbscConfigError::WeakSecret)?;
        self.secret = Some(Arc::new(key));
        Ok(self)
    }

    /// Where answered challenges are remembered. Default: a [`MemoryReplayCache`]; share
    /// one across instances with a `RedisReplayCache` (feature `redis`).
    #[must_use]
    pub fn replay_cache(mut self, cache: Arc<dyn ReplayCache>) -> Self {
        self.replay = cache;
        self
    }

    /// The settings with their MAC keys: the configured secret, else `derived` (one per key
    /// of the cookie ring, the primary first: what an older key made still verifies after a
    /// rotation), else a random one (this process only). Should the OS generator fail, no
    /// key: nothing verifies, so device-bound sessions are refused (never a known key).
    pub(crate) fn resolve(self, derived: Vec<Arc<MacKey>>) -> DeviceBinding {
        let keys = match (&self.secret, derived.is_empty()) {
            (Some(secret), _) => vec![secret.clone()],
            (None, false) => derived,
            (None, true) => {
                tracing::warn!(target: "sealed_session", "DBSC has no secret and no cookie keys to derive one from: a random one is used, valid in this process only; set Dbsc::secret");
                let mut random = zeroize::Zeroizing::new([0u8; 32]);
                match crate::keys::fill_random(&mut random[..]) {
                    Ok(()) => vec![Arc::new(MacKey::derived(&random[..], DBSC_INFO))],
                    Err(e) => {
                        tracing::error!(target: "sealed_session", error = %e, "DBSC has no MAC key: device-bound sessions will be refused");
                        Vec::new()
                    }
                }
            }
        };
        DeviceBinding { cfg: self, keys }
    }
}

/// The HKDF info of DBSC's MAC key.
pub(crate) const DBSC_INFO: &[u8] = b"dbsc";

/// [`Dbsc`] with its MAC key, as the engine uses it.
pub(crate) struct DeviceBinding {
    pub(crate) cfg: Dbsc,
    /// The first makes; any verifies. Empty only when no key could be made: then nothing
    /// verifies.
    keys: Vec<Arc<MacKey>>,
}

/// The proof's claims: the challenge it answers.
#[derive(Deserialize)]
struct Claims {
    jti: String,
}

/// What a challenge is for.
#[derive(Clone, Copy)]
pub(crate) enum Scope<'a> {
    /// Registering a key for this session.
    Registration(&'a SessionId),
    /// Refreshing the bound cookie of this DBSC session.
    Refresh(&'a [u8; 16]),
}

impl Scope<'_> {
    fn parts(&self) -> (&'static [u8], &[u8]) {
        match self {
            Scope::Registration(id) => (b"register", id.as_bytes()),
            Scope::Refresh(bid) => (b"refresh", &bid[..]),
        }
    }
}

/// What a request to one of the DBSC paths is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Registration,
    Refresh,
}

impl DeviceBinding {
    /// Which DBSC endpoint `path` is (for a POST), if any.
    pub(crate) fn endpoint(&self, method: &http::Method, path: &str) -> Option<Endpoint> {
        if method != http::Method::POST {
            return None;
        }
        if path == &*self.cfg.registration_path {
            Some(Endpoint::Registration)
        } else if path == &*self.cfg.refresh_path {
            Some(Endpoint::Refresh)
        } else {
            None
        }
    }

    /// Whether `path` needs a device-bound session.
    pub(crate) fn requires(&self, path: &str) -> bool {
        self.cfg
            .required
            .iter()
            .any(|p| path.starts_with(p.as_str()))
    }

    /// The bound cookie's lifetime.
    pub(crate) fn lifetime(&self) -> Duration {
        self.cfg.lifetime
    }

    /// A MAC under the primary key (without a key, zeros, which nothing verifies).
    fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.keys.first().map_or([0; 32], |k| k.tag(parts))
    }

    /// Whether `tag` (16 bytes) is the MAC of `parts` under any of the keys.
    fn verifies(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        self.keys.iter().any(|k| k.verify_truncated(parts, tag))
    }

    /// A challenge: `base64url(time (8) || random (8) || MAC (16))`, the MAC over what it is
    /// for (`scope`: a registration of session `id`, or a refresh of DBSC session `bid`),
    /// so that one kind is never accepted as the other.
    pub(crate) fn challenge(&self, scope: Scope<'_>, now: Timestamp) -> String {
        let secs = now.as_secs().to_be_bytes();
        // Tells challenges of one second apart; the MAC, not this, makes them unforgeable.
        let mut random = [0u8; 8];
        let _ = crate::random::fill(&mut random);
        let (kind, subject) = scope.parts();
        let tag = self.tag(&[b"challenge", kind, subject, &secs, &random]);
        let mut raw = [0u8; 32];
        raw[..8].copy_from_slice(&secs);
        raw[8..16].copy_from_slice(&random);
        raw[16..].copy_from_slice(&tag[..16]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `challenge` was made for `scope` within the challenge lifetime.
    fn challenge_valid(&self, challenge: &str, scope: Scope<'_>, now: Timestamp) -> bool {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(challenge) else {
            return false;
        };
        let Some((secs, rest)) = raw.split_first_chunk::<8>() else {
            return false;
        };
        let Some((random, tag)) = rest.split_first_chunk::<8>() else {
            return false;
        };
        let (kind, subject) = scope.parts();
        if !self.verifies(&[b"challenge", kind, subject, secs, random], tag) {
            return false;
        }
        let made = Timestamp::from_secs(u64::from_be_bytes(*secs));
        made <= now.saturating_add(CLOCK_SKEW)
            && now.saturating_since(made) <= self.cfg.challenge_lifetime
    }

    /// The bound cookie's value for DBSC session `bid`, valid for the lifetime from `now`
    /// (and a grace period for the browser's clock): `base64url(expiry in seconds (8) ||
    /// MAC (16))`.
    pub(crate) fn bound_value(&self, bid: &[u8; 16], now: Timestamp) -> String {
        let until = now
            .saturating_add(self.cfg.lifetime)
            .saturating_add(BOUND_GRACE);
        let exp = until.as_secs().to_be_bytes();
        let tag = self.tag(&[b"bound", bid, &exp]);
        let mut raw = [0u8; 24];
        raw[..8].copy_from_slice(&exp);
        raw[8..].copy_from_slice(&tag[..16]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `value` is a bound cookie of `bid` that has not expired at `now`.
    #[cfg(test)]
    pub(crate) fn bound_valid(&self, value: &[u8], bid: &[u8; 16], now: Timestamp) -> bool {
        self.verify_bound(value, bid, now).is_some()
    }

    /// `value`, verified: a bound cookie of `bid` whose MAC verifies and that has not
    /// expired at `now`. The one place a [`VerifiedBound`] is made.
    pub(crate) fn verify_bound(
        &self,
        value: &[u8],
        bid: &[u8; 16],
        now: Timestamp,
    ) -> Option<VerifiedBound> {
        // The cookie's one spelling: 24 bytes in 32 characters of unpadded base64.
        let kept = <[u8; BOUND_LEN]>::try_from(value).ok()?;
        let mut raw = [0u8; 24];
        match URL_SAFE_NO_PAD.decode_slice(value, &mut raw) {
            Ok(24) => {}
            _ => return None,
        }
        let (exp, tag) = raw.split_at(8);
        let mut secs = [0u8; 8];
        secs.copy_from_slice(exp);
        let until = u64::from_be_bytes(secs);
        (now.as_secs() < until && self.verifies(&[b"bound", bid, exp], tag))
            .then(|| VerifiedBound::verified(kept, *bid, until))
    }

    /// `Secure-Session-Registration` for session `id`.
    pub(crate) fn registration_header(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Option<HeaderValue> {
        let algs: Vec<&str> = self.cfg.algs.iter().map(|a| a.name()).collect();
        let text = format!(
            "({});path=\"{}\";challenge=\"{}\"",
            algs.join(" "),
            self.cfg.registration_path,
            self.challenge(Scope::Registration(id), now)
        );
        HeaderValue::try_from(text).ok()
    }

    /// `Secure-Session-Challenge` for a refresh of the DBSC session `bid`.
    pub(crate) fn challenge_header(&self, bid: &[u8; 16], now: Timestamp) -> Option<HeaderValue> {
        let text = format!(
            "\"{}\";id=\"{}\"",
            self.challenge(Scope::Refresh(bid), now),
            URL_SAFE_NO_PAD.encode(bid)
        );
        HeaderValue::try_from(text).ok()
    }

    /// The session instructions a registration answers with (the draft's JSON format).
    pub(crate) fn instructions(&self, bid: &[u8; 16], cookie: &str, attributes: &str) -> String {
        serde_json::json!({
            "session_identifier": URL_SAFE_NO_PAD.encode(bid),
            "refresh_url": &*self.cfg.refresh_path,
            "scope": {
                "include_site": false,
                "scope_specification": [
                    { "type": "exclude", "domain": "*", "path": &*self.cfg.registration_path },
                ],
            },
            "credentials": [
                { "type": "cookie", "name": cookie, "attributes": attributes },
            ],
        })
        .to_string()
    }

    /// Checks a registration proof for session `id`: a new key, answering a challenge made
    /// for this session, not answered before. The registered key.
    pub(crate) async fn register(
        &self,
        proof: Option<&str>,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<DeviceKey, ProofError> {
        let proof = proof.ok_or(ProofError::Missing)?;
        let key_in = KeyIn::HeaderOrClaim("key");
        let verified = jws::verify::<Claims>(proof, "dbsc+jwt", &self.cfg.algs, key_in)?;
        self.answered(&verified.claims.jti, Scope::Registration(id), now)
            .await?;
        let mut bid = [0u8; 16];
        crate::random::fill(&mut bid)
            .map_err(|_| ProofError::Unrecorded("no random bytes".into()))?;
        Ok(DeviceKey::new(bid, verified.jwk.into_boxed_str()))
    }

    /// Checks a refresh proof for the DBSC session of `key`: signed by the registered key
    /// (no `jwk` in the header), answering a refresh challenge made for it.
    pub(crate) async fn refresh(
        &self,
        proof: &str,
        key: &DeviceKey,
        now: Timestamp,
    ) -> Result<(), ProofError> {
        let verified = jws::verify::<Claims>(
            proof,
            "dbsc+jwt",
            &self.cfg.algs,
            KeyIn::Registered(key.jwk()),
        )?;
        self.answered(&verified.claims.jti, Scope::Refresh(key.id()), now)
            .await
    }

    /// `challenge` is valid for `scope` and answered for the first time.
    async fn answered(
        &self,
        challenge: &str,
        scope: Scope<'_>,
        now: Timestamp,
    ) -> Result<(), ProofError> {
        if !self.challenge_valid(challenge, scope, now) {
            return Err(ProofError::Challenge);
        }
        let digest = Sha256::digest(challenge.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        // Past the last instant it could be accepted, another instance's clock included.
        let until = now
            .saturating_add(self.cfg.challenge_lifetime)
            .saturating_add(CLOCK_SKEW);
        match self.replay_first_use(&key, until, now).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ProofError::Replayed),
            Err(e) => Err(ProofError::Unrecorded(e)),
        }
    }

    async fn replay_first_use(
        &self,
        key: &[u8; 16],
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, String> {
        self.cfg
            .replay
            .first_use(key, until, now)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A structured-field string (`"..."`, RFC 9651, without escapes) or a bare value, as
/// browsers send `Secure-Session-Response` and `Sec-Secure-Session-Id` (the draft says
/// sf-string; Chromium sends them bare).
pub(crate) fn sf_string_or_bare(value: &str) -> Option<&str> {
    let v = value.trim();
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').filter(|s| !s.contains(['"', '\\'])),
        None => Some(v),
    }
    .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> DeviceBinding {
        Dbsc::new()
            .secret([9u8; 31].iter().chain(&[1]).copied().collect::<Vec<u8>>())
            .unwrap()
            .resolve(Vec::new())
    }

    const T: Timestamp = Timestamp::from_millis(1_764_000_000_000);

    #[test]
    fn challenges_are_bound_to_their_scope_and_expire() {
        let b = binding();
        let (a, other) = (
            SessionId::from_bytes([1; 16]),
            SessionId::from_bytes([2; 16]),
        );
        let reg = |id| Scope::Registration(id);
        let c = b.challenge(reg(&a), T);
        assert_ne!(c, b.challenge(reg(&a), T), "random part");
        assert!(b.challenge_valid(&c, reg(&a), T));
        assert!(!b.challenge_valid(&c, reg(&other), T));
        // A registration challenge is no refresh challenge, and the other way round.
        assert!(!b.challenge_valid(&c, Scope::Refresh(&[1; 16]), T));
        let r = b.challenge(Scope::Refresh(&[1; 16]), T);
        assert!(b.challenge_valid(&r, Scope::Refresh(&[1; 16]), T));
        assert!(!b.challenge_valid(&r, Scope::Refresh(&[2; 16]), T));
        assert!(!b.challenge_valid(&r, reg(&a), T));
        let end = T.saturating_add(DEFAULT_CHALLENGE_LIFETIME);
        assert!(b.challenge_valid(&c, reg(&a), end));
        let late = T.saturating_add(DEFAULT_CHALLENGE_LIFETIME + Duration::from_secs(1));
        assert!(!b.challenge_valid(&c, reg(&a), late));
        // Made by an instance whose clock runs a little ahead: accepted; far ahead: not.
        let early = Timestamp::from_millis(T.as_millis() - 4000);
        assert!(b.challenge_valid(&c, reg(&a), early));
        let too_early = Timestamp::from_millis(T.as_millis() - 6000);
        assert!(!b.challenge_valid(&c, reg(&a), too_early));
        for junk in ["", "AAAA", &c[1..], "!!!"] {
            assert!(!b.challenge_valid(junk, reg(&a), T));
        }
    }

    #[test]
    fn bound_cookies_verify_for_their_session_until_they_expire() {
        let b = binding();
        let v = b.bound_value(&[7; 16], T);
        assert!(b.bound_valid(v.as_bytes(), &[7; 16], T));
        assert!(!b.bound_valid(v.as_bytes(), &[8; 16], T));
        // Accepted past its Max-Age by the grace period only.
        let edge = T.saturating_add(DEFAULT_BOUND_LIFETIME + BOUND_GRACE);
        let almost = Timestamp::from_millis(edge.as_millis() - 1000);
        assert!(b.bound_valid(v.as_bytes(), &[7; 16], almost));
        assert!(!b.bound_valid(v.as_bytes(), &[7; 16], edge));
        let mut forged = v.clone().into_bytes();
        forged[3] ^= 1;
        assert!(!b.bound_valid(&forged, &[7; 16], T));
        for junk in [&b""[..], b"x", &[b'A'; 100]] {
            assert!(!b.bound_valid(junk, &[7; 16], T));
        }
    }

    #[test]
    fn what_an_older_key_made_verifies_after_a_rotation() {
        let old = Arc::new(MacKey::derived(&[1; 32], DBSC_INFO));
        let new = Arc::new(MacKey::derived(&[2; 32], DBSC_INFO));
        let before = Dbsc::new().resolve(vec![old.clone()]);
        let after = Dbsc::new().resolve(vec![new.clone(), old]);
        let v = before.bound_value(&[7; 16], T);
        assert!(after.bound_valid(v.as_bytes(), &[7; 16], T));
        let only_new = Dbsc::new().resolve(vec![new]);
        assert!(!only_new.bound_valid(v.as_bytes(), &[7; 16], T));
    }

    #[test]
    fn without_a_key_nothing_verifies() {
        let b = DeviceBinding {
            cfg: Dbsc::new(),
            keys: Vec::new(),
        };
        let v = b.bound_value(&[7; 16], T);
        assert!(!b.bound_valid(v.as_bytes(), &[7; 16], T));
        let id = SessionId::from_bytes([1; 16]);
        let c = b.challenge(Scope::Registration(&id), T);
        assert!(!b.challenge_valid(&c, Scope::Registration(&id), T));
    }

    #[test]
    fn header_values_are_read_quoted_or_bare() {
        assert_eq!(sf_string_or_bare("\"abc\""), Some("abc"));
        assert_eq!(sf_string_or_bare(" abc "), Some("abc"));
        assert_eq!(sf_string_or_bare("\"a\\\"b\""), None);
        assert_eq!(sf_string_or_bare("\"\""), None);
        assert_eq!(sf_string_or_bare("\"abc"), None);
    }

    #[test]
    fn weak_secrets_and_bad_paths_are_refused() {
        assert!(Dbsc::new().secret([1u8; 40]).is_err());
        assert!(Dbsc::new().secret(b"short").is_err());
        assert!(Dbsc::new().paths("register", "/r").is_err());
        assert!(Dbsc::new().paths("/same", "/same").is_err());
        assert!(Dbsc::new().algorithms(&[]).is_err());
    }
}
