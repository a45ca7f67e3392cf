//! The Poem middleware: opens the session token before the handler, and after it sends a
//! new token only when the session changed or is due for renewal.

use std::sync::Arc;
use std::time::Duration;

use poem::http::header::SET_COOKIE;
use poem::http::{HeaderMap, StatusCode, header};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::codec::{Codec, SealedCodec, SignedCodec};
use crate::error::{OpenError, SealError};
use crate::keys::Keyring;
use crate::policy::Policy;
use crate::session::{Inner, Lifecycle, Session};
use crate::state::{SessionId, SessionState};
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
        let names = [
            self.cfg.cookie.full_name(false),
            self.cfg.cookie.full_name(true),
        ];
        SealedSessionEndpoint {
            inner: ep,
            cfg: Arc::new(self.cfg.clone()),
            names: Arc::new(names),
        }
    }
}

/// The endpoint made by [`SealedSession`].
pub struct SealedSessionEndpoint<E> {
    inner: E,
    cfg: Arc<Config>,
    names: Arc<[String; 2]>,
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

enum Outcome {
    Nothing,
    Write,
    Clear,
}

impl<E: Endpoint> SealedSessionEndpoint<E> {
    fn fresh_state(&self, now: Timestamp) -> Result<SessionState, SealError> {
        Ok(SessionState::new(
            SessionId::generate()?,
            now,
            self.cfg.policy.expires_at(now),
        ))
    }

    fn open(
        &self,
        incoming: &Incoming,
        name: &str,
        now: Timestamp,
    ) -> Result<(SessionState, bool, bool, bool), SealError> {
        // (state, is_new, reissue, refused)
        let Some(token) = &incoming.token else {
            // Chunks that do not form a sequence are refused like a bad token.
            if incoming.any() {
                log_refusal(&OpenError::Malformed("incomplete cookie chunks"));
            }
            return Ok((self.fresh_state(now)?, true, false, incoming.any()));
        };
        match self
            .cfg
            .codec
            .open_checked(token, name.as_bytes(), &self.cfg.policy, now)
        {
            Ok((opened, fresh)) => {
                let reissue = fresh.renew || opened.needs_reissue();
                Ok((opened.into_state(), false, reissue, false))
            }
            Err(e) => {
                log_refusal(&e);
                Ok((self.fresh_state(now)?, true, false, true))
            }
        }
    }
}

fn append_all(headers: &mut HeaderMap, values: Vec<poem::http::HeaderValue>) {
    for v in values {
        headers.append(SET_COOKIE, v);
    }
}

impl<E: Endpoint> Endpoint for SealedSessionEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Response> {
        let cfg = &*self.cfg;
        let now = cfg.clock.now();
        let secure = cfg
            .cookie
            .is_secure(is_https(&req, cfg.cookie.trusts_proxy()));
        let name = &self.names[usize::from(secure)];
        let incoming = cfg.cookie.read(req.headers(), name);
        let (state, is_new, reissue, refused) = self
            .open(&incoming, name, now)
            .map_err(|e| poem::Error::new(e, StatusCode::INTERNAL_SERVER_ERROR))?;

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
        });
        req.extensions_mut().insert(session.clone());

        // Changes are written even when the handler fails.
        let mut resp = match self.inner.call(req).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        };

        let mut inner = session.lock();
        let outcome = match inner.lifecycle {
            Lifecycle::Destroyed if !is_new || refused || incoming.any() => Outcome::Clear,
            Lifecycle::Destroyed => Outcome::Nothing,
            Lifecycle::Live if inner.changed => Outcome::Write,
            Lifecycle::Live if is_new && cfg.save_uninitialized => Outcome::Write,
            Lifecycle::Live if !is_new && inner.reissue => Outcome::Write,
            Lifecycle::Live if refused => Outcome::Clear,
            Lifecycle::Live => Outcome::Nothing,
        };
        match outcome {
            Outcome::Nothing => {}
            Outcome::Clear => {
                append_all(
                    resp.headers_mut(),
                    cfg.cookie.clear(name, secure, &incoming),
                );
            }
            Outcome::Write => {
                inner.state.set_last_seen(now);
                let sealed = cfg.codec.seal(&inner.state, name.as_bytes());
                let max_age = cfg.policy.deadline(&inner.state).saturating_since(now);
                let cookies = match sealed {
                    Ok(token) => {
                        let cookies = cfg
                            .cookie
                            .write(name, &token, secure, Some(max_age), &incoming)
                            .map_err(|e| e.to_string());
                        inner.token = Some(token);
                        cookies
                    }
                    Err(e) => Err(e.to_string()),
                };
                match cookies {
                    Ok(values) => append_all(resp.headers_mut(), values),
                    Err(msg) => {
                        // Nothing is sent that a browser would drop; the previous cookie stays.
                        tracing::error!(target: "sealed_session", error = %msg, "session not saved");
                        inner.token = None;
                        return Ok(poem::Error::from_string(
                            format!("session not saved: {msg}"),
                            StatusCode::INTERNAL_SERVER_ERROR,
                        )
                        .into_response());
                    }
                }
            }
        }
        drop(inner);
        if matches!(outcome, Outcome::Write | Outcome::Clear) {
            // A response that sets or clears a session must not be cached by shared caches.
            resp.headers_mut()
                .entry(header::CACHE_CONTROL)
                .or_insert(poem::http::HeaderValue::from_static("no-store"));
        }
        Ok(resp)
    }
}
