//! Bounds on what the middleware reads from the client, checked before the work they bound.
//!
//! Everything a request carries is hostile until it authenticates, and some of it stays
//! worth bounding afterwards: a JWT may come from another issuer holding a key, and a large
//! or deeply nested payload costs memory and recursion whoever signed it. [`Limits`] gathers
//! the bounds in one value, set with [`SealedSession::limits`](crate::SealedSession::limits).

use crate::error::OpenError;

/// Default bound on the `Cookie` request header(s), all values together: 32 KiB.
pub const DEFAULT_MAX_COOKIE_HEADER_LEN: usize = 32 * 1024;
/// Default bound on the number of cookies one session token is split across: 4.
pub const DEFAULT_MAX_CHUNKS: usize = 4;
/// The most cookies [`SealedSession::max_chunks`](crate::SealedSession::max_chunks) and
/// [`CookieConfig::max_chunks`](crate::CookieConfig::max_chunks) accept: 32.
///
/// Why 32: a browser keeps cookies of at most 4096 bytes, and RFC 6265 (section 6.1) only
/// promises 50 cookies per domain (Chrome and Firefox keep 180), shared with every other cookie the
/// site sets, so a session split across more is dropped by some browsers. 32 chunks are
/// already 128 KiB of `Cookie` header, four times [`DEFAULT_MAX_COOKIE_HEADER_LEN`] and more
/// than common proxies accept in one header (nginx: 8 KiB). The bound is also what keeps
/// reading cheap: the parser keeps at most this many chunks, and ignores a chunk whose index
/// is four times the configured count or more (16 at least) without allocating for it.
pub const MAX_CHUNKS: usize = 32;
/// Default bound on a session token's text, whichever the transport: 16 KiB. Also the
/// codecs' own default bound (`codec::DEFAULT_MAX_TOKEN_LEN`).
pub const DEFAULT_MAX_TOKEN_LEN: usize = 16 * 1024;
/// Default bound on the session data's JSON text after the token opened: 16 KiB.
pub const DEFAULT_MAX_DATA_LEN: usize = 16 * 1024;
/// Default bound on the session data's JSON nesting depth: 32 levels.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 32;
/// The deepest nesting [`Limits::json_depth`] accepts: 127 levels, the most `serde_json`
/// parses (its recursion limit refuses the 128th).
pub const MAX_JSON_DEPTH: usize = 127;

/// A limit set outside what it can be.
///
/// ```
/// use sealed_session::{Keyring, LimitError, SealedSession};
///
/// let sessions = SealedSession::sealed(Keyring::generate()?);
/// assert!(matches!(sessions.max_chunks(64), Err(LimitError::TooManyChunks { .. })));
/// # Ok::<(), sealed_session::KeyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// `max_chunks` over [`MAX_CHUNKS`].
    #[error(
        "max_chunks {requested} is over the limit of {max} cookies per session (sealed_session::limits::MAX_CHUNKS)"
    )]
    TooManyChunks {
        /// The count asked for.
        requested: usize,
        /// The most allowed: [`MAX_CHUNKS`].
        max: usize,
    },
}

/// `n` as a chunk count: 0 counts as 1, over [`MAX_CHUNKS`] is refused.
pub(crate) fn chunk_count(n: usize) -> Result<usize, LimitError> {
    if n > MAX_CHUNKS {
        return Err(LimitError::TooManyChunks {
            requested: n,
            max: MAX_CHUNKS,
        });
    }
    Ok(n.max(1))
}

/// Bounds on what the middleware reads from the client. Every setter names its default.
///
/// | limit | default | over the limit |
/// |---|---|---|
/// | [`cookie_header_len`](Limits::cookie_header_len): all `Cookie` header values together, in bytes | 32 KiB | **431** Request Header Fields Too Large; the handler does not run |
/// | [`token_len`](Limits::token_len): the session token's text, reassembled from its chunks | 16 KiB | cookies: a fresh session; bearer: a 401 |
/// | [`data_len`](Limits::data_len): the session data's JSON text, once the token opened | 16 KiB | cookies: a fresh session; bearer: a 401 |
/// | [`json_depth`](Limits::json_depth): nesting of the session data (the data object itself is level 1) | 32 | cookies: a fresh session; bearer: a 401 |
///
/// An input exactly at a limit is accepted; one byte (or level, or chunk) more is refused.
/// Each refusal is logged once, at `info`, with its reason (`cookie_header_too_large`,
/// `too_many_chunks`, `too_large`, `data_too_large`, `data_too_deep`) and never the token,
/// and counted like every other refusal ([`Stats`](crate::Stats)); under a flood, at most
/// one line per reason per second is written ([`stats`](crate::stats#refusal-log-lines)),
/// while every refusal is still counted.
///
/// Why a 431 for the header and a fresh session for the rest: a token over a limit is a
/// token refused, like a forged one. A `Cookie` header over the limit is the request itself
/// being too large (it is what hyper answers past its own, higher bound): reading it as "no
/// session" would let a login set a cookie that the next request drops again, a silent
/// loop, where a 431 names the cause.
///
/// Other bounds apply too, and the smaller wins: the codec's own token limit
/// ([`SealedCodec::max_token_len`](crate::SealedCodec::max_token_len), 16 KiB;
/// `JwtCodec::max_token_len`, 8 KiB), [`BearerConfig::max_len`](crate::BearerConfig::max_len)
/// (8 KiB) on the `Authorization` header, and hyper's bound on the whole header section.
///
/// The number of cookies one session may be split across is the cookie's own setting
/// ([`SealedSession::max_chunks`](crate::SealedSession::max_chunks), default 4, at most
/// [`MAX_CHUNKS`]): more chunk cookies than that give a fresh, empty session and are
/// cleared (`too_many_chunks`).
///
/// The data limits apply to data that arrived in a token; a store-backed session's record
/// comes from the server's own store and is not checked. Data a handler stores is bounded on
/// the way in: `Session::insert` refuses a value that would nest the data deeper than
/// `json_depth` ([`DataError::TooDeep`](crate::DataError::TooDeep)), and a session too large
/// for its token fails when sealed (a 500 naming the size), so no session is sent that
/// would be refused when it comes back.
///
/// [`SealedSession::limits`]: crate::SealedSession::limits
///
/// ```
/// use sealed_session::{Keyring, Limits, SealedSession};
///
/// let limits = Limits::new().json_depth(8).data_len(4 * 1024);
/// let sessions = SealedSession::sealed(Keyring::generate()?).limits(limits);
/// # let _ = sessions;
/// # Ok::<(), sealed_session::KeyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub(crate) cookie_header_len: usize,
    token_len: usize,
    pub(crate) data_len: usize,
    pub(crate) json_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cookie_header_len: DEFAULT_MAX_COOKIE_HEADER_LEN,
            token_len: DEFAULT_MAX_TOKEN_LEN,
            data_len: DEFAULT_MAX_DATA_LEN,
            json_depth: DEFAULT_MAX_JSON_DEPTH,
        }
    }
}

impl Limits {
    /// The defaults: a 32 KiB `Cookie` header, a 16 KiB token, 16 KiB of data
    /// nested at most 32 levels deep.
    pub fn new() -> Self {
        Limits::default()
    }

    /// The longest `Cookie` header accepted, in bytes: the sum of the lengths of all its
    /// values (HTTP/2 may send one header per cookie). Over it: 431, and the handler does not run.
    /// Default: 32 KiB ([`DEFAULT_MAX_COOKIE_HEADER_LEN`]), twice the largest session the
    /// default 4 chunks carry, leaving the rest for the application's other cookies.
    #[must_use]
    pub fn cookie_header_len(mut self, n: usize) -> Self {
        self.cookie_header_len = n;
        self
    }

    /// The longest session token accepted, in bytes of text (for cookies, after the chunks
    /// are joined), checked before the codec sees it. Default: 16 KiB
    /// ([`DEFAULT_MAX_TOKEN_LEN`]).
    #[must_use]
    pub fn token_len(mut self, n: usize) -> Self {
        self.token_len = n;
        self
    }

    /// The longest session data accepted, in bytes of JSON text, checked once the token
    /// opened. Default: 16 KiB ([`DEFAULT_MAX_DATA_LEN`]), more than a 4-chunk cookie
    /// carries, so that it binds only on larger tokens (JWTs minted elsewhere, raised
    /// token limits).
    #[must_use]
    pub fn data_len(mut self, n: usize) -> Self {
        self.data_len = n;
        self
    }

    /// The deepest nesting of session data accepted, counting the data object itself as
    /// level 1 (`{"a":[1]}` is 2 levels deep), checked once the token opened (serde_json's
    /// parse, then a walk of the data bounded by this limit). Clamped to 1..=[`MAX_JSON_DEPTH`] (127). Default: 32
    /// ([`DEFAULT_MAX_JSON_DEPTH`]).
    #[must_use]
    pub fn json_depth(mut self, n: usize) -> Self {
        self.json_depth = n.clamp(1, MAX_JSON_DEPTH);
        self
    }

    /// Refuses a token over the token bound.
    pub(crate) fn check_token(&self, token: &[u8]) -> Result<(), OpenError> {
        if token.len() > self.token_len {
            return Err(OpenError::TooLarge {
                len: token.len(),
                max: self.token_len,
            });
        }
        Ok(())
    }
}
