//! The builder of a session middleware: one value holding every setting (the design and its
//! keys, the cookie or bearer transport, the expiry policy, limits, denylist, clock). The
//! Poem middleware is this value itself; the tower layer comes from `SealedSession::layer`;
//! both run the [`Engine`] it builds.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::DEFAULT_OPEN_CACHE_BYTES;
use crate::clock::{Clock, SystemClock};
use crate::codec::{Codec, SealedCodec, SessionIdCodec, SignedCodec};
use crate::denylist::Denylist;
use crate::engine::{Config, Engine};
use crate::keys::Keyring;
use crate::limits::{LimitError, Limits};
use crate::policy::Policy;
use crate::session::Backend;
use crate::stats::{Counted, Counters, Stats};
use crate::store::Store;
use crate::transport::bearer::BearerConfig;
use crate::transport::cookie::{CookieConfig, SameSite, Secure};

/// A session middleware, configured through one builder: the Poem middleware itself (with
/// the `poem` feature), and the tower layer through `SealedSession::layer` (with the
/// `tower` feature).
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
///     SealedSession::sealed(keys)
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
    /// Device binding's MAC keys, derived from the cookie keys (sealed, signed, store),
    /// the primary's first.
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    cookie_mac: Vec<Arc<crate::keys::MacKey>>,
}

/// One constructor per design: [`SealedSession::sealed`] (the default choice),
/// [`SealedSession::signed`], `SealedSession::jwt` (with a JWT feature) and
/// [`SealedSession::server_store`]; [`SealedSession::with_codec`] for a codec of your own.
impl SealedSession {
    /// Sealed sessions: the whole session in an encrypted, authenticated cookie (AES-256-GCM
    /// by default), sealed with the newest key of `ring` and opened with any of them. The
    /// client can neither read nor change it.
    ///
    /// ```
    /// use sealed_session::{Keyring, SealedSession};
    ///
    /// let ring = Keyring::from_secret("at least thirty-two bytes of real secret, please")?;
    /// let sessions = SealedSession::sealed(ring);
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
    pub fn sealed(ring: Keyring) -> Self {
        SealedSession::with_codec(SealedCodec::new(ring.clone())).cookie_keys(&ring)
    }

    /// Signed sessions: the whole session in a cookie the client can read but not change
    /// (HMAC-SHA256 with the newest key of `ring`).
    ///
    /// ```
    /// use sealed_session::{Keyring, SealedSession};
    ///
    /// let ring = Keyring::from_secret("at least thirty-two bytes of real secret, please")?;
    /// let sessions = SealedSession::signed(ring);
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
    pub fn signed(ring: Keyring) -> Self {
        SealedSession::with_codec(SignedCodec::new(ring.clone())).cookie_keys(&ring)
    }

    /// Server-store sessions, the express-session design: the cookie holds the session id
    /// signed with the keys of `ring`, and the session lives in `store`.
    ///
    /// ```
    /// use sealed_session::{Keyring, SealedSession};
    /// use sealed_session::store::MemoryStore;
    ///
    /// let ring = Keyring::from_secret("at least thirty-two bytes of real secret, please")?;
    /// let sessions = SealedSession::server_store(MemoryStore::new(), ring);
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
    pub fn server_store(store: impl Store, ring: Keyring) -> Self {
        SealedSession::with_backend(Backend::Store {
            ids: SessionIdCodec::new(ring.clone()),
            store: Arc::new(store),
        })
        .cookie_keys(&ring)
    }

    /// Keeps the MAC keys that device binding (DBSC) derives from the cookie keys.
    #[cfg_attr(
        not(any(feature = "jwt", feature = "jwt-rust-crypto")),
        allow(unused_variables, unused_mut)
    )]
    fn cookie_keys(mut self, ring: &Keyring) -> Self {
        #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
        {
            self.cookie_mac = ring
                .keys()
                .map(|k| {
                    let key = crate::keys::MacKey::derived_from(k, crate::binding::dbsc::DBSC_INFO);
                    Arc::new(key)
                })
                .collect();
        }
        self
    }

    /// JWT sessions (usually with [`SealedSession::bearer`], for single-page apps): the
    /// session travels as a JWT signed by `codec`'s keys. The middleware's expiry policy is
    /// given to the codec when the middleware is applied, so that the `exp` other verifiers
    /// read and the leeway the codec allows are the ones this middleware enforces.
    ///
    /// ```
    /// use sealed_session::{BearerConfig, JwtAlgorithm, JwtCodec, JwtKeyring, SealedSession};
    /// use std::time::Duration;
    ///
    /// let ring = JwtKeyring::generate(JwtAlgorithm::EdDSA)?;
    /// let codec = JwtCodec::builder(ring).issuer("https://app.example").audience("app").build()?;
    /// let sessions = SealedSession::jwt(codec)
    ///     .bearer(BearerConfig::new())
    ///     .idle_timeout(Some(Duration::from_secs(15 * 60)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    pub fn jwt(codec: crate::codec::JwtCodec) -> Self {
        let mut session = SealedSession::with_codec(codec.clone());
        session.cfg.jwt = Some(codec);
        session
    }

    /// Sessions carried by any [`Codec`].
    pub fn with_codec(codec: impl Codec) -> Self {
        SealedSession::with_backend(Backend::Token(Arc::new(codec)))
    }

    fn with_backend(backend: Backend) -> Self {
        SealedSession {
            cfg: Config {
                backend,
                #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
                jwt: None,
                policy: Policy::default(),
                cookie: CookieConfig::default(),
                bearer: None,
                save_uninitialized: false,
                denylist: None,
                devices: None,
                #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
                dpop: None,
                #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
                dbsc: None,
                clock: Arc::new(SystemClock),
                limits: Limits::default(),
                open_cache: DEFAULT_OPEN_CACHE_BYTES,
                stats: Arc::new(Counters::default()),
            },
            #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
            cookie_mac: Vec::new(),
        }
    }

    /// Memory for the open cache: what recently seen tokens opened to, so that a token that
    /// comes back (the next request of the same page or app, or the one after a write) is
    /// not decoded and authenticated again. `0` turns it off. Default
    /// [`DEFAULT_OPEN_CACHE_BYTES`] (1 MiB) per endpoint the middleware is applied to.
    ///
    /// A token is answered from the cache only for exactly the bytes that opened (compared
    /// in constant time) and the same cookie name; expiry, idle time and revocation are
    /// checked on every request as without it. Used with the sealed, signed and JWT codecs
    /// (any codec whose [`Codec::open_is_pure`]; a JWT only between its `iat` and `exp`).
    /// Store-backed sessions keep only the session id each signed cookie verified to: the
    /// session itself is loaded from the store on every request.
    /// The cost: up to this much memory, holding plaintext sessions until evicted.
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession};
    /// let sessions = SealedSession::sealed(Keyring::generate()?).open_cache(4 << 20); // 4 MiB
    /// # let _ = sessions;
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
    #[must_use]
    pub fn open_cache(mut self, max_bytes: usize) -> Self {
        self.cfg.open_cache = max_bytes;
        self
    }

    /// Replaces the whole cookie configuration.
    ///
    /// ```
    /// # use sealed_session::{CookieConfig, Keyring, SealedSession};
    /// let sessions = SealedSession::sealed(Keyring::generate()?)
    ///     .cookie(CookieConfig::new().name("app").persistent(true));
    /// # let _ = sessions;
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
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
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession};
    /// let sessions = SealedSession::sealed(Keyring::generate()?).name("app_session");
    /// # let _ = sessions;
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
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
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure};
    /// let sessions = SealedSession::sealed(Keyring::generate()?).secure(Secure::Auto);
    /// # let _ = sessions;
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
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
    /// same setting as [`CookieConfig::max_chunks`]; the last call wins.
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
    /// token, the session data's size and nesting. Default: [`Limits::default`], whose
    /// documentation gives each bound, its default and what a request over it gets. The
    /// number of cookie chunks is the cookie's own setting ([`SealedSession::max_chunks`]).
    ///
    /// ```
    /// # use sealed_session::{Keyring, Limits, SealedSession};
    /// let sessions = SealedSession::sealed(Keyring::generate()?).limits(Limits::new().json_depth(8));
    /// # let _ = sessions;
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.cfg.limits = limits;
        self
    }
    /// Trust `X-Forwarded-Proto` (express-session's `proxy`). Default: false.
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure};
    /// // Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    /// let sessions = SealedSession::sealed(Keyring::generate()?)
    ///     .secure(Secure::Auto)
    ///     .trust_proxy(true);
    /// # let _ = sessions;
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
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
    ///
    /// ```
    /// use std::time::Duration;
    /// # use sealed_session::{Keyring, SealedSession};
    /// let sessions = SealedSession::sealed(Keyring::generate()?)
    ///     .max_age(Duration::from_secs(8 * 3600))
    ///     .idle_timeout(Some(Duration::from_secs(30 * 60)))
    ///     .renew_after(Duration::from_secs(5 * 60));
    /// # let _ = sessions;
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
    #[must_use]
    pub fn max_age(mut self, d: Duration) -> Self {
        self.cfg.policy = self.cfg.policy.max_age(d);
        self
    }
    /// Idle timeout; `None` disables it. Default: 1 hour.
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession};
    /// // No idle timeout: only the absolute lifetime ends a session.
    /// let sessions = SealedSession::sealed(Keyring::generate()?).idle_timeout(None);
    /// # let _ = sessions;
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
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
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession};
    /// // A new token on every response (express-session's `rolling: true`).
    /// let sessions = SealedSession::sealed(Keyring::generate()?).rolling(true);
    /// # let _ = sessions;
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
    #[must_use]
    pub fn rolling(mut self, on: bool) -> Self {
        self.cfg.policy = self.cfg.policy.rolling(on);
        self
    }
    /// Send a cookie for a new session even when nothing was stored in it
    /// (express-session's `saveUninitialized`). Default: false.
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession};
    /// // Every visitor gets a session cookie, even an empty one (express-session's default).
    /// let sessions = SealedSession::sealed(Keyring::generate()?).save_uninitialized(true);
    /// # let _ = sessions;
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
    #[must_use]
    pub fn save_uninitialized(mut self, on: bool) -> Self {
        self.cfg.save_uninitialized = on;
        self
    }
    /// Carry tokens in `Authorization: Bearer` instead of cookies, with new tokens in the
    /// response header of `config` (see [`crate::transport::bearer`]). Default: cookies.
    ///
    /// ```
    /// # use sealed_session::{BearerConfig, Keyring, SealedSession};
    /// let sessions = SealedSession::sealed(Keyring::generate()?).bearer(BearerConfig::new());
    /// # let _ = sessions;
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
    #[must_use]
    pub fn bearer(mut self, config: BearerConfig) -> Self {
        self.cfg.bearer = Some(config);
        self
    }

    /// DPoP (RFC 9449) for bearer sessions: a client that sends a `DPoP` proof when its
    /// session is issued gets a token bound to its key (`cnf.jkt`), accepted from then on
    /// only as `Authorization: DPoP <token>` with a fresh proof by that key; a copied token
    /// is useless without the key. With [`Dpop::required`](crate::binding::Dpop::required),
    /// plain bearer tokens are refused. Only bearer transports read proofs
    /// ([`SealedSession::bearer`]); on cookie sessions this does nothing. Default: off.
    ///
    /// ```
    /// use sealed_session::binding::Dpop;
    /// use sealed_session::{BearerConfig, JwtAlgorithm, JwtCodec, JwtKeyring, SealedSession};
    ///
    /// let codec = JwtCodec::builder(JwtKeyring::generate(JwtAlgorithm::EdDSA)?)
    ///     .issuer("https://app.example")
    ///     .audience("app")
    ///     .build()?;
    /// let sessions = SealedSession::jwt(codec)
    ///     .bearer(BearerConfig::new())
    ///     .dpop(Dpop::new().required(true));
    /// # let _ = sessions;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    #[must_use]
    pub fn dpop(mut self, dpop: crate::binding::Dpop) -> Self {
        self.cfg.dpop = Some(dpop);
        self
    }

    /// Device-bound cookie sessions (the W3C DBSC draft): a response that issues a
    /// signed-in session offers the browser to register a key; once it has, the session
    /// also needs a short-lived bound cookie that only a proof signed by that key renews,
    /// so a session cookie copied off the device stops working when its bound cookie runs
    /// out (default 10 minutes). The middleware answers the registration and refresh paths
    /// itself. Browsers that never register keep working as before; routes given to
    /// [`Dbsc::require_for`](crate::binding::Dbsc::require_for) refuse them. Cookie
    /// transports only. Default: off.
    ///
    /// ```
    /// use sealed_session::binding::Dbsc;
    /// use sealed_session::{Keyring, SealedSession};
    ///
    /// let keys = Keyring::from_secret("at least thirty-two bytes of real secret, please")?;
    /// let sessions = SealedSession::sealed(keys).device_bound(Dbsc::new().require_for("/admin"));
    /// # let _ = sessions;
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    #[must_use]
    pub fn device_bound(mut self, dbsc: crate::binding::Dbsc) -> Self {
        self.cfg.dbsc = Some(Arc::new(dbsc.resolve(self.cookie_mac.clone())));
        self
    }

    /// Check every session against `denylist` (a local, in-memory look-up) and revoke the id
    /// that `destroy` or `regenerate` ends, so a token replayed after logout is refused.
    /// Keep a clone of the `Arc` to revoke every session of a user
    /// ([`Denylist::revoke_subject`]). A revoked session is treated like an expired one (a
    /// fresh session for cookies, a 401 for bearer tokens); a denylist that is
    /// [`Check::Unavailable`](crate::denylist::Check::Unavailable) (a Redis replica past its staleness bound) is answered with a
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

    /// Lists each signed-in user's sessions in `devices`' registry, for "your devices" pages:
    /// see [`crate::devices`] and [`Session::devices`](crate::Session::devices). A session
    /// is recorded when its token is issued or re-issued and it has a subject; a request
    /// that only reads its session does no registry work. Ending another session needs a
    /// [`denylist`](SealedSession::denylist) in the stateless modes. Default: none.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use sealed_session::denylist::MemoryDenylist;
    /// use sealed_session::devices::{Devices, MemoryRegistry};
    /// use sealed_session::{Keyring, SealedSession};
    ///
    /// let keys = Keyring::from_secret("at least thirty-two bytes of real secret, please")?;
    /// let sessions = SealedSession::sealed(keys)
    ///     .denylist(Arc::new(MemoryDenylist::new()))
    ///     .devices(Devices::new(Arc::new(MemoryRegistry::new())).ip_prefix(true));
    /// # let _ = sessions;
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
    #[must_use]
    pub fn devices(mut self, devices: crate::devices::Devices) -> Self {
        self.cfg.devices = Some(Arc::new(devices));
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

    /// The engine this configuration runs: what the Poem middleware and the tower layer call
    /// for each request, and what an adapter for another framework would call. Each call
    /// makes a new engine, with its own open cache; the statistics are shared with this
    /// builder.
    pub fn engine(&self) -> Engine {
        Engine::new(&self.cfg)
    }
}
