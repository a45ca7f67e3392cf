//! Finds the token in what the user pasted: a bare token, a `Set-Cookie` value (or several
//! lines of them, for a chunked cookie), or a whole `Cookie` header.

use std::collections::BTreeMap;

/// Where the token came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A bare token.
    Token,
    /// A `Cookie` request header.
    Cookie,
    /// One or more `Set-Cookie` response headers.
    SetCookie,
}

impl Source {
    pub fn name(&self) -> &'static str {
        match self {
            Source::Token => "token",
            Source::Cookie => "cookie",
            Source::SetCookie => "set-cookie",
        }
    }
}

/// The token found, and the cookie it came from.
#[derive(Clone, Debug)]
pub struct Found {
    pub token: String,
    pub source: Source,
    /// The cookie's name as sent (without a chunk suffix); `None` for a bare token.
    pub cookie_name: Option<String>,
    /// Number of chunk cookies reassembled (0 for an unchunked cookie or a bare token).
    pub chunks: usize,
    /// Things worth telling the user (a plain cookie beside chunks, ...).
    pub notes: Vec<String>,
}

/// Why no token could be found.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("the input is empty; give a token, a Set-Cookie value or a Cookie header")]
    Empty,
    #[error(
        "no session cookie named {wanted} in the input (cookies found: {found}); pass --name with the cookie's name"
    )]
    NoCookie { wanted: String, found: String },
    #[error(
        "chunk cookie {name}.{missing} is missing ({present} chunks present); paste every {name}.N cookie"
    )]
    MissingChunk {
        name: String,
        missing: usize,
        present: usize,
    },
    #[error("cookie {0} is empty (a removal cookie?); nothing to inspect")]
    EmptyCookie(String),
}

/// Cookie attribute names of `Set-Cookie` (lower case).
const ATTRIBUTES: [&str; 9] = [
    "path",
    "domain",
    "expires",
    "max-age",
    "samesite",
    "secure",
    "httponly",
    "partitioned",
    "priority",
];

/// Longest chunk index looked for.
const MAX_CHUNKS: usize = 64;

/// The session cookie names to look for, in order: `__Host-NAME` then `NAME`, or exactly
/// the name given when it already carries a `__Host-` or `__Secure-` prefix.
pub fn candidate_names(name: &str) -> Vec<String> {
    if name.starts_with("__Host-") || name.starts_with("__Secure-") {
        vec![name.to_owned()]
    } else {
        vec![format!("__Host-{name}"), name.to_owned()]
    }
}

fn strip_header_name(line: &str) -> (&str, Option<Source>) {
    let line = line.trim();
    for (prefix, source) in [
        ("set-cookie:", Source::SetCookie),
        ("cookie:", Source::Cookie),
    ] {
        if let Some(head) = line.get(..prefix.len())
            && head.eq_ignore_ascii_case(prefix)
        {
            return (line.get(prefix.len()..).unwrap_or("").trim(), Some(source));
        }
    }
    (line, None)
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(v)
}

/// Whether the `;`-separated pairs after the first look like Set-Cookie attributes.
fn looks_like_set_cookie(pairs: &[&str]) -> bool {
    pairs.iter().skip(1).any(|p| {
        let key = p.split_once('=').map_or(*p, |(k, _)| k).trim();
        ATTRIBUTES.iter().any(|a| a.eq_ignore_ascii_case(key))
    })
}

/// Finds the session token in `input`. `name` is the cookie name (without a chunk suffix;
/// `__Host-` is tried first unless the name has a prefix already).
pub fn find_token(input: &str, name: &str) -> Result<Found, InputError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(InputError::Empty);
    }
    // A token (sealed, signed or JWT) never has `=` (no base64 padding) or `;`.
    // Whitespace is dropped, so a token wrapped over several lines reads whole.
    let (_, header) = strip_header_name(input.lines().next().unwrap_or(""));
    if header.is_none() && !input.contains('=') && !input.contains(';') {
        let token: String = unquote(input)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        return Ok(Found {
            token,
            source: Source::Token,
            cookie_name: None,
            chunks: 0,
            notes: Vec::new(),
        });
    }

    // Every (name, value) pair, in order; a Set-Cookie line contributes its first pair only.
    let mut cookies: Vec<(String, String)> = Vec::new();
    let mut source = Source::Cookie;
    for line in input.lines().filter(|l| !l.trim().is_empty()) {
        let (line, header) = strip_header_name(line);
        let pairs: Vec<&str> = line
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let set_cookie = match header {
            Some(Source::SetCookie) => true,
            Some(_) => false,
            None => looks_like_set_cookie(&pairs) || input.lines().count() > 1,
        };
        if set_cookie {
            source = Source::SetCookie;
        }
        let take = if set_cookie { 1 } else { pairs.len() };
        for pair in pairs.into_iter().take(take) {
            if let Some((k, v)) = pair.split_once('=') {
                cookies.push((k.trim().to_owned(), unquote(v).to_owned()));
            }
        }
    }

    for wanted in candidate_names(name) {
        let plain = cookies.iter().find(|(k, _)| *k == wanted).map(|(_, v)| v);
        let mut chunks: BTreeMap<usize, &str> = BTreeMap::new();
        for (k, v) in &cookies {
            if let Some(idx) = k
                .strip_prefix(wanted.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|i| *i < MAX_CHUNKS)
                && !v.is_empty()
            {
                chunks.entry(idx).or_insert(v);
            }
        }
        let mut notes = Vec::new();
        if !chunks.is_empty() {
            let mut token = String::new();
            for i in 0..chunks.len() {
                match chunks.get(&i) {
                    Some(part) => token.push_str(part),
                    None => {
                        return Err(InputError::MissingChunk {
                            name: wanted,
                            missing: i,
                            present: chunks.len(),
                        });
                    }
                }
            }
            if plain.is_some_and(|p| !p.is_empty()) {
                notes.push(format!(
                    "a plain {wanted} cookie is present too; the chunks win, as in the middleware"
                ));
            }
            return Ok(Found {
                token,
                source,
                cookie_name: Some(wanted),
                chunks: chunks.len(),
                notes,
            });
        }
        if let Some(v) = plain {
            if v.is_empty() {
                return Err(InputError::EmptyCookie(wanted));
            }
            return Ok(Found {
                token: v.clone(),
                source,
                cookie_name: Some(wanted),
                chunks: 0,
                notes,
            });
        }
    }
    let mut found: Vec<&str> = cookies.iter().map(|(k, _)| k.as_str()).collect();
    found.dedup();
    Err(InputError::NoCookie {
        wanted: candidate_names(name).join(" or "),
        found: if found.is_empty() {
            "none".to_owned()
        } else {
            found.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_token() {
        let f = find_token("  AQECaz\nEA-_x \n", "sid").unwrap();
        assert_eq!((f.token.as_str(), f.source), ("AQECazEA-_x", Source::Token));
        let jwt = find_token("eyJh.eyJz.sig", "sid").unwrap();
        assert_eq!(jwt.token, "eyJh.eyJz.sig");
    }

    #[test]
    fn cookie_header_with_chunks() {
        let f = find_token(
            "Cookie: a=b; __Host-sid.1=DEF; __Host-sid.0=ABC; c=d",
            "sid",
        )
        .unwrap();
        assert_eq!(f.token, "ABCDEF");
        assert_eq!(f.cookie_name.as_deref(), Some("__Host-sid"));
        assert_eq!((f.chunks, f.source), (2, Source::Cookie));
        let e = find_token("__Host-sid.0=ABC; __Host-sid.2=X", "sid").unwrap_err();
        assert!(matches!(e, InputError::MissingChunk { missing: 1, .. }));
    }

    #[test]
    fn set_cookie() {
        let f = find_token("sid=TOKEN; Path=/; HttpOnly; SameSite=Lax", "sid").unwrap();
        assert_eq!((f.token.as_str(), f.source), ("TOKEN", Source::SetCookie));
        let lines = "Set-Cookie: __Host-sid.0=AB; Path=/\nSet-Cookie: __Host-sid.1=CD; Path=/";
        let f = find_token(lines, "sid").unwrap();
        assert_eq!((f.token.as_str(), f.chunks), ("ABCD", 2));
        // A removal cookie.
        assert!(matches!(
            find_token("sid=; Max-Age=0; Path=/", "sid"),
            Err(InputError::EmptyCookie(_))
        ));
    }

    #[test]
    fn names() {
        assert_eq!(
            find_token("other=1; sid=TOK", "sid")
                .unwrap()
                .cookie_name
                .as_deref(),
            Some("sid")
        );
        let e = find_token("a=1; b=2", "sid").unwrap_err().to_string();
        assert!(e.contains("a, b") && e.contains("--name"), "{e}");
        assert_eq!(candidate_names("__Host-x"), vec!["__Host-x".to_owned()]);
    }
}
