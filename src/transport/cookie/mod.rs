//! The cookie transport: reads the session cookie (reassembling chunks), and writes it with
//! every attribute, splitting a token that would pass the browser's 4096-byte limit across
//! numbered chunk cookies.
//!
//! Chunk naming: a token that fits goes in one cookie, `NAME=token`. A longer one is split
//! into `NAME.0`, `NAME.1`, ... (at most [`CookieConfig::max_chunks`]); reading concatenates
//! them in order. Writing one form removes the cookies of the other that the request carried,
//! and stale chunks beyond the new count.
//!
//! Only canonical decimal indexes name chunks: `NAME.0`, `NAME.12`, never `NAME.00`,
//! `NAME.01`, `NAME.+1` or `NAME. 1`, which are other cookies, ignored. So every chunk has one
//! name, and no second cookie can stand in for it.
//!
//! This file holds the configuration; `read.rs` reads the Cookie header, `write.rs` makes the
//! Set-Cookie values (formatted by hand: docs/PERFORMANCE.md says why).

mod read;
mod write;

use crate::limits::{LimitError, chunk_count};

pub(crate) use read::Incoming;
pub(crate) use read::TokenBytes;
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
pub(crate) use read::cookie_values;

pub use ::cookie::SameSite;

/// The browser's limit on one cookie: name, value and attributes, in bytes.
pub const BROWSER_COOKIE_LIMIT: usize = 4096;

/// Whether the session cookie carries the `Secure` attribute.
///
/// ```
/// use sealed_session::{Keyring, SealedSession, Secure};
///
/// // Secure over HTTPS only, as the connection (or, with trust_proxy, the proxy) says.
/// let sessions = SealedSession::sealed(Keyring::generate()?)
///     .secure(Secure::Auto)
///     .trust_proxy(true);
/// # let _ = sessions;
/// # Ok::<(), sealed_session::KeyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Secure {
    /// Always (the default): the browser sends the cookie over HTTPS only (and to
    /// `http://localhost`).
    Always,
    /// Never: for plain-HTTP development only.
    Never,
    /// When the request came over HTTPS, judged from the connection or, with
    /// `trust_proxy`, from the `X-Forwarded-Proto` header (express-session's `secure: 'auto'`).
    Auto,
}

/// The session cookie's name and attributes. Every setter names its default.
///
/// ```
/// use sealed_session::{CookieConfig, Keyring, SameSite, SealedSession, Secure};
///
/// let cookie = CookieConfig::new()
///     .name("app")
///     .same_site(Some(SameSite::Strict))
///     .persistent(true);
/// assert_eq!(cookie.full_name(true), "__Host-app");
/// assert_eq!(cookie.full_name(false), "app");
/// let sessions = SealedSession::sealed(Keyring::generate()?).cookie(cookie);
/// # let _ = sessions;
/// # Ok::<(), sealed_session::KeyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct CookieConfig {
    name: String,
    path: String,
    domain: Option<String>,
    secure: Secure,
    http_only: bool,
    same_site: Option<SameSite>,
    partitioned: bool,
    host_prefix: bool,
    persistent: bool,
    pub(crate) max_chunks: usize,
    trust_proxy: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            name: "sid".to_owned(),
            path: "/".to_owned(),
            domain: None,
            secure: Secure::Always,
            http_only: true,
            same_site: Some(SameSite::Lax),
            partitioned: false,
            host_prefix: true,
            persistent: false,
            max_chunks: crate::limits::DEFAULT_MAX_CHUNKS,
            trust_proxy: false,
        }
    }
}

impl CookieConfig {
    /// Defaults: name `sid` (sent as `__Host-sid`), Path `/`, no Domain, Secure, HttpOnly,
    /// SameSite=Lax, not Partitioned, a browser-session cookie, at most 4 chunks.
    pub fn new() -> Self {
        CookieConfig::default()
    }

    /// The cookie name (express-session's `name`). Default: `sid`.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// The Path attribute. Default: `/`.
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }
    /// The Domain attribute. Default: none (host-only). Setting one turns off the
    /// `__Host-` prefix, which forbids it.
    #[must_use]
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }
    /// The Secure attribute. Default: [`Secure::Always`].
    #[must_use]
    pub fn secure(mut self, secure: Secure) -> Self {
        self.secure = secure;
        self
    }
    /// The HttpOnly attribute. Default: true.
    #[must_use]
    pub fn http_only(mut self, on: bool) -> Self {
        self.http_only = on;
        self
    }
    /// The SameSite attribute; `None` omits it. Default: `Lax`.
    #[must_use]
    pub fn same_site(mut self, same_site: Option<SameSite>) -> Self {
        self.same_site = same_site;
        self
    }
    /// The Partitioned attribute (CHIPS). Default: false.
    #[must_use]
    pub fn partitioned(mut self, on: bool) -> Self {
        self.partitioned = on;
        self
    }
    /// Prefix the name with `__Host-` when the cookie is Secure, has Path `/` and no Domain,
    /// so that no other subdomain or path can set it. Default: true.
    #[must_use]
    pub fn host_prefix(mut self, on: bool) -> Self {
        self.host_prefix = on;
        self
    }
    /// Give the cookie a Max-Age (the time left until the session's deadline), so it
    /// survives a browser restart. Default: false (a browser-session cookie, as
    /// express-session's `maxAge: null`); the server enforces expiry either way.
    #[must_use]
    pub fn persistent(mut self, on: bool) -> Self {
        self.persistent = on;
        self
    }
    /// The most cookies one session may be split across (0 counts as 1). Default: 4 (about
    /// 16 KB).
    ///
    /// # Errors
    ///
    /// [`LimitError::TooManyChunks`] for more than
    /// [`MAX_CHUNKS`](crate::limits::MAX_CHUNKS) (32), whose documentation says why.
    pub fn max_chunks(mut self, n: usize) -> Result<Self, LimitError> {
        self.max_chunks = chunk_count(n)?;
        Ok(self)
    }
    /// Trust `X-Forwarded-Proto` from a reverse proxy when deciding whether the request came
    /// over HTTPS (express-session's `proxy`). Default: false.
    #[must_use]
    pub fn trust_proxy(mut self, on: bool) -> Self {
        self.trust_proxy = on;
        self
    }

    /// Whether the session cookie is Persistent (carries Max-Age).
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// Whether trusting `X-Forwarded-Proto` is on.
    pub fn trusts_proxy(&self) -> bool {
        self.trust_proxy
    }

    /// The configured secure mode.
    pub fn secure_mode(&self) -> Secure {
        self.secure
    }

    /// Whether the cookie is Secure for a request that did (or did not) come over HTTPS.
    pub fn is_secure(&self, https: bool) -> bool {
        match self.secure {
            Secure::Always => true,
            Secure::Never => false,
            Secure::Auto => https,
        }
    }

    /// The cookie name as sent, with the `__Host-` prefix when it applies.
    pub fn full_name(&self, secure: bool) -> String {
        if self.prefix_applies(secure) {
            format!("__Host-{}", self.name)
        } else {
            self.name.clone()
        }
    }

    fn prefix_applies(&self, secure: bool) -> bool {
        self.host_prefix && secure && self.path == "/" && self.domain.is_none()
    }
}
