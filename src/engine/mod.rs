//! The per-request engine, on the `http` crate's types and no web framework: before the
//! handler it opens what the request carries (a cookie or a bearer token, with every codec,
//! the policy, the denylist and the store) into the request's [`Session`]; after the
//! handler it turns the session's outcome into response headers. The Poem middleware and
//! the tower layer are adapters over it: each reads its framework's request, calls
//! [`Engine::start`], puts the [`Session`] where handlers find it, runs the handler and calls
//! [`Engine::finish`].
//!
//! `open.rs` opens the request's token; `bind.rs` checks the proof of a DPoP-bound session;
//! `device.rs` the bound cookie of a device-bound one, and answers the DBSC paths;
//! `respond.rs` writes the response's headers.

#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
mod bind;
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
mod device;
mod open;
mod respond;

use std::sync::Arc;

use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use tracing::Span;

use crate::cache::OpenCache;
use crate::clock::Clock;
use crate::denylist::Denylist;
use crate::devices::Devices;
use crate::limits::Limits;
use crate::policy::Policy;
use crate::session::{Backend, Inner, Session, Shared};
use crate::stats::{Counted, Counters, Stats};
use crate::transport::bearer::BearerConfig;
use crate::transport::cookie::CookieConfig;

use open::Token;
use respond::{Carrier, Client, internal, outcome};

/// What a middleware is configured with: the builder's settings, as every request reads
/// them.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) backend: Backend,
    /// Set by `SealedSession::jwt`: the codec, given the policy when the engine is built
    /// (it replaces `backend` then).
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    pub(crate) jwt: Option<crate::codec::JwtCodec>,
    pub(crate) policy: Policy,
    pub(crate) cookie: CookieConfig,
    /// `Some` when tokens travel in the `Authorization` header instead of cookies.
    pub(crate) bearer: Option<BearerConfig>,
    pub(crate) save_uninitialized: bool,
    pub(crate) clock: Arc<dyn Clock>,
    /// The application's denylist, wrapped so that the revocations made through it are
    /// counted; checks go to the denylist itself (`Counted::inner`).
    pub(crate) denylist: Option<Arc<Counted>>,
    /// "Your devices": the registry and its settings.
    pub(crate) devices: Option<Arc<Devices>>,
    /// DPoP for bearer sessions.
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    pub(crate) dpop: Option<crate::binding::Dpop>,
    /// Device binding (DBSC) for cookie sessions.
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    pub(crate) dbsc: Option<Arc<crate::binding::dbsc::DeviceBinding>>,
    pub(crate) limits: Limits,
    /// Memory budget of each engine's open cache; 0 for none.
    pub(crate) open_cache: usize,
    /// Shared by every clone of the builder and every engine made from them.
    pub(crate) stats: Arc<Counters>,
}

/// The session engine of one middleware (or layer): made by
/// [`SealedSession::engine`](crate::SealedSession::engine), shared by every request through
/// it. Cheap to clone.
///
/// Framework adapters use it; an application normally uses the Poem middleware or the
/// tower layer instead. One request, with the `http` crate's types:
///
/// ```
/// use sealed_session::{Keyring, SealedSession, Secure};
/// use sealed_session::engine::RequestHead;
///
/// # tokio_test_block_on(async {
/// let ring = Keyring::from_secret("at least thirty-two bytes of real secret, please")?;
/// let engine = SealedSession::sealed(ring).secure(Secure::Never).engine();
/// let request = http::Request::get("/").body(()).unwrap();
/// let started = engine.start(RequestHead::of(&request)).await.expect("no refusal");
/// started.session().insert("user", "alice")?;
/// let mut response = http::HeaderMap::new();
/// engine.finish(&started, &mut response).await.expect("sent");
/// assert!(response[http::header::SET_COOKIE].to_str()?.starts_with("sid="));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let waker = std::task::Waker::noop();
/// #     let mut cx = std::task::Context::from_waker(&waker);
/// #     let mut f = std::pin::pin!(f);
/// #     loop {
/// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
/// #     }
/// # }
/// ```
#[derive(Clone)]
pub struct Engine {
    cfg: Arc<Config>,
    /// What this engine's sessions share: how tokens are made and checked, the cookie
    /// names, and the open cache.
    shared: Arc<Shared>,
    /// The codec's name, or `"store"`: the `mode` of the request span.
    mode: &'static str,
    /// The DBSC bound cookie's name, over HTTP and over HTTPS: the session cookie's, with
    /// `_bound`.
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    bound_names: Arc<[String; 2]>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// What the engine reads of a request before its handler: the method, the URI and the
/// headers (the method and URI are what a DPoP proof names), and whether the connection
/// is HTTPS.
///
/// ```
/// use sealed_session::engine::RequestHead;
///
/// let request = http::Request::post("/api/login").body(()).unwrap();
/// let head = RequestHead::of(&request).https(true);
/// # let _ = head;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    https: bool,
}

impl<'a> RequestHead<'a> {
    /// A request's method, URI (as in its request line: usually only the path and query)
    /// and headers, over plain HTTP unless [`RequestHead::https`] says otherwise.
    pub fn new(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> RequestHead<'a> {
        RequestHead {
            method,
            uri,
            headers,
            https: false,
        }
    }

    /// The head of an `http` request.
    pub fn of<B>(request: &'a http::Request<B>) -> RequestHead<'a> {
        RequestHead::new(request.method(), request.uri(), request.headers())
    }

    /// Whether the request came over HTTPS, as the connection says (with `trust_proxy`, the
    /// engine also reads `X-Forwarded-Proto`). Default: `false`, unless the URI says
    /// `https`.
    #[must_use]
    pub fn https(mut self, on: bool) -> RequestHead<'a> {
        self.https = on;
        self
    }

    /// The method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The URI, as given.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    fn connection_https(&self) -> bool {
        self.https || self.uri.scheme_str() == Some("https")
    }
}

/// A request whose session is open: hand [`Started::session`] to the handler, then give
/// this back to [`Engine::finish`].
///
/// See [`Engine`] for a whole request; what an adapter does with the answer the engine
/// gives itself:
///
/// ```
/// use sealed_session::engine::{Engine, RequestHead};
///
/// async fn serve(engine: &Engine, req: http::Request<String>) -> http::Response<String> {
///     let mut started = match engine.start(RequestHead::of(&req)).await {
///         Ok(started) => started,
///         Err(answer) => return answer.into_response(),
///     };
///     let mut resp = match started.take_own_response() {
///         Some(answer) => answer.into_response(), // a DBSC registration or refresh
///         None => http::Response::new(format!("{:?}", started.session().get::<u64>("n"))),
///     };
///     if let Err(answer) = engine.finish(&started, resp.headers_mut()).await {
///         resp = answer.into_response();
///     }
///     resp
/// }
/// # let _ = serve;
/// ```
#[derive(Debug)]
pub struct Started {
    session: Session,
    carrier: Carrier,
    /// The request brought a token that was refused (it is cleared, or re-issued).
    refused: bool,
    /// After a DPoP-checked request: the next server nonce for the response, and a login's
    /// proof to record when a token is issued to it.
    binding: Option<Box<BindingOut>>,
    /// The response the engine gives itself, in place of the handler's (a DBSC
    /// registration or refresh); its session headers still come from
    /// [`Engine::finish`].
    own: Option<Answer>,
    /// With "your devices" on: what the registry is told about the client.
    client: Option<Box<Client>>,
    span: Span,
}

impl Started {
    /// The request's session, for the handler (put it in the request's extensions).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Tells the engine the connection's peer address, for the IP prefix that
    /// [`Devices::ip_prefix`](crate::devices::Devices::ip_prefix) keeps (the Poem middleware
    /// does this itself). An address already read from `X-Forwarded-For` (with
    /// `trust_proxy`) takes precedence. Does nothing unless IP prefixes are on.
    pub fn set_peer_ip(&mut self, ip: std::net::IpAddr) {
        if self.wants_peer_ip()
            && let Some(client) = &mut self.client
        {
            client.ip = Some(ip);
        }
    }

    /// The response to send instead of running the handler (the middleware answers the
    /// DBSC registration and refresh paths itself), taken once. Give it to
    /// [`Engine::finish`] like a handler's response.
    pub fn take_own_response(&mut self) -> Option<Answer> {
        self.own.take()
    }

    /// Whether [`Started::set_peer_ip`] would keep an address: IP prefixes are on and none
    /// was read from `X-Forwarded-For`.
    pub fn wants_peer_ip(&self) -> bool {
        self.client
            .as_ref()
            .is_some_and(|c| c.ip_wanted && c.ip.is_none())
    }
}

/// A response the engine makes itself: before the handler, in place of it (431 for a
/// `Cookie` header over the limit; 401 or 400 for a refused bearer token, with
/// `WWW-Authenticate`; 503 when revocation cannot be checked or the store cannot be read;
/// 500 when no session id can be drawn), or after it, in place of the handler's response
/// (500 when the session cannot be sent; 503 when it cannot be ended or saved). The body is
/// plain text naming the cause, never a token.
///
/// See [`Started`] for how an adapter sends it.
///
/// ```
/// use sealed_session::engine::Answer;
/// fn send(answer: Answer) -> http::Response<String> {
///     answer.into_response()
/// }
/// # let _ = send;
/// ```
#[derive(Clone, Debug)]
pub struct Answer {
    status: StatusCode,
    /// Its headers besides `Content-Type`: `WWW-Authenticate` for a refused bearer token
    /// (RFC 6750, RFC 9449), `DPoP-Nonce`, a DBSC answer's `Set-Cookie` and
    /// `Secure-Session-Challenge`.
    extra: Vec<(HeaderName, HeaderValue)>,
    content_type: &'static str,
    body: String,
}

/// What a request's binding check leaves for its response.
#[derive(Debug, Default)]
#[cfg_attr(
    not(any(feature = "jwt", feature = "jwt-rust-crypto")),
    allow(dead_code)
)]
pub(crate) struct BindingOut {
    /// `DPoP-Nonce` for the response.
    pub(crate) dpop_nonce: Option<HeaderValue>,
    /// A login's DPoP proof, recorded as used when a token is issued to it: its replay key
    /// and until when.
    pub(crate) pending_proof: Option<([u8; 16], crate::clock::Timestamp)>,
}

impl Answer {
    /// A plain-text answer.
    pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Answer {
        Answer {
            status,
            extra: Vec::new(),
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    /// A JSON answer.
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    pub(crate) fn json(status: StatusCode, body: String) -> Answer {
        let mut answer = Answer::text(status, body);
        answer.content_type = "application/json";
        answer
    }

    /// The answer with one more header.
    #[cfg_attr(
        not(any(feature = "jwt", feature = "jwt-rust-crypto")),
        allow(dead_code)
    )]
    pub(crate) fn with_header(mut self, name: HeaderName, value: Option<HeaderValue>) -> Answer {
        if let Some(v) = value {
            self.extra.push((name, v));
        }
        self
    }

    /// The answer with a `DPoP-Nonce` header.
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    pub(crate) fn with_dpop_nonce(self, nonce: Option<HeaderValue>) -> Answer {
        self.with_header(HeaderName::from_static("dpop-nonce"), nonce)
    }

    /// The answer with a `WWW-Authenticate` header.
    pub(crate) fn with_challenge(mut self, challenge: HeaderValue) -> Answer {
        self.extra.push((WWW_AUTHENTICATE, challenge));
        self
    }

    /// Its status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The answer as an `http` response: its status, `Content-Type` (`text/plain;
    /// charset=utf-8`, or JSON for a DBSC registration), `WWW-Authenticate` for a bearer
    /// refusal, the headers of a DBSC answer, and a body made from its text.
    pub fn into_response<B: From<String>>(self) -> http::Response<B> {
        let mut resp = http::Response::new(B::from(self.body));
        *resp.status_mut() = self.status;
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        for (name, value) in self.extra {
            headers.append(name, value);
        }
        resp
    }
}

impl Engine {
    /// The engine of `cfg`.
    pub(crate) fn new(cfg: &Config) -> Engine {
        #[cfg_attr(
            not(any(feature = "jwt", feature = "jwt-rust-crypto")),
            allow(unused_mut)
        )]
        let mut cfg = cfg.clone();
        #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
        if let Some(jwt) = &cfg.jwt {
            cfg.backend = Backend::Token(Arc::new(jwt.clone().policy(&cfg.policy)));
        }
        let shared = Shared {
            backend: cfg.backend.clone(),
            denylist: cfg.denylist.clone().map(|d| -> Arc<dyn Denylist> { d }),
            purposes: [
                Arc::from(cfg.cookie.full_name(false)),
                Arc::from(cfg.cookie.full_name(true)),
            ],
            cache: match &cfg.backend {
                Backend::Token(codec) if !codec.open_is_pure() => None,
                _ => OpenCache::new(cfg.open_cache, cfg.limits.data_len, cfg.limits.json_depth)
                    .map(Arc::new),
            },
            devices: cfg.devices.clone(),
            max_age: cfg.policy.max_age,
            idle_timeout: cfg.policy.idle_timeout,
            clock: cfg.clock.clone(),
            max_depth: cfg.limits.json_depth,
        };
        #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
        let bound_names =
            Arc::new([false, true].map(|secure| format!("{}_bound", cfg.cookie.full_name(secure))));
        Engine {
            #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
            bound_names,
            mode: match &cfg.backend {
                Backend::Token(codec) => codec.name(),
                Backend::Store { .. } => "store",
            },
            shared: Arc::new(shared),
            cfg: Arc::new(cfg),
        }
    }

    /// What this engine (and the builder it came from, with its clones) has done so far;
    /// see [`SealedSession::stats`](crate::SealedSession::stats).
    pub fn stats(&self) -> Stats {
        self.cfg
            .stats
            .snapshot(self.cfg.denylist.as_deref().map(|d| &*d.inner))
    }

    /// Before the handler: opens the session the request carries, and checks its proof
    /// when it is bound (DPoP). An `Err` is the answer to send instead of running the
    /// handler.
    pub async fn start(&self, head: RequestHead<'_>) -> Result<Started, Answer> {
        let span = self.span();
        let now = self.cfg.clock.now();
        let headers = head.headers;
        let https = head.connection_https();
        let (carrier, token) = self.read(headers, https, &span)?;
        // The bearer token as sent, for a DPoP proof's `ath`.
        #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
        let sent = match (&carrier, &token) {
            (
                Carrier::Bearer { .. },
                Token::Bytes(crate::transport::cookie::TokenBytes::Borrowed(t)),
            ) => std::str::from_utf8(t).ok(),
            _ => None,
        };
        let secure = carrier.is_secure();
        let purpose: &str = self.shared.purpose(secure);
        let opened = match (token, &self.cfg.backend) {
            (Token::Bytes(t), Backend::Token(codec)) => {
                self.open_token(&**codec, &t, purpose, secure, now)
            }
            // Boxed: the store's future is large and most requests do not take this path;
            // kept inline it would grow every request's future, and Poem allocates each
            // request's future past the allocator's fast sizes.
            (Token::Bytes(t), Backend::Store { ids, store }) => {
                Box::pin(self.open_stored(ids, &**store, &t, purpose, secure, now)).await
            }
            (Token::Absent, _) => self.fresh(now, None),
            (Token::Refused(e), _) => self.fresh(now, Some(e)),
        };
        let (mut state, mut arrival) = opened.inspect_err(|_| outcome(&span, "unavailable"))?;
        if let Some(e) = &arrival.refused {
            self.cfg.stats.refused(e, &span);
            if let Carrier::Bearer { dpop_scheme } = carrier {
                return Err(self.bearer_refused(e, dpop_scheme, &span));
            }
        }
        // A binding this request's transport cannot check (a DPoP token in a cookie, a
        // device-bound session as a bearer token, or binding off on this middleware): the
        // session is refused, never served unchecked.
        if !arrival.is_new && !self.binding_fits(&state, &carrier) {
            let e = crate::OpenError::BadProof;
            self.cfg.stats.refused(&e, &span);
            if let Carrier::Bearer { dpop_scheme } = carrier {
                return Err(self.bearer_refused(&e, dpop_scheme, &span));
            }
            (state, arrival) = self.fresh(now, Some(e))?;
        }
        #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
        let binding = match (&self.cfg.dpop, &carrier) {
            (Some(dpop), Carrier::Bearer { dpop_scheme }) => {
                let req = crate::binding::dpop::Request {
                    method: head.method,
                    uri: head.uri,
                    headers,
                    https: open::is_https(headers, https, self.cfg.cookie.trusts_proxy()),
                    trust_proxy: self.cfg.cookie.trusts_proxy(),
                };
                let sent = sent.filter(|_| !arrival.is_new);
                let check = bind::Presented {
                    token: sent,
                    dpop_scheme: *dpop_scheme,
                };
                self.check_dpop(dpop, &req, check, &mut state, now, &span)
                    .await?
            }
            _ => None,
        };
        #[cfg(not(any(feature = "jwt", feature = "jwt-rust-crypto")))]
        let binding = None;
        #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
        let (arrival, own, rebind) = match (&self.cfg.dbsc, &carrier) {
            (Some(dbsc), Carrier::Cookie { secure, .. }) => {
                let request = device::Request {
                    head,
                    secure: *secure,
                    now,
                };
                let out = self
                    .check_device(dbsc, &request, &mut state, arrival, &span)
                    .await?;
                (out.arrival, out.own, out.rebind)
            }
            _ => (arrival, None, false),
        };
        #[cfg(not(any(feature = "jwt", feature = "jwt-rust-crypto")))]
        let (own, rebind) = (None, false);
        if !arrival.is_new {
            tracing::trace!(
                target: "sealed_session",
                parent: &span,
                reissue = arrival.reissue,
                stale_key = arrival.stale_key,
                "session opened"
            );
        }
        let refused = arrival.refused.is_some();
        let inner = Inner::new(self.shared.clone(), state, now, secure, arrival);
        let client = self.cfg.devices.as_ref().map(|d| {
            Box::new(Client::of(
                headers,
                d.ip_prefix,
                self.cfg.cookie.trusts_proxy(),
            ))
        });
        let session = Session::new(inner);
        // Just bound to a device: a new id, the old one ended (revoked), so that a token
        // issued before the binding is no key to the bound session.
        if rebind {
            session.cycle_id().map_err(internal)?;
        }
        Ok(Started {
            session,
            carrier,
            refused,
            binding,
            own,
            client,
            span,
        })
    }

    /// After the handler: the revocations and store writes the session's outcome needs, and
    /// its headers on the handler's response `headers` (`Set-Cookie`, the bearer token
    /// header, `Cache-Control`). An `Err` is the answer to send instead of the handler's
    /// response (the session could not be sent, ended or saved). Changes are written
    /// whatever the handler's status.
    pub fn finish<'a>(
        &'a self,
        started: &'a Started,
        headers: &'a mut HeaderMap,
    ) -> impl Future<Output = Result<(), Answer>> + Send + 'a {
        let purpose: &str = self.shared.purpose(started.carrier.is_secure());
        respond::finish(
            &self.cfg,
            &started.span,
            (&started.carrier, purpose),
            &started.session,
            (started.refused, started.client.as_deref()),
            started.binding.as_deref(),
            headers,
        )
    }

    /// Whether `state`'s binding, if any, is one this middleware checks on `carrier`: DPoP
    /// on bearer requests with DPoP on, a device (DBSC) on cookies with DBSC on.
    fn binding_fits(&self, state: &crate::SessionState, carrier: &Carrier) -> bool {
        #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
        return match (state.binding(), carrier) {
            (None, _) => true,
            (Some(crate::Binding::Dpop { .. }), Carrier::Bearer { .. }) => self.cfg.dpop.is_some(),
            (Some(crate::Binding::Device(_)), Carrier::Cookie { .. }) => self.cfg.dbsc.is_some(),
            _ => false,
        };
        #[cfg(not(any(feature = "jwt", feature = "jwt-rust-crypto")))]
        {
            let _ = carrier;
            state.binding().is_none()
        }
    }

    /// The answer for a refused bearer token: RFC 6750's, or RFC 9449's when it came with
    /// the DPoP scheme.
    fn bearer_refused(&self, e: &crate::OpenError, dpop_scheme: bool, span: &Span) -> Answer {
        #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
        if let (Some(dpop), true) = (&self.cfg.dpop, dpop_scheme) {
            return bind::token_refused(dpop, e, span);
        }
        let _ = dpop_scheme;
        respond::unauthorized(e, span)
    }

    /// One span per request, the parent of the engine's events. When no subscriber wants it,
    /// `Span::none()`: a disabled span made by the macro would still be offered to the `log`
    /// crate on every record and drop when any dependency turns on tracing's `log` feature
    /// (about 150 instructions a request).
    #[inline]
    fn span(&self) -> Span {
        if !tracing::span_enabled!(target: "sealed_session", tracing::Level::DEBUG) {
            return Span::none();
        }
        tracing::debug_span!(
            target: "sealed_session",
            "sealed_session",
            mode = self.mode,
            transport = if self.cfg.bearer.is_some() { "bearer" } else { "cookie" },
            outcome = tracing::field::Empty,
            reason = tracing::field::Empty,
        )
    }
}
