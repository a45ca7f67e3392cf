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

use std::borrow::Cow;
use std::time::Duration;

use poem::http::header::COOKIE;
use poem::http::{HeaderMap, HeaderValue};

use crate::limits::{LimitError, chunk_count};

pub use ::cookie::SameSite;

/// The browser's limit on one cookie: name, value and attributes, in bytes.
pub const BROWSER_COOKIE_LIMIT: usize = 4096;

/// Whether the session cookie carries the `Secure` attribute.
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
    max_chunks: usize,
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
            max_chunks: 4,
            trust_proxy: false,
        }
    }
}

/// The session cookies a request carried.
#[derive(Debug, Default)]
pub struct Incoming {
    /// The token, reassembled from chunks when chunked. `None` when absent, when the chunks
    /// do not form a sequence, or when its bytes are not text (such a cookie can only be
    /// refused; `plain` or `chunks` still say it came).
    pub token: Option<String>,
    /// A plain (unchunked) cookie was present.
    pub plain: bool,
    /// Number of chunk cookies present (the highest index + 1).
    pub chunks: usize,
}

impl Incoming {
    /// Whether any session cookie came with the request.
    pub fn any(&self) -> bool {
        self.plain || self.chunks > 0
    }
}

/// A token's bytes as a request carried them: borrowed from its headers, or reassembled from
/// chunks.
pub(crate) type TokenBytes<'h> = Cow<'h, [u8]>;

/// One `name=value` pair of a Cookie header, if it is the session cookie `name` (`None` for
/// the index) or one of its chunks (`name.N`): the index and the value, without the spaces
/// and double quotes around it.
fn parse_pair<'a>(pair: &'a [u8], name: &[u8]) -> Option<(Option<usize>, &'a [u8])> {
    let rest = pair.trim_ascii_start().strip_prefix(name)?;
    // `name=value` or `name.N=value`: the `=` is next, or after a few digits. No search
    // through the value, which is most of the pair.
    let (index, value) = match rest {
        [b'=', value @ ..] => (None, value),
        [b'.', label @ ..] => {
            let eq = label.iter().position(|&b| b == b'=')?;
            let index = chunk_index(label.get(..eq)?)?;
            (Some(index), label.get(eq + 1..)?)
        }
        _ => return None,
    };
    Some((index, unquote(value)))
}

/// A chunk index in canonical decimal: ASCII digits, no leading zero (but `0` itself), no
/// sign, no space; `None` for anything else or a number past `usize`.
fn chunk_index(digits: &[u8]) -> Option<usize> {
    match digits {
        [] | [b'0', _, ..] => None,
        _ if !digits.iter().all(u8::is_ascii_digit) => None,
        _ => std::str::from_utf8(digits).ok()?.parse().ok(),
    }
}

/// A cookie value without the spaces and double quotes around it.
fn unquote(value: &[u8]) -> &[u8] {
    let mut v = value.trim_ascii();
    while let [b'"', inner @ ..] = v {
        v = inner;
    }
    while let [inner @ .., b'"'] = v {
        v = inner;
    }
    v
}

/// A session too large to send: more chunks than allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "session cookie would be {len} bytes in {chunks} cookies, over the limit of {max_chunks} cookies of at most 4096 bytes each; store less in the session"
)]
pub struct TooLarge {
    /// Token length.
    pub len: usize,
    /// Cookies it would need.
    pub chunks: usize,
    /// The configured limit.
    pub max_chunks: usize,
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
    /// Sets a chunk count already checked (by [`Limits`](crate::Limits)); clamped to
    /// 1..=[`MAX_CHUNKS`](crate::limits::MAX_CHUNKS) all the same.
    pub(crate) fn set_max_chunks(&mut self, n: usize) {
        self.max_chunks = n.clamp(1, crate::limits::MAX_CHUNKS);
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

    /// The most cookies one session may be split across.
    pub fn get_max_chunks(&self) -> usize {
        self.max_chunks
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

    /// Reads the session cookie named `name` from the request's Cookie headers.
    pub fn read(&self, headers: &HeaderMap, name: &str) -> Incoming {
        match self.scan(headers, name, usize::MAX) {
            Ok((mut incoming, token)) => {
                incoming.token = token.and_then(|t| String::from_utf8(t.into_owned()).ok());
                incoming
            }
            Err(_) => Incoming::default(),
        }
    }

    /// [`CookieConfig::read`] for the middleware: the token's bytes as they are in the
    /// headers (copied only when reassembled from chunks; not checked to be text), and the
    /// rest in an [`Incoming`] without its `token`. Refuses, with the length counted so far,
    /// Cookie headers whose values add up to more than `max_len` bytes, before scanning past
    /// the bound.
    pub(crate) fn scan<'h>(
        &self,
        headers: &'h HeaderMap,
        name: &str,
        max_len: usize,
    ) -> Result<(Incoming, Option<TokenBytes<'h>>), usize> {
        let name = name.as_bytes();
        let mut incoming = Incoming::default();
        let mut plain: Option<&[u8]> = None;
        // Chunks by index; at most `max_chunks` are kept, more are counted for removal.
        let mut parts: Vec<Option<&[u8]>> = Vec::new();
        let mut total = 0usize;
        for header in headers.get_all(COOKIE) {
            total = total.saturating_add(header.len());
            if total > max_len {
                return Err(total);
            }
            // Bytes, not text: another application's cookie in UTF-8 does not hide this one,
            // and whatever this one holds beyond base64 fails to open.
            let mut rest = header.as_bytes();
            loop {
                let (pair, next) = match memchr::memchr(b';', rest) {
                    Some(i) => (rest.get(..i).unwrap_or_default(), rest.get(i + 1..)),
                    None => (rest, None),
                };
                match parse_pair(pair, name) {
                    None => {}
                    Some((None, v)) => {
                        plain.get_or_insert(v);
                        incoming.plain = true;
                    }
                    // Absurd indexes are ignored without allocating for them: `parts` never
                    // grows past `max_chunks` (at most `MAX_CHUNKS`), and `chunks`, which
                    // sizes the removals sent back, stays below this bound.
                    Some((Some(idx), _)) if idx >= self.max_chunks.saturating_mul(4).max(16) => {}
                    Some((Some(idx), v)) => {
                        incoming.chunks = incoming.chunks.max(idx + 1);
                        if idx < self.max_chunks {
                            if parts.len() <= idx {
                                parts.resize(idx + 1, None);
                            }
                            if let Some(slot) = parts.get_mut(idx) {
                                slot.get_or_insert(v);
                            }
                        }
                    }
                }
                match next {
                    Some(n) => rest = n,
                    None => break,
                }
            }
        }
        let token = if !parts.is_empty() && incoming.chunks <= self.max_chunks {
            let mut token = Vec::new();
            let complete = parts.iter().all(|p| match p {
                Some(p) => {
                    token.extend_from_slice(p);
                    true
                }
                None => false,
            });
            complete.then_some(Cow::Owned(token))
        } else {
            plain.map(Cow::Borrowed)
        };
        Ok((incoming, token))
    }

    /// The attribute part of a Set-Cookie header (everything after the value).
    fn attributes(&self, secure: bool, max_age: Option<Duration>, removal: bool) -> String {
        let mut a = String::with_capacity(96);
        self.push_attributes(&mut a, secure, max_age, removal);
        a
    }

    /// Appends [`CookieConfig::attributes`] to `a`: to a `String`, or to [`Len`] to count
    /// them.
    fn push_attributes(
        &self,
        a: &mut impl std::fmt::Write,
        secure: bool,
        max_age: Option<Duration>,
        removal: bool,
    ) {
        // Writing to a `String` or counting cannot fail.
        let _ = self.try_push_attributes(a, secure, max_age, removal);
    }

    fn try_push_attributes(
        &self,
        a: &mut impl std::fmt::Write,
        secure: bool,
        max_age: Option<Duration>,
        removal: bool,
    ) -> std::fmt::Result {
        a.write_str("; Path=")?;
        a.write_str(&self.path)?;
        if let Some(d) = &self.domain {
            a.write_str("; Domain=")?;
            a.write_str(d)?;
        }
        if removal {
            a.write_str("; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT")?;
        } else if let Some(age) = max_age {
            write!(a, "; Max-Age={}", age.as_secs())?;
        }
        if secure {
            a.write_str("; Secure")?;
        }
        if self.http_only {
            a.write_str("; HttpOnly")?;
        }
        match self.same_site {
            Some(SameSite::Strict) => a.write_str("; SameSite=Strict")?,
            Some(SameSite::Lax) => a.write_str("; SameSite=Lax")?,
            Some(SameSite::None) => a.write_str("; SameSite=None")?,
            None => {}
        }
        if self.partitioned {
            a.write_str("; Partitioned")?;
        }
        Ok(())
    }

    /// The Set-Cookie values that send `token` under `name`, removing what the request
    /// carried in the other form. Refuses, sending nothing, when the token needs more than
    /// `max_chunks` cookies.
    pub fn write(
        &self,
        name: &str,
        token: &str,
        secure: bool,
        max_age: Option<Duration>,
        incoming: &Incoming,
    ) -> Result<Vec<HeaderValue>, TooLarge> {
        let mut out = Vec::with_capacity(1 + incoming.chunks);
        self.write_into(&mut out, name, token, secure, max_age, incoming)?;
        Ok(out)
    }

    /// [`CookieConfig::write`] into `out` (the middleware appends to the response's headers
    /// directly, without a `Vec` per response).
    pub(crate) fn write_into(
        &self,
        out: &mut impl Extend<HeaderValue>,
        name: &str,
        token: &str,
        secure: bool,
        max_age: Option<Duration>,
        incoming: &Incoming,
    ) -> Result<(), TooLarge> {
        let max_age = if self.persistent { max_age } else { None };
        // The common case, one cookie, in one buffer of exactly its length: `HeaderValue`
        // takes a buffer with no spare capacity as it is, but one with spare capacity costs
        // `bytes` an allocation of its own (the shared header of a `Bytes`) and its drop an
        // atomic count.
        let mut attrs = Len(0);
        self.push_attributes(&mut attrs, secure, max_age, false);
        let mut one = String::with_capacity(name.len() + 1 + token.len() + attrs.0);
        one.push_str(name);
        one.push('=');
        one.push_str(token);
        self.push_attributes(&mut one, secure, max_age, false);
        if one.len() <= BROWSER_COOKIE_LIMIT {
            push(out, one);
            for i in 0..incoming.chunks {
                self.push_removal(out, &format!("{name}.{i}"), secure);
            }
            return Ok(());
        }
        let attrs = self.attributes(secure, max_age, false);
        // Chunk names grow with the index; size each chunk for the longest name.
        let longest_name = name.len() + 1 + self.max_chunks.to_string().len();
        let room = BROWSER_COOKIE_LIMIT.saturating_sub(longest_name + 1 + attrs.len());
        let chunks = if room == 0 {
            usize::MAX
        } else {
            token.len().div_ceil(room)
        };
        if chunks > self.max_chunks {
            return Err(TooLarge {
                len: token.len(),
                chunks,
                max_chunks: self.max_chunks,
            });
        }
        // Tokens are base64url (ASCII), so any byte index is a char boundary; `get` keeps
        // that an error rather than a panic should that ever change.
        let mut rest = token;
        let mut i = 0;
        while !rest.is_empty() {
            let cut = room.min(rest.len());
            let (Some(head), Some(tail)) = (rest.get(..cut), rest.get(cut..)) else {
                break;
            };
            push(out, format!("{name}.{i}={head}{attrs}"));
            rest = tail;
            i += 1;
        }
        for stale in i..incoming.chunks {
            self.push_removal(out, &format!("{name}.{stale}"), secure);
        }
        if incoming.plain {
            self.push_removal(out, name, secure);
        }
        Ok(())
    }

    /// The Set-Cookie values that clear every session cookie the request carried (with the
    /// same Path and Domain they were set with).
    pub fn clear(&self, name: &str, secure: bool, incoming: &Incoming) -> Vec<HeaderValue> {
        let mut out = Vec::new();
        if incoming.plain || incoming.chunks == 0 {
            self.push_removal(&mut out, name, secure);
        }
        for i in 0..incoming.chunks {
            self.push_removal(&mut out, &format!("{name}.{i}"), secure);
        }
        out
    }

    fn push_removal(&self, out: &mut impl Extend<HeaderValue>, name: &str, secure: bool) {
        push(
            out,
            format!("{name}={}", self.attributes(secure, None, true)),
        );
    }
}

/// A `fmt::Write` that counts the bytes written to it.
struct Len(usize);

impl std::fmt::Write for Len {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

fn push(out: &mut impl Extend<HeaderValue>, s: String) {
    // Names and attributes come from configuration and tokens are base64url, so this only
    // fails for a misconfigured name or path with control characters; skip such a cookie.
    match HeaderValue::try_from(s) {
        Ok(v) => out.extend(Some(v)),
        Err(_) => {
            tracing::error!("session cookie not sent: invalid characters in name or attributes")
        }
    }
}

#[cfg(test)]
mod tests {
    use poem::http::header::COOKIE;
    use poem::http::{HeaderMap, HeaderValue};

    use super::CookieConfig;

    fn headers(cookie: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_bytes(cookie).unwrap());
        h
    }

    #[test]
    fn reads_the_session_cookie_among_others_of_any_bytes() {
        let c = CookieConfig::default();
        let i = c.read(
            &headers(b"a=caf\xe9; sid=\"tok\" ; sidx=no; sid.=no"),
            "sid",
        );
        assert_eq!(i.token.as_deref(), Some("tok"));
        assert!(i.plain && i.chunks == 0);

        let i = c.read(&headers(b"sid.1=B; x=1; sid.0=A"), "sid");
        assert_eq!(i.token.as_deref(), Some("AB"));
        assert_eq!((i.plain, i.chunks), (false, 2));

        // Present but not text: no token, and still seen (so that it is cleared).
        let i = c.read(&headers(b"sid=\xff\xfe"), "sid");
        assert_eq!(i.token, None);
        assert!(i.any());

        // A missing chunk: no token.
        let i = c.read(&headers(b"sid.1=B"), "sid");
        assert_eq!((i.token, i.chunks), (None, 2));
    }

    #[test]
    fn only_canonical_indexes_name_chunks() {
        let c = CookieConfig::default();
        for (cookie, token, chunks) in [
            (&b"sid.0=A"[..], Some("A"), 1),
            (b"sid.0=A; sid.1=B", Some("AB"), 2),
            (b"sid.00=A", None, 0),
            (b"sid.+0=A", None, 0),
            (b"sid.-0=A", None, 0),
            (b"sid. 0=A", None, 0),
            (b"sid.0 =A", None, 0),
            (b"sid.0=A; sid.01=B", Some("A"), 1),
            (b"sid.0=A; sid. 1=B", Some("A"), 1),
            (b"sid.0=A; sid.+1=B", Some("A"), 1),
            // A second spelling of an index cannot stand in for the chunk.
            (b"sid.00=X; sid.0=A", Some("A"), 1),
        ] {
            let i = c.read(&headers(cookie), "sid");
            let what = String::from_utf8_lossy(cookie);
            assert_eq!((i.token.as_deref(), i.chunks), (token, chunks), "{what}");
        }
    }

    #[test]
    fn no_index_makes_the_reader_allocate_for_it() {
        use crate::limits::MAX_CHUNKS;

        assert!(CookieConfig::default().max_chunks(MAX_CHUNKS + 1).is_err());
        let c = CookieConfig::default().max_chunks(MAX_CHUNKS).unwrap();
        for idx in [
            "4294967295",
            "18446744073709551615",
            "18446744073709551616",
            "128",
            "127",
        ] {
            let i = c.read(&headers(format!("sid.{idx}=x").as_bytes()), "sid");
            // Ignored, or counted (for removal) below a bound that does not grow with it.
            assert!(i.chunks <= 4 * MAX_CHUNKS, "{idx}: {}", i.chunks);
            assert_eq!(i.token, None, "{idx}");
        }
    }

    /// The pair parser as it was before it stopped searching the value for `=` (with the
    /// canonical index rule since added): the new one must read every pair the same way.
    fn parse_pair_by_search<'a>(pair: &'a [u8], name: &[u8]) -> Option<(Option<usize>, &'a [u8])> {
        let rest = pair.trim_ascii_start().strip_prefix(name)?;
        let eq = rest.iter().position(|&b| b == b'=')?;
        let (label, value) = (rest.get(..eq)?, rest.get(eq + 1..)?);
        let index = match label {
            [] => None,
            [b'.', b'0', b'0'..=b'9', ..] => return None,
            [b'.', digits @ ..] if digits.iter().all(u8::is_ascii_digit) => {
                Some(std::str::from_utf8(digits).ok()?.parse::<usize>().ok()?)
            }
            _ => return None,
        };
        Some((index, super::unquote(value)))
    }

    #[test]
    fn pairs_parse_as_by_searching_for_the_equals_sign() {
        for pair in [
            &b"sid=tok"[..],
            b" sid=\"tok\" ",
            b"sid.0=A",
            b"sid.12=B=C",
            b"sid.=x",
            b"sid.+3=x",
            b"sid.x=1",
            b"sid =x",
            b"sid",
            b"sid.",
            b"sid.3",
            b"sidx=1",
            b"si=1",
            b"=sid",
            b"sid==",
            b"sid.99999999999999999999999=x",
            b"sid.00=x",
            b"sid.01=x",
            b"sid.+0=x",
            b"sid.-0=x",
            b"sid. 1=x",
            b"sid.1 =x",
            b"sid.10=x",
            b"sid.0x1=x",
        ] {
            assert_eq!(
                super::parse_pair(pair, b"sid"),
                parse_pair_by_search(pair, b"sid"),
                "{:?}",
                String::from_utf8_lossy(pair)
            );
        }
    }

    proptest::proptest! {
        /// Pairs made mostly of the name and the bytes that matter after it.
        #[test]
        fn any_pair_parses_as_by_searching(
            spaces in 0..3usize,
            named in proptest::bool::weighted(0.9),
            tail in proptest::collection::vec(
                proptest::sample::select(b".0123=+ \"x\xff".to_vec()),
                0..12,
            ),
        ) {
            let mut pair = vec![b' '; spaces];
            if named {
                pair.extend_from_slice(b"sid");
            }
            pair.extend_from_slice(&tail);
            proptest::prop_assert_eq!(
                super::parse_pair(&pair, b"sid"),
                parse_pair_by_search(&pair, b"sid")
            );
        }
    }

    /// `write_into` sizes its buffer by counting the attributes first: the count must be
    /// what is written, for every attribute and every width of `Max-Age`.
    #[test]
    fn counted_attributes_are_the_written_ones() {
        use std::time::Duration;

        use super::{Len, SameSite};

        let same_sites = [
            None,
            Some(SameSite::Strict),
            Some(SameSite::Lax),
            Some(SameSite::None),
        ];
        let ages = [
            None,
            Some(Duration::ZERO),
            Some(Duration::from_secs(9)),
            Some(Duration::from_secs(86_400)),
            Some(Duration::from_secs(u64::MAX)),
        ];
        for (domain, same_site, flags) in [None, Some("example.com")]
            .into_iter()
            .flat_map(|d| same_sites.map(|s| (d, s)))
            .flat_map(|(d, s)| (0..16u8).map(move |f| (d, s, f)))
        {
            let mut c = CookieConfig::default()
                .path("/app")
                .same_site(same_site)
                .http_only(flags & 1 != 0)
                .partitioned(flags & 2 != 0);
            if let Some(d) = domain {
                c = c.domain(d);
            }
            for age in ages {
                let (secure, removal) = (flags & 4 != 0, flags & 8 != 0);
                let mut counted = Len(0);
                c.push_attributes(&mut counted, secure, age, removal);
                let written = c.attributes(secure, age, removal);
                assert_eq!(counted.0, written.len(), "{written}");

                let mut out = Vec::new();
                c.write_into(&mut out, "sid", "dG9rZW4", secure, age, &Default::default())
                    .unwrap();
                let one = out.first().unwrap().as_bytes();
                // `write_into` sends `Max-Age` only for a persistent cookie.
                let sent_age = if c.persistent { age } else { None };
                let expected = format!("sid=dG9rZW4{}", c.attributes(secure, sent_age, false));
                assert_eq!(one.len(), expected.len());
                assert_eq!(one, expected.as_bytes());
            }
        }
    }
}
