//! The Set-Cookie values that send, split or remove the session cookie. Each is a
//! [`cookie::Cookie`] formatted by the `cookie` crate; this file decides only which cookies
//! to send and how to cut a token into chunks.
//!
//! A removal has an empty value, `Max-Age=0` and `Expires` at the Unix epoch (for browsers
//! that predate `Max-Age`), and the Path, Domain and flags the cookie was set with.
//!
//! The `cookie` crate writes `Secure` on every Partitioned cookie, as CHIPS requires (a
//! browser refuses a Partitioned cookie without it).

use std::borrow::Cow;
use std::time::Duration;

use ::cookie::{Cookie, CookieBuilder};
use poem::http::HeaderValue;
use time::OffsetDateTime;

use super::{BROWSER_COOKIE_LIMIT, CookieConfig, Incoming};

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
        let set = |name: Cow<'_, str>, value: &str| {
            let cookie = self.cookie(name, value, secure);
            match max_age {
                // Past `time::Duration::MAX` (292 billion years): the longest it can say.
                Some(age) => cookie.max_age(age.try_into().unwrap_or(time::Duration::MAX)),
                None => cookie,
            }
            .build()
            .to_string()
        };
        let one = set(name.into(), token);
        if one.len() <= BROWSER_COOKIE_LIMIT {
            push(out, one);
            for i in 0..incoming.chunks {
                push(out, self.removal(format!("{name}.{i}").into(), secure));
            }
            return Ok(());
        }
        // Chunk names grow with the index; size each chunk for the longest name.
        let longest = set(format!("{name}.{}", self.max_chunks).into(), "").len();
        let room = BROWSER_COOKIE_LIMIT.saturating_sub(longest);
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
            push(out, set(format!("{name}.{i}").into(), head));
            rest = tail;
            i += 1;
        }
        for stale in i..incoming.chunks {
            push(out, self.removal(format!("{name}.{stale}").into(), secure));
        }
        if incoming.plain {
            push(out, self.removal(name.into(), secure));
        }
        Ok(())
    }

    /// The Set-Cookie values that clear every session cookie the request carried (with the
    /// same Path and Domain they were set with).
    pub fn clear(&self, name: &str, secure: bool, incoming: &Incoming) -> Vec<HeaderValue> {
        let mut out = Vec::new();
        if incoming.plain || incoming.chunks == 0 {
            push(&mut out, self.removal(name.into(), secure));
        }
        for i in 0..incoming.chunks {
            push(&mut out, self.removal(format!("{name}.{i}").into(), secure));
        }
        out
    }

    /// The cookie `name=value` with the configured Path, Domain, HttpOnly, SameSite and
    /// Partitioned, and `Secure` when `secure`.
    fn cookie<'c>(&'c self, name: Cow<'c, str>, value: &'c str, secure: bool) -> CookieBuilder<'c> {
        let mut cookie = Cookie::build((name, value))
            .path(self.path.as_str())
            .secure(secure)
            .http_only(self.http_only)
            .partitioned(self.partitioned);
        if let Some(domain) = &self.domain {
            cookie = cookie.domain(domain.as_str());
        }
        if let Some(same_site) = self.same_site {
            cookie = cookie.same_site(same_site);
        }
        cookie
    }

    /// The Set-Cookie value that removes the cookie `name`.
    fn removal(&self, name: Cow<'_, str>, secure: bool) -> String {
        self.cookie(name, "", secure)
            .max_age(time::Duration::ZERO)
            .expires(OffsetDateTime::UNIX_EPOCH)
            .build()
            .to_string()
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
    use std::time::Duration;

    use super::super::{BROWSER_COOKIE_LIMIT, CookieConfig, Incoming, SameSite};

    fn one(c: &CookieConfig, token: &str, secure: bool, age: Option<Duration>) -> String {
        let out = c
            .write("sid", token, secure, age, &Incoming::default())
            .unwrap();
        assert_eq!(out.len(), 1);
        out[0].to_str().unwrap().to_owned()
    }

    #[test]
    fn the_default_cookie_and_its_removal() {
        let c = CookieConfig::default();
        assert_eq!(
            one(&c, "dG9rZW4", true, Some(Duration::from_secs(60))),
            "sid=dG9rZW4; HttpOnly; SameSite=Lax; Secure; Path=/"
        );
        let cleared = c.clear("sid", true, &Incoming::default());
        assert_eq!(
            cleared[0].to_str().unwrap(),
            "sid=; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=0; \
             Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }

    #[test]
    fn every_attribute_as_configured() {
        let c = CookieConfig::default()
            .path("/app")
            .domain("example.com")
            .http_only(false)
            .same_site(Some(SameSite::None))
            .persistent(true);
        assert_eq!(
            one(&c, "t", true, Some(Duration::from_secs(86_400))),
            "sid=t; SameSite=None; Secure; Path=/app; Domain=example.com; Max-Age=86400"
        );
        // SameSite=None without Secure stays without it when told so.
        assert_eq!(
            one(&c, "t", false, Some(Duration::from_secs(u64::MAX))),
            format!(
                "sid=t; SameSite=None; Path=/app; Domain=example.com; Max-Age={}",
                i64::MAX
            )
        );
        let c = c.same_site(None).partitioned(true);
        // The `cookie` crate writes Secure with Partitioned, as CHIPS requires.
        assert_eq!(
            one(&c, "t", false, None),
            "sid=t; Partitioned; Secure; Path=/app; Domain=example.com"
        );
    }

    #[test]
    fn chunks_fill_the_browser_limit_and_no_more() {
        let c = CookieConfig::default().persistent(true);
        let age = Some(Duration::from_secs(86_400));
        let fits = "A".repeat(BROWSER_COOKIE_LIMIT - one(&c, "", true, age).len());
        assert_eq!(one(&c, &fits, true, age).len(), BROWSER_COOKIE_LIMIT);

        let long = format!("{fits}B");
        let incoming = Incoming {
            plain: true,
            chunks: 4,
            ..Incoming::default()
        };
        let out = c.write("sid", &long, true, age, &incoming).unwrap();
        let values: Vec<&str> = out.iter().map(|v| v.to_str().unwrap()).collect();
        let mut token = String::new();
        for (i, v) in values.iter().take(2).enumerate() {
            assert!(v.len() <= BROWSER_COOKIE_LIMIT, "{}", v.len());
            let (pair, _) = v.split_once(';').unwrap();
            token.push_str(pair.strip_prefix(&format!("sid.{i}=")).unwrap());
        }
        assert_eq!(token, long);
        // Stale chunks 2 and 3 and the plain cookie are removed.
        assert_eq!(values.len(), 5);
        for (v, name) in values[2..].iter().zip(["sid.2=;", "sid.3=;", "sid=;"]) {
            assert!(v.starts_with(name) && v.contains("; Max-Age=0;"), "{v}");
        }

        let c = c.max_chunks(1).unwrap();
        let err = c.write("sid", &long, true, age, &incoming).unwrap_err();
        assert_eq!((err.chunks, err.max_chunks), (2, 1));
    }
}
