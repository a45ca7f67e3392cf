//! Reading the session cookie from the request's Cookie headers: a plain cookie, or chunks
//! reassembled in order.
//!
//! Hand-written rather than `cookie::Cookie::split_parse`, which takes text and trims any
//! whitespace: this reader takes the header's bytes (another application's cookie that is
//! not UTF-8 does not hide the session cookie) and names a chunk only by a canonical index
//! written right after the name (`sid.0 =x` is not a chunk).

use std::borrow::Cow;

use http::HeaderMap;
use http::header::COOKIE;

use super::CookieConfig;

/// The session cookies a request carried.
#[derive(Debug, Default)]
pub(crate) struct Incoming {
    /// The token, reassembled from chunks when chunked. `None` when absent, when the chunks
    /// do not form a sequence, or when its bytes are not text (such a cookie can only be
    /// refused; `plain` or `chunks` still say it came).
    #[cfg(test)]
    pub(crate) token: Option<String>,
    /// A plain (unchunked) cookie was present.
    pub(crate) plain: bool,
    /// Number of chunk cookies present (the highest index + 1).
    pub(crate) chunks: usize,
    /// The chunk indexes present, one bit each: the reader ignores indexes from
    /// `max(4 * max_chunks, 16)` on, at most 128, so they all fit.
    pub(crate) present: u128,
}

impl Incoming {
    /// Whether any session cookie came with the request.
    pub(crate) fn any(&self) -> bool {
        self.plain || self.chunks > 0
    }

    /// The indexes of the chunk cookies the request carried, from `from` on, in order: what
    /// a response clears, so that one cookie `sid.127` costs one removal, not 128.
    pub(crate) fn chunk_indexes(&self, from: usize) -> impl Iterator<Item = usize> {
        // The set bits from `from` on, lowest first.
        let mut bits = u32::try_from(from)
            .ok()
            .and_then(|f| u128::MAX.checked_shl(f))
            .map_or(0, |mask| self.present & mask);
        std::iter::from_fn(move || {
            let i = bits.trailing_zeros() as usize;
            bits &= bits.checked_sub(1)?;
            Some(i)
        })
    }
}

/// A token's bytes as a request carried them: borrowed from its headers, or reassembled from
/// chunks.
pub(crate) type TokenBytes<'h> = Cow<'h, [u8]>;

/// The `;`-separated pairs of one Cookie header, as they are (spaces included).
fn pairs(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(header);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b';', r) {
            Some(i) => {
                rest = r.get(i + 1..);
                r.get(..i)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Every value of the cookie `name` (whole, not chunked) in the request's Cookie headers, in
/// order, with pairs read as [`CookieConfig::scan`] reads them. Unlike the session cookie,
/// of which the first is taken, the caller sees them all: a cookie of the same name planted
/// before the real one does not hide it.
#[cfg_attr(
    not(any(feature = "jwt", feature = "jwt-rust-crypto")),
    allow(dead_code)
)]
pub(crate) fn cookie_values<'h>(
    headers: &'h HeaderMap,
    name: &'h [u8],
) -> impl Iterator<Item = &'h [u8]> {
    headers
        .get_all(COOKIE)
        .into_iter()
        .flat_map(|header| pairs(header.as_bytes()))
        .filter_map(move |pair| match parse_pair(pair, name) {
            Some((None, value)) => Some(value),
            _ => None,
        })
}

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

impl CookieConfig {
    /// Reads the session cookie named `name` from the request's Cookie headers (the tests'
    /// view of [`CookieConfig::scan`]).
    #[cfg(test)]
    pub(crate) fn read(&self, headers: &HeaderMap, name: &str) -> Incoming {
        match self.scan(headers, name, usize::MAX) {
            Ok((mut incoming, token)) => {
                incoming.token = token.and_then(|t| String::from_utf8(t.into_owned()).ok());
                incoming
            }
            Err(_) => Incoming::default(),
        }
    }

    /// Reads the session cookie named `name` from the request's Cookie headers: the token's
    /// bytes as they are in the headers (copied only when reassembled from chunks; not
    /// checked to be text), and which session cookies came, in an [`Incoming`]. Refuses, with the length counted so far,
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
            for pair in pairs(header.as_bytes()) {
                match parse_pair(pair, name) {
                    None => {}
                    Some((None, v)) => {
                        plain.get_or_insert(v);
                        incoming.plain = true;
                    }
                    // Absurd indexes are ignored without allocating for them: `parts` never
                    // grows past `max_chunks` (at most `MAX_CHUNKS`), and `present` keeps
                    // one bit for each index below this bound (at most 128).
                    Some((Some(idx), _)) if idx >= self.max_chunks.saturating_mul(4).max(16) => {}
                    Some((Some(idx), v)) => {
                        incoming.chunks = incoming.chunks.max(idx + 1);
                        incoming.present |= u32::try_from(idx)
                            .ok()
                            .and_then(|i| 1u128.checked_shl(i))
                            .unwrap_or(0);
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
}

#[cfg(test)]
mod tests {
    use http::header::COOKIE;
    use http::{HeaderMap, HeaderValue};

    use super::CookieConfig;
    use super::cookie_values;

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
    fn chunk_indexes_are_those_that_came_from_the_first_asked() {
        let c = CookieConfig::default().max_chunks(32).unwrap();
        let i = c.read(&headers(b"sid.127=a; sid.0=b; sid.5=c; sid.64=d"), "sid");
        assert_eq!(i.chunk_indexes(0).collect::<Vec<_>>(), [0, 5, 64, 127]);
        assert_eq!(i.chunk_indexes(5).collect::<Vec<_>>(), [5, 64, 127]);
        assert_eq!(i.chunk_indexes(6).collect::<Vec<_>>(), [64, 127]);
        assert_eq!(i.chunk_indexes(128).count(), 0);
        assert_eq!(i.chunk_indexes(usize::MAX).count(), 0);
        let none = c.read(&headers(b"sid=a"), "sid");
        assert_eq!(none.chunk_indexes(0).count(), 0);
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

    #[test]
    fn a_cookie_is_found_by_its_whole_name_only() {
        let headers = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(http::header::COOKIE, v.parse().unwrap());
            }
            h
        };
        let found = |values: &[&str], want: &[u8]| {
            cookie_values(&headers(values), b"sid_bound").any(|v| v == want)
        };
        assert!(found(&["sid=x; sid_bound=abc"], b"abc"));
        assert!(found(&["sid_bound=abc;sid=x"], b"abc"));
        assert!(found(&["sid=x", "sid_bound= abc "], b"abc"));
        assert!(!found(&["xsid_bound=abc; sid=x"], b"abc"));
        assert!(!found(&["sid=sid_bound=abc"], b"abc"));
        assert!(found(&["sid=x; xsid_bound=1; sid_bound=2"], b"2"));
        assert!(!found(&["sid=x; xsid_bound=1; sid_bound=2"], b"1"));
        assert!(!found(&["sid=x"], b""));
        assert!(!found(&["sid_bound.0=abc"], b"abc"));
        assert!(found(&["sid_bound=\"abc\""], b"abc"));
        assert!(found(&["sid_bound=\"\"abc\"\""], b"abc"));
        assert!(found(&["sid_bound=\"abc"], b"abc"));
        assert!(found(&["a=1;\tsid_bound=abc"], b"abc"));
        // Inside another cookie's value, after a space: not a pair of its own.
        assert!(!found(&["x=foo sid_bound=abc"], b"abc"));
        assert!(found(&["sid_bound="], b""));
        // A planted cookie of the same name does not hide the real one.
        assert!(found(
            &["sid_bound=planted; sid=x; sid_bound=real"],
            b"real"
        ));
    }
}
