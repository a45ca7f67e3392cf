//! The Set-Cookie values that send, split or remove the session cookie.

use std::time::Duration;

use http::HeaderValue;

use super::{BROWSER_COOKIE_LIMIT, CookieConfig, Incoming, SameSite};

/// A session too large to send: more chunks than allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "session cookie would be {len} bytes in {chunks} cookies, over the limit of {max_chunks} cookies of at most 4096 bytes each; store less in the session"
)]
pub(crate) struct TooLarge {
    /// Token length.
    pub(crate) len: usize,
    /// Cookies it would need.
    pub(crate) chunks: usize,
    /// The configured limit.
    pub(crate) max_chunks: usize,
}

impl CookieConfig {
    /// A cookie beside the session cookie (a device-bound session's short-lived one):
    /// `name=value` with the session cookie's attributes and `max_age`.
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    pub(crate) fn companion(
        &self,
        name: &str,
        value: &str,
        secure: bool,
        max_age: Duration,
    ) -> Option<HeaderValue> {
        let text = format!(
            "{name}={value}{}",
            self.attributes(secure, Some(max_age), false)
        );
        HeaderValue::try_from(text).ok()
    }

    /// The session cookie's attributes without Max-Age, as DBSC's `attributes` names them
    /// (`Path=/; Secure; HttpOnly; SameSite=Lax`).
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    pub(crate) fn attribute_text(&self, secure: bool) -> String {
        let a = self.attributes(secure, None, false);
        a.strip_prefix("; ").unwrap_or(&a).to_owned()
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

    /// Appends to `out` the Set-Cookie values that send `token` under `name`, removing what
    /// the request carried in the other form. Refuses, sending nothing, when the token needs
    /// more than `max_chunks` cookies.
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
            for i in incoming.chunk_indexes(0) {
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
        for stale in incoming.chunk_indexes(i) {
            self.push_removal(out, &format!("{name}.{stale}"), secure);
        }
        if incoming.plain {
            self.push_removal(out, name, secure);
        }
        Ok(())
    }

    /// The Set-Cookie values that clear every session cookie the request carried (with the
    /// same Path and Domain they were set with).
    pub(crate) fn clear(&self, name: &str, secure: bool, incoming: &Incoming) -> Vec<HeaderValue> {
        let mut out = Vec::new();
        if incoming.plain || incoming.chunks == 0 {
            self.push_removal(&mut out, name, secure);
        }
        for i in incoming.chunk_indexes(0) {
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
    use super::CookieConfig;

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
