//! The Poem middleware: opens the session token before the handler, and after it sends a
//! new token only when the session changed or is due for renewal.

use std::sync::Arc;
use std::time::Duration;

use poem::http::header::SET_COOKIE;
use poem::http::{HeaderMap, HeaderValue, StatusCode, header};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};
use tracing::Span;

use crate::cache::{DEFAULT_OPEN_CACHE_BYTES, Hit, OpenCache};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::codec::{Codec, SealedCodec, SessionIdCodec, SignedCodec};
use crate::denylist::{BoxFuture, Check, Denylist};
use crate::error::OpenError;
use crate::keys::Keyring;
use crate::limits::{LimitError, Limits};
use crate::policy::Policy;
use crate::session::{Arrival, Backend, Inner, Lifecycle, Session, Shared, Striped};
use crate::state::{SessionId, SessionState};
use crate::stats::{Counted, Counters, Stats};
use crate::store::Store;
use crate::transport::bearer::{self, BearerConfig, BearerIn};
use crate::transport::cookie::{CookieConfig, Incoming, SameSite, Secure, TokenBytes};

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
    backend: Backend,
    policy: Policy,
    cookie: CookieConfig,
    /// `Some` when tokens travel in the `Authorization` header instead of cookies.
    bearer: Option<BearerConfig>,
    save_uninitialized: bool,
    clock: Arc<dyn Clock>,
    /// The application's denylist, wrapped so that the revocations made through it are
    /// counted; checks go to the denylist itself (`Counted::inner`).
    denylist: Option<Arc<Counted>>,
    limits: Limits,
    /// Memory budget of each endpoint's open cache; 0 for none.
    open_cache: usize,
    /// Shared by every clone of the builder and every endpoint made from them.
    stats: Arc<Counters>,
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

    /// Store-backed sessions, the express-session design: the cookie holds the session id
    /// signed with the keys of `ring`, and the session lives in `store`.
    pub fn stored(store: impl Store, ring: Keyring) -> Self {
        SealedSession::with_backend(Backend::Store {
            ids: SessionIdCodec::new(ring),
            store: Arc::new(store),
        })
    }

    /// Sessions carried by any [`Codec`].
    pub fn with_codec(codec: impl Codec) -> Self {
        SealedSession::with_backend(Backend::Token(Arc::new(codec)))
    }

    fn with_backend(backend: Backend) -> Self {
        SealedSession {
            cfg: Config {
                backend,
                policy: Policy::default(),
                cookie: CookieConfig::default(),
                bearer: None,
                save_uninitialized: false,
                denylist: None,
                clock: Arc::new(SystemClock),
                limits: Limits::default(),
                open_cache: DEFAULT_OPEN_CACHE_BYTES,
                stats: Arc::new(Counters::default()),
            },
        }
    }

    /// Memory for the open cache: what recently seen tokens opened to, so that a token that
    /// comes back (the next request of the same page or app, or the one after a write) is
    /// not decoded and authenticated again. `0` turns it off. Default
    /// [`DEFAULT_OPEN_CACHE_BYTES`] (1 MiB) per endpoint the middleware is applied to.
    ///
    /// A token is answered from the cache only for exactly the bytes that opened (compared
    /// in constant time) and the same cookie name; expiry, idle time and revocation are
    /// checked on every request as without it. Used with the sealed and signed codecs (any
    /// codec whose [`Codec::open_is_pure`]), not the JWT codec or store-backed sessions.
    /// The cost: up to this much memory, holding plaintext sessions until evicted.
    #[must_use]
    pub fn open_cache(mut self, max_bytes: usize) -> Self {
        self.cfg.open_cache = max_bytes;
        self
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
    /// Most cookies a large session may be split across (0 counts as 1). Default: 4. The
    /// same setting as [`Limits::max_chunks`]; the last call wins.
    ///
    /// # Errors
    ///
    /// [`LimitError::TooManyChunks`] for more than
    /// [`MAX_CHUNKS`](crate::limits::MAX_CHUNKS) (32), whose documentation says why: the
    /// middleware is then not built, rather than built with a bound that no browser honours.
    pub fn max_chunks(mut self, n: usize) -> Result<Self, LimitError> {
        self.cfg.cookie = self.cfg.cookie.max_chunks(n)?;
        Ok(self)
    }
    /// Bounds on what the middleware reads from the client: the `Cookie` header, the
    /// number of chunks, the token, the session data's size and nesting. Default:
    /// [`Limits::default`], whose documentation gives each bound, its default and what a
    /// request over it gets. Also sets the cookie's chunk count (as
    /// [`SealedSession::max_chunks`] does; the last call wins).
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.cfg.limits = limits;
        self.cfg.cookie.set_max_chunks(limits.get_max_chunks());
        self
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

    /// Check every session against `denylist` (a local, in-memory look-up) and revoke the id
    /// that `destroy` or `regenerate` ends, so a token replayed after logout is refused.
    /// Keep a clone of the `Arc` to revoke every session of a user
    /// ([`Denylist::revoke_subject`]). A revoked session is treated like an expired one (a
    /// fresh session for cookies, a 401 for bearer tokens); a denylist that is
    /// [`Check::Unavailable`] (a Redis replica past its staleness bound) is answered with a
    /// 503. A revocation that cannot be recorded turns the response into a 503 rather than
    /// report a logout that did not happen. Default: none (stateless sessions then end only
    /// by expiry).
    #[must_use]
    pub fn denylist(mut self, denylist: Arc<dyn Denylist>) -> Self {
        self.cfg.denylist = Some(Arc::new(Counted {
            inner: denylist,
            counters: self.cfg.stats.clone(),
        }));
        self
    }

    /// What this middleware has done so far: refusals by reason, tokens issued and
    /// re-issued, revocations, and the denylist's status. Clones of the builder, and the
    /// endpoints made from any of them, share one set of counters, so keep a clone to read
    /// them after `.with(..)`. See [`Stats`] for what each count means and costs.
    pub fn stats(&self) -> Stats {
        self.cfg
            .stats
            .snapshot(self.cfg.denylist.as_deref().map(|d| &*d.inner))
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
        let cfg = &self.cfg;
        SealedSessionEndpoint {
            inner: ep,
            mode: match &cfg.backend {
                Backend::Token(codec) => codec.name(),
                Backend::Store { .. } => "store",
            },
            shared: Shared {
                backend: cfg.backend.clone(),
                denylist: cfg.denylist.clone().map(|d| -> Arc<dyn Denylist> { d }),
                purposes: [
                    Arc::from(cfg.cookie.full_name(false)),
                    Arc::from(cfg.cookie.full_name(true)),
                ],
                cache: match &cfg.backend {
                    Backend::Token(codec) if codec.open_is_pure() => OpenCache::new(
                        cfg.open_cache,
                        cfg.limits.get_data_len(),
                        cfg.limits.get_json_depth(),
                    )
                    .map(Arc::new),
                    _ => None,
                },
                max_age: cfg.policy.get_max_age(),
                idle_timeout: cfg.policy.get_idle_timeout(),
                max_depth: cfg.limits.get_json_depth(),
            }
            .into(),
            cfg: Arc::new(cfg.clone()),
        }
    }
}

/// The endpoint made by [`SealedSession`].
pub struct SealedSessionEndpoint<E> {
    inner: E,
    cfg: Arc<Config>,
    /// The codec's name, or `"store"`: the `mode` of the request span.
    mode: &'static str,
    /// What this endpoint's sessions share (handed to each, one reference count): the cookie
    /// names, and what recently seen tokens opened to (token codecs whose opening is pure).
    shared: Striped,
}

impl<E> SealedSessionEndpoint<E> {
    /// What this endpoint (and the middleware it came from, with its clones) has done so
    /// far; see [`SealedSession::stats`].
    pub fn stats(&self) -> Stats {
        self.cfg
            .stats
            .snapshot(self.cfg.denylist.as_deref().map(|d| &*d.inner))
    }
}

/// The 401 for a refused bearer token, the handler not run.
fn unauthorized(e: &OpenError, span: &Span) -> Response {
    outcome(span, "rejected");
    bearer::unauthorized(e)
}

/// Records what the request did with its session on its span.
fn outcome(span: &Span, label: &'static str) {
    if !span.is_disabled() {
        span.record("outcome", label);
    }
}

fn is_https(req: &Request, trust_proxy: bool) -> bool {
    if trust_proxy
        && let Some(proto) = req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
    {
        return proto
            .split(',')
            .next()
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    }
    req.scheme().as_str() == "https" || req.uri().scheme_str() == Some("https")
}

/// How the request carried its session.
enum Carrier {
    Cookie { secure: bool, incoming: Incoming },
    Bearer,
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
    /// A new session, written into `state`, for a request that brought no token or one that
    /// was `refused`.
    fn fresh(
        &self,
        state: &mut SessionState,
        now: Timestamp,
        refused: Option<OpenError>,
    ) -> Result<Arrival> {
        *state = SessionState::new(
            SessionId::generate().map_err(internal)?,
            now,
            self.cfg.policy.expires_at(now),
        );
        Ok(Arrival {
            is_new: true,
            reissue: false,
            stale_key: false,
            refused,
            unconfirmed: None,
            cached_as: None,
        })
    }

    /// Opens the token a request carried (its bytes as they came: a cookie is not checked to
    /// be text before this) with a token codec, into `state`; a fresh session when it is
    /// refused. `secure` says which of the endpoint's two purposes `purpose` is (the open
    /// cache keys on it). Synchronous: a token codec does no I/O, and a denylist answers
    /// from memory.
    fn open_token(
        &self,
        codec: &dyn Codec,
        token: &[u8],
        (purpose, secure): (&Arc<str>, bool),
        now: Timestamp,
        state: &mut SessionState,
    ) -> Result<Arrival> {
        if let Err(e) = self.cfg.limits.check_token(token) {
            return self.fresh(state, now, Some(e));
        }
        // The open cache compares bytes; anything else needs text, and a token is base64.
        let cache = self
            .shared
            .here()
            .cache
            .as_ref()
            .map(|c| (c, c.hash(token)));
        let opened = match cache.and_then(|(c, hash)| c.get_into(token, hash, secure, state)) {
            // The same bytes opened before: only what depends on the time is checked again.
            Some(stale_key) => {
                self.cfg.stats.opened(true);
                self.cfg
                    .policy
                    .check(state, now)
                    .map(|f| (f.renew, stale_key))
            }
            None => {
                let Ok(token) = std::str::from_utf8(token) else {
                    return self.fresh(state, now, Some(OpenError::Malformed("token is not text")));
                };
                let limits = &self.cfg.limits;
                codec
                    .open_checked(token, purpose.as_bytes(), &self.cfg.policy, now)
                    .and_then(|(opened, f)| {
                        let opened_state = opened.state();
                        opened_state.check_data(limits.get_data_len(), limits.get_json_depth())?;
                        let stale_key = opened.needs_reissue();
                        *state = opened.into_state();
                        self.cfg.stats.opened(false);
                        if let Some((cache, hash)) = cache {
                            let hit = Hit {
                                state: state.clone(),
                                stale_key,
                            };
                            cache.insert(token, hash, secure, hit, 0);
                        }
                        Ok((f.renew, stale_key))
                    })
            }
        };
        self.admitted(opened, state, cache.map(|(_, hash)| hash), now)
    }

    /// Opens the signed session id a request carried and loads its session from the store
    /// into `state`; a fresh session when the id is refused or its session is not found.
    async fn open_stored(
        &self,
        ids: &SessionIdCodec,
        store: &dyn Store,
        token: &[u8],
        purpose: &Arc<str>,
        now: Timestamp,
        state: &mut SessionState,
    ) -> Result<Arrival> {
        if let Err(e) = self.cfg.limits.check_token(token) {
            return self.fresh(state, now, Some(e));
        }
        let Ok(token) = std::str::from_utf8(token) else {
            return self.fresh(state, now, Some(OpenError::Malformed("token is not text")));
        };
        let opened = match ids.verify(token, purpose.as_bytes()) {
            Err(e) => Err(e),
            Ok((id, stale)) => {
                // A store that cannot answer is not a reason to start a new session.
                let record = store.load(&id).await.map_err(|e| {
                    tracing::error!(target: "sealed_session", error = %e, "session store unavailable");
                    poem::Error::new(e, StatusCode::SERVICE_UNAVAILABLE)
                })?;
                record
                    .ok_or(OpenError::NotFound)
                    .and_then(|r| SessionState::decode(&r))
                    .and_then(|loaded| {
                        if loaded.id() != id {
                            return Err(OpenError::Malformed("store record of another session"));
                        }
                        let f = self.cfg.policy.check(&loaded, now)?;
                        self.cfg.stats.opened(false);
                        *state = loaded;
                        Ok((f.renew, stale))
                    })
            }
        };
        self.admitted(opened, state, None, now)
    }

    /// The session a token opened to (in `state`), once the denylist (if any) allows it; a
    /// fresh session when it was refused. `cached_hash`: where the open cache keeps the
    /// token.
    fn admitted(
        &self,
        opened: std::result::Result<(bool, bool), OpenError>,
        state: &mut SessionState,
        cached_hash: Option<u64>,
        now: Timestamp,
    ) -> Result<Arrival> {
        let mut unconfirmed = None;
        let opened = match (opened, &self.cfg.denylist) {
            (Ok(flags), Some(counted)) => {
                let denylist = &*counted.inner;
                match denylist.check_at(&state.id(), state.subject(), state.issued_at(), now) {
                    Check::Allowed => Ok(flags),
                    Check::Revoked(_) => {
                        unconfirmed = denylist.pending(&state.id()).map(|u| (state.id(), u));
                        Err(OpenError::Revoked)
                    }
                    Check::Unavailable => {
                        tracing::error!(target: "sealed_session", "revocation list unavailable; refusing sessions");
                        return Err(poem::Error::from_string(
                            "sessions cannot be checked for revocation right now",
                            StatusCode::SERVICE_UNAVAILABLE,
                        ));
                    }
                }
            }
            (opened, _) => opened,
        };
        match opened {
            Ok((renew, stale_key)) => Ok(Arrival {
                is_new: false,
                reissue: renew || stale_key,
                stale_key,
                refused: None,
                unconfirmed: None,
                cached_as: cached_hash.map(|hash| (hash, state.id())),
            }),
            Err(e) => {
                let mut arrival = self.fresh(state, now, Some(e))?;
                arrival.unconfirmed = unconfirmed;
                Ok(arrival)
            }
        }
    }
}

/// What to do after the handler, decided under the session lock.
struct Plan {
    outcome: Outcome,
    /// The token to send (a sealed token, or a signed id), when one must be sent.
    token: Option<String>,
    /// Store-backed: the record to write, with its key and expiry.
    record: Option<(SessionId, Vec<u8>, Timestamp)>,
    /// Store-backed: the record replaces the one the request loaded, so it is written only if
    /// that still exists (`Store::save_existing`).
    existing: bool,
    /// Session ids this request ended (destroy, regenerate).
    ended: Vec<(SessionId, Timestamp)>,
    /// Cookie Max-Age, for persistent cookies.
    max_age: Duration,
}

impl<E: Endpoint> SealedSessionEndpoint<E> {
    fn plan(
        &self,
        session: &Session,
        carrier: &Carrier,
        is_new: bool,
        refused: bool,
    ) -> std::result::Result<Plan, String> {
        let cfg = &*self.cfg;
        let mut inner = session.lock();
        let now = inner.now;
        let had_cookie = matches!(carrier, Carrier::Cookie { incoming, .. } if incoming.any());
        let outcome = match inner.lifecycle {
            Lifecycle::Destroyed if !is_new || refused || had_cookie => Outcome::Clear,
            Lifecycle::Destroyed => Outcome::Nothing,
            // `save` found it ended by another request: that request answered for it.
            Lifecycle::EndedElsewhere => Outcome::Nothing,
            Lifecycle::Live if inner.changed || inner.token.is_some() => Outcome::Write,
            Lifecycle::Live if is_new && cfg.save_uninitialized => Outcome::Write,
            // `save` stored a new session during the request: the browser needs its cookie.
            Lifecycle::Live if is_new && inner.saved.is_some() => Outcome::Write,
            Lifecycle::Live if !is_new && inner.reissue => Outcome::Write,
            Lifecycle::Live if refused => Outcome::Clear,
            Lifecycle::Live => Outcome::Nothing,
        };
        // The ended ids stay in the session until the plan is made, so that they are still
        // revoked when sealing fails (see `call`).
        let mut plan = Plan {
            outcome,
            token: None,
            record: None,
            existing: false,
            ended: Vec::new(),
            max_age: Duration::ZERO,
        };
        if !matches!(plan.outcome, Outcome::Write) {
            plan.ended = std::mem::take(&mut inner.ended);
            return Ok(plan);
        }
        match &inner.shared.backend {
            Backend::Token(_) => {
                plan.token = Some(match &inner.token {
                    Some(t) if !inner.changed && !inner.reissue => t.clone(),
                    _ => inner.seal_now().map_err(|e| e.to_string())?,
                });
            }
            Backend::Store { .. } => {
                let record = inner.record().map_err(|e| e.to_string())?;
                // What `save` already wrote is not written again.
                if inner.saved.as_deref() != Some(record.as_slice()) {
                    plan.record = Some((inner.state.id(), record, inner.deadline()));
                    plan.existing = inner.replaces_loaded();
                }
                // The cookie only changes with the id or the signing key; re-send it then,
                // and when its Max-Age or `rolling` asks for it.
                let cookie_due = is_new
                    || !inner.ended.is_empty()
                    || inner.stale_key
                    || cfg.policy.is_rolling()
                    || cfg.cookie.is_persistent()
                    || inner.token.is_some()
                    || matches!(carrier, Carrier::Bearer) && inner.changed;
                if cookie_due {
                    plan.token = Some(inner.seal_now().map_err(|e| e.to_string())?);
                }
            }
        }
        plan.max_age = inner.deadline().saturating_since(now);
        plan.ended = std::mem::take(&mut inner.ended);
        Ok(plan)
    }
}

/// The answer when a session cannot be sent: nothing a browser would drop goes out, and the
/// previous cookie stays.
fn not_saved(span: &Span, msg: &str) -> Response {
    outcome(span, "not_saved");
    tracing::error!(target: "sealed_session", error = %msg, "session not saved");
    poem::Error::from_string(
        format!("session not saved: {msg}"),
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .into_response()
}

/// Revokes (token modes, with a denylist) or deletes (store mode) the sessions a request
/// ended; on failure, the response to send instead.
async fn end_sessions(
    cfg: &Config,
    span: &Span,
    ended: &[(SessionId, Timestamp)],
) -> Result<(), Response> {
    match (&cfg.backend, &cfg.denylist) {
        (Backend::Token(_), Some(denylist)) => {
            for (id, until) in ended {
                if let Err(e) = denylist.revoke(*id, *until).await {
                    tracing::error!(target: "sealed_session", error = %e, "session not revoked");
                    return Err(unavailable(
                        span,
                        "the session could not be ended: the revocation was not recorded",
                    ));
                }
            }
        }
        (Backend::Store { store, .. }, _) => {
            for (id, _) in ended {
                if let Err(e) = store.delete(id).await {
                    tracing::error!(target: "sealed_session", error = %e, "ended session not deleted from the store");
                    return Err(unavailable(
                        span,
                        "the session could not be ended: the session store is unavailable",
                    ));
                }
            }
        }
        (Backend::Token(_), None) => {}
    }
    Ok(())
}

/// The answer to a request whose `Cookie` headers pass the configured bound: no cookie is
/// read and the handler does not run.
fn header_too_large(stats: &Counters, span: &Span, len: usize, max: usize) -> Response {
    stats.refused(&OpenError::CookieHeaderTooLarge { len, max }, span);
    outcome(span, "rejected");
    poem::Error::from_string(
        "the request's cookies are too large",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    )
    .into_response()
}

/// Why chunk cookies that did not form a token were refused.
fn chunks_refused(cookie: &CookieConfig, incoming: &Incoming) -> OpenError {
    let max = cookie.get_max_chunks();
    if incoming.chunks > max {
        OpenError::TooManyChunks {
            chunks: incoming.chunks,
            max,
        }
    } else {
        OpenError::Malformed("incomplete cookie chunks")
    }
}

fn unavailable(span: &Span, msg: &str) -> Response {
    outcome(span, "unavailable");
    poem::Error::from_string(msg, StatusCode::SERVICE_UNAVAILABLE).into_response()
}

fn append_all(headers: &mut HeaderMap, values: Vec<HeaderValue>) {
    SetCookies(headers).extend(values);
}

/// A response's headers, taking `Set-Cookie` values.
struct SetCookies<'h>(&'h mut HeaderMap);

impl Extend<HeaderValue> for SetCookies<'_> {
    fn extend<I: IntoIterator<Item = HeaderValue>>(&mut self, values: I) {
        for v in values {
            self.0.append(SET_COOKIE, v);
        }
    }
}

/// A token as the request carried it.
enum Token<'r> {
    Absent,
    Bytes(TokenBytes<'r>),
    /// Cookie chunks that do not form a token.
    Refused(OpenError),
}

/// What the middleware keeps while the handler runs.
struct Pending<'a> {
    span: Span,
    carrier: Carrier,
    purpose: &'a Arc<str>,
    session: Session,
    is_new: bool,
    refused: bool,
}

/// What [`SealedSessionEndpoint::start`] reads from a request.
struct Started<'a, 'r> {
    span: Span,
    now: Timestamp,
    carrier: Carrier,
    purpose: &'a Arc<str>,
    token: Token<'r>,
}

/// Where the request's handler stands, from the middleware's side.
enum Begun<'a> {
    /// The session is in the request: run the handler.
    Handler(Pending<'a>),
    /// The request is answered without its handler (boxed: rare, and a `Response` in line
    /// would make every request's result as large as one, to be moved at each step).
    Answer(Box<Response>),
}

/// The middleware's answer once the handler has answered.
enum Finish<'a> {
    /// The handler's response, with the session's headers: in place, not moved.
    Done,
    /// Revocations or store writes to wait for first; the response is in the future.
    Io(BoxFuture<'a, Response>),
}

impl<E: Endpoint> SealedSessionEndpoint<E> {
    /// One span per request, the parent of the middleware's events. It is not entered around
    /// the handler: instrumenting the future would nest it once more. Disabled, the span and
    /// its records cost a level check each.
    fn span(&self) -> Span {
        tracing::debug_span!(
            target: "sealed_session",
            "sealed_session",
            mode = self.mode,
            transport = if self.cfg.bearer.is_some() { "bearer" } else { "cookie" },
            outcome = tracing::field::Empty,
            reason = tracing::field::Empty,
        )
    }

    /// How the request carries its session, under which name, and the token; or the answer
    /// when the request is refused before its handler (a bad bearer header, oversized
    /// cookies).
    fn read<'r>(
        &self,
        req: &'r Request,
        span: &Span,
    ) -> std::result::Result<(Carrier, &Arc<str>, Token<'r>), Box<Response>> {
        let cfg = &*self.cfg;
        if let Some(b) = &cfg.bearer {
            let token = match b.read(req.headers()) {
                BearerIn::Absent => Token::Absent,
                BearerIn::Token(t) => Token::Bytes(TokenBytes::Borrowed(t.as_bytes())),
                BearerIn::Refused(e) => {
                    cfg.stats.refused(&e, span);
                    return Err(Box::new(unauthorized(&e, span)));
                }
            };
            return Ok((Carrier::Bearer, self.shared.here().purpose(false), token));
        }
        let secure = cfg
            .cookie
            .is_secure(is_https(req, cfg.cookie.trusts_proxy()));
        let purpose = self.shared.here().purpose(secure);
        let max = cfg.limits.get_cookie_header_len();
        let (incoming, token) = match cfg.cookie.scan(req.headers(), purpose, max) {
            Ok(scanned) => scanned,
            Err(len) => return Err(Box::new(header_too_large(&cfg.stats, span, len, max))),
        };
        let token = match token {
            Some(t) => Token::Bytes(t),
            // Chunks that do not form a sequence are refused like a bad token.
            None if incoming.any() => Token::Refused(chunks_refused(&cfg.cookie, &incoming)),
            None => Token::Absent,
        };
        Ok((Carrier::Cookie { secure, incoming }, purpose, token))
    }

    /// The request's span and time, and how it carries its session; or the answer when it is
    /// refused before its handler.
    fn start<'r>(&self, req: &'r Request) -> std::result::Result<Started<'_, 'r>, Box<Response>> {
        let span = self.span();
        let now = self.cfg.clock.now();
        let (carrier, purpose, token) = self.read(req, &span)?;
        Ok(Started {
            span,
            now,
            carrier,
            purpose,
            token,
        })
    }

    /// Everything before the handler with a token codec, which needs no I/O: reads and
    /// opens the token into the request's session, in place, and puts it in the request.
    fn begin_token(&self, codec: &dyn Codec, req: &mut Request) -> Result<Begun<'_>> {
        let s = match self.start(req) {
            Ok(s) => s,
            Err(answer) => return Ok(Begun::Answer(answer)),
        };
        let shared = self.shared.here();
        let secure = matches!(s.carrier, Carrier::Cookie { secure: true, .. });
        let (now, purpose, token) = (s.now, s.purpose, s.token);
        let (session, arrival) = Session::build(
            || Inner::blank(shared, now),
            |inner| {
                let arrival = match token {
                    Token::Bytes(t) => {
                        self.open_token(codec, &t, (purpose, secure), now, &mut inner.state)
                    }
                    Token::Absent => self.fresh(&mut inner.state, now, None),
                    Token::Refused(e) => self.fresh(&mut inner.state, now, Some(e)),
                };
                if let Ok(arrival) = &arrival {
                    inner.begin(shared, now, secure, arrival);
                }
                arrival
            },
        );
        let arrival = match arrival {
            Ok(arrival) => arrival,
            Err(e) => {
                // The allocation is still good for the thread's next request, which writes
                // all of it again.
                session.recycle();
                outcome(&s.span, "unavailable");
                return Err(e);
            }
        };
        Ok(self.admit(req, s.span, s.carrier, purpose, session, arrival))
    }

    /// Everything before the handler in the store-backed mode: the session is loaded from
    /// the store.
    async fn begin_stored(
        &self,
        ids: &SessionIdCodec,
        store: &dyn Store,
        req: &mut Request,
    ) -> Result<Begun<'_>> {
        let s = match self.start(req) {
            Ok(s) => s,
            Err(answer) => return Ok(Begun::Answer(answer)),
        };
        let mut state = Inner::unopened(s.now);
        let arrival = match s.token {
            Token::Bytes(t) => {
                self.open_stored(ids, store, &t, s.purpose, s.now, &mut state)
                    .await
            }
            Token::Absent => self.fresh(&mut state, s.now, None),
            Token::Refused(e) => self.fresh(&mut state, s.now, Some(e)),
        }
        .inspect_err(|_| outcome(&s.span, "unavailable"))?;
        let shared = self.shared.here();
        let secure = matches!(s.carrier, Carrier::Cookie { secure: true, .. });
        let (session, ()) = Session::build(
            || Inner::blank(shared, s.now),
            |inner| {
                inner.state = state;
                inner.begin(shared, s.now, secure, &arrival);
            },
        );
        Ok(self.admit(req, s.span, s.carrier, s.purpose, session, arrival))
    }

    /// Puts the request's [`Session`] in the request; or, for a refused bearer token,
    /// answers the request with a 401 without its handler.
    fn admit<'a>(
        &'a self,
        req: &mut Request,
        span: Span,
        carrier: Carrier,
        purpose: &'a Arc<str>,
        session: Session,
        arrival: Arrival,
    ) -> Begun<'a> {
        if let Some(e) = &arrival.refused {
            self.cfg.stats.refused(e, &span);
            if matches!(carrier, Carrier::Bearer) {
                session.recycle();
                return Begun::Answer(Box::new(unauthorized(e, &span)));
            }
        }
        if !arrival.is_new {
            tracing::trace!(
                target: "sealed_session",
                parent: &span,
                reissue = arrival.reissue,
                stale_key = arrival.stale_key,
                "session opened"
            );
        }
        req.extensions_mut().insert(session.clone());
        Begun::Handler(Pending {
            span,
            carrier,
            purpose,
            session,
            is_new: arrival.is_new,
            refused: arrival.refused.is_some(),
        })
    }

    /// Everything after the handler: the plan, and the answer, or the I/O it waits for
    /// (revocations, the store write) when there is some.
    /// The response is changed in place when nothing is to be waited for (most requests):
    /// a `Response` is a few hundred bytes, and moving it in and out would copy it twice.
    fn finish<'a>(&'a self, p: Pending<'a>, resp: &mut Response) -> Finish<'a> {
        let plan = match self.plan(&p.session, &p.carrier, p.is_new, p.refused) {
            Ok(plan) => plan,
            Err(msg) => {
                // Sessions the handler ended are ended even if the new one cannot be sent.
                let ended = std::mem::take(&mut p.session.lock().ended);
                if ended.is_empty() {
                    *resp = not_saved(&p.span, &msg);
                    return Finish::Done;
                }
                return Finish::Io(Box::pin(async move {
                    match end_sessions(&self.cfg, &p.span, &ended).await {
                        Ok(()) => not_saved(&p.span, &msg),
                        Err(resp) => resp,
                    }
                }));
            }
        };
        let writes_store =
            matches!(self.cfg.backend, Backend::Store { .. }) && plan.record.is_some();
        if plan.ended.is_empty() && !writes_store {
            self.respond(&p, plan, resp, false);
            p.session.recycle();
            return Finish::Done;
        }
        let mut resp = std::mem::take(resp);
        Finish::Io(Box::pin(async move {
            // Revocation and store I/O happen here, with no lock held.
            if !plan.ended.is_empty()
                && let Err(resp) = end_sessions(&self.cfg, &p.span, &plan.ended).await
            {
                return resp;
            }
            // Store-backed: the session was found ended by another request when writing it.
            let mut ended_elsewhere = false;
            let mut plan = plan;
            if let Backend::Store { store, .. } = &self.cfg.backend
                && let Some((id, record, until)) = &plan.record
            {
                match crate::store::write(&**store, id, record, *until, plan.existing).await {
                    Ok(true) => {}
                    // Ended by another request (logout, regenerate) or expired meanwhile: it
                    // stays ended. No cookie goes out, neither the dead id nor a removal,
                    // which could erase the cookie a concurrent `regenerate` sets; a dead id
                    // is refused and cleared on its next use.
                    Ok(false) => {
                        tracing::info!(target: "sealed_session", "session ended by another request; not saved");
                        plan.token = None;
                        ended_elsewhere = true;
                    }
                    Err(e) => {
                        tracing::error!(target: "sealed_session", error = %e, "session not saved to the store");
                        return unavailable(
                            &p.span,
                            "the session could not be saved: the session store is unavailable",
                        );
                    }
                }
            }
            self.respond(&p, plan, &mut resp, ended_elsewhere);
            resp
        }))
    }

    /// Adds the session's headers to the handler's response (or replaces it with a 500 when
    /// the session cannot be sent).
    fn respond(&self, p: &Pending<'_>, plan: Plan, resp: &mut Response, ended_elsewhere: bool) {
        let cfg = &*self.cfg;
        match (&plan.outcome, &p.carrier, plan.token) {
            (Outcome::Clear, Carrier::Cookie { secure, incoming }, _) => {
                append_all(
                    resp.headers_mut(),
                    cfg.cookie.clear(p.purpose, *secure, incoming),
                );
            }
            (Outcome::Write, Carrier::Cookie { secure, incoming }, Some(token)) => {
                let mut set_cookies = SetCookies(resp.headers_mut());
                if let Err(e) = cfg.cookie.write_into(
                    &mut set_cookies,
                    p.purpose,
                    &token,
                    *secure,
                    Some(plan.max_age),
                    incoming,
                ) {
                    *resp = not_saved(&p.span, &e.to_string());
                    return;
                }
            }
            (Outcome::Write, Carrier::Bearer, Some(token)) => {
                let header = cfg.bearer.as_ref().map(BearerConfig::header);
                match (header, HeaderValue::try_from(token)) {
                    (Some(h), Ok(v)) => {
                        resp.headers_mut().insert(h.clone(), v);
                    }
                    _ => {
                        *resp = not_saved(&p.span, "the token is not a valid header value");
                        return;
                    }
                }
            }
            _ => {}
        }
        if matches!(plan.outcome, Outcome::Write | Outcome::Clear) {
            // A response that sets or clears a session must not be cached by shared caches.
            resp.headers_mut()
                .entry(header::CACHE_CONTROL)
                .or_insert(HeaderValue::from_static("no-store"));
        }
        if matches!(plan.outcome, Outcome::Write) && !ended_elsewhere {
            cfg.stats.sent(p.is_new, &p.span);
        }
        outcome(
            &p.span,
            match plan.outcome {
                _ if ended_elsewhere => "ended_elsewhere",
                Outcome::Nothing => "unchanged",
                Outcome::Write if p.is_new => "issued",
                Outcome::Write => "reissued",
                Outcome::Clear => "cleared",
            },
        );
    }
}

impl<E: Endpoint> Endpoint for SealedSessionEndpoint<E> {
    type Output = Response;

    #[allow(clippy::manual_async_fn)] // deliberately not an `async fn`: see the comment
    fn call(&self, mut req: Request) -> impl Future<Output = Result<Response>> + Send {
        // Poem boxes each endpoint's future, and every layer that awaits one moves it: each
        // move copies the whole future. So the I/O that only some requests wait for (the
        // store, revocations) runs in boxed futures, and with a token codec the work before
        // the handler is synchronous. And this is an `async` block over the request, not an
        // `async fn`: an `async fn` keeps its arguments twice (as captured, and as the
        // locals they are moved to), and the block's locals are scoped so that none but
        // `pending` is kept beside the handler's future. The future is the handler's, the
        // request until the handler takes it, and a few words.
        async move {
            let pending = {
                let begun = match &self.cfg.backend {
                    Backend::Token(codec) => self.begin_token(&**codec, &mut req)?,
                    Backend::Store { ids, store } => {
                        Box::pin(self.begin_stored(ids, &**store, &mut req)).await?
                    }
                };
                match begun {
                    Begun::Handler(pending) => pending,
                    Begun::Answer(answer) => return Ok(*answer),
                }
            };
            // Changes are written even when the handler fails.
            let io = {
                // Scoped, so that the response is not kept beside `io` while it runs.
                let mut resp = match self.inner.call(req).await {
                    Ok(r) => r.into_response(),
                    Err(e) => e.into_response(),
                };
                match self.finish(pending, &mut resp) {
                    Finish::Done => return Ok(resp),
                    Finish::Io(io) => io,
                }
            };
            Ok(io.await)
        }
    }
}

#[cfg(test)]
mod tests {
    //! The reuse of session allocations between the requests of a thread
    //! ([`Session::recycle`]), which only the crate can observe.

    use std::sync::Mutex;

    use poem::test::TestClient;
    use poem::web::Path;
    use poem::{EndpointExt, Route, get, handler, post};

    use super::*;

    fn keys() -> Keyring {
        let bytes: Vec<u8> = (1..=32).collect();
        let key = crate::keys::Key::new("k1", crate::keys::Algorithm::Aes256Gcm, &bytes);
        key.and_then(|k| Keyring::new([k]))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// What each request's handler saw: the session's address, id and `user`, and whether
    /// its lock was poisoned.
    #[derive(Debug)]
    struct Seen {
        addr: usize,
        id: String,
        user: Option<String>,
        poisoned: bool,
    }

    static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());
    static KEPT: Mutex<Vec<Session>> = Mutex::new(Vec::new());

    fn see(session: &Session) -> poem::Result<()> {
        let seen = Seen {
            addr: session.addr(),
            id: session.id().to_string(),
            user: session.get::<String>("user")?,
            poisoned: session.is_poisoned(),
        };
        SEEN.lock().unwrap_or_else(|e| e.into_inner()).push(seen);
        Ok(())
    }

    #[handler]
    fn look(session: &Session) -> poem::Result<()> {
        see(session)
    }
    #[handler]
    fn login(session: &Session, Path(user): Path<String>) -> poem::Result<()> {
        session.insert("user", &user)?;
        see(session)
    }
    #[handler]
    fn keep(session: &Session) -> poem::Result<()> {
        see(session)?;
        KEPT.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(session.clone());
        Ok(())
    }
    /// Poisons the session's lock: a value whose serialization panics, caught here.
    #[handler]
    fn poison(session: &Session) -> poem::Result<()> {
        struct Bomb;
        impl serde::Serialize for Bomb {
            fn serialize<S: serde::Serializer>(
                &self,
                _: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                panic!("serialization failed");
            }
        }
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = session.insert("bomb", &Bomb);
        }));
        assert!(caught.is_err());
        see(session)
    }

    fn seen() -> Vec<Seen> {
        std::mem::take(&mut *SEEN.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn cookie(resp: &poem::test::TestResponse) -> String {
        let set = resp
            .0
            .headers()
            .get(SET_COOKIE)
            .and_then(|v| v.to_str().ok());
        set.and_then(|v| v.split(';').next())
            .unwrap_or_default()
            .to_owned()
    }

    /// `Inner::begin` readies a reused allocation for a request: nothing a previous request
    /// left in it survives but the state (which the opening writes), and the endpoint's
    /// shared parts are swapped only when they belong to another endpoint.
    #[test]
    fn begin_leaves_nothing_of_the_previous_request() {
        let ep = SealedSession::new(keys()).transform(Route::new());
        let other = SealedSession::new(keys()).transform(Route::new());
        let then = Timestamp::from_millis(1_000);
        let id = SessionId::from_bytes([9; 16]);
        let mut inner = Inner::blank(other.shared.here(), then);
        inner.is_new = false;
        inner.changed = true;
        inner.reissue = true;
        inner.lifecycle = Lifecycle::Destroyed;
        inner.ended.push((id, then));
        inner.unconfirmed = Some((id, then));
        inner.token = Some("an old token".to_owned());
        inner.secure = true;
        inner.stale_key = true;
        inner.saved = Some(vec![1, 2, 3]);
        inner.loaded = Some(id);
        inner.cached_as = Some((7, id));
        let now = Timestamp::from_millis(2_000);
        inner.state = SessionState::new(SessionId::from_bytes([4; 16]), now, now);
        let arrival = Arrival {
            is_new: true,
            reissue: false,
            stale_key: false,
            refused: None,
            unconfirmed: None,
            cached_as: None,
        };
        inner.begin(ep.shared.here(), now, false, &arrival);
        assert!(inner.is_new);
        assert!(!inner.changed);
        assert!(!inner.reissue);
        assert_eq!(inner.lifecycle, Lifecycle::Live);
        assert!(inner.ended.is_empty());
        assert_eq!(inner.issued_until, now, "the state's deadline");
        assert_eq!(inner.unconfirmed, None);
        assert_eq!(inner.token, None);
        assert_eq!(inner.now, now);
        assert!(Arc::ptr_eq(&inner.shared, ep.shared.here()));
        assert!(!inner.secure);
        assert!(!inner.stale_key);
        assert_eq!(inner.saved, None);
        assert_eq!(inner.loaded, None);
        assert_eq!(inner.cached_as, None);

        // An opened session: its id is the one loaded, and the arrival's flags are taken.
        let counted = Arc::strong_count(ep.shared.here());
        let opened = Arrival {
            is_new: false,
            reissue: true,
            stale_key: true,
            refused: None,
            unconfirmed: Some((id, now)),
            cached_as: Some((5, id)),
        };
        inner.begin(ep.shared.here(), now, true, &opened);
        assert!(!inner.is_new && inner.reissue && inner.stale_key && inner.secure);
        assert_eq!(inner.loaded, Some(inner.state.id()));
        assert_eq!(inner.unconfirmed, Some((id, now)));
        assert_eq!(inner.cached_as, Some((5, id)));
        assert_eq!(
            Arc::strong_count(ep.shared.here()),
            counted,
            "the same endpoint's parts are kept, not counted again"
        );
    }

    // One test, so that no other test's requests run between these on the statics; the
    // default `#[tokio::test]` runtime runs every request on this thread.
    #[tokio::test]
    async fn a_thread_reuses_the_allocation_of_a_session_nothing_else_holds() {
        let app = Route::new()
            .at("/look", get(look))
            .at("/login/:user", post(login))
            .at("/keep", get(keep))
            .at("/poison", post(poison))
            .with(SealedSession::new(keys()).secure(Secure::Never));
        let tc = TestClient::new(app);

        // alice logs in; a stranger's new session then gets the same allocation, clean.
        let resp = tc.post("/login/alice").send().await;
        resp.assert_status_is_ok();
        let alice = cookie(&resp);
        let spare = Session::spare_addr();
        let resp = tc.get("/look").send().await;
        resp.assert_status_is_ok();
        // Nothing of the login's request is left in the reused allocation either: the new,
        // unchanged session sends no cookie.
        assert_eq!(
            cookie(&resp),
            "",
            "a stranger's untouched session sets no cookie"
        );
        tc.get("/look")
            .header("cookie", &alice)
            .send()
            .await
            .assert_status_is_ok();
        let [first, stranger, again] =
            <[Seen; 3]>::try_from(seen()).unwrap_or_else(|s| panic!("{s:?}"));
        assert_eq!(first.user.as_deref(), Some("alice"));
        assert_eq!(
            spare,
            Some(first.addr),
            "kept for the thread's next request"
        );
        assert_eq!(stranger.addr, first.addr, "the allocation is reused");
        assert_eq!(
            stranger.user, None,
            "nothing of alice's session is left in it"
        );
        assert_ne!(stranger.id, first.id);
        assert_eq!(again.addr, first.addr);
        assert_eq!(
            (again.id, again.user),
            (first.id.clone(), Some("alice".to_owned()))
        );

        // A tampered copy of alice's cookie, on the allocation that just held her session:
        // refused, and the fresh session it gets holds nothing of hers. The token's last
        // character flipped: its tag no longer matches, and the open cache has no such bytes.
        let mut forged = alice.clone();
        let last = forged
            .pop()
            .map_or('A', |c| if c == 'A' { 'B' } else { 'A' });
        forged.push(last);
        let resp = tc.get("/look").header("cookie", &forged).send().await;
        resp.assert_status_is_ok();
        let [refused] = <[Seen; 1]>::try_from(seen()).unwrap_or_else(|s| panic!("{s:?}"));
        assert_eq!(refused.addr, first.addr, "the allocation is reused");
        assert_eq!(refused.user, None, "a forged token opens nothing");
        assert_ne!(refused.id, first.id);

        // A session a handler keeps is not reused: the next request gets another allocation
        // and the kept one still reads as it did.
        tc.get("/keep")
            .header("cookie", &alice)
            .send()
            .await
            .assert_status_is_ok();
        let [kept] = <[Seen; 1]>::try_from(seen()).unwrap_or_else(|s| panic!("{s:?}"));
        assert_ne!(
            Session::spare_addr(),
            Some(kept.addr),
            "held elsewhere: not kept"
        );
        tc.post("/login/bob").send().await.assert_status_is_ok();
        let [bob] = <[Seen; 1]>::try_from(seen()).unwrap_or_else(|s| panic!("{s:?}"));
        assert_ne!(bob.addr, kept.addr);
        assert_eq!(bob.user.as_deref(), Some("bob"));
        let held = KEPT.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let held = held.unwrap_or_else(|| panic!("the handler kept its session"));
        assert_eq!(held.addr(), kept.addr);
        assert_eq!(
            held.get::<String>("user").ok().flatten().as_deref(),
            Some("alice")
        );
        assert_eq!(held.id().to_string(), first.id);
        drop(held);

        // A lock a handler poisoned is reused unpoisoned, and works.
        tc.post("/poison").send().await.assert_status_is_ok();
        tc.post("/login/carol").send().await.assert_status_is_ok();
        let [poisoned, carol] = <[Seen; 2]>::try_from(seen()).unwrap_or_else(|s| panic!("{s:?}"));
        assert!(poisoned.poisoned);
        assert_eq!(carol.addr, poisoned.addr);
        assert!(!carol.poisoned);
        assert_eq!(carol.user.as_deref(), Some("carol"));
    }
}
