//! JWT tokens (RFC 7519, JWS compact form), for bearer transports and single-page apps.
//!
//! ```text
//! base64url(header) . base64url(claims) . base64url(signature)
//! header = {"typ":"JWT","alg":<the key's algorithm>,"kid":<the key's id>}
//! claims = {iss?, sub?, aud?, exp, nbf?, iat, jti, "sess": {v, iat_ms, seen_ms, deadline_ms},
//!           "cnf"?: {"jkt": thumbprint} or {"dbsc": id, "jwk": key}, "data"?: {session data}}
//! ```
//!
//! A JWT is **signed, not encrypted**: anyone holding it can read the session data. Protects
//! against tampering and forgery only. The full description, with a worked example, is in
//! `docs/FORMAT.md` (JWT section).
//!
//! What is refused, and how ([`OpenError`]):
//! - over the size limit (default 8 KiB), before any parsing: `TooLarge`;
//! - no `kid`, or a `kid` that is not 1 to 64 characters of `A-Z a-z 0-9 . _ -`, a `crit`
//!   header, bad base64url or JSON: `Malformed`;
//! - a `kid` not in the ring: `UnknownKeyId` (no other key is tried);
//! - an `alg` other than the `kid`'s own algorithm (so `none`, and an `HS256` token "signed"
//!   with an RSA or EC public key as HMAC secret), a bad signature: `BadSeal`;
//! - `iss` or `aud` missing or different (so a token minted with the same keys for another
//!   audience), or `aud` present when none is configured: `ClaimMismatch`;
//! - no `sess` claim (a JWT that the ring's keys signed for something other than a
//!   session): `Malformed`;
//! - `exp` passed (beyond the leeway): `Expired`, or `IdleTimeout` when the idle deadline set
//!   `exp`; `nbf` or `iat` in the future (beyond the leeway): `FromTheFuture`.
//!
//! A JWT is bound to its issuer and audience, which [`JwtCodec::builder`] requires (an
//! application that does without them says so with
//! [`JwtCodecBuilder::allow_missing_issuer_or_audience`]), not to a cookie name: the
//! `purpose` argument of [`Codec`] is ignored.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::jwt_builder::JwtCodecBuilder;
use super::{Codec, Opened, Validity};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::error::{OpenError, SealError};
use crate::jwt_keys::{JwtKeyring, MAX_JWT_KID_LEN};
use crate::keys::valid_id;
use crate::policy::{Fresh, Policy};
use crate::state::{
    Binding, DeviceKey, MAX_DEVICE_KEY_LEN, MAX_SUBJECT_LEN, SessionId, SessionState,
};

/// Default longest JWT opened or made: 8 KiB.
pub const DEFAULT_MAX_JWT_LEN: usize = 8 * 1024;

/// Version of the `sess` claim this build writes and reads.
pub const JWT_SESS_VERSION: u8 = 1;

/// The JWT codec: sessions as signed JWTs, keys chosen by `kid` from a [`JwtKeyring`].
///
/// ```
/// use sealed_session::{Codec, JwtAlgorithm, JwtCodec, JwtKeyring, Policy, SessionId,
///                      SessionState, Timestamp};
/// use std::time::Duration;
///
/// let ring = JwtKeyring::generate(JwtAlgorithm::EdDSA)?;
/// let policy = Policy::new().max_age(Duration::from_secs(3600));
/// let codec = JwtCodec::builder(ring)
///     .issuer("https://app.example")
///     .audience("app")
///     .build()?
///     .policy(&policy);
///
/// let now = Timestamp::from_millis(1_764_000_000_000);
/// let mut state = SessionState::new(SessionId::generate()?, now, policy.expires_at(now));
/// state.insert("user", "alice")?;
/// let token = codec.seal(&state, b"")?;                 // the bearer token
///
/// let (opened, _fresh) = codec.open_checked(&token, b"", &policy, now)?;
/// assert_eq!(opened.into_state().get::<String>("user")?.as_deref(), Some("alice"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct JwtCodec {
    ring: JwtKeyring,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    idle_timeout: Option<Duration>,
    not_before: bool,
    max_len: usize,
    clock: Arc<dyn Clock>,
    /// One per key of the ring, in ring order: accepts that key's algorithm only.
    validations: Arc<[Validation]>,
}

impl JwtCodec {
    /// Starts a JWT codec over `ring`. Give it an issuer and an audience, then
    /// [`JwtCodecBuilder::build`]; building without them is an error unless the application
    /// calls [`JwtCodecBuilder::allow_missing_issuer_or_audience`].
    ///
    /// ```
    /// # use sealed_session::{JwtAlgorithm, JwtCodec, JwtKeyring};
    /// let ring = JwtKeyring::generate(JwtAlgorithm::EdDSA)?;
    /// let codec = JwtCodec::builder(ring).issuer("https://app.example").audience("app").build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(ring: JwtKeyring) -> JwtCodecBuilder {
        JwtCodecBuilder::new(ring)
    }

    /// The codec [`JwtCodecBuilder::build`] makes, once it checked `issuer` and `audience`:
    /// 60 seconds of leeway, a 1-hour idle timeout in `exp` (as [`Policy::default`]), no
    /// `nbf`, an 8 KiB limit, the system clock.
    pub(super) fn from_parts(
        ring: JwtKeyring,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Self {
        let mut codec = JwtCodec {
            ring,
            issuer,
            audience,
            leeway: Duration::from_secs(60),
            idle_timeout: Policy::default().idle_timeout,
            not_before: false,
            max_len: DEFAULT_MAX_JWT_LEN,
            clock: Arc::new(SystemClock),
            validations: Arc::from(Vec::new()),
        };
        codec.rebuild();
        codec
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat`. Default: 60 seconds.
    #[must_use]
    pub fn leeway(mut self, d: Duration) -> Self {
        self.leeway = d;
        self
    }

    /// The idle timeout written into `exp`: `exp` is the earlier of the absolute deadline and
    /// `last_seen + idle`. `None`: `exp` is the absolute deadline. Default: 1 hour, as
    /// [`Policy::default`]; set it to the middleware policy's with [`JwtCodec::policy`].
    #[must_use]
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Takes the idle timeout and the leeway from `policy`, so that `exp` tells other
    /// verifiers the same deadline as the policy enforces here. [`SealedSession::jwt`]
    /// does this with the middleware's policy.
    ///
    /// [`SealedSession::jwt`]: crate::SealedSession::jwt
    #[must_use]
    pub fn policy(self, policy: &Policy) -> Self {
        self.idle_timeout(policy.idle_timeout).leeway(policy.leeway)
    }

    /// Writes an `nbf` (not before) claim equal to `iat`. Default: off. An `nbf` in a token
    /// opened is checked whether or not this is on.
    #[must_use]
    pub fn not_before(mut self, on: bool) -> Self {
        self.not_before = on;
        self
    }

    /// The longest token opened (longer ones are refused before parsing) or made.
    /// Default: 8 KiB ([`DEFAULT_MAX_JWT_LEN`]).
    #[must_use]
    pub fn max_token_len(mut self, n: usize) -> Self {
        self.max_len = n;
        self
    }

    /// The clock [`Codec::open`] checks `exp`, `nbf` and `iat` against.
    /// [`Codec::open_checked`] uses the time it is given instead. Default: the system clock.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The key ring (for its JWK Set: [`JwtKeyring::jwks_json`]).
    pub fn keyring(&self) -> &JwtKeyring {
        &self.ring
    }

    /// The `iat` (and `nbf`, when written) a token of `state` gets, in seconds: its
    /// `last_seen`, rounded down.
    fn iat(state: &SessionState) -> u64 {
        state.last_seen().as_millis() / 1000
    }

    /// The `exp` a token of `state` gets, in milliseconds (the token carries it in whole
    /// seconds, rounded down): the earlier of the absolute deadline and the idle deadline.
    pub fn token_deadline(&self, state: &SessionState) -> Timestamp {
        let abs = state.expires_at();
        match self.idle_timeout {
            Some(idle) => abs.min(state.last_seen().saturating_add(idle)),
            None => abs,
        }
    }

    fn rebuild(&mut self) {
        let validations: Vec<Validation> = self
            .ring
            .keys()
            .map(|key| {
                let mut v = Validation::new(key.algorithm().to_jsonwebtoken());
                // Times are checked here, against an injectable clock, not by jsonwebtoken.
                v.validate_exp = false;
                v.validate_nbf = false;
                v.leeway = 0;
                let mut required = HashSet::new();
                if let Some(iss) = &self.issuer {
                    v.set_issuer(&[iss]);
                    required.insert("iss".to_owned());
                }
                if let Some(aud) = &self.audience {
                    v.set_audience(&[aud]);
                    required.insert("aud".to_owned());
                }
                v.validate_aud = true;
                v.required_spec_claims = required;
                v
            })
            .collect();
        self.validations = Arc::from(validations);
    }

    /// Authenticates and decodes `token`, checking its times at `now`.
    fn open_at(&self, token: &str, now: Timestamp) -> Result<Opened, OpenError> {
        if token.len() > self.max_len {
            return Err(OpenError::TooLarge {
                len: token.len(),
                max: self.max_len,
            });
        }
        let header_b64 = token
            .split_once('.')
            .map(|(h, _)| h)
            .ok_or(OpenError::Malformed("not a JWT: no '.'"))?;
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| OpenError::Malformed("JWT header is not base64url"))?;
        let header: HeaderIn<'_> = serde_json::from_slice(&header_json)
            .map_err(|_| OpenError::Malformed("JWT header is not a JSON object with an alg"))?;
        if header.crit.is_some() {
            return Err(OpenError::Malformed(
                "JWT header has a crit parameter; no extensions are supported",
            ));
        }
        let kid = header
            .kid
            .ok_or(OpenError::Malformed("JWT header has no kid"))?;
        if !valid_id(kid.as_bytes(), MAX_JWT_KID_LEN) {
            return Err(OpenError::Malformed("JWT kid is not a valid key id"));
        }
        let (index, key) = self
            .ring
            .find(&kid)
            .ok_or_else(|| OpenError::UnknownKeyId(kid.clone().into_owned()))?;
        // Each key accepts its own algorithm only: `none`, or HS256 with a public key as the
        // secret, end here (and jsonwebtoken checks the same again).
        if header.alg != key.algorithm().name() {
            return Err(OpenError::BadSeal);
        }
        let validation = self.validations.get(index).ok_or(OpenError::BadSeal)?;
        let claims = jsonwebtoken::decode::<ClaimsIn>(token, &key.decoding, validation)
            .map_err(|e| map_decode_error(e.kind()))?
            .claims;
        let latest = [claims.nbf, Some(claims.iat)].into_iter().flatten().max();
        let validity = self.validity(claims.exp, latest.unwrap_or(0));
        let state = self.check_claims(claims, now)?;
        Ok(Opened::new(state, key.kid(), index == 0).with_validity(validity))
    }

    /// When a token with these claims (in seconds) opens, as [`JwtCodec::check_claims`]
    /// judges its times: from `latest_claim` (the later of `nbf` and `iat`) less the leeway,
    /// until `exp` plus the leeway.
    fn validity(&self, exp: u64, latest_claim: u64) -> Validity {
        let leeway = u64::try_from(self.leeway.as_millis()).unwrap_or(u64::MAX);
        let exp = secs_to_ms(exp);
        Validity {
            from: Timestamp::from_millis(secs_to_ms(latest_claim).saturating_sub(leeway)),
            // `now - leeway >= exp` (saturating at 0) refuses: from `exp + leeway` on, and
            // always for an `exp` of 0.
            until: Timestamp::from_millis(if exp == 0 {
                0
            } else {
                exp.saturating_add(leeway)
            }),
        }
    }

    /// Checks the times of authenticated claims at `now` and builds the session state.
    fn check_claims(&self, c: ClaimsIn, now: Timestamp) -> Result<SessionState, OpenError> {
        let leeway = u64::try_from(self.leeway.as_millis()).unwrap_or(u64::MAX);
        let horizon = now.as_millis().saturating_add(leeway);
        // Without `sess` the token is not a session: perhaps an access token that another
        // service signed with shared keys. It is refused, not made into a session.
        let m = c
            .sess
            .as_ref()
            .ok_or(OpenError::Malformed("no sess claim: not a session token"))?;
        if m.v != u64::from(JWT_SESS_VERSION) {
            return Err(OpenError::UnsupportedVersion {
                found: u8::try_from(m.v).unwrap_or(u8::MAX),
                supported: JWT_SESS_VERSION,
            });
        }
        let (issued_at, last_seen, deadline) = (
            Timestamp::from_millis(m.iat_ms),
            Timestamp::from_millis(m.seen_ms),
            Timestamp::from_millis(m.deadline_ms),
        );
        if now.as_millis().saturating_sub(leeway) >= secs_to_ms(c.exp) {
            // `exp` is the earlier of the two deadlines; say which one it was.
            return Err(if secs_to_ms(c.exp) >= deadline.as_millis() / 1000 * 1000 {
                OpenError::Expired {
                    expired_at: deadline,
                    now,
                }
            } else {
                OpenError::IdleTimeout { last_seen, now }
            });
        }
        for claimed in [c.nbf, Some(c.iat)].into_iter().flatten() {
            if secs_to_ms(claimed) > horizon {
                return Err(OpenError::FromTheFuture {
                    claimed: Timestamp::from_millis(secs_to_ms(claimed)),
                    now,
                });
            }
        }
        let id = SessionId::parse(&c.jti).ok_or(OpenError::Malformed(
            "jti is not a session id (22 base64url characters)",
        ))?;
        if c.sub.as_ref().is_some_and(|s| s.len() > MAX_SUBJECT_LEN) {
            return Err(OpenError::Malformed("sub is too long"));
        }
        let mut state = SessionState::new(id, issued_at, deadline);
        state.set_last_seen(last_seen);
        state.set_subject(c.sub);
        if let Some(cnf) = c.cnf {
            state.set_binding(Some(cnf.binding()?));
        }
        if let Some(data) = c.data {
            match data.get().as_bytes().first() {
                Some(b'{') => state.set_data_json(data.get())?,
                _ if data.get() == "null" => {}
                _ => return Err(OpenError::Malformed("data claim is not a JSON object")),
            }
        }
        Ok(state)
    }
}

fn secs_to_ms(s: u64) -> u64 {
    s.saturating_mul(1000)
}

fn map_decode_error(kind: &ErrorKind) -> OpenError {
    match kind {
        ErrorKind::InvalidIssuer => OpenError::ClaimMismatch { claim: "iss" },
        ErrorKind::InvalidAudience => OpenError::ClaimMismatch { claim: "aud" },
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => {
            OpenError::ClaimMismatch { claim: "iss" }
        }
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => {
            OpenError::ClaimMismatch { claim: "aud" }
        }
        ErrorKind::InvalidToken => OpenError::Malformed("not a JWT: not three segments"),
        ErrorKind::Base64(_) => OpenError::Malformed("JWT segment is not base64url"),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidClaimFormat(_) => {
            OpenError::Malformed("JWT claims are not the expected JSON")
        }
        ErrorKind::MissingRequiredClaim(_) => OpenError::Malformed("a required claim is missing"),
        // Signature, algorithm and key errors, and anything new: fail closed.
        _ => OpenError::BadSeal,
    }
}

impl fmt::Debug for JwtCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtCodec")
            .field("ring", &self.ring)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("idle_timeout", &self.idle_timeout)
            .field("not_before", &self.not_before)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl Codec for JwtCodec {
    fn name(&self) -> &'static str {
        "jwt"
    }

    /// Signs `state` with the primary key. `purpose` is ignored: a JWT is bound to its
    /// `iss` and `aud` instead.
    fn seal(&self, state: &SessionState, _purpose: &[u8]) -> Result<String, SealError> {
        let key = self.ring.primary();
        if let Some(s) = state.subject()
            && s.len() > MAX_SUBJECT_LEN
        {
            return Err(SealError::SubjectTooLong {
                len: s.len(),
                max: MAX_SUBJECT_LEN,
            });
        }
        let data = state.data_map();
        let iat = Self::iat(state);
        let claims = ClaimsOut {
            iss: self.issuer.as_deref(),
            sub: state.subject(),
            aud: self.audience.as_deref(),
            exp: self.token_deadline(state).as_millis() / 1000,
            nbf: self.not_before.then_some(iat),
            iat,
            jti: state.id().to_string(),
            sess: SessMeta {
                v: u64::from(JWT_SESS_VERSION),
                iat_ms: state.issued_at().as_millis(),
                seen_ms: state.last_seen().as_millis(),
                deadline_ms: state.expires_at().as_millis(),
            },
            cnf: state.binding().map(CnfOut::of),
            data,
        };
        let token = jsonwebtoken::encode(&key.header, &claims, &key.encoding)
            .map_err(|_| SealError::Sign)?;
        if token.len() > self.max_len {
            return Err(SealError::TooLarge {
                len: token.len(),
                max: self.max_len,
            });
        }
        Ok(token)
    }

    /// A JWT's `exp`, `nbf` and `iat` are checked when it opens, so it is kept by the open
    /// cache only within the [`Validity`] they give ([`JwtCodec::sealed_validity`]).
    fn open_is_pure(&self) -> bool {
        true
    }

    /// From the token's `iat` (and `nbf`) less the leeway to its `exp` plus the leeway.
    fn sealed_validity(&self, state: &SessionState) -> Validity {
        let exp = self.token_deadline(state).as_millis() / 1000;
        self.validity(exp, Self::iat(state))
    }

    /// Authenticates and decodes `token`, checking `exp`, `nbf` and `iat` against the codec's
    /// clock. `purpose` is ignored.
    fn open(&self, token: &str, _purpose: &[u8]) -> Result<Opened, OpenError> {
        self.open_at(token, self.clock.now())
    }

    /// [`Codec::open`] with `exp`, `nbf` and `iat` checked at `now`, then [`Policy::check`].
    fn open_checked(
        &self,
        token: &str,
        _purpose: &[u8],
        policy: &Policy,
        now: Timestamp,
    ) -> Result<(Opened, Fresh), OpenError> {
        let opened = self.open_at(token, now)?;
        let fresh = policy.check(opened.state(), now)?;
        Ok((opened, fresh))
    }
}

/// The header fields looked at before the signature is checked.
#[derive(Deserialize)]
struct HeaderIn<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Session metadata that registered claims cannot express, in milliseconds.
#[derive(Serialize, Deserialize)]
struct SessMeta {
    v: u64,
    iat_ms: u64,
    seen_ms: u64,
    deadline_ms: u64,
}

#[derive(Serialize)]
struct ClaimsOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    iat: u64,
    jti: String,
    sess: SessMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<CnfOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// The `cnf` (confirmation) claim of a bound session: `jkt` for a DPoP key (RFC 9449,
/// section 6.1), or a DBSC session's identifier with its key as `jwk` (RFC 7800).
#[derive(Serialize)]
struct CnfOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    jkt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dbsc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwk: Option<&'a RawValue>,
}

impl<'a> CnfOut<'a> {
    fn of(binding: &'a Binding) -> CnfOut<'a> {
        match binding {
            Binding::Dpop { jkt } => CnfOut {
                jkt: Some(URL_SAFE_NO_PAD.encode(jkt)),
                dbsc: None,
                jwk: None,
            },
            Binding::Device(key) => CnfOut {
                jkt: None,
                dbsc: Some(URL_SAFE_NO_PAD.encode(key.id())),
                // The key was parsed as JSON when it was registered.
                jwk: serde_json::from_str::<&RawValue>(key.jwk()).ok(),
            },
        }
    }
}

#[derive(Deserialize)]
struct CnfIn {
    #[serde(default)]
    jkt: Option<String>,
    #[serde(default)]
    dbsc: Option<String>,
    #[serde(default)]
    jwk: Option<Box<RawValue>>,
}

impl CnfIn {
    fn binding(self) -> Result<Binding, OpenError> {
        const BAD: OpenError = OpenError::Malformed("cnf claim is not a binding");
        match (self.jkt, self.dbsc, self.jwk) {
            (Some(jkt), None, None) => {
                let jkt = URL_SAFE_NO_PAD.decode(jkt).map_err(|_| BAD)?;
                Ok(Binding::Dpop {
                    jkt: jkt.try_into().map_err(|_| BAD)?,
                })
            }
            // A key is a JSON object (docs/FORMAT.md, section 7), within the bound.
            (None, Some(id), Some(jwk))
                if jwk.get().starts_with('{') && jwk.get().len() <= MAX_DEVICE_KEY_LEN =>
            {
                let id = URL_SAFE_NO_PAD.decode(id).map_err(|_| BAD)?;
                let id: [u8; 16] = id.try_into().map_err(|_| BAD)?;
                let key = DeviceKey::new(id, Box::from(jwk.get()));
                Ok(Binding::Device(Arc::new(key)))
            }
            _ => Err(BAD),
        }
    }
}

#[derive(Deserialize)]
struct ClaimsIn {
    #[serde(default)]
    sub: Option<String>,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    iat: u64,
    jti: String,
    #[serde(default)]
    sess: Option<SessMeta>,
    #[serde(default)]
    cnf: Option<CnfIn>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cnf(json: &str) -> Result<Binding, OpenError> {
        serde_json::from_str::<CnfIn>(json)
            .map_err(|_| OpenError::Malformed("test: not a cnf object"))?
            .binding()
    }

    /// A `cnf` claim is one binding, whole, or the token is refused; never half of one.
    #[test]
    fn cnf_claims_that_are_not_one_whole_binding_are_refused() {
        let jkt = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let id = URL_SAFE_NO_PAD.encode([8u8; 16]);
        assert!(matches!(
            cnf(&format!(r#"{{"jkt":"{jkt}"}}"#)),
            Ok(Binding::Dpop { .. })
        ));
        let device = format!(r#"{{"dbsc":"{id}","jwk":{{"kty":"EC"}}}}"#);
        assert!(matches!(cnf(&device), Ok(Binding::Device(_))));
        let short = URL_SAFE_NO_PAD.encode([7u8; 31]);
        let long_key = format!(r#"{{"dbsc":"{id}","jwk":{{"x":"{}"}}}}"#, "a".repeat(3000));
        for bad in [
            "{}".to_owned(),
            format!(r#"{{"jkt":"{short}"}}"#),
            r#"{"jkt":"not base64!"}"#.to_owned(),
            format!(r#"{{"dbsc":"{id}"}}"#),
            format!(r#"{{"jkt":"{jkt}","dbsc":"{id}","jwk":{{}}}}"#),
            format!(r#"{{"dbsc":"{jkt}","jwk":{{}}}}"#),
            format!(r#"{{"dbsc":"{id}","jwk":5}}"#),
            long_key,
        ] {
            assert!(
                matches!(
                    cnf(&bad),
                    Err(OpenError::Malformed("cnf claim is not a binding"))
                ),
                "{bad}"
            );
        }
    }
}
