//! The bearer transport, for single-page and mobile apps: the token arrives as
//! `Authorization: Bearer <token>` and a new one leaves in a response header
//! (`X-Session-Token` by default) when the session changed or is due for renewal.
//!
//! A request without an `Authorization` header (or with another scheme) has an empty session.
//! `Authorization: DPoP <token>` (RFC 9449) is read as well; the engine accepts that scheme
//! only with DPoP on (`binding::Dpop`), and only for a DPoP-bound token.
//! A bearer token that is invalid, expired or revoked is answered with a 401 carrying
//! `WWW-Authenticate: Bearer error="invalid_token", error_description="..."` (RFC 6750)
//! before the handler runs. A token over the size limit is refused before it is parsed.
//! A request with more than one `Authorization` header is answered with a 400 carrying
//! `WWW-Authenticate: Bearer error="invalid_request", ...` (RFC 6750 section 3.1: "uses more
//! than one method for including an access token"), whatever the schemes: it is never served
//! as the first of them.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::engine::Answer;
use crate::error::OpenError;

/// Default response header that carries a new token.
pub const DEFAULT_TOKEN_HEADER: &str = "x-session-token";
/// Default longest bearer token accepted: 8 KiB.
pub const DEFAULT_MAX_BEARER_LEN: usize = 8 * 1024;

/// Settings of the bearer transport. Every setter names its default.
///
/// ```
/// use http::HeaderName;
/// use sealed_session::{BearerConfig, Keyring, SealedSession};
///
/// let bearer = BearerConfig::new()
///     .response_header(HeaderName::from_static("x-new-token"))
///     .max_len(4096);
/// let sessions = SealedSession::sealed(Keyring::generate()?).bearer(bearer);
/// # let _ = sessions;
/// # Ok::<(), sealed_session::KeyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct BearerConfig {
    header: HeaderName,
    max_len: usize,
}

impl Default for BearerConfig {
    fn default() -> Self {
        BearerConfig {
            header: HeaderName::from_static(DEFAULT_TOKEN_HEADER),
            max_len: DEFAULT_MAX_BEARER_LEN,
        }
    }
}

/// What the request's `Authorization` header held.
///
/// ```
/// use sealed_session::BearerConfig;
/// use sealed_session::transport::bearer::BearerIn;
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("authorization", "Bearer abc.def.ghi".parse()?);
/// assert_eq!(BearerConfig::new().read(&headers), BearerIn::Token("abc.def.ghi"));
/// headers.insert("authorization", "Basic dXNlcjpwdw==".parse()?);
/// assert_eq!(BearerConfig::new().read(&headers), BearerIn::Absent);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, PartialEq, Eq)]
pub enum BearerIn<'a> {
    /// No `Authorization` header, or one of another scheme.
    Absent,
    /// A bearer token within the size limit.
    Token(&'a str),
    /// A token sent with the `DPoP` scheme (RFC 9449, section 7.1), within the size limit.
    Dpop(&'a str),
    /// A bearer token that was refused before parsing.
    Refused(OpenError),
}

impl BearerConfig {
    /// Defaults: new tokens in `X-Session-Token`, tokens up to 8 KiB.
    pub fn new() -> Self {
        BearerConfig::default()
    }

    /// The response header that carries a new token. Default: `x-session-token`.
    #[must_use]
    pub fn response_header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// The longest token accepted, checked before parsing. Default: 8 KiB.
    #[must_use]
    pub fn max_len(mut self, n: usize) -> Self {
        self.max_len = n;
        self
    }

    /// The response header name.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// Reads the bearer token of a request. More than one `Authorization` header is
    /// refused ([`OpenError::DuplicateAuthorization`]).
    pub fn read<'a>(&self, headers: &'a HeaderMap) -> BearerIn<'a> {
        let mut all = headers.get_all(AUTHORIZATION).iter();
        let Some(value) = all.next() else {
            return BearerIn::Absent;
        };
        let more = all.count();
        if more > 0 {
            return BearerIn::Refused(OpenError::DuplicateAuthorization {
                count: more.saturating_add(1),
            });
        }
        // The scheme decides first: credentials of another scheme are not a session token,
        // whatever their length or bytes.
        let bytes = value.as_bytes().trim_ascii();
        let scheme = bytes
            .iter()
            .position(|b| *b == b' ')
            .and_then(|sp| bytes.get(..sp));
        let dpop = match scheme {
            Some(s) if s.eq_ignore_ascii_case(b"bearer") => false,
            Some(s) if s.eq_ignore_ascii_case(b"dpop") => true,
            _ => return BearerIn::Absent,
        };
        if value.len() > self.max_len.saturating_add(7) {
            return BearerIn::Refused(OpenError::TooLarge {
                len: value.len(),
                max: self.max_len,
            });
        }
        let Ok(value) = value.to_str() else {
            return BearerIn::Refused(OpenError::Malformed("authorization header is not ASCII"));
        };
        let Some((_, token)) = value.trim().split_once(' ') else {
            return BearerIn::Absent;
        };
        let token = token.trim();
        if token.len() > self.max_len {
            return BearerIn::Refused(OpenError::TooLarge {
                len: token.len(),
                max: self.max_len,
            });
        }
        if dpop {
            BearerIn::Dpop(token)
        } else {
            BearerIn::Token(token)
        }
    }
}

/// A description safe for a quoted-string: fixed text per reason, never the token.
fn description(e: &OpenError) -> &'static str {
    match e {
        OpenError::Expired { .. } => "the session has expired",
        OpenError::IdleTimeout { .. } => "the session was idle too long",
        OpenError::Revoked => "the session was revoked",
        OpenError::TooLarge { .. } => "the token is too large",
        OpenError::DataTooLarge { .. } | OpenError::DataTooDeep { .. } => {
            "the session data is too large or nested too deeply"
        }
        OpenError::UnknownKeyId(_) => "the token's key is unknown",
        OpenError::FromTheFuture { .. } => "the token is not yet valid",
        OpenError::UnsupportedVersion { .. } => "the token's format version is not supported",
        OpenError::ClaimMismatch { .. } => "the token was issued for another issuer or audience",
        OpenError::DuplicateAuthorization { .. } => {
            "the request carries more than one Authorization header"
        }
        OpenError::BadProof => "the token is bound to a key this request does not prove",
        _ => "the token is malformed or its signature is invalid",
    }
}

/// The answer for a refused bearer token (RFC 6750, section 3.1): a 401 with
/// `error="invalid_token"`; for a request with more than one `Authorization` header, a 400
/// with `error="invalid_request"`.
pub(crate) fn unauthorized(e: &OpenError) -> Answer {
    let desc = description(e);
    let (status, error) = match e {
        OpenError::DuplicateAuthorization { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
        _ => (StatusCode::UNAUTHORIZED, "invalid_token"),
    };
    let challenge = format!("Bearer error=\"{error}\", error_description=\"{desc}\"");
    let answer = Answer::text(status, desc);
    match HeaderValue::try_from(challenge) {
        Ok(v) => answer.with_challenge(v),
        Err(_) => answer,
    }
}
