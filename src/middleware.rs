//! The Poem middleware: opens the session token before the handler, and after it sends a
//! new token only when the session changed or is due for renewal.

use std::sync::Arc;
use std::time::Duration;

use poem::http::header::SET_COOKIE;
use poem::http::{HeaderMap, HeaderValue, StatusCode, header};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::codec::{Codec, SealedCodec, SignedCodec};
use crate::error::OpenError;
use crate::keys::Keyring;
use crate::policy::Policy;
use crate::session::{Inner, Lifecycle, Session};
use crate::state::{SessionId, SessionState};
use crate::transport::bearer::{self, BearerConfig, BearerIn};
use crate::transport::cookie::{CookieConfig, Incoming, SameSite, Secure};

/// Session middleware for Poem, configured through one builder.
///
/// ```
/// use poem::{EndpointExt, Route, get, handler};
/// use sealed_session::{Keyring, SealedSession, Session};
/// use std::time::Duration;
///
/// #[handler]
/// fn index(session: &Session) -> poem::Result<String> {
///     let n = session.get::<u64>("views")?.unwrap_or(0) + 1;
///     session.insert("views", &n)?;
///     Ok(format!("views: {n}"))
/// }
///
/// let keys = Keyring::from_secret("at least thirty-two bytes of real secret, please")?;
/// let app = Route::new().at("/", get(index)).with(
///     SealedSession::new(keys)
///         .name("sid")
///         .max_age(Duration::from_secs(8 * 3600))
///         .idle_timeout(Some(Duration::from_secs(30 * 60))),
/// );
/// # Ok::<(), sealed_session::KeyError>(())
/// ```
///
/// Secure defaults: AES-256-GCM sealed tokens, cookie `__Host-sid` with HttpOnly, Secure,
/// SameSite=Lax, Path=/; 24 h absolute lifetime, 1 h idle timeout; no cookie until the
/// session holds something.
#[derive(Clone)]
pub struct SealedSession {
    cfg: Config,
}

#[derive(Clone)]
struct Config {
    codec: Arc<dyn Codec>,
    policy: Policy,
    cookie: CookieConfig,
    /// `Some` when tokens travel in the `Authorization` header instead of cookies.
    bearer: Option<BearerConfig>,
    save_uninitialized: bool,
    clock: Arc<dyn Clock>,
}

impl SealedSession {
    /// Sealed (encrypted) sessions with the keys of `ring`.
    pub fn new(ring: Keyring) -> Self {
        SealedSession::with_codec(SealedCodec::new(ring))
    }

    /// Signed sessions (readable by the client, tamper-proof) with the keys of `ring`.
    pub fn signed(ring: Keyring) -> Self {
        SealedSession::with_codec(SignedCodec::new(ring))
    }

    /// Sessions carried by any [`Codec`].
    pub fn with_codec(codec: impl Codec) -> Self {
        SealedSession {
            cfg: Config {
                codec: Arc::new(codec),
                policy: Policy::default(),
                cookie: CookieConfig::default(),
                bearer: None,
                save_uninitialized: false,
                clock: Arc::new(SystemClock),
            },
        }
    }

    /// Replaces the whole cookie configuration.
    #[must_use]
    pub fn cookie(mut self, cookie: CookieConfig) -> Self {
        self.cfg.cookie = cookie;
        self
    }

    fn map_cookie(mut self, f: impl FnOnce(CookieConfig) -> CookieConfig) -> Self {
        self.cfg.cookie = f(self.cfg.cookie);
        self
    }

    /// Cookie name (express-session's `name`). Default: `sid`, sent as `__Host-sid` while
    /// the `__Host-` prefix applies.
    #[must_use]
    pub fn name(self, name: impl Into<String>) -> Self {
        self.map_cookie(|c| c.name(name))
    }
    /// Cookie Path. Default: `/`.
    #[must_use]
    pub fn path(self, path: impl Into<String>) -> Self {
        self.map_cookie(|c| c.path(path))
    }
    /// Cookie Domain. Default: none (host-only).
    #[must_use]
    pub fn domain(self, domain: impl Into<String>) -> Self {
        self.map_cookie(|c| c.domain(domain))
    }
    /// Cookie Secure attribute. Default: [`Secure::Always`].
    #[must_use]
    pub fn secure(self, secure: Secure) -> Self {
        self.map_cookie(|c| c.secure(secure))
    }
    /// Cookie HttpOnly attribute. Default: true.
    #[must_use]
    pub fn http_only(self, on: bool) -> Self {
        self.map_cookie(|c| c.http_only(on))
    }
    /// Cookie SameSite attribute. Default: `Some(SameSite::Lax)`.
    #[must_use]
    pub fn same_site(self, same_site: Option<SameSite>) -> Self {
        self.map_cookie(|c| c.same_site(same_site))
    }
    /// Cookie Partitioned attribute. Default: false.
    #[must_use]
    pub fn partitioned(self, on: bool) -> Self {
        self.map_cookie(|c| c.partitioned(on))
    }
    /// The `__Host-` name prefix while the cookie is Secure, Path `/`, no Domain. Default: true.
    #[must_use]
    pub fn host_prefix(self, on: bool) -> Self {
        self.map_cookie(|c| c.host_prefix(on))
    }
    /// Send a Max-Age (time left until the session's deadline) so the cookie survives a
    /// browser restart. Default: false (browser-session cookie).
    #[must_use]
    pub fn persistent(self, on: bool) -> Self {
        self.map_cookie(|c| c.persistent(on))
    }
    /// Most cookies a large session may be split across. Default: 4.
    #[must_use]
    pub fn max_chunks(self, n: usize) -> Self {
        self.map_cookie(|c| c.max_chunks(n))
    }
    /// Trust `X-Forwarded-Proto` (express-session's `proxy`). Default: false.
    #[must_use]
    pub fn trust_proxy(self, on: bool) -> Self {
        self.map_cookie(|c| c.trust_proxy(on))
    }

    /// Replaces the whole expiry policy.
    #[must_use]
    pub fn policy(mut self, policy: Policy) -> Self {
        self.cfg.policy = policy;
        self
    }
    /// Absolute lifetime, enforced by the server. Default: 24 hours.
    #[must_use]
    pub fn max_age(mut self, d: Duration) -> Self {
        self.cfg.policy = self.cfg.policy.max_age(d);
        self
    }
    /// Idle timeout; `None` disables it. Default: 1 hour.
    #[must_use]
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.cfg.policy = self.cfg.policy.idle_timeout(d);
        self
    }
    /// Re-issue an unchanged session once this long has passed since its last re-issue.
    /// Default: a quarter of the idle timeout.
    #[must_use]
    pub fn renew_after(mut self, d: Duration) -> Self {
        self.cfg.policy = self.cfg.policy.renew_after(d);
        self
    }
    /// Re-issue the token on every response (express-session's `rolling`). Default: false.
    #[must_use]
    pub fn rolling(mut self, on: bool) -> Self {
        self.cfg.policy = self.cfg.policy.rolling(on);
        self
    }
    /// Send a cookie for a new session even when nothing was stored in it
    /// (express-session's `saveUninitialized`). Default: false.
    #[must_use]
    pub fn save_uninitialized(mut self, on: bool) -> Self {
        self.cfg.save_uninitialized = on;
        self
    }
    /// Carry tokens in `Authorization: Bearer` instead of cookies, with new tokens in the
    /// response header of `config` (see [`crate::transport::bearer`]). Default: cookies.
    #[must_use]
    pub fn bearer(mut self, config: BearerConfig) -> Self {
        self.cfg.bearer = Some(config);
        self
    }

    /// The clock used for every expiry decision. Default: [`SystemClock`].
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.cfg.clock = Arc::new(clock);
        self
    }
}

impl<E: Endpoint> Middleware<E> for SealedSession {
    type Output = SealedSessionEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        SealedSessionEndpoint {
            inner: ep,
            names: [
                Arc::from(self.cfg.cookie.full_name(false)),
                Arc::from(self.cfg.cookie.full_name(true)),
            ],
            cfg: Arc::new(self.cfg.clone()),
        }
    }
}

/// The endpoint made by [`SealedSession`].
pub struct SealedSessionEndpoint<E> {
    inner: E,
    cfg: Arc<Config>,
    /// The cookie name (and token purpose) without and with the Secure-only prefix.
    names: [Arc<str>; 2],
}

fn is_https(req: &Request, trust_proxy: bool) -> bool {
    if trust_proxy {
        if let Some(proto) = req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
        {
            return proto
                .split(',')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
        }
    }
    req.scheme().as_str() == "https" || req.uri().scheme_str() == Some("https")
}

/// Logs one event for a refused token, naming the reason, never the token.
fn log_refusal(e: &OpenError) {
    match e {
        OpenError::Expired { .. } | OpenError::IdleTimeout { .. } | OpenError::Revoked => {
            tracing::debug!(target: "sealed_session", reason = e.reason(), error = %e, "session token refused");
        }
        _ => {
            tracing::warn!(target: "sealed_session", reason = e.reason(), error = %e, "session token refused");
        }
    }
}

/// How the request carried its session.
enum Carrier {
    Cookie { secure: bool, incoming: Incoming },
    Bearer,
}

/// The session as opened from the request.
struct Arrival {
    state: SessionState,
    is_new: bool,
    reissue: bool,
    /// A token came but was refused.
    refused: Option<OpenError>,
}

enum Outcome {
    Nothing,
    Write,
    Clear,
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> poem::Error {
    poem::Error::new(e, StatusCode::INTERNAL_SERVER_ERROR)
}

impl<E: Endpoint> SealedSessionEndpoint<E> {
    fn arrive(&self, token: Option<&str>, purpose: &str, now: Timestamp) -> Result<Arrival> {
        let fresh = |refused: Option<OpenError>| -> Result<Arrival> {
            Ok(Arrival {
                state: SessionState::new(
                    SessionId::generate().map_err(internal)?,
                    now,
                    self.cfg.policy.expires_at(now),
                ),
                is_new: true,
                reissue: false,
                refused,
            })
        };
        let Some(token) = token else {
            return fresh(None);
        };
        match self
            .cfg
            .codec
            .open_checked(token, purpose.as_bytes(), &self.cfg.policy, now)
        {
            Ok((opened, f)) => Ok(Arrival {
                reissue: f.renew || opened.needs_reissue(),
                state: opened.into_state(),
                is_new: false,
                refused: None,
            }),
            Err(e) => {
                log_refusal(&e);
                fresh(Some(e))
            }
        }
    }
}

fn append_all(headers: &mut HeaderMap, values: Vec<HeaderValue>) {
    for v in values {
        headers.append(SET_COOKIE, v);
    }
}

impl<E: Endpoint> Endpoint for SealedSessionEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Response> {
        let cfg = &*self.cfg;
        let now = cfg.clock.now();

        let (carrier, purpose, arrival) = match &cfg.bearer {
            Some(b) => {
                let purpose = &self.names[0];
                let token = match b.read(req.headers()) {
                    BearerIn::Absent => None,
                    BearerIn::Token(t) => Some(t),
                    BearerIn::Refused(e) => {
                        log_refusal(&e);
                        return Ok(bearer::unauthorized(&e));
                    }
                };
                let arrival = self.arrive(token, purpose, now)?;
                if let Some(e) = &arrival.refused {
                    return Ok(bearer::unauthorized(e));
                }
                (Carrier::Bearer, purpose, arrival)
            }
            None => {
                let secure = cfg
                    .cookie
                    .is_secure(is_https(&req, cfg.cookie.trusts_proxy()));
                let purpose = &self.names[usize::from(secure)];
                let incoming = cfg.cookie.read(req.headers(), purpose);
                let arrival = match &incoming.token {
                    Some(t) => self.arrive(Some(t), purpose, now)?,
                    None if incoming.any() => {
                        // Chunks that do not form a sequence are refused like a bad token.
                        let e = OpenError::Malformed("incomplete cookie chunks");
                        log_refusal(&e);
                        let mut a = self.arrive(None, purpose, now)?;
                        a.refused = Some(e);
                        a
                    }
                    None => self.arrive(None, purpose, now)?,
                };
                (Carrier::Cookie { secure, incoming }, purpose, arrival)
            }
        };
        let Arrival {
            state,
            is_new,
            reissue,
            refused,
        } = arrival;
        let refused = refused.is_some();

        let session = Session::new(Inner {
            state,
            is_new,
            changed: false,
            reissue,
            lifecycle: Lifecycle::Live,
            ended: Vec::new(),
            token: None,
            now,
            max_age: cfg.policy.get_max_age(),
            codec: cfg.codec.clone(),
            purpose: purpose.clone(),
        });
        req.extensions_mut().insert(session.clone());

        // Changes are written even when the handler fails.
        let mut resp = match self.inner.call(req).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        };

        let mut inner = session.lock();
        let had_cookie = matches!(&carrier, Carrier::Cookie { incoming, .. } if incoming.any());
        let outcome = match inner.lifecycle {
            Lifecycle::Destroyed if !is_new || refused || had_cookie => Outcome::Clear,
            Lifecycle::Destroyed => Outcome::Nothing,
            Lifecycle::Live if inner.changed || inner.token.is_some() => Outcome::Write,
            Lifecycle::Live if is_new && cfg.save_uninitialized => Outcome::Write,
            Lifecycle::Live if !is_new && inner.reissue => Outcome::Write,
            Lifecycle::Live if refused => Outcome::Clear,
            Lifecycle::Live => Outcome::Nothing,
        };
        match (&outcome, &carrier) {
            (Outcome::Nothing, _) | (Outcome::Clear, Carrier::Bearer) => {}
            (Outcome::Clear, Carrier::Cookie { secure, incoming }) => {
                append_all(
                    resp.headers_mut(),
                    cfg.cookie.clear(purpose, *secure, incoming),
                );
            }
            (Outcome::Write, _) => {
                let token = match &inner.token {
                    Some(t) if !inner.changed && !inner.reissue => Ok(t.clone()),
                    _ => inner.seal_now().map_err(|e| e.to_string()),
                };
                let sent = token.and_then(|token| match &carrier {
                    Carrier::Cookie { secure, incoming } => {
                        let max_age = cfg.policy.deadline(&inner.state).saturating_since(now);
                        cfg.cookie
                            .write(purpose, &token, *secure, Some(max_age), incoming)
                            .map(|values| append_all(resp.headers_mut(), values))
                            .map_err(|e| e.to_string())
                    }
                    Carrier::Bearer => {
                        let header = cfg.bearer.as_ref().map(BearerConfig::header);
                        match (header, HeaderValue::try_from(token)) {
                            (Some(h), Ok(v)) => {
                                resp.headers_mut().insert(h.clone(), v);
                                Ok(())
                            }
                            _ => Err("token is not a valid header value".to_owned()),
                        }
                    }
                });
                if let Err(msg) = sent {
                    // Nothing is sent that a browser would drop; the previous cookie stays.
                    tracing::error!(target: "sealed_session", error = %msg, "session not saved");
                    return Ok(poem::Error::from_string(
                        format!("session not saved: {msg}"),
                        StatusCode::INTERNAL_SERVER_ERROR,
                    )
                    .into_response());
                }
            }
        }
        drop(inner);
        if matches!(outcome, Outcome::Write | Outcome::Clear) {
            // A response that sets or clears a session must not be cached by shared caches.
            resp.headers_mut()
                .entry(header::CACHE_CONTROL)
                .or_insert(HeaderValue::from_static("no-store"));
        }
        Ok(resp)
    }
}
