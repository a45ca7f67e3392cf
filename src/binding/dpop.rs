//! DPoP (RFC 9449) for bearer tokens: the client proves, on every request, that it holds
//! the private key its token is bound to.
//!
//! A request's proof is the `DPoP` header: a JWS with `typ` `dpop+jwt`, an allowed
//! asymmetric `alg`, the public key as `jwk`, and the claims `jti`, `htm`, `htu`, `iat`
//! (plus `ath` with a token, and `nonce` when the server asks for one). It is accepted when
//! (RFC 9449, section 4.3): there is exactly one; it verifies with its own `jwk` (a public
//! key that fits the `alg`); `htm` is the request's method and `htu` its URI without query
//! and fragment (scheme and host compared case-insensitively, default ports implied); `iat`
//! is within [`Dpop::max_age`] in the past and [`Dpop::leeway`] in the future; `ath` is the
//! SHA-256 of the token sent; the nonce, when required, is one this server made and still
//! valid; and its `jti` (with its key) was not seen within the window ([`ReplayCache`]).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Method, Uri};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::ProofError;
use super::jws::{self, KeyIn, ProofAlgorithm};
use super::replay::{MemoryReplayCache, ReplayCache, ReplayError};
use crate::clock::Timestamp;
use crate::keys::MacKey;

/// Default [`Dpop::max_age`]: a proof is accepted up to 60 seconds after its `iat`.
pub const DEFAULT_PROOF_MAX_AGE: Duration = Duration::from_secs(60);
/// Default [`Dpop::leeway`]: 5 seconds of clock skew for an `iat` in the future.
pub const DEFAULT_PROOF_LEEWAY: Duration = Duration::from_secs(5);
/// Default lifetime of a server nonce ([`Dpop::nonces`]).
pub const DEFAULT_NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// Longest `jti` accepted.
const MAX_JTI_LEN: usize = 256;

/// Why a [`Dpop`] setting was refused.
///
/// ```
/// use sealed_session::binding::{Dpop, DpopConfigError};
///
/// let weak = Dpop::new().nonces(b"short", std::time::Duration::from_secs(300));
/// assert!(matches!(weak, Err(DpopConfigError::WeakSecret(_))));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DpopConfigError {
    /// No algorithm allowed, or `none`/`HS*` asked for (never allowed).
    #[error("DPoP needs at least one allowed algorithm")]
    NoAlgorithms,
    /// The nonce secret is shorter than 32 bytes or all one byte.
    #[error("the DPoP nonce secret is too weak: {0}")]
    WeakSecret(&'static str),
    /// The origin is not `scheme://host[:port]`.
    #[error("the DPoP origin is not an absolute http(s) origin without a path")]
    BadOrigin,
}

/// DPoP settings for bearer sessions: give them to
/// [`SealedSession::dpop`](crate::SealedSession::dpop).
///
/// ```
/// use std::time::Duration;
/// use sealed_session::binding::{Dpop, ProofAlgorithm};
///
/// let dpop = Dpop::new()
///     .required(true)                       // unbound bearer tokens are refused
///     .algorithms(&[ProofAlgorithm::Es256, ProofAlgorithm::EdDsa])?
///     .max_age(Duration::from_secs(30))
///     .nonces(b"a secret shared by every instance, 32+ bytes", Duration::from_secs(300))?
///     .origin("https://api.example.com")?;
/// # let _ = dpop;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Dpop {
    required: bool,
    algs: Arc<[ProofAlgorithm]>,
    max_age: Duration,
    leeway: Duration,
    nonces: Option<Arc<Nonces>>,
    replay: Arc<dyn ReplayCache>,
    origin: Option<Arc<Origin>>,
}

impl std::fmt::Debug for Dpop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dpop")
            .field("required", &self.required)
            .field("algs", &self.algs)
            .field("max_age", &self.max_age)
            .field("leeway", &self.leeway)
            .field("nonces", &self.nonces.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Dpop {
    fn default() -> Self {
        Dpop::new()
    }
}

impl Dpop {
    /// DPoP on, optional: a client that sends a proof gets a bound token, others a plain
    /// bearer token. ES256 and EdDSA allowed; proofs up to [`DEFAULT_PROOF_MAX_AGE`] old;
    /// no server nonces; a [`MemoryReplayCache`] of
    /// [`DEFAULT_REPLAY_CAPACITY`](super::DEFAULT_REPLAY_CAPACITY) proofs; the URI checked
    /// against the request's own scheme and `Host`.
    pub fn new() -> Dpop {
        crate::jwt_keys::install_crypto_provider();
        Dpop {
            required: false,
            algs: Arc::from([ProofAlgorithm::Es256, ProofAlgorithm::EdDsa]),
            max_age: DEFAULT_PROOF_MAX_AGE,
            leeway: DEFAULT_PROOF_LEEWAY,
            nonces: None,
            replay: Arc::new(MemoryReplayCache::default()),
            origin: None,
        }
    }

    /// Whether every session must be DPoP-bound: a plain bearer token is refused (401), and
    /// a session is issued only to a request with a proof. Default: `false`.
    #[must_use]
    pub fn required(mut self, on: bool) -> Self {
        self.required = on;
        self
    }

    /// The algorithms a proof may use (asymmetric ones only, by construction).
    /// Default: ES256 and EdDSA.
    pub fn algorithms(mut self, algs: &[ProofAlgorithm]) -> Result<Self, DpopConfigError> {
        if algs.is_empty() {
            return Err(DpopConfigError::NoAlgorithms);
        }
        self.algs = Arc::from(algs);
        Ok(self)
    }

    /// How long after its `iat` a proof is accepted (and its `jti` remembered).
    /// Default: [`DEFAULT_PROOF_MAX_AGE`].
    #[must_use]
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = d;
        self
    }

    /// How far in the future an `iat` may be (the client's clock running ahead).
    /// Default: [`DEFAULT_PROOF_LEEWAY`].
    #[must_use]
    pub fn leeway(mut self, d: Duration) -> Self {
        self.leeway = d;
        self
    }

    /// Requires server nonces (RFC 9449, section 9): a proof must carry a `nonce` that this
    /// server made within `lifetime`, else the answer is a 401 with
    /// `error="use_dpop_nonce"` and a fresh nonce in `DPoP-Nonce`. Nonces are made without
    /// server state: a time and an HMAC of it under a key derived from `secret`. Give
    /// every instance the same secret (at least 32 bytes). A response whose request used a
    /// nonce older than half its lifetime carries the next one.
    pub fn nonces(
        mut self,
        secret: impl AsRef<[u8]>,
        lifetime: Duration,
    ) -> Result<Self, DpopConfigError> {
        let key = super::secret_key(secret.as_ref(), b"dpop nonce")
            .map_err(DpopConfigError::WeakSecret)?;
        self.nonces = Some(Arc::new(Nonces { key, lifetime }));
        Ok(self)
    }

    /// Where proofs already used are remembered. Default: a [`MemoryReplayCache`] in this
    /// process; behind a load balancer, a
    /// [`RedisReplayCache`](super::RedisReplayCache) (feature `redis`) shares it.
    #[must_use]
    pub fn replay_cache(mut self, cache: Arc<dyn ReplayCache>) -> Self {
        self.replay = cache;
        self
    }

    /// The public origin (`https://api.example.com`) a proof's `htu` must name, whatever
    /// the request's `Host` and scheme say. Default: the request's scheme (with
    /// `trust_proxy`, `X-Forwarded-Proto`) and `Host` (with `trust_proxy`,
    /// `X-Forwarded-Host`).
    pub fn origin(mut self, origin: &str) -> Result<Self, DpopConfigError> {
        let uri: Uri = origin.parse().map_err(|_| DpopConfigError::BadOrigin)?;
        let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
        let (Some(scheme), Some(auth)) = (scheme, uri.authority()) else {
            return Err(DpopConfigError::BadOrigin);
        };
        if !matches!(scheme.as_str(), "http" | "https")
            || !matches!(uri.path(), "" | "/")
            || uri.query().is_some()
        {
            return Err(DpopConfigError::BadOrigin);
        }
        let port = auth.port_u16().unwrap_or(default_port(&scheme));
        self.origin = Some(Arc::new(Origin {
            host: auth.host().to_ascii_lowercase(),
            scheme,
            port,
        }));
        Ok(self)
    }

    /// Whether plain bearer tokens are refused.
    pub fn is_required(&self) -> bool {
        self.required
    }

    /// The `WWW-Authenticate` value of a DPoP refusal: `error` (`invalid_dpop_proof`,
    /// `invalid_token`, `use_dpop_nonce`, or none for a request without credentials), a
    /// fixed description, and the allowed algorithms.
    pub(crate) fn challenge(&self, error: Option<&str>, description: &str) -> HeaderValue {
        let mut algs: Vec<&str> = self.algs.iter().map(|a| a.name()).collect();
        if self.algs.contains(&ProofAlgorithm::EdDsa) {
            algs.push("Ed25519");
        }
        let algs = algs.join(" ");
        let text = match error {
            Some(e) => {
                format!("DPoP error=\"{e}\", error_description=\"{description}\", algs=\"{algs}\"")
            }
            None => format!("DPoP algs=\"{algs}\""),
        };
        HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static("DPoP"))
    }

    /// A fresh nonce, when nonces are on.
    pub(crate) fn fresh_nonce(&self, now: Timestamp) -> Option<HeaderValue> {
        let nonce = self.nonces.as_ref()?.make(now);
        HeaderValue::try_from(nonce).ok()
    }

    /// Checks the request's proof (module docs). `token`: the access token the request
    /// presents, whose hash `ath` must be; `https` and `trust_proxy` say how the request's
    /// URI is read.
    ///
    /// A proof that comes with a token is recorded as used here. One without a token (a
    /// login) is recorded only when a session is issued to it ([`Dpop::record`], after the
    /// handler): a proof signed by a key anyone can make must not fill the replay cache on
    /// its own.
    pub(crate) async fn check(
        &self,
        req: &Request<'_>,
        token: Option<&str>,
        now: Timestamp,
    ) -> Result<Verdict, Refusal> {
        let mut proofs = req.headers.get_all("dpop").iter();
        let proof = proofs.next().ok_or(ProofError::Missing)?;
        if proofs.next().is_some() {
            return Err(ProofError::Duplicate.into());
        }
        let proof = proof
            .to_str()
            .map_err(|_| ProofError::Malformed("the DPoP header is not ASCII"))?;
        let proof = jws::verify::<Claims>(proof, "dpop+jwt", &self.algs, KeyIn::Header)?;
        let claims = proof.claims;
        if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
            return Err(ProofError::Claim("jti").into());
        }
        if claims.htm != req.method.as_str() {
            return Err(ProofError::Method.into());
        }
        let target = self.target(req).ok_or(ProofError::Uri)?;
        if !target.matches(&claims.htu) {
            return Err(ProofError::Uri.into());
        }
        let iat = claims
            .iat
            .as_u64()
            .or_else(|| claims.iat.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .ok_or(ProofError::Claim("iat"))?;
        let iat = Timestamp::from_secs(iat);
        if iat > now.saturating_add(self.leeway) || now.saturating_since(iat) > self.max_age {
            return Err(ProofError::Time.into());
        }
        if let Some(token) = token {
            let ath = claims.ath.as_deref().ok_or(ProofError::Claim("ath"))?;
            if !constant_time_eq::constant_time_eq(
                ath.as_bytes(),
                jws::sha256_b64(token).as_bytes(),
            ) {
                return Err(ProofError::TokenHash.into());
            }
        }
        let mut nonce_due = false;
        if let Some(nonces) = &self.nonces {
            let age = claims
                .nonce
                .as_deref()
                .and_then(|n| nonces.age(n, now))
                .ok_or(Refusal::UseNonce)?;
            nonce_due = age > nonces.lifetime / 2;
        }
        let mut hash = Sha256::new();
        hash.update(proof.jkt);
        hash.update(claims.jti.as_bytes());
        let digest = hash.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        // Past the last instant it could be accepted (and a second for clocks).
        let until = now
            .saturating_add(self.max_age)
            .saturating_add(self.leeway)
            .saturating_add(Duration::from_secs(1));
        let verdict = Verdict {
            jkt: proof.jkt,
            nonce_due,
            pending: None,
        };
        if token.is_none() {
            return Ok(Verdict {
                pending: Some((key, until)),
                ..verdict
            });
        }
        self.record(&key, until, now).await.map(|()| verdict)
    }

    /// Records a proof as used: a refusal if it was used before, or cannot be recorded.
    pub(crate) async fn record(
        &self,
        key: &[u8; 16],
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        match self.replay.first_use(key, until, now).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ProofError::Replayed.into()),
            Err(e @ ReplayError::Full { .. }) => {
                tracing::warn!(target: "sealed_session", error = %e, "DPoP proof refused");
                Err(ProofError::Unrecorded(e.to_string()).into())
            }
            Err(e) => {
                tracing::error!(target: "sealed_session", error = %e, "DPoP proof not checked for replay");
                Err(Refusal::Unavailable)
            }
        }
    }

    /// The URI a proof must name for `req`.
    fn target<'r>(&'r self, req: &'r Request<'_>) -> Option<Target<'r>> {
        let path = req.uri.path();
        if let Some(o) = &self.origin {
            return Some(Target {
                scheme: &o.scheme,
                host: o.host.clone(),
                port: o.port,
                path,
            });
        }
        let forwarded_host = || {
            let v = req.headers.get("x-forwarded-host")?.to_str().ok()?;
            v.split(',').next().map(str::trim)
        };
        let host = req
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| req.trust_proxy.then(forwarded_host).flatten())
            .or_else(|| req.headers.get(http::header::HOST)?.to_str().ok())?;
        let auth: http::uri::Authority = host.parse().ok()?;
        let scheme = if req.https { "https" } else { "http" };
        Some(Target {
            scheme,
            host: auth.host().to_owned(),
            port: auth.port_u16().unwrap_or(default_port(scheme)),
            path,
        })
        .filter(|t| !t.host.is_empty())
    }
}

/// What [`Dpop::check`] looks at.
pub(crate) struct Request<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a http::HeaderMap,
    /// Over HTTPS, as the connection (or a trusted proxy) says.
    pub(crate) https: bool,
    pub(crate) trust_proxy: bool,
}

/// A proof accepted.
pub(crate) struct Verdict {
    /// Its key's thumbprint.
    pub(crate) jkt: [u8; 32],
    /// The nonce it used is past half its life: the response carries the next.
    pub(crate) nonce_due: bool,
    /// A proof that came without a token, not recorded yet: its replay key and until when.
    pub(crate) pending: Option<([u8; 16], Timestamp)>,
}

/// A proof refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Invalid: 401 `invalid_dpop_proof`.
    Proof(ProofError),
    /// No valid server nonce: 401 `use_dpop_nonce` with a fresh one.
    UseNonce,
    /// The replay cache cannot answer: 503.
    Unavailable,
}

impl From<ProofError> for Refusal {
    fn from(e: ProofError) -> Refusal {
        Refusal::Proof(e)
    }
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    jti: String,
    htm: String,
    htu: String,
    iat: serde_json::Number,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

fn default_port(scheme: &str) -> u16 {
    if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    }
}

/// The URI a proof must name: the request's, without query and fragment.
struct Target<'a> {
    scheme: &'a str,
    host: String,
    port: u16,
    path: &'a str,
}

impl Target<'_> {
    /// Whether `htu`, without its query and fragment, names this target (RFC 3986 sections
    /// 6.2.2 and 6.2.3: scheme and host compared case-insensitively, a default port the same
    /// as none, an empty path the same as `/`).
    fn matches(&self, htu: &str) -> bool {
        let htu = htu.split(['#', '?']).next().unwrap_or_default();
        let Ok(uri) = htu.parse::<Uri>() else {
            return false;
        };
        let (Some(scheme), Some(auth)) = (uri.scheme_str(), uri.authority()) else {
            return false;
        };
        let path = |p: &str| if p.is_empty() { "/" } else { p }.to_owned();
        scheme.eq_ignore_ascii_case(self.scheme)
            && auth.host().eq_ignore_ascii_case(&self.host)
            && auth.port_u16().unwrap_or(default_port(scheme)) == self.port
            && path(uri.path()) == path(self.path)
    }
}

/// Server nonces: `base64url(time in seconds (8) || HMAC(key, time)[..16])`.
struct Nonces {
    key: MacKey,
    lifetime: Duration,
}

impl Nonces {
    fn make(&self, now: Timestamp) -> String {
        let secs = now.as_secs().to_be_bytes();
        let tag = self.key.tag(&[&secs]);
        let mut raw = [0u8; 24];
        raw[..8].copy_from_slice(&secs);
        raw[8..].copy_from_slice(&tag[..16]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The age of `nonce` when it is one of ours and within its lifetime.
    fn age(&self, nonce: &str, now: Timestamp) -> Option<Duration> {
        let raw = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        let (secs, tag) = raw.split_first_chunk::<8>()?;
        if !self.key.verify_truncated(&[secs], tag) {
            return None;
        }
        let made = Timestamp::from_secs(u64::from_be_bytes(*secs));
        if made > now {
            return None;
        }
        let age = now.saturating_since(made);
        (age <= self.lifetime).then_some(age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(
        scheme: &'static str,
        host: &'static str,
        port: u16,
        path: &'static str,
    ) -> Target<'static> {
        Target {
            scheme,
            host: host.to_owned(),
            port,
            path,
        }
    }

    #[test]
    fn htu_is_compared_without_query_fragment_case_or_default_port() {
        let t = target("https", "api.example.com", 443, "/me");
        for same in [
            "https://api.example.com/me",
            "HTTPS://API.Example.com/me",
            "https://api.example.com:443/me",
            "https://api.example.com/me?x=1",
            "https://api.example.com/me#f",
            "https://api.example.com/me?x=1#f",
        ] {
            assert!(t.matches(same), "{same}");
        }
        for other in [
            "http://api.example.com/me",
            "https://api.example.com:8443/me",
            "https://evil.example.com/me",
            "https://api.example.com/ME",
            "https://api.example.com/me/",
            "https://api.example.com",
            "/me",
            "",
            "not a uri",
        ] {
            assert!(!t.matches(other), "{other}");
        }
        assert!(target("http", "h", 80, "/").matches("http://h"));
    }

    #[test]
    fn nonces_verify_within_their_lifetime_only() {
        let n = Nonces {
            key: MacKey::derived(&[7; 32], b"dpop nonce"),
            lifetime: Duration::from_secs(300),
        };
        let t0 = Timestamp::from_millis(1_764_000_000_000);
        let nonce = n.make(t0);
        assert_eq!(n.age(&nonce, t0), Some(Duration::ZERO));
        assert_eq!(
            n.age(&nonce, t0.saturating_add(Duration::from_secs(300))),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            n.age(&nonce, t0.saturating_add(Duration::from_secs(301))),
            None
        );
        assert_eq!(
            n.age(&nonce, Timestamp::from_millis(1_763_999_999_000)),
            None
        );
        let other = Nonces {
            key: MacKey::derived(&[8; 32], b"dpop nonce"),
            lifetime: Duration::from_secs(300),
        };
        assert_eq!(other.age(&nonce, t0), None);
        let mut bad = nonce.clone().into_bytes();
        bad[12] = if bad[12] == b'A' { b'B' } else { b'A' };
        assert_eq!(n.age(std::str::from_utf8(&bad).unwrap(), t0), None);
        for junk in ["", "!!", "AAAA"] {
            assert_eq!(n.age(junk, t0), None);
        }
    }

    #[test]
    fn weak_nonce_secrets_and_bad_origins_are_refused() {
        assert!(matches!(
            Dpop::new().nonces([1u8; 31], DEFAULT_NONCE_LIFETIME),
            Err(DpopConfigError::WeakSecret(_))
        ));
        assert!(matches!(
            Dpop::new().nonces([1u8; 32], DEFAULT_NONCE_LIFETIME),
            Err(DpopConfigError::WeakSecret(_))
        ));
        assert!(Dpop::new().algorithms(&[]).is_err());
        for bad in [
            "api.example.com",
            "ftp://x",
            "https://x/path",
            "https://x/?q",
            "",
        ] {
            assert!(Dpop::new().origin(bad).is_err(), "{bad}");
        }
        assert!(Dpop::new().origin("https://API.example.com:8443").is_ok());
    }
}
